"""Compensation: when an execution fails (or is rolled back or cancelled with rollback), the
compensations of its completed actions run, newest first, each once.

The decision to roll back is recorded in the same commit as what caused it, so a crash before
the first compensation still resumes the rollback; each compensation's completion is committed
before the next starts, so after a crash the interrupted one runs again and the finished ones
never do.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import procstore.runtime.steps as steps
from procstore.runtime.history import error_fields
from procstore.runtime.state import LeafState
from procstore.snapshot import RecordKind, Status

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["begin", "fail", "roll_back"]


def fail(run: Run, error: dict[str, str] | None = None) -> None:
    """The execution failed (because of ``error``, when known): compensate what completed, or
    end ``failed``."""
    if error is not None:
        run.state.error = error
    if run.state.completed:
        begin(run, "failed", Status.FAILED, steps.halt(run))
    else:
        run.finish(Status.FAILED)


def begin(
    run: Run, reason: str, nothing_to_undo: Status, stopped: list[asyncio.Task[None]]
) -> None:
    """Decide, now, that the execution rolls back (see the module's docstring)."""
    state = run.state
    state.closing = True
    for leaf in state.leaves.values():
        leaf.pending = None
    state.rollback = (reason, nothing_to_undo.value)
    run.log(RecordKind.ROLLBACK, state=run.router.current, message=reason)
    steps.start(run, steps.EXECUTION, roll_back, run, stopped)


async def _compensate(run: Run, path: str, progress: LeafState) -> Any:
    """Run ``path``'s compensation with its ``compensate_retry`` policies, from where
    ``progress`` (stored with every commit) says it was: matched like an action's retry
    policies, each counting its own failures; return its result, or raise its last error."""
    plan = run.plans[path]
    compensation = plan.compensate
    assert compensation is not None and progress.attempt is not None
    if progress.retry_at is not None:  # resumed in the middle of a delay
        await run.clock.sleep(progress.retry_at - run.clock.time())
    while True:
        progress.retry_at = None
        try:
            _, value = await steps.invoke(run, compensation, path, progress.attempt)
            return value
        except Exception as exc:
            chosen = steps.retry_policy(plan.compensate_retry, steps.error_types(exc))
            if chosen is None or progress.count_failure(chosen[0]) >= chosen[1].max_attempts:
                raise
            delay_ms = steps.retry_delay_ms(chosen[1], progress.retries[chosen[0]])
            progress.attempt += 1
            progress.retry_at = run.clock.time() + delay_ms / 1000
            run.log(
                RecordKind.RETRY,
                state=path,
                attempt=progress.attempt,
                delay_ms=delay_ms,
                error=error_fields(exc),
                message="compensation",
            )
            await run.flush()  # the failure and the deadline, before waiting
            await run.clock.sleep(delay_ms / 1000)


async def roll_back(run: Run, stopped: list[asyncio.Task[None]] | None = None) -> None:
    """Run the compensation of every completed action, newest first, each once."""
    state = run.state
    assert state.rollback is not None
    if stopped:  # the interrupted actions' cleanup comes before any undoing
        await steps.let_clean_up(run, stopped)
    # What this rollback has compensated so far (before a restart, too): an empty stack
    # after a restart may mean "all undone", not "nothing to undo".
    started = run.history.last_index(RecordKind.ROLLBACK)
    done = [r for r in run.history.dicts(started) if r["kind"] == RecordKind.COMPENSATION]
    if not state.completed and not done:
        run.finish(Status(state.rollback[1]))
        return
    all_ok = not any(r.get("error") is not None for r in done)
    while state.completed:
        path = state.completed[-1]
        progress = state.compensating = state.compensating or LeafState(attempt=1)
        outcome: dict[str, Any]
        try:
            outcome = {"result": await _compensate(run, path, progress)}
        except Exception as exc:  # the rest still run; the execution ends failed
            all_ok = False
            outcome = {"error": error_fields(exc)}
        if progress.attempt is not None and progress.attempt > 1:
            outcome["attempt"] = progress.attempt  # the attempt that ended it
        run.log(RecordKind.COMPENSATION, state=path, **outcome)
        state.completed = state.completed[:-1]  # only once it ran: an interrupted one runs again
        state.compensating = None
        await run.flush()
    run.finish(Status.ROLLED_BACK if all_ok else Status.FAILED)
