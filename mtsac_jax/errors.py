"""The error of a run that cannot go on."""


class TrainingError(RuntimeError):
    """A run that cannot go on; the message names the cause and the fix."""
