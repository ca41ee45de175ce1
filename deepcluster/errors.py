"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class DeepClusterError(Exception):
    """A problem the user can fix (bad config value, missing or broken data)."""


class ConfigError(DeepClusterError):
    pass


class DataError(DeepClusterError):
    pass
