"""One exception type for every user-facing mistake, so the CLI can print it without a traceback."""


class WslbenchError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name); printed as one message."""


class DataError(WslbenchError):
    """Missing data root, wrong layout, corrupt image, mask/image mismatch."""


class ConfigError(WslbenchError):
    """Unknown or ill-typed configuration key."""


class TrainingDiverged(WslbenchError):
    """A NaN or inf loss: the run stops and the last good checkpoint is kept. Carries where it
    happened (1-based epoch and step) so eval.json records it without parsing the message."""

    def __init__(self, loss: float, epoch: int, step: int, hint: str = ""):
        self.loss, self.epoch, self.step, self.hint = loss, epoch, step, hint
        super().__init__(f"{self.where}: stopping.{' ' + hint if hint else ''}")

    def __reduce__(self):  # pickles whole (to another process) although args holds only the message
        return type(self), (self.loss, self.epoch, self.step, self.hint)

    @property
    def where(self) -> str:
        return f"non-finite loss ({self.loss}) at epoch {self.epoch}, step {self.step}"


class RunInterrupted(WslbenchError):
    """SIGINT/SIGTERM: the current step finished and a resumable checkpoint was written."""
