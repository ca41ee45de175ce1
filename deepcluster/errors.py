"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero: 2 for
a command refused before training (its empty run folder goes), 1 for a TrainingError (the run
started: its folder, log and last checkpoint stay)."""


class DeepClusterError(Exception):
    """A problem the user can fix (bad config value, missing or broken data)."""


class ConfigError(DeepClusterError):
    pass


class DataError(DeepClusterError):
    pass


class TrainingError(DeepClusterError):
    """The run started and could not go on (the loss became NaN, a clustering step failed)."""


class RunStopped(TrainingError):
    """A signal (SIGTERM: `kill`, `timeout`, a scheduler's preemption) stopped the training;
    the last checkpoint stays, and `ckpt_path=last` continues it. A sweep stops with it."""


class ClusteringError(TrainingError):
    """The clustering step failed (on rank 0 under DDP: every rank stops with it)."""


class MissingDependencyError(ConfigError):
    """An option needs a package that is not installed; the message gives the pip command."""

    def __init__(self, option: str, requirement: str) -> None:
        super().__init__(
            f"{option} needs a package that is not installed: pip install '{requirement}'"
        )
