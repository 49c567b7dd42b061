"""Hibernation: an execution of a persisted store that only waits leaves memory, and comes back.

An execution mostly *waits*: for an event, a callback, a retry delay, a wait state's end, a
state timeout days away. While it only waits, everything about it is in its last commit, so
the store may let go of it (`park`) and rebuild it from the database when an event, a timer or
a caller needs it. This module says, from the execution's own state, *whether* it only waits
(`parkable`) and *until when* (`due`); the store decides *when* to park (after an idle
interval, ``ProcedureStore(hibernate_after=...)``) and keeps the due times of the parked ones
in one index (`procstore.hibernator`).

A parked execution whose handle someone still holds is woken in place (`wake`): its timers and
sleeping steps start again from its state, exactly as after a restart
(`procstore.runtime.resume`). One whose handle nobody holds is garbage; the store restores it
from its checkpoint when it is needed.

Every checkpoint carries its `due` time (key ``due``), so that a store opening the database
can find which executions need to be in memory, and when, without restoring the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import procstore.runtime.timers as timers
from procstore.runtime.resume import resume
from procstore.runtime.steps import EXECUTION
from procstore.snapshot import Status

if TYPE_CHECKING:
    from procstore.compiler import StatePlan
    from procstore.runtime.run import Run
    from procstore.runtime.state import LeafState

__all__ = ["MIN_PARK_SECONDS", "NEVER", "NOW", "Sleeper", "due", "park", "parkable", "wake"]

#: The due time of an execution with work to do now (an action to run or in flight, an outcome
#: to act on, a choice to route, a map's items, a rollback): it cannot be parked.
NOW = 0.0

#: The due time of an execution that only an event (or a callback) moves on: no timer of its
#: own. 9999-12-31T23:59:59Z, so that it sorts after every real instant in a database index.
NEVER = 253402300799.0

#: An execution whose next timer is due within this many seconds is not parked: a timer that
#: is due is work to do now, and parking for less than a millisecond saves nothing (a clock
#: that counts in microseconds may also wake it a fraction of one early).
MIN_PARK_SECONDS = 0.001


class Sleeper(Protocol):
    """What the runtime tells the store that parks its executions (`procstore.hibernator`)."""

    def touched(self, run: Run) -> None:
        """``run`` did something (a commit, a step ended, a caller let go of it, it woke up):
        its idle interval starts again."""


def due(run: Run) -> float:
    """When ``run`` next has work to do by itself: `NOW` (it has work now), a wall-clock
    instant (its earliest timer: a state timeout, the execution's deadline, a retry delay's
    or a wait's end), or `NEVER` (only an event moves it on). Read from its state alone, so
    a stored checkpoint and a live execution agree."""
    state = run.state
    if state.status is not Status.RUNNING:
        return NEVER
    if state.closing or state.rollback is not None or state.internal:
        return NOW
    instants = list(state.deadlines.values())
    if state.deadline is not None:
        instants.append(state.deadline)
    for path in run.router.active_leaves():
        leaf_due = _leaf_due(run.plans[path], state.leaves.get(path))
        if leaf_due == NOW:
            return NOW
        instants.append(leaf_due)
    return min(instants, default=NEVER)


def _leaf_due(plan: StatePlan, leaf: LeafState | None) -> float:
    """`due` of one active leaf: `NOW`, the end of its retry delay or wait, or `NEVER`."""
    if plan.kind == "choice" or plan.map is not None:
        return NOW  # routed at once; a map's items run
    if leaf is not None and leaf.outcome is not None:
        return NOW  # an outcome not yet acted on
    if plan.action is not None and (leaf is None or not leaf.acted):
        if leaf is None or leaf.running or leaf.retry_at is None:
            return NOW  # an attempt to run, or in flight
        return leaf.retry_at
    if plan.wait is not None and (leaf is None or not leaf.acted):
        return NOW if leaf is None or leaf.wait_until is None else leaf.wait_until
    return NEVER


def parkable(run: Run) -> bool:
    """Whether ``run`` only waits now and everything it is has been committed: nothing runs
    (no action, transition, commit or rollback), nobody drives it, its steps only sleep
    (retry delays, waits) and none of its timers is due yet, and its last commit holds all
    of its history."""
    writer = run.writer
    return (
        run.state.status is Status.RUNNING
        and run.frozen is None
        and writer.journal is not None
        and writer.failure is None
        and run.drivers == 0
        and not run.busy
        and not run.exited
        and EXECUTION not in run.tasks
        and not run.send_lock.locked()
        and writer.flushed == len(run.history)
        and due(run) > run.clock.time() + MIN_PARK_SECONDS
    )


def park(run: Run) -> float:
    """Let go of ``run`` (which must be `parkable`): cancel its timers and its sleeping steps
    and drop it from the store's running executions; return its `due` time. Its state stays
    as committed; `wake` (or a restore from the database) carries it on."""
    when = due(run)
    timers.cancel_all(run)
    for step in run.tasks.values():
        step.cancel()  # asleep in a retry delay or a wait: nothing of it is lost
    run.tasks.clear()
    run.parked = True
    run.unregister()
    return when


def wake(run: Run) -> None:
    """Carry a parked ``run`` on in place (a no-op for one that is not parked): back among
    the store's running executions, its timers and sleeping steps started again from its
    state, as after a restart."""
    if not run.parked:
        return
    run.parked = False
    if run.registry is not None and run.handle is not None:
        run.registry[run.id] = run.handle
    resume(run)
    run.touch()
