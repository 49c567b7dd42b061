"""Exceptions raised by procstore.

Every exception procstore raises on purpose derives from :class:`ProcstoreError`, so callers
can catch the whole family with one ``except`` clause.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProcstoreError(Exception):
    """Base class of every error procstore raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a procedure document.

    Attributes:
        path: JSON path of the offending value, e.g. ``$.definition.states.build.action.function``.
        message: What is wrong there, in plain words.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidProcedure(ProcstoreError):
    """A procedure document was rejected; :attr:`errors` lists every problem found."""

    def __init__(self, errors: list[Problem], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        head = f"invalid procedure{f' in {source}' if source else ''}"
        lines = "\n".join(f"  {problem}" for problem in self.errors)
        super().__init__(f"{head} ({len(self.errors)} problem(s)):\n{lines}")


class VersionConflict(ProcstoreError):
    """The same name and version were registered again with different content."""


class ProcedureNotFound(ProcstoreError, LookupError):
    """No procedure is registered under that name (and version)."""


class InvalidEvent(ProcstoreError):
    """The event cannot be processed: the current state has no transition for it, or the
    execution has finished."""


class ActionFailed(ProcstoreError):
    """Raised by the built-in ``fail`` action."""


class Timeout(ProcstoreError, TimeoutError):
    """An action attempt ran longer than its ``timeout_ms``; recorded as error type
    ``Timeout`` and retryable like any other error (``"errors": ["Timeout"]``)."""


class StoreError(ProcstoreError):
    """The store's database cannot be used: not a procstore database, corrupt, written by a
    newer procstore, or already used by another process to run executions."""


class ExecutionNotFound(ProcstoreError, LookupError):
    """No execution with that id is stored."""
