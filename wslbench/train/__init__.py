"""The one trainer for every method: seeding, loop, checkpoints, early stopping."""
from wslbench.train.trainer import Trainer, run  # noqa: F401
