"""Methods: the base class every plugin implements, shared backbone/pooling/map helpers."""
from wslbench.methods.base import Method, Prediction  # noqa: F401
