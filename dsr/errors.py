"""One exception family for everything dsr refuses to do.

Every message says what was wrong, where (subject, file, key) and how to fix it.
"""


class DsrError(Exception):
    """Base class of all dsr errors."""


class DsrInputError(DsrError, ValueError):
    """User input (array, file, config value) that dsr cannot use."""


class DsrTrainingError(DsrError, RuntimeError):
    """Training could not run (e.g. every model of an ensemble diverged)."""
