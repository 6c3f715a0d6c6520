"""Errors that reach the user as a message, never as a traceback.

Anything the user can fix (a bad manifest, a missing image, an unknown
backend) is raised as :class:`BottleError`; the CLI prints its message and
exits with :attr:`BottleError.exit_code`. Every other exception is a bug.
"""


class BottleError(Exception):
    """A problem the user can fix; the message says where and what was expected."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(BottleError):
    """Bad input: a file, field or argument that is not what was expected (exit 2)."""


class EnvironmentProblem(BottleError):
    """The machine cannot do what was asked (no engine, no image); exit 1."""

    exit_code = 1
