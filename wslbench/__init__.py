"""wslbench: a reproducible benchmark for weakly supervised pointwise localization.

Data -> method -> trainer -> evaluation -> tables; see README.md for the tour.
"""
__version__ = "0.1.0"

from wslbench.errors import WslbenchError  # noqa: F401
from wslbench.registry import (  # noqa: F401
    create_dataset,
    create_method,
    list_datasets,
    list_methods,
    register_dataset,
    register_method,
)
