"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

import difflib
import re
from collections.abc import Iterable, Iterator

# scheme://user:PASSWORD@host: the password runs to the last @ before the path (as urlsplit reads it)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^\s/:@]*:)[^\s/]*@")


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


class SettingError(WorkbenchError):
    """An environment variable (workbench.core.settings) whose value does not parse as its type."""


class PromotionRefused(WorkbenchError):
    """The candidate did not beat the champion; exit code 1, not 2."""

    exit_code = 1


class ReproductionMismatch(WorkbenchError):
    """A re-run trial did not match its recorded metric; exit code 1, not 2."""

    exit_code = 1


class WorkersFailed(WorkbenchError):
    """Workers exited before the study met its target; exit code 1, not 2."""

    exit_code = 1


class Preempted(WorkbenchError):
    """SIGTERM stopped the study: the running trial was saved and queued for a retry; exit code 143 (128 + SIGTERM)."""

    exit_code = 143


class TrialFailed(Exception):
    """A trial's own failure (its error, a non-finite loss, out of memory), already recorded: the study goes on.

    The only exception a study lets Optuna catch. Anything else a trial raises (a store that
    stays down, a full disk, SIGTERM, ranks that lost step) stops the study where it happens.
    """


def exit_status(e: BaseException) -> tuple[str, int]:
    """The one line a command prints for `e` (no traceback, passwords masked), and its exit code."""
    if isinstance(e, WorkbenchError):
        return "error: " + " ".join(mask_secrets(str(e)).split()), getattr(e, "exit_code", 2)
    if isinstance(e, KeyboardInterrupt):
        return "interrupted: the running trial was marked failed; run the same command to resume", 130
    return f"error: {e.__class__.__name__}: {first_line(e)} (unexpected: rerun with --debug for the traceback)", 1


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it shown as ***: safe to print, log or record."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (library errors can span pages), URL passwords masked.

    Every reason we print or record (trial fail reasons, store errors) goes through here, and
    library errors quote URLs (MLflow's "API request to http://user:pass@host/... failed").
    """
    lines = mask_secrets(str(e)).strip().splitlines()
    return lines[0] if lines else e.__class__.__name__


def error_chain(e: BaseException) -> Iterator[BaseException]:
    """`e`, then what caused it (`raise ... from`) or what it interrupted, without looping."""
    seen = set()
    link: BaseException | None = e
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def caused_by(e: BaseException, kind: type) -> bool:
    """True when `e` or anything in its chain is a `kind`."""
    return any(isinstance(x, kind) for x in error_chain(e))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean X?)" for the closest of `known` to a mistyped `name`, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
