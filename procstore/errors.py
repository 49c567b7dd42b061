"""Exceptions raised by procstore.

Every exception procstore raises on purpose derives from
[`ProcstoreError`][procstore.errors.ProcstoreError], so callers can catch the whole family with
one `except` clause.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProcstoreError(Exception):
    """Base class of every error procstore raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a procedure document; `str(problem)` is `path: message`.

    Attributes:
        path: JSON path of the offending value, e.g. `$.definition.states.build.action.function`
            (`$` is the document, `.key` a key, `["a b"]` a key that is not an identifier,
            `[0]` a list index).
        message: What is wrong there, in plain words.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidProcedure(ProcstoreError):
    """A procedure document was rejected; `errors` lists every problem found.

    `str(exc)` names the source (if any), then lists every problem, one per line, as
    `path: message`.

    Attributes:
        errors: Every problem found, not only the first, each a
            [`Problem`][procstore.errors.Problem] with its JSON path.
        source: The file the document was read from, or `None` when it was given as a dict or
            a JSON string.
    """

    def __init__(self, errors: list[Problem], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(_listing("invalid procedure", source, self.errors, "problem"))


class ProcedureWarning(UserWarning):
    """A procedure was registered, but something in it is probably not what its author meant
    (a transition that can never fire, a guard that is always false, ...).

    Issued with `warnings.warn` by [`register`][procstore.ProcedureStore.register]; make
    warnings errors (`warnings.simplefilter("error", ProcedureWarning)`) to refuse such
    procedures instead: then nothing is registered. `str(warning)` names the procedure, then
    lists every problem, one per line, as `path: message`.

    Attributes:
        problems: Every problem found, each a [`Problem`][procstore.errors.Problem] with its
            JSON path.
        source: The file the document was read from, or `None`.
    """

    def __init__(self, procedure: str, problems: list[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(_listing(f"procedure {procedure}", source, self.problems, "warning"))


def _listing(head: str, source: str | None, problems: list[Problem], noun: str) -> str:
    """``head in source (n noun(s)):`` then every problem on a line of its own."""
    lines = "\n".join(f"  {problem}" for problem in problems)
    where = f" in {source}" if source else ""
    return f"{head}{where} ({len(problems)} {noun}(s)):\n{lines}"


class VersionConflict(ProcstoreError):
    """The same name and version were registered again with different content, or under
    another spelling of a registered version (`1.0.0` when `1.0` is registered)."""


class ProcedureNotFound(ProcstoreError, LookupError):
    """No procedure is registered under that name (and version)."""


class InvalidEvent(ProcstoreError):
    """The event cannot be processed: no active state has a transition for it, or the
    execution has finished (or is running its compensations). `rollback()` raises it on an
    execution that has finished."""


class ActionFailed(ProcstoreError):
    """Raised by the built-in `fail` action, with its `message` (default: `fail action`)."""


class Timeout(ProcstoreError, TimeoutError):
    """An action attempt ran longer than its `timeout_ms`; recorded as error type
    `Timeout` and retryable like any other error (`"errors": ["Timeout"]`).

    Also a subclass of the built-in `TimeoutError`, so `"errors": ["TimeoutError"]` and
    `"errors": ["OSError"]` match it too."""


class StoreError(ProcstoreError):
    """The store's database cannot be used: not a procstore database, corrupt, written by a
    newer procstore, or (SQLite) already used by another process to run executions."""


class LeaseLost(StoreError):
    """A PostgreSQL worker no longer holds the lease of an execution it ran: another worker
    claimed it after the lease expired (this process was paused, or cut off from the server),
    and only that worker may commit it now.

    The execution goes on there; here its handle is detached and commits nothing more. A
    worker logs it as a warning and carries on with its other executions; a caller of the
    handle's `run_to_completion` gets this error.

    Attributes:
        execution_id: The execution's id.
        detail: What the database says about the lease now.
    """

    def __init__(self, execution_id: str, detail: str) -> None:
        self.execution_id = execution_id
        self.detail = detail
        super().__init__(f"execution {execution_id}: this worker lost its lease ({detail})")


class ExecutionNotFound(ProcstoreError, LookupError):
    """No execution with that id is stored."""


class ExecutionDamaged(StoreError):
    """A stored execution cannot be restored: it is quarantined, or what is stored about it is
    damaged (a snapshot or journal record that is not valid JSON or lacks what the runtime
    needs, a procedure version that cannot be loaded, an unknown status).

    `str(exc)` names the execution and the reason.

    Attributes:
        execution_id: The execution's id.
        reason: Why it cannot be restored, in plain words.
    """

    def __init__(self, execution_id: str, reason: str, *, quarantined: bool = False) -> None:
        self.execution_id = execution_id
        self.reason = reason
        state = "is quarantined" if quarantined else "cannot be restored"
        super().__init__(f"execution {execution_id!r} {state}: {reason}")
