"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class WorkbenchError(Exception):
    """Base class: the message names the file or field and the fix."""


class StudyFileError(WorkbenchError):
    """A study file that cannot be read or does not validate; lists every problem at once."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class DataError(WorkbenchError):
    """Data that cannot be loaded or does not fit the study file."""


class StoreError(WorkbenchError):
    """An Optuna storage or MLflow tracking store that cannot be used."""


class RegistryError(WorkbenchError):
    """An unknown registered model, alias or version."""


class PromotionRefused(WorkbenchError):
    """The candidate did not beat the champion; exit code 1, not 2."""

    exit_code = 1


class ReproductionMismatch(WorkbenchError):
    """A re-run trial did not match its recorded metric; exit code 1, not 2."""

    exit_code = 1


class WorkersFailed(WorkbenchError):
    """Workers exited before the study met its target; exit code 1, not 2."""

    exit_code = 1


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (library errors can span pages)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else e.__class__.__name__


def error_chain(e: BaseException):
    """`e`, then what caused it (`raise ... from`) or what it interrupted, without looping."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def caused_by(e: BaseException, kind: type) -> bool:
    """True when `e` or anything in its chain is a `kind`."""
    return any(isinstance(x, kind) for x in error_chain(e))
