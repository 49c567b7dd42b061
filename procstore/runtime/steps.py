"""Steps: the background work of an execution, one task per active leaf (and one for a rollback).

Entering a leaf with an action starts a *step*: the action's attempts (within its
``timeout_ms``, with its retry policy's delays), then the outcome acted on under the fire lock.
Before a step does anything it commits what led to it (write-ahead). Leaving a state cancels
its step; an attempt cut off that way is recorded as ``Cancelled`` at once, so the history says
so before whatever follows.

A defect inside a step (an internal error) takes the path of a failed action: ``error`` from
that state, or the execution fails and compensates. A failed write stops the execution (see
`procstore.runtime.journal.Writer`). The running steps are the run's ``tasks`` (by state path).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import procstore.runtime.saga as saga
import procstore.runtime.timers as timers
from procstore import paths
from procstore.compiler import CompiledAction, StatePlan
from procstore.datapaths import render
from procstore.definition import RetryPolicy, matches_error
from procstore.errors import StoreError, Timeout
from procstore.jsondata import require_json, stand_in
from procstore.outcome import ActionInfo, Event
from procstore.runtime.events import ERROR, SUCCESS
from procstore.runtime.facts import facts
from procstore.runtime.history import error_fields
from procstore.runtime.state import LeafState
from procstore.snapshot import RecordKind, Status

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = [
    "CANCEL_GRACE_SECONDS",
    "EXECUTION",
    "cancel",
    "deliver",
    "error_types",
    "exit_later",
    "halt",
    "invoke",
    "leave",
    "let_clean_up",
    "retry_delay_ms",
    "retry_policy",
    "run_step",
    "settle_exited",
    "start",
    "wait_for",
]

logger = logging.getLogger("procstore")

#: The step key of work that belongs to the whole execution (a rollback).
EXECUTION = ""
#: How long to wait for a cancelled action's cleanup (its ``finally``) to finish, in seconds on
#: the run's clock; after that the execution goes on and the cleanup runs on by itself.
CANCEL_GRACE_SECONDS = 1.0

Work = Callable[..., Awaitable[None]]


def error_types(exc: BaseException) -> list[str]:
    """The names of the class of ``exc`` and of its bases (``object`` aside): what a retry
    policy's or an error transition's ``errors`` are matched against."""
    return [cls.__name__ for cls in type(exc).__mro__ if cls is not object]


def retry_policy(
    policies: tuple[RetryPolicy, ...], types: list[str]
) -> tuple[int, RetryPolicy] | None:
    """The first of ``policies`` whose ``errors`` match an error of ``types``, with its index
    (Step Functions' order: the first matching retrier decides), or ``None``."""
    for index, policy in enumerate(policies):
        if matches_error(policy.errors, types):
            return index, policy
    return None


def retry_delay_ms(policy: RetryPolicy, failed_attempt: int) -> float:
    """The delay before the next attempt, jitter included."""
    delay = policy.delay_ms(failed_attempt)
    return random.uniform(0, delay) if policy.jitter == "full" else delay


def start(run: Run, key: str, work: Work, *args: Any) -> None:
    """Run ``work(*args)`` as the step of ``key`` (a state's path, or `EXECUTION`)."""
    # The coroutine is created inside the task, so a step cancelled before it starts
    # leaves no never-awaited coroutine behind.
    run.tasks[key] = asyncio.get_running_loop().create_task(_as_step(run, key, work, *args))


async def _as_step(run: Run, key: str, work: Work, *args: Any) -> None:
    persisted = run.writer.journal is not None  # in memory there is nothing to flush
    try:
        if persisted:
            await run.flush()  # write-ahead: what led here is stored before it runs
        await work(*args)
        if persisted:
            await run.flush()
    except Exception as exc:
        if run.writer.failure is not None:
            return  # a write failed: the execution stopped (the writer said so, once)
        # A defect, not an action's failure: fail, don't hang.
        logger.exception("execution %s: internal error", run.id)
        run.log(RecordKind.INTERNAL_ERROR, state=key or None, error=error_fields(exc))
        with contextlib.suppress(StoreError):  # a failed write stops it
            await _fail_internally(run, key, exc)
            await run.flush()
    finally:
        step = asyncio.current_task()
        if run.tasks.get(key) is step:
            del run.tasks[key]
            if not run.tasks:  # an emptied dict keeps its table (~120 bytes) until cleared;
                run.tasks.clear()  # the same dict: callers may hold it across awaits
            run.touch()
        if step in _waiting:
            _release(step)


async def _fail_internally(run: Run, key: str, error: Exception) -> None:
    """After an internal error in the step of ``key``: the documented failure path, as if that
    state's action had failed — its ``error`` handler if it has one, otherwise the execution
    fails and compensates. An error while compensating ends it ``failed``."""
    state = run.state
    async with run.fire_lock:
        if state.status is not Status.RUNNING:
            return
        try:
            if key == EXECUTION or state.closing:
                run.finish(Status.FAILED)
            elif key in state.active:
                leaf = state.leaves.get(key)
                if leaf is not None:
                    leaf.error, leaf.error_types = error_fields(error), error_types(error)
                types = error_types(error)
                await run.router.raise_event(ERROR, key, types, error_fields(error))
                await run.router.drain()
            else:
                saga.fail(run)
        except Exception as exc:  # the failure path itself broke: stop here
            logger.exception("execution %s: internal error while failing", run.id)
            run.log(RecordKind.INTERNAL_ERROR, state=key or None, error=error_fields(exc))
            run.finish(Status.FAILED)


def leave(run: Run, path: str) -> None:
    """``path`` was left: cancel its step, unless the step itself is leaving."""
    step = run.tasks.pop(path, None)
    if step is not None and step is not asyncio.current_task():
        _interrupt(run, path, step)
        exit_later(run, step)


def exit_later(run: Run, task: asyncio.Task[None]) -> None:
    """Keep ``task`` — what leaving a state cancelled, still cleaning up — in ``run.exited``
    until it ends, for the sender of the event that left it to wait for (`settle_exited`).

    It leaves ``run.exited`` by itself when it ends, and touches the run then: a transition
    that a step fires (an outcome, an error, a timeout) has no sender to clear the list, and
    an execution whose left steps still clean up is not parked (see
    `procstore.runtime.hibernation.parkable`) until something touches it again."""
    run.exited += (task,)  # a tuple: the shared empty one while none is (see Run.exited)
    task.add_done_callback(functools.partial(_exited_ended, run))


def _exited_ended(run: Run, task: asyncio.Task[None]) -> None:
    if task in run.exited:  # a sender's settle_exited may have taken it already
        run.exited = tuple(t for t in run.exited if t is not task)
    if not run.parked:  # a parked run's due time stays indexed: a touch would drop it
        run.touch()


def _interrupt(run: Run, key: str, step: asyncio.Task[None]) -> None:
    """Cancel ``step``; an attempt it was running is recorded as interrupted now, so the
    history says so before whatever follows (a transition, the end)."""
    step.cancel()
    leaf = run.state.leaves.get(key)
    if leaf is not None and leaf.running and leaf.attempt is not None:
        leaf.running = False
        error = {"type": "Cancelled", "message": "the attempt was interrupted"}
        run.log(RecordKind.ACTION, state=key, attempt=leaf.attempt, error=error)


def halt(run: Run) -> list[asyncio.Task[None]]:
    """Stop every timer and cancel every step but the caller; return the steps to wait for."""
    timers.cancel_all(run)
    return cancel(run)


def cancel(run: Run, within: str | None = None) -> list[asyncio.Task[None]]:
    """Cancel the steps — all, or those of states inside ``within`` — but the caller's;
    return the ones that were still running."""
    current = asyncio.current_task()
    stopped = []
    for key, step in list(run.tasks.items()):
        if step is current or (within is not None and not paths.is_within(key, within)):
            continue
        del run.tasks[key]
        if not step.done():
            _interrupt(run, key, step)
            stopped.append(step)
    return stopped


async def settle_exited(run: Run) -> None:
    """Let the actions a transition cancelled (leaving a compound state, say) run their
    cleanup, so that the event's sender hears back after it."""
    if run.exited:
        exited, run.exited = run.exited, ()
        await let_clean_up(run, list(exited))


async def let_clean_up(run: Run, stopped: list[asyncio.Task[None]]) -> None:
    """Wait for the cancelled ``stopped`` steps to end, at most `CANCEL_GRACE_SECONDS` on the
    run's clock (like every wait of an execution, so a test's clock decides it too)."""
    if not stopped:
        return
    with contextlib.suppress(TimeoutError):
        async with run.clock.timeout(CANCEL_GRACE_SECONDS):
            await asyncio.wait(stopped)


async def wait_for(steps: list[asyncio.Task[None]]) -> None:
    """Wait for ``steps`` to end without cancelling them if the waiter gives up."""
    current = asyncio.current_task()
    for step in steps:
        if step is current or step.done():
            continue
        waiters = _waiting.get(step)
        if waiters is None:
            # A step cancelled before it started never runs its own release: its end does.
            waiters = _waiting[step] = []
            step.add_done_callback(_release)
        waiter = step.get_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if current is not None and current.cancelling():
                raise  # we are being cancelled, not just the step


#: Who waits for each running step (`wait_for`). The step wakes them itself as it ends
#: (`_release` in `_as_step`): a done callback would run one event-loop turn later, and then
#: wake them one turn later still — a third of what an event costs on a short action.
_waiting: dict[asyncio.Task[None], list[asyncio.Future[None]]] = {}


def _release(step: asyncio.Task[None] | asyncio.Future[None]) -> None:
    """Wake whoever waits for ``step`` (it is ending or has ended)."""
    for waiter in _waiting.pop(cast(asyncio.Task[None], step), ()):
        if not waiter.done():
            waiter.set_result(None)


# -- an action's step ---------------------------------------------------------------------------


async def run_step(
    run: Run, plan: StatePlan, attempt: int = 1, retry_at: float | None = None
) -> None:
    """The step of a leaf with an action: its attempts, then its outcome acted on."""
    leaf = run.state.leaves.setdefault(plan.path, LeafState())
    outcome, failed = await _run_action(run, plan, leaf, attempt, retry_at)
    await deliver(run, plan, leaf, outcome, failed)


async def deliver(run: Run, plan: StatePlan, leaf: LeafState, outcome: str, failed: bool) -> None:
    """Act on a finished action's outcome. Until this is done the outcome is part of the
    checkpoint, so a crash in between delivers it on resume instead of losing it."""
    async with run.fire_lock:
        try:
            if plan.path in run.state.active and run.state.running:
                await _act_on(run, plan, leaf, outcome, failed)
                if run.state.internal:  # usually nothing to drain: no coroutine for it
                    await run.router.drain()
        finally:
            leaf.outcome = None


async def _act_on(run: Run, plan: StatePlan, leaf: LeafState, outcome: str, failed: bool) -> None:
    router = run.router
    if plan.terminal:
        run.state.internal += ((plan.path, failed or plan.failure),)
    elif failed:
        await router.raise_event(ERROR, plan.path, leaf.error_types or (), leaf.error)
    elif plan.callback:
        pass  # it waits for its callback (procstore.runtime.callbacks), not for this outcome
    elif not router.handled_within(plan.path, outcome):
        run.log(RecordKind.IGNORED, state=plan.path, event=outcome)
    elif run.driven:
        await router.trigger(outcome, plan.path)
    else:
        leaf.pending = outcome


async def _run_action(
    run: Run, plan: StatePlan, leaf: LeafState, attempt: int, retry_at: float | None
) -> tuple[str, bool]:
    """Run ``plan``'s action with its retry policy, from attempt ``attempt`` (after a wait
    until ``retry_at``, when resuming); return the outcome and whether it failed for good."""
    action, path = plan.action, plan.path
    assert action is not None
    if retry_at is not None:
        await run.clock.sleep(retry_at - run.clock.time())
    while True:
        leaf.attempt, leaf.retry_at, leaf.running = attempt, None, True
        try:
            outcome, value = await invoke(run, action, path, attempt)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The action swallowed our cancellation: its result no longer counts.
                raise asyncio.CancelledError
        except Exception as exc:  # an action's failure is data: the `error` event
            leaf.running = False
            leaf.error, leaf.error_types = error_fields(exc), error_types(exc)
            run.log(RecordKind.ACTION, state=path, attempt=attempt, error=leaf.error)
            # The first policy matching the error decides, on its own count of failures.
            chosen = retry_policy(plan.retry, leaf.error_types)
            failures = leaf.count_failure(chosen[0]) if chosen is not None else 0
            if chosen is None or failures >= chosen[1].max_attempts:
                leaf.attempt, leaf.outcome = None, (ERROR, True)
                return ERROR, True
            delay_ms = retry_delay_ms(chosen[1], failures)
            attempt += 1
            leaf.attempt, leaf.retry_at = attempt, run.clock.time() + delay_ms / 1000
            run.log(RecordKind.RETRY, state=path, attempt=attempt, delay_ms=delay_ms)
            await run.flush()  # the failure and the deadline, before waiting
            await run.clock.sleep(delay_ms / 1000)
            continue
        leaf.running, leaf.attempt, leaf.acted = False, None, True
        leaf.outcome, leaf.result = (outcome, False), value
        run.log(RecordKind.ACTION, state=path, attempt=attempt, result=value)
        if plan.compensate is not None:
            run.state.completed += (path,)
        return outcome, False


async def invoke(run: Run, action: CompiledAction, path: str, attempt: int = 1) -> tuple[str, Any]:
    """One attempt: await the action within its timeout, store its result; return the outcome
    event and the result as recorded.

    While the store winds down (``run.winding_down``) no action starts: the step waits here
    until the store detaches the execution, so that the attempt runs, with its number, in
    whichever process resumes it."""
    if run.winding_down:
        await asyncio.get_running_loop().create_future()  # until cancelled by the detach
    run.invoking += 1
    try:
        return await _attempt(run, action, path, attempt)
    finally:
        run.invoking -= 1


async def _attempt(run: Run, action: CompiledAction, path: str, attempt: int) -> tuple[str, Any]:
    """``invoke`` once the action may start. Its ``args`` are rendered first: a path that
    names nothing fails the attempt with `procstore.datapaths.PathNotFound`."""
    leaf = run.state.leaves.get(path)
    token = leaf.token if leaf is not None else None
    context, info = run.state.context, ActionInfo(run.id, path, attempt, token)
    known = facts(run, path) if action.args or action.result_selector else None
    args = None if action.args is None else render(action.args, context, known)
    if action.timeout_s is None:
        value = await action.invoke(context, info, args)
    else:
        overrun = f"attempt took longer than {action.timeout_s * 1000:g} ms"
        began = run.clock.monotonic()
        try:
            async with run.clock.timeout(action.timeout_s) as scope:
                value = await action.invoke(context, info, args)
        except TimeoutError:
            if not scope.expired():
                raise  # the action's own TimeoutError, not our bound
            raise Timeout(overrun) from None
        if run.clock.monotonic() - began > action.timeout_s:
            # A synchronous action cannot be interrupted; it still broke its bound.
            raise Timeout(overrun)
    outcome = SUCCESS
    if isinstance(value, Event):
        outcome = value = value.name
    if action.result_selector is not None:
        # Read as the JSON data it would be stored as: a path reads objects and lists only.
        returned = require_json(value, "the result that result_selector reads")
        value = render(action.result_selector, returned, known)
    if action.result_key is not None:
        # It goes into the context, which must stay plain data (snapshots, storage).
        value = require_json(value, f"the result stored as {action.result_key!r}")
        context[action.result_key] = value
    elif action.result_path is not None:
        value = require_json(value, f"the result stored at {action.result_path.text}")
        action.result_path.put(context, value)
    else:  # only recorded in the history: a readable stand-in will do
        value = stand_in(value)
    if action.log_message is not None:
        run.log(RecordKind.LOG, state=path, message=action.log_message)
    return outcome, value
