"""Data sets: one module per data set, all subclasses of :class:`WSLDataset`."""
from wslbench.data.base import SPLITS, Record, WSLDataset  # noqa: F401
