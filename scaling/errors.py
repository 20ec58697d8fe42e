"""The project's own exception types.

Every error that bad input can cause (a malformed results file, an impossible shape, a fit with
too few points, an unreachable database) is one of these, with a message that names the file,
field or value and says what to do. The CLI prints the message as one line on stderr and exits
non-zero; it never shows a traceback for them.
"""


class FlopcastError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in flopcast."""

    exit_code = 2


class ResultsFileError(FlopcastError):
    """A results file cannot be read or does not follow the documented schema."""

    def __init__(self, path, problem, field=None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: field '{field}'" if field else self.path
        super().__init__(f"{where}: {problem}")


class DataError(FlopcastError):
    """Input data for a fit or a plan is unusable (missing column, NaN, too few points...)."""


class FitError(FlopcastError):
    """A fit did not converge or is not determined by the data."""


class UnknownNameError(FlopcastError):
    """A preset or option value that does not exist; the message lists the valid ones."""

    def __init__(self, kind, name, valid):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} '{name}'; valid: {', '.join(self.valid)}")


class StoreError(FlopcastError):
    """The results database cannot be reached or used."""
