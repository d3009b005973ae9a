"""Errors that are the user's to fix: shown as one line, never as a traceback."""


class UserError(Exception):
    """Bad input (config, data folder, report path). The message says what is wrong and the fix."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass
