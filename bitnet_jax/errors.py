"""Errors meant for people: one line that names the problem and the fix. The CLI prints them without a traceback."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, CLI arguments). The message is the whole story."""


class ConfigError(UserError):
    """A run or sweep configuration that cannot be used as written."""


class DataError(UserError):
    """A data source or tokenizer that cannot produce the batches asked for."""


class CheckpointError(UserError):
    """A checkpoint or run directory that does not match what is being asked of it."""
