"""What an execution looks like from outside: its status, and immutable snapshots of it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Status(enum.StrEnum):
    """Where an execution stands. Everything but ``running`` is final."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"

    # Lower-case aliases, so ``Status.completed`` reads like the value it compares equal to.
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    rolled_back = "rolled_back"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorInfo(_Frozen):
    """An exception, as recorded: its class name and message."""

    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        return cls.model_construct(type=type(exc).__name__, message=str(exc))


class HistoryRecord(_Frozen):
    """One entry of an execution's history.

    ``kind`` says which fields are set:

    - ``entered``: ``state`` was entered because of ``event`` (``None`` at start and reset).
    - ``action``: attempt ``attempt`` of ``state``'s action ended with ``result`` or ``error``.
    - ``transition``: ``event`` moved the execution from ``state`` to ``target``.
    - ``log``: a ``log`` action in ``state`` wrote ``message``.
    - ``ignored``: outcome ``event`` of ``state``'s action has no transition; the state waits.
    - ``retry``: ``state``'s action will try again, as attempt ``attempt``, after ``delay_ms``.
    - ``guard_error``: guard ``message`` raised ``error`` while ``event`` was tried; it blocked.
    - ``blocked``: the guards of every transition on ``event`` from ``state`` blocked it.
    - ``timeout``: ``state``'s ``timeout_ms`` ran out.
    - ``cancelled``: the execution was cancelled in ``state``.
    - ``rollback``: compensation starts (``message`` says why).
    - ``compensation``: the compensation of ``state``'s action ended with ``result`` or
      ``error``.
    - ``reset``: the execution was reset to ``state``, its initial state.
    - ``finished``: the execution ended in ``state`` with ``status``.
    """

    kind: str
    at: datetime
    state: str | None = None
    event: str | None = None
    target: str | None = None
    attempt: int | None = None
    result: Any = None
    error: ErrorInfo | None = None
    message: str | None = None
    status: Status | None = None
    delay_ms: float | None = None


class ExecutionState(_Frozen):
    """An immutable, JSON-serialisable snapshot of one execution.

    Attributes:
        id: The execution's id.
        procedure: Name of the procedure it runs.
        version: Version of that procedure.
        current: The state the execution is in: the active leaf's dotted path or, while
            parallel regions are active, the outermost active parallel state's path.
        active: The dotted paths of every active leaf state, sorted.
        status: running, completed, failed, cancelled or rolled_back.
        context: A copy of the execution's context (the data its actions read and write).
        history: Every record so far, oldest first.
    """

    id: str
    procedure: str
    version: str
    current: str
    active: list[str] = []
    status: Status
    context: dict[str, Any]
    history: tuple[HistoryRecord, ...]


class ExecutionSummary(_Frozen):
    """One line of [`ProcedureStore.executions`][procstore.ProcedureStore.executions].

    Attributes:
        id: The execution's id.
        procedure: Name of the procedure it runs.
        version: Version of that procedure.
        status: Its status (as last stored, for a persisted store).
        created_at: When it started.
        updated_at: When it last changed.
    """

    id: str
    procedure: str
    version: str
    status: Status
    created_at: datetime
    updated_at: datetime
