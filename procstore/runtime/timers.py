"""State timeouts: a state's ``timeout_ms`` bounds its whole stay (its action, retries, waiting
for an event, everything inside a compound state).

Each is armed from a stored wall-clock deadline, so after a restart it fires at the instant it
was due (at once, if that passed while nothing ran), not after a fresh full delay. When it fires,
what runs inside the state is cancelled and ``timeout`` is raised from it. The deadline stays in
the checkpoint until the timeout has been acted on: after a crash in between, it fires again.
The armed timers are the run's ``timers`` (by state path).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import procstore.runtime.saga as saga
import procstore.runtime.steps as steps
from procstore.errors import Timeout
from procstore.runtime.events import TIMEOUT
from procstore.snapshot import RecordKind

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["TIMEOUT_TYPES", "arm", "arm_execution", "cancel", "cancel_all"]

#: The error types of a timeout (a state's or the execution's): `procstore.errors.Timeout` and
#: its bases, like an attempt's timeout, so `errors: ["Timeout"]` catches each.
TIMEOUT_TYPES = tuple(cls.__name__ for cls in Timeout.__mro__ if cls is not object)


def arm(run: Run, path: str) -> None:
    """Arm ``path``'s timeout from its stored deadline."""
    delay = run.state.deadlines[path] - run.clock.time()
    run.timers[path] = run.clock.call_later(delay, _fired, run, path, run.router.visits[path])


def arm_execution(run: Run) -> None:
    """Arm the definition's ``timeout_ms`` (the whole execution's bound) from its stored
    deadline; its timer is kept under the key `steps.EXECUTION`."""
    assert run.state.deadline is not None
    delay = run.state.deadline - run.clock.time()
    run.timers[steps.EXECUTION] = run.clock.call_later(delay, _execution_fired, run)


def _execution_fired(run: Run) -> None:
    if not run.state.running:  # finished, or already rolling back: the bound is over
        return
    run.timers.pop(steps.EXECUTION, None)
    interrupted = steps.cancel(run)
    steps.start(run, steps.EXECUTION, _execution_expire, run, interrupted)


async def _execution_expire(run: Run, interrupted: list[asyncio.Task[None]]) -> None:
    """The execution ran out of time: what ran was cancelled; once it has cleaned up (within
    the grace period), the execution fails with ``Timeout`` like any failure: compensating
    what completed."""
    await steps.let_clean_up(run, interrupted)
    async with run.fire_lock:
        if not run.state.running:
            return
        timeout_ms = (run.compiled.timeout_s or 0) * 1000
        message = f"the execution ran out of its {timeout_ms:g} ms"
        run.log(RecordKind.TIMEOUT, message=message)
        saga.fail(run, {"type": "Timeout", "message": message})


def cancel(run: Run, path: str) -> None:
    timer = run.timers.pop(path, None)
    if timer is not None:
        timer.cancel()


def cancel_all(run: Run) -> None:
    for timer in run.timers.values():
        timer.cancel()
    run.timers.clear()


def _current(run: Run, path: str, visit: int) -> bool:
    """Whether the visit a timer was armed for is still going on."""
    return run.router.visits.get(path) == visit and path in run.state.active


def _fired(run: Run, path: str, visit: int) -> None:
    if not _current(run, path, visit) or not run.state.running:
        return
    run.timers.pop(path, None)
    interrupted = steps.cancel(run, within=path)
    steps.start(run, path, _expire, run, path, visit, interrupted)


async def _expire(run: Run, path: str, visit: int, interrupted: list[asyncio.Task[None]]) -> None:
    # An action that ignores its cancellation gets the grace period cancel and leave give it,
    # no more: the timeout is the state's bound, so it must fire however the action behaves.
    await steps.let_clean_up(run, interrupted)
    async with run.fire_lock:
        if not _current(run, path, visit):
            return
        run.log(RecordKind.TIMEOUT, state=path)
        timeout_ms = (run.plans[path].timeout_s or 0) * 1000
        error = {"type": "Timeout", "message": f"state {path!r} ran out of its {timeout_ms:g} ms"}
        await run.router.raise_event(TIMEOUT, path, TIMEOUT_TYPES, error)
        await run.router.drain()
