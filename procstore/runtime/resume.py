"""Carrying an execution on from its state at rest: after a restart (its checkpoint restored),
or when it wakes from hibernation (`procstore.runtime.hibernation`). Nothing runs for an
execution at rest, so everything that should is started again here, from what the state
records: timers from their stored deadlines, actions that had not completed (an interrupted
attempt runs again with its number), retry delays and waits to their stored ends, a rollback
in progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import procstore.runtime.items as items
import procstore.runtime.saga as saga
import procstore.runtime.steps as steps
import procstore.runtime.timers as timers
import procstore.runtime.waits as waits
from procstore import paths
from procstore.runtime.state import LeafState
from procstore.runtime.steps import EXECUTION

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["resume", "resume_leaf"]


def resume(run: Run) -> None:
    """Carry on after a restart: timers from their stored deadlines, actions that had not
    completed (an interrupted attempt runs again with its number), waits to their stored
    ends, a rollback in progress."""
    state, router = run.state, run.router
    for path in state.deadlines:
        router.visits[path] = len(router.visits) + 1
        timers.arm(run, path)
    if state.rollback is not None:
        steps.start(run, EXECUTION, saga.roll_back, run)
        return
    now = run.clock.time()
    if state.deadline is not None:
        timers.arm_execution(run)
        if state.deadline <= now:
            return  # it ran out of time while nothing ran: it fails without running more
    expired = [path for path, deadline in state.deadlines.items() if deadline <= now]
    for path in sorted(router.active_leaves(), key=run.compiled.order.__getitem__):
        if any(paths.is_within(path, timed_out) for timed_out in expired):
            continue  # its time ran out while nothing ran: the timeout fires instead
        resume_leaf(run, path)


def resume_leaf(run: Run, path: str) -> None:
    """Carry on one active leaf after a restart: act on an outcome not yet acted on, run an
    action that had not completed, wait to a wait's stored end, route a choice, re-attach a
    map state to its items."""
    plan, leaf = run.plans[path], run.state.leaves.setdefault(path, LeafState())
    if leaf.outcome is not None:  # finished before the crash, not yet acted on
        outcome, failed = leaf.outcome
        steps.start(run, path, steps.deliver, run, plan, leaf, outcome, failed)
    elif plan.action is not None and not leaf.acted:
        steps.start(run, path, steps.run_step, run, plan, leaf.attempt or 1, leaf.retry_at)
    elif plan.wait is not None and not leaf.acted and leaf.wait_until is not None:
        waits.resume(run, plan, leaf)  # to its stored end: it never starts over
    elif plan.kind == "choice":
        steps.start(run, path, run.router.route, path)
    elif plan.map is not None:  # re-attaches to the items it started
        steps.start(run, path, items.run_map, run, plan)
