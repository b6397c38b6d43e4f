"""One exception type for every user-facing mistake, so the CLI can print it without a traceback."""


class WslbenchError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name); printed as one message."""


class DataError(WslbenchError):
    """Missing data root, wrong layout, corrupt image, mask/image mismatch."""


class ConfigError(WslbenchError):
    """Unknown or ill-typed configuration key."""


class TrainingDiverged(WslbenchError):
    """A NaN or inf loss: the run stops and the last good checkpoint is kept."""


class RunInterrupted(WslbenchError):
    """SIGINT/SIGTERM: the current step finished and a resumable checkpoint was written."""
