"""What an execution looks like from outside: its status, and immutable snapshots of it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Status(enum.StrEnum):
    """Where an execution stands. Everything but `running` is final.

    A `str` enum: `status == "completed"` holds. Each member also has a lower-case alias, so
    `Status.completed is Status.COMPLETED`.

    Attributes:
        RUNNING: Started and not finished yet. Also while compensations run: the status
            changes only when the last one has ended.
        COMPLETED: Ended in a terminal state with the outcome `success`, whose action (if any)
            succeeded.
        FAILED: Failed (a failure outcome, an unhandled `error` or `timeout`, or `rollback()`)
            with nothing to compensate, or a compensation failed.
        CANCELLED: `cancel()` was called (with `rollback=True`: and there was nothing to
            compensate).
        ROLLED_BACK: Failed or cancelled with `rollback=True`, and every compensation of its
            completed actions succeeded.
        QUARANTINED: Stored, but it cannot be restored (its snapshot or journal is damaged,
            its procedure version cannot be loaded, or its stored status is unknown): recovery
            skipped it and left its stored data as it was. Never the status of a live
            execution; its summary's `reason` says why.
    """

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"
    QUARANTINED = "quarantined"

    # Lower-case aliases, so `Status.completed` reads like the value it compares equal to.
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    rolled_back = "rolled_back"
    quarantined = "quarantined"


class RecordKind(enum.StrEnum):
    """The kinds of history records procstore writes (`HistoryRecord.kind`); a `str` enum, so
    `record.kind == RecordKind.ENTERED` and `record.kind == "entered"` both hold. Each kind is
    described under [`HistoryRecord`][procstore.HistoryRecord]."""

    ENTERED = "entered"
    ACTION = "action"
    TRANSITION = "transition"
    LOG = "log"
    IGNORED = "ignored"
    RETRY = "retry"
    GUARD_ERROR = "guard_error"
    BLOCKED = "blocked"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ROLLBACK = "rollback"
    COMPENSATION = "compensation"
    RESET = "reset"
    FINISHED = "finished"
    INTERNAL_ERROR = "internal_error"
    RECEIVED = "received"
    ITEM = "item"
    WAIT = "wait"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorInfo(_Frozen):
    """An exception, as recorded: its class name and message.

    Attributes:
        type: The exception's class name, e.g. `ConnectionError`. procstore's own: `Timeout`
            (an attempt ran longer than its action's `timeout_ms`) and `Cancelled` (an attempt
            was interrupted: its state was left or timed out, or the execution was cancelled,
            rolled back or reset).
        message: `str()` of the exception.
    """

    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        return cls.model_construct(type=type(exc).__name__, message=str(exc))


class HistoryRecord(_Frozen):
    """One entry of an execution's history.

    `kind` says which fields are set:

    - `entered`: `state` was entered because of `event` (`None` at start and reset).
    - `action`: attempt `attempt` of `state`'s action ended with `result` or `error` (error
      type `Timeout` or `Cancelled` for an attempt cut off by procstore).
    - `transition`: `event` moved the execution from `state` (the state that declares the
      transition) to `target`; `data` is what the event carried, if anything.
    - `log`: a `log` action in `state` wrote `message`.
    - `ignored`: `event` (an action's outcome, or `done`) has no transition in `state`; the
      state waits.
    - `retry`: `state`'s action will try again, as attempt `attempt`, after `delay_ms`; with
      `message` `compensation`, its compensation will (`error`: the attempt that failed).
    - `guard_error`: guard `message` raised `error` while `event` was tried; it blocked.
    - `blocked`: the guards of every transition on `event` (carrying `data`, if anything)
      from `state` blocked it.
    - `timeout`: `state`'s `timeout_ms` ran out; without a `state`, the definition's
      `timeout_ms` (the whole execution's: `message` gives it).
    - `cancelled`: the execution was cancelled in `state`.
    - `rollback`: compensation starts (`message` says why).
    - `compensation`: the compensation of `state`'s action ended with `result` or `error`
      (`attempt`: the attempt that ended it, when `compensate_retry` made more than one).
    - `reset`: the execution was reset to `state`, its initial state.
    - `finished`: the execution ended in `state` with `status` (and, when it failed, the
      `error` that made it fail, if known: see `ExecutionState.error`).
    - `internal_error`: a defect in procstore broke a step (`error`); handled as a failed
      action of that state (`error` event, else failure with compensation).
    - `received`: a command another process queued (a client's `send()` or `cancel()`,
      `procstore send`, `procstore cancel`) was taken from the inbox in `state`: `event` is
      the event it sends and `data` what it carries, if anything (what the event did
      follows: a `transition`, `blocked`...), or
      `message` is `cancel` or `cancel with rollback` (the `cancelled` record follows), or
      `callback` for a completed callback (`event` is `success` or `error`); a
      command that could not be applied has `message` `refused: <why>` and changed nothing
      else. One record per command, whatever crashes in between.
    - `item`: an item of map state `state` started (`target` is its child execution's id) or
      ended (`status` says how); `result` is `{"index", "count", "done", "failed"}`: the
      item's index, how many items the list has, and how many have completed and failed so
      far.
    - `wait`: wait state `state` waits until `message` (an ISO 8601 instant, UTC); with
      `error` instead, how long could not be worked out (type `WaitError`) and its `error`
      event follows.

    New kinds may be added: skip the ones you do not know.

    Attributes:
        kind: What happened (see above; the known kinds are the values of
            [`RecordKind`][procstore.RecordKind]).
        at: When, in UTC.
        state: The dotted path of the state it concerns.
        event: The event involved.
        target: Where a transition went (a dotted path).
        attempt: The action attempt's number, from 1.
        result: An action's or compensation's return value, as JSON data.
        error: The exception of a failed attempt, compensation or guard.
        message: A log line, a guard's label, or why a rollback began.
        status: The final status, on a `finished` record.
        delay_ms: The delay before the next attempt, jitter included, on a `retry` record.
        data: What the event carried (`send(event, data=...)`), on the `transition`,
            `blocked` and `received` records of an event sent with data.
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
    data: Any = None


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
        error: Why it failed, once it has (also when its compensations then rolled it back):
            the `error` (as `type`) and `cause` (as `message`) of the failure terminal it
            ended in, `Timeout` when the definition's `timeout_ms` ran out, or the error
            that no transition caught; `None` while running, after a success, a cancel or a
            `rollback()`, and for a failure terminal that names no error.
    """

    id: str
    procedure: str
    version: str
    current: str
    active: list[str] = []
    status: Status
    context: dict[str, Any]
    history: tuple[HistoryRecord, ...]
    error: ErrorInfo | None = None


class ExecutionSummary(_Frozen):
    """One line of [`ProcedureStore.executions`][procstore.ProcedureStore.executions].

    Attributes:
        id: The execution's id.
        procedure: Name of the procedure it runs.
        version: Version of that procedure.
        status: Its status (as last stored, for a persisted store).
        created_at: When it started.
        updated_at: When it last changed.
        reason: Why it is `quarantined` (e.g. `its stored snapshot is not valid JSON (...)`);
            `None` for every other status.
    """

    id: str
    procedure: str
    version: str
    status: Status
    created_at: datetime
    updated_at: datetime
    reason: str | None = None
