"""Executions: one run of a compiled procedure, moved by the procedure's shared machine.

An execution is the machine's *model*. Entering a leaf state starts that state's action as a
background task (a *step*, one per active leaf, so parallel regions run side by side): its
attempts, retry delays and outcome. ``error`` (after the last attempt), ``timeout`` and ``done``
fire by themselves; other outcomes fire by themselves only while the execution is driven
(``run_to_completion`` or ``auto=True``), otherwise they wait for ``Execution.send``. When an
execution fails, the compensations of its completed actions run newest first (a saga rollback).

Ordering: external events queue on ``_send_lock`` (FIFO); machine triggers are serialised by
``_fire_lock``, so transitions never overlap on one model — which is why procstore needs neither
transitions' ``queued`` mode nor its task cancellation. An event a step produces is *routed*: it
may only be handled by the step's state or that state's ancestors (``in_scope``), never by a
sibling region. Completions (a terminal leaf reached) queue as internal events and are processed
before the trigger that caused them returns, like SCXML's internal queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import logging
import random
import time
from collections import ChainMap, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from transitions.extensions.asyncio import AsyncMachine

from procstore import paths
from procstore.compiler import (
    RAISED_ONLY,
    CompiledAction,
    CompiledProcedure,
    Guard,
    StatePlan,
)
from procstore.definition import RetryPolicy
from procstore.errors import InvalidEvent, StoreError, Timeout
from procstore.jsondata import require_json, stand_in
from procstore.outcome import ActionInfo, Event
from procstore.snapshot import ExecutionState, HistoryRecord, Status

logger = logging.getLogger("procstore")

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
DONE = "done"
EXECUTION = ""  # the step key of work that belongs to the whole execution (a rollback)
#: How long cancel() waits for a cancelled action's cleanup (its ``finally``) to finish.
CANCEL_GRACE_SECONDS = 1.0


class Journal(Protocol):
    """Where a persistent store keeps an execution: its snapshot and its history records."""

    async def create(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        """Store a new execution with its first records."""

    async def commit(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        """Append ``records`` and replace the snapshot, in one transaction."""


def _to_model(record: dict[str, Any]) -> HistoryRecord:
    return HistoryRecord.model_validate({**record, "at": datetime.fromtimestamp(record["at"], UTC)})


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def is_retryable(policy: RetryPolicy, exc: BaseException) -> bool:
    """Whether ``policy.errors`` names the class of ``exc`` or one of its bases."""
    if policy.errors is None:
        return True
    return any(cls.__name__ in policy.errors for cls in type(exc).__mro__)


def retry_delay_ms(policy: RetryPolicy, failed_attempt: int) -> float:
    """The delay before the next attempt, jitter included."""
    delay = policy.delay_ms(failed_attempt)
    return random.uniform(0, delay) if policy.jitter == "full" else delay


class Execution:
    """A handle on one execution. Create it with ``procstore.ProcedureStore.start``."""

    fsm_state: Any  # set by the machine (see procstore.compiler.MODEL_ATTRIBUTE)

    def __init__(
        self,
        compiled: CompiledProcedure,
        execution_id: str,
        context: dict[str, Any],
        *,
        auto: bool = False,
        journal: Journal | None = None,
        running: dict[str, Execution] | None = None,
    ) -> None:
        self._compiled = compiled
        # Where the store keeps unfinished executions alive: asyncio holds its tasks only
        # weakly, so an execution nobody references could otherwise vanish mid-run.
        self._running_registry = running
        self._journal = journal
        self._flushed = 0  # how many history records the journal holds
        self._flush_lock = asyncio.Lock()
        self._plans = compiled.states
        self.id = execution_id
        self.auto = auto
        self._start_context = context
        self._context: dict[str, Any] = copy.deepcopy(context)
        self._history: list[dict[str, Any]] = []
        self._history_models: list[HistoryRecord] = []  # _history converted so far
        self._status = Status.RUNNING
        if running is not None:
            running[execution_id] = self
        self._closing = False  # failing, rolling back or cancelled: no more events
        self._active: set[str] = set()  # every active state's path, at every level
        self._steps: dict[str, asyncio.Task[None]] = {}  # running work, by state path
        self._timers: dict[str, asyncio.TimerHandle] = {}  # state timeouts, by state path
        self._visits: dict[str, int] = {}  # a token per entry, so stale timers are ignored
        self._entries = 0
        self._transitions = 0  # transitions fired so far
        self._results: dict[str, Any] = {}  # each leaf's last action result (guards' `result`)
        self._errors: dict[str, dict[str, str]] = {}  # each leaf's last action error (`error`)
        self._attempts: dict[str, int] = {}  # the current attempt's number, by leaf
        self._running: set[str] = set()  # leaves with an attempt in flight
        self._retry_at: dict[str, float] = {}  # when the next attempt starts (wall clock)
        self._deadlines: dict[str, float] = {}  # when each state's timeout_ms runs out
        self._acted: set[str] = set()  # active leaves whose action has completed
        self._outcomes: dict[str, tuple[str, bool]] = {}  # finished, not yet acted on, by leaf
        self._commit: asyncio.Task[None] | None = None  # the journal commit under way
        self._exited_steps: list[asyncio.Task[None]] = []  # cancelled by leaving their state
        self._rollback: tuple[str, str] | None = None  # (reason, status if nothing to undo)
        self._frozen: str | None = None  # why this handle may not change the execution
        self._write_failure: StoreError | None = None  # the failed write that stopped it
        self._stored: dict[str, Any] | None = None  # the checkpoint last committed
        self._done_leaves: set[str] = set()  # terminal leaves whose work has completed
        self._internal: deque[tuple[str, bool]] = deque()  # (terminal leaf, failed) to process
        self._origin: str | None = None  # the state an event being fired comes from
        self._origin_exact = False  # only that state may handle it (``done``)
        self._host_event: str | None = None  # the event a host's send() is firing
        self._completed: list[StatePlan] = []  # completed actions to compensate, oldest first
        self._pending: dict[str, str] = {}  # outcome events waiting for a driver, by leaf
        self._drivers = 0
        self._send_lock = asyncio.Lock()
        self._fire_lock = asyncio.Lock()
        self._finished = asyncio.Event()
        self._watchers: list[asyncio.Future[None]] = []  # woken by each new history record

    # -- public API ---------------------------------------------------------------------

    @property
    def procedure(self) -> str:
        """The name of the procedure this execution runs."""
        return self._compiled.procedure.name

    @property
    def version(self) -> str:
        """The version of the procedure this execution runs."""
        return self._compiled.procedure.version

    @property
    def current(self) -> str:
        """The active leaf's path or, while parallel regions are active, the outermost active
        parallel state's path."""
        if self._compiled.flat:
            return str(self.fsm_state)
        for top in self._compiled.top_level:
            if top in self._active:
                path = top
                while (plan := self._plans[path]).kind == "compound":
                    path = next(c for c in plan.children if c in self._active)
                return path
        raise AssertionError("an execution is always in some state")

    @property
    def active(self) -> list[str]:
        """The paths of every active leaf state, sorted."""
        return sorted(self._active_leaves())

    @property
    def state(self) -> ExecutionState:
        """An immutable snapshot of the execution now."""
        return ExecutionState.model_construct(
            id=self.id,
            procedure=self.procedure,
            version=self.version,
            current=self.current,
            active=self.active,
            status=self._status,
            context=self._context_data(),
            history=self.history,
        )

    @property
    def status(self) -> Status:
        """The execution's status now."""
        return self._status

    @property
    def history(self) -> tuple[HistoryRecord, ...]:
        """Every history record so far, oldest first."""
        converted = self._history_models
        converted.extend(_to_model(r) for r in self._history[len(converted) :])
        return tuple(converted)

    async def watch(self) -> AsyncIterator[HistoryRecord]:
        """Yield every history record — those so far, then each new one as it happens — until
        the execution has finished.

        Raises:
            StoreError: a write to the store failed: the execution stopped here (see
                [`run_to_completion`][procstore.Execution.run_to_completion]).
        """
        seen = 0
        while True:
            records = self.history
            for record in records[seen:]:
                yield record
            seen = len(records)
            if self._status is not Status.RUNNING and seen == len(self._history):
                return
            self._raise_if_stopped()
            waiter = asyncio.get_running_loop().create_future()
            self._watchers.append(waiter)
            await waiter

    def _refuse_if_finished(self) -> None:
        if self._status is not Status.RUNNING or self._closing:
            raise InvalidEvent(f"execution {self.id} has finished; it accepts no events")

    def _check_writable(self) -> None:
        if self._frozen is not None:
            raise StoreError(f"execution {self.id}: this handle is {self._frozen}")

    def _raise_if_stopped(self) -> None:
        if self._write_failure is not None:
            raise StoreError(
                f"execution {self.id}: this handle is {self._frozen}"
            ) from self._write_failure

    @property
    def detached(self) -> bool:
        """Whether this handle no longer runs the execution: its store was closed, it was loaded
        from a read-only store, or a write to its store failed. The stored execution goes on
        from what was last stored through a new handle
        ([`get_execution`][procstore.ProcedureStore.get_execution] or
        [`recover`][procstore.ProcedureStore.recover])."""
        return self._frozen is not None

    async def send(self, event: str) -> bool:
        """Process ``event`` after earlier events and after the running actions of the states
        that handle it themselves. An event only an ancestor state handles is processed at once
        (leaving that state cancels what runs inside it). An event several parallel regions
        handle fires in each.

        Returns:
            True when a transition fired; False when the guards of every transition on
            ``event`` blocked it (the state is unchanged).

        Raises:
            InvalidEvent: no active state has a transition on ``event`` that a host may fire,
                or the execution has finished. ``done`` and ``timeout`` are only ever raised by
                procstore itself, and so is ``error`` on a compound or parallel state.
        """
        self._check_writable()
        if event in RAISED_ONLY:
            raise InvalidEvent(
                f"{event!r} is raised by procstore itself (when a compound or parallel state "
                "completes, or a state's timeout_ms runs out); it cannot be sent"
            )
        accepts = self._compiled.accepts_from_host
        async with self._send_lock:
            while True:
                self._refuse_if_finished()
                leaves = self._active_leaves()
                own = [leaf for leaf in leaves if accepts(leaf, event)]
                if own:
                    busy = [self._steps[leaf] for leaf in own if leaf in self._steps]
                elif any(accepts(p, event) for p in self._active if p not in leaves):
                    busy = []
                else:
                    busy = list(self._steps.values())
                    if not busy:
                        raise InvalidEvent(
                            f"no active state of {self.current!r} has a transition on {event!r} "
                            f"(they accept: {', '.join(self._sendable_events()) or 'nothing'})"
                        )
                if not busy:
                    break
                await self._wait_for(busy)
            return await self._fire(event, external=True)

    def _sendable_events(self) -> list[str]:
        """The events ``send()`` accepts now, sorted."""
        return sorted(
            {
                event
                for path in self._active
                for event in self._plans[path].events
                if self._compiled.accepts_from_host(path, event)
            }
        )

    async def run_to_completion(self, timeout: float | None = None) -> ExecutionState:
        """Drive the execution until it finishes and return its final snapshot.

        While driven, every outcome event fires by itself.

        Raises:
            TimeoutError: it has not finished within ``timeout`` seconds. That only ends the
                wait: the execution stays as it is.
            StoreError: a write to the store failed (a full disk, say). The execution stopped
                in this process at once, without changing its status: the database keeps it as
                last stored, and [`recover`][procstore.ProcedureStore.recover] carries it on
                from there once writes work again.
        """
        if self._status is Status.RUNNING:
            self._check_writable()
        self._drivers += 1
        try:
            async with asyncio.timeout(timeout):
                async with self._send_lock:
                    pending, self._pending = self._pending, {}
                    for leaf, outcome in pending.items():
                        running = self._status is Status.RUNNING and not self._closing
                        if running and leaf in self._active:
                            await self._fire(outcome, leaf)
                await self._finished.wait()
                self._raise_if_stopped()
                final = self.state  # taken now: a reset() may run during the flush
                await self._flush()  # the end is stored before the caller hears of it
        finally:
            self._drivers -= 1
        return final

    async def reset(self) -> None:
        """Cancel what runs and go back to the initial state with a fresh copy of the start
        context. The reset is recorded; the history is kept.

        A rollback in progress is never cut short: its remaining compensations run, and the
        rollback ends (and is stored) before the reset."""
        self._check_writable()
        while self._closing and EXECUTION in self._steps:
            await self._wait_for([self._steps[EXECUTION]])
        async with self._fire_lock:
            stopped = self._halt()
            self._context = copy.deepcopy(self._start_context)
            self._status = Status.RUNNING
            if self._running_registry is not None:
                self._running_registry[self.id] = self
            self._closing = False
            self._completed.clear()
            self._pending.clear()
            self._results.clear()
            self._errors.clear()
            self._attempts.clear()
            self._running.clear()
            self._retry_at.clear()
            self._deadlines.clear()
            self._acted.clear()
            self._outcomes.clear()
            self._rollback = None
            self._done_leaves.clear()
            self._internal.clear()
            self._active.clear()
            self._finished.clear()
            self._log("reset", state=self._compiled.initial_state)
            self._enter_initial()
            await self._drain()
        if stopped:
            await asyncio.wait(stopped)  # let the cancelled actions' cleanup run
        await self._flush()

    async def cancel(self, rollback: bool = False) -> ExecutionState:
        """Cancel the running actions (their ``finally`` runs) and end the execution.

        The status becomes ``cancelled`` at once. With ``rollback=True`` the compensations of
        the completed actions then run, newest first, and the execution ends ``rolled_back``
        (``failed`` if a compensation fails; ``cancelled`` if there was nothing to undo).
        Cancelling a finished execution changes nothing.
        """
        if self._status is not Status.RUNNING or self._closing:
            return self.state
        self._check_writable()
        async with self._fire_lock:
            stopped = self._halt()
            self._log("cancelled", state=self.current)
            if rollback and self._completed:
                self._begin_rollback("cancelled", Status.CANCELLED, stopped)
            else:
                self._finish(Status.CANCELLED)
        return await self._ended(stopped)

    async def rollback(self) -> ExecutionState:
        """Fail the execution on purpose: cancel what runs, then compensate every completed
        action, newest first.

        Returns:
            The final snapshot: ``rolled_back``, or ``failed`` if a compensation failed or
            there was nothing to compensate.

        Raises:
            InvalidEvent: the execution has already finished.
        """
        if self._status is not Status.RUNNING or self._closing:
            raise InvalidEvent(f"execution {self.id} has finished; there is nothing to roll back")
        self._check_writable()
        async with self._fire_lock:
            stopped = self._halt()
            self._begin_rollback("rollback requested", Status.FAILED, stopped)
        return await self._ended(stopped)

    async def _ended(self, stopped: list[asyncio.Task[None]]) -> ExecutionState:
        """After cancel() or rollback(): let the stopped actions clean up, wait for the
        compensations, store the outcome, return the final snapshot."""
        if stopped:
            await asyncio.wait(stopped, timeout=CANCEL_GRACE_SECONDS)
        await self._wait_for(list(self._steps.values()))
        final = self.state  # taken now: a reset() waiting for this end may run during the flush
        await self._flush()
        return final

    # -- machine callbacks ------------------------------------------------------------------

    def on_transition(self, source: str, target: str, event: str) -> None:
        self._transitions += 1
        self._log("transition", event=event, state=source, target=target)

    def on_state_entered(self, path: str, event: str | None) -> None:
        self._active.add(path)
        plan = self._plans[path]
        if plan.kind == "region":
            return
        self._entries += 1
        self._visits[path] = self._entries
        self._log("entered", state=path, event=event)
        if plan.timeout_s is not None:
            self._deadlines[path] = time.time() + plan.timeout_s
            self._arm_timer(path)
        if plan.kind == "leaf":
            self._results.pop(path, None)
            self._errors.pop(path, None)
            self._acted.discard(path)
            if plan.action is not None:
                self._start_step(path, self._run_step, plan)
            elif plan.terminal:
                self._internal.append((path, plan.failure))

    def on_state_exited(self, path: str) -> None:
        self._active.discard(path)
        timer = self._timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        step = self._steps.pop(path, None)
        if step is not None and step is not asyncio.current_task():
            self._interrupt(path, step)  # leaving a state cancels what runs in it
            self._exited_steps.append(step)
        self._pending.pop(path, None)
        self._done_leaves.discard(path)
        self._deadlines.pop(path, None)
        self._acted.discard(path)
        self._outcomes.pop(path, None)
        self._attempts.pop(path, None)
        self._retry_at.pop(path, None)

    def in_scope(self, source: str) -> bool:
        if source not in self._active:
            return False  # an earlier transition of the same event already left it
        if self._host_event is not None:
            return self._compiled.accepts_from_host(source, self._host_event)
        origin = self._origin
        if origin is None:
            return True
        if self._origin_exact:
            return source == origin
        return paths.is_within(origin, source)

    def check_guard(self, guard: Guard, event: str) -> bool | Awaitable[bool]:
        if guard.uses_context:
            argument: Any = self._context
        else:
            leaf = guard.source if self._plans[guard.source].kind == "leaf" else self._origin
            names = {
                "result": self._results.get(leaf) if leaf is not None else None,
                "error": self._errors.get(leaf) if leaf is not None else None,
            }
            argument = ChainMap(names, self._context)
        try:
            value = guard.check(argument)
        except Exception as exc:  # a guard that raises blocks its transition
            return self._guard_failed(guard, event, exc)
        if inspect.isawaitable(value):
            return self._await_guard(guard, event, value)
        return bool(value)

    # -- internals ------------------------------------------------------------------------------

    @property
    def _driven(self) -> bool:
        return self.auto or self._drivers > 0

    def _active_leaves(self) -> list[str]:
        if self._compiled.flat:
            return [self.fsm_state]
        return [p for p in self._active if self._plans[p].kind == "leaf"]

    def _handled_within(self, path: str, event: str) -> bool:
        """Whether ``path`` or one of its ancestors has a transition on ``event``."""
        node: str | None = path
        while node is not None:
            if self._compiled.accepts(node, event):
                return True
            node = None if self._compiled.flat else paths.parent_of(node)
        return False

    def _fill_regions(self) -> None:
        """Enter the initial states of regions a transition left out.

        A transition into one region of a parallel state (``checks.fraud.end``) enters only
        that region in transitions' HierarchicalMachine; in a statechart the parallel state is
        in every region at once, so the others start at their initial states.
        """
        missing = [
            region
            for parallel in self._active
            if self._plans[parallel].kind == "parallel"
            for region in self._plans[parallel].children
            if region not in self._active
        ]
        if not missing:
            return
        for region in sorted(missing, key=self._compiled.order.__getitem__):
            for path in self._compiled.entries[region]:
                self.on_state_entered(path, None)
        self._set_configuration(sorted(self._active_leaves(), key=self._compiled.order.__getitem__))

    def _set_configuration(self, leaves: list[str]) -> None:
        """Tell transitions which leaves are active: one path, or a list of them (parallel)."""
        self.fsm_state = leaves[0] if len(leaves) == 1 else leaves

    def _enter_initial(self) -> None:
        """Enter the initial configuration (``add_model`` would not run its ``on_enter``)."""
        entry = self._compiled.initial_entry
        self._set_configuration([p for p in entry if self._plans[p].kind == "leaf"])
        for path in entry:
            self.on_state_entered(path, None)

    def _start_step(self, key: str, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        # The coroutine is created inside the task, so a step cancelled before it starts
        # leaves no never-awaited coroutine behind.
        self._steps[key] = asyncio.get_running_loop().create_task(self._as_step(key, work, *args))

    async def _as_step(self, key: str, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        # Steps are created inside machine callbacks and inherit transitions' "current task"
        # context; without resetting it, their triggers would count as nested ones.
        AsyncMachine.current_context.set(None)
        try:
            await self._flush()  # write-ahead: what led here is stored before it runs
            await work(*args)
            await self._flush()
        except Exception as exc:
            if self._write_failure is not None:
                return  # a write failed: the execution stopped (_stop said so, once)
            # A defect, not an action's failure: fail, don't hang.
            logger.exception("execution %s: internal error", self.id)
            self._log("internal_error", state=key or None, error=_error(exc))
            with contextlib.suppress(StoreError):  # a failed write stops it (_stop)
                await self._fail_internally(key, exc)
                await self._flush()
        finally:
            if self._steps.get(key) is asyncio.current_task():
                del self._steps[key]

    async def _fail_internally(self, key: str, error: Exception) -> None:
        """After an internal error in the step of ``key``: the documented failure path, as if
        that state's action had failed — its ``error`` handler if it has one, otherwise the
        execution fails and compensates. An error while compensating ends it ``failed``."""
        async with self._fire_lock:
            if self._status is not Status.RUNNING:
                return
            try:
                if key == EXECUTION or self._closing:
                    self._finish(Status.FAILED)
                elif key in self._active:
                    self._errors[key] = _error(error)
                    await self._raise(ERROR, key)
                    await self._drain()
                else:
                    self._fail()
            except Exception as exc:  # the failure path itself broke: stop here
                logger.exception("execution %s: internal error while failing", self.id)
                self._log("internal_error", state=key or None, error=_error(exc))
                self._finish(Status.FAILED)

    def _interrupt(self, key: str, step: asyncio.Task[None]) -> None:
        """Cancel ``step``; an attempt it was running is recorded as interrupted now, so the
        history says so before whatever follows (a transition, the end)."""
        step.cancel()
        attempt = self._attempts.get(key)
        if key in self._running and attempt is not None:
            self._running.discard(key)
            error = {"type": "Cancelled", "message": "the attempt was interrupted"}
            self._log("action", state=key, attempt=attempt, error=error)

    def _halt(self) -> list[asyncio.Task[None]]:
        """Stop every timer and cancel every step but the caller; return the steps to wait for."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        return self._cancel_steps()

    def _cancel_steps(self, within: str | None = None) -> list[asyncio.Task[None]]:
        """Cancel the steps — all, or those of states inside ``within`` — but the caller's;
        return the ones that were still running."""
        current = asyncio.current_task()
        stopped = []
        for key, step in list(self._steps.items()):
            if step is current or (within is not None and not paths.is_within(key, within)):
                continue
            del self._steps[key]
            if not step.done():
                self._interrupt(key, step)
                stopped.append(step)
        return stopped

    async def _wait_for(self, steps: list[asyncio.Task[None]]) -> None:
        """Wait for ``steps`` to end without cancelling them if the waiter gives up."""
        current = asyncio.current_task()
        for step in steps:
            if step is current or step.done():
                continue
            try:
                await asyncio.shield(step)
            except asyncio.CancelledError:
                if current is not None and current.cancelling():
                    raise  # we are being cancelled, not just the step

    async def _run_step(
        self, plan: StatePlan, attempt: int = 1, retry_at: float | None = None
    ) -> None:
        outcome, failed = await self._run_action(plan, attempt, retry_at)
        await self._deliver(plan, outcome, failed)

    async def _deliver(self, plan: StatePlan, outcome: str, failed: bool) -> None:
        """Act on a finished action's outcome. Until this is done the outcome is part of the
        checkpoint, so a crash in between delivers it on resume instead of losing it."""
        async with self._fire_lock:
            try:
                await self._act_on(plan, outcome, failed)
            finally:
                self._outcomes.pop(plan.path, None)

    async def _act_on(self, plan: StatePlan, outcome: str, failed: bool) -> None:
        if plan.path in self._active and self._status is Status.RUNNING and not self._closing:
            if plan.terminal:
                self._internal.append((plan.path, failed or plan.failure))
            elif failed:
                await self._raise(ERROR, plan.path)
            elif not self._handled_within(plan.path, outcome):
                self._log("ignored", state=plan.path, event=outcome)
            elif self._driven:
                await self._trigger(outcome, plan.path)
            else:
                self._pending[plan.path] = outcome
            await self._drain()

    async def _run_action(
        self, plan: StatePlan, attempt: int = 1, retry_at: float | None = None
    ) -> tuple[str, bool]:
        """Run ``plan``'s action with its retry policy, from attempt ``attempt`` (after a wait
        until ``retry_at``, when resuming); return the outcome and whether it failed for
        good."""
        action = plan.action
        assert action is not None
        path = plan.path
        if retry_at is not None:
            await asyncio.sleep(max(0.0, retry_at - time.time()))
        while True:
            self._attempts[path] = attempt
            self._retry_at.pop(path, None)
            self._running.add(path)
            try:
                outcome, value = await self._invoke(action, path, attempt)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The action swallowed our cancellation: its result no longer counts.
                    raise asyncio.CancelledError
            except Exception as exc:  # an action's failure is data: the `error` event
                self._running.discard(path)
                error = self._errors[path] = _error(exc)
                self._log("action", state=path, attempt=attempt, error=error)
                policy = plan.retry
                if (
                    policy is None
                    or attempt >= policy.max_attempts
                    or not is_retryable(policy, exc)
                ):
                    del self._attempts[path]
                    self._outcomes[path] = (ERROR, True)
                    return ERROR, True
                delay_ms = retry_delay_ms(policy, attempt)
                attempt += 1
                self._attempts[path] = attempt
                self._retry_at[path] = time.time() + delay_ms / 1000
                self._log("retry", state=path, attempt=attempt, delay_ms=delay_ms)
                await self._flush()  # the failure and the deadline, before waiting
                await asyncio.sleep(delay_ms / 1000)
                continue
            self._running.discard(path)
            del self._attempts[path]
            self._acted.add(path)
            self._outcomes[path] = (outcome, False)
            self._results[path] = value
            self._log("action", state=path, attempt=attempt, result=value)
            if plan.compensate is not None:
                self._completed.append(plan)
            return outcome, False

    async def _invoke(self, action: CompiledAction, path: str, attempt: int = 1) -> tuple[str, Any]:
        """One attempt: await the action within its timeout, store its result; return the
        outcome event and the result as recorded."""
        info = ActionInfo(self.id, path, attempt)
        if action.timeout_s is None:
            value = await action.invoke(self._context, info)
        else:
            overrun = f"attempt took longer than {action.timeout_s * 1000:g} ms"
            began = time.monotonic()
            try:
                async with asyncio.timeout(action.timeout_s) as scope:
                    value = await action.invoke(self._context, info)
            except TimeoutError:
                if not scope.expired():
                    raise  # the action's own TimeoutError, not our bound
                raise Timeout(overrun) from None
            if time.monotonic() - began > action.timeout_s:
                # A synchronous action cannot be interrupted; it still broke its bound.
                raise Timeout(overrun)
        outcome = SUCCESS
        if isinstance(value, Event):
            outcome = value = value.name
        if action.result_key is not None:
            # It goes into the context, which must stay plain data (snapshots, storage).
            value = require_json(value, f"the result stored as {action.result_key!r}")
            self._context[action.result_key] = value
        else:  # only recorded in the history: a readable stand-in will do
            value = stand_in(value)
        if action.log_message is not None:
            self._log("log", state=path, message=action.log_message)
        return outcome, value

    async def _fire(self, event: str, origin: str | None = None, external: bool = False) -> bool:
        async with self._fire_lock:
            if external:
                # Checked again under the lock: a reset() or cancel() may have got in first.
                self._refuse_if_finished()
                if not any(self._compiled.accepts_from_host(p, event) for p in self._active):
                    raise InvalidEvent(f"no active state of {self.current!r} handles {event!r}")
            fired = await self._trigger(event, origin, external=external)
            await self._drain()
        if self._exited_steps:
            # The actions a transition cancelled (leaving a compound state, say) have run
            # their cleanup by the time the event's sender hears back.
            exited, self._exited_steps = self._exited_steps, []
            await asyncio.wait(exited, timeout=CANCEL_GRACE_SECONDS)
        await self._flush()
        return fired

    async def _trigger(
        self, event: str, origin: str | None, exact: bool = False, external: bool = False
    ) -> bool:
        """Trigger ``event`` (the fire lock is held), routed to ``origin`` and its ancestors
        (or ``origin`` alone when ``exact``); from a host (``external``), only to the states
        that accept it from a host."""
        self._origin, self._origin_exact = origin, exact
        self._host_event = event if external else None
        before = self._transitions
        try:
            await self._compiled.fire(self, event)
        finally:
            self._origin, self._origin_exact, self._host_event = None, False, None
        # Counted rather than taken from the trigger's return value: with parallel regions,
        # transitions returns the result of the *last* region tried, not whether any fired.
        fired = self._transitions > before
        if fired and not self._compiled.flat:
            self._fill_regions()
        if not fired:
            self._log("blocked", state=origin or self.current, event=event)
        return fired

    async def _raise(self, event: str, origin: str) -> None:
        """Fire ``error``/``timeout`` from ``origin``, innermost handler first; with no handler
        anywhere (or every one blocked), the execution fails."""
        for candidate in (event, ERROR) if event != ERROR else (ERROR,):
            if self._handled_within(origin, candidate) and await self._trigger(candidate, origin):
                return
        self._fail()

    async def _drain(self) -> None:
        """Process completions (terminal leaves reached) until none is left."""
        while self._internal:
            leaf, failed = self._internal.popleft()
            if leaf not in self._active or self._status is not Status.RUNNING or self._closing:
                continue
            container = self._plans[leaf].container
            if failed:
                if container is None:
                    self._fail()
                else:
                    await self._raise(ERROR, container)
                continue
            self._done_leaves.add(leaf)
            await self._complete(leaf)

    async def _complete(self, path: str) -> None:
        """``path`` (terminal) completed: complete its container, up as far as it goes."""
        while True:
            container = self._plans[path].container
            if container is None:
                self._finish(Status.COMPLETED)
                return
            plan = self._plans[container]
            if plan.kind == "parallel" and not all(self._is_complete(r) for r in plan.children):
                return
            if not plan.terminal:
                if DONE in plan.events:
                    await self._trigger(DONE, container, exact=True)
                else:
                    self._log("ignored", state=container, event=DONE)
                return
            path = container  # terminal in its own container: that completes too

    def _is_complete(self, path: str) -> bool:
        plan = self._plans[path]
        if plan.kind == "leaf":
            return path in self._done_leaves
        if plan.kind == "parallel":
            return plan.terminal and all(self._is_complete(r) for r in plan.children)
        if plan.kind == "compound" and not plan.terminal:
            return False
        child = next((c for c in plan.children if c in self._active), None)
        return child is not None and self._is_complete(child)

    def _arm_timer(self, path: str) -> None:
        """Arm ``path``'s timeout from its stored deadline (one that passed fires at once)."""
        delay = max(0.0, self._deadlines[path] - time.time())
        self._timers[path] = asyncio.get_running_loop().call_later(
            delay, self._on_state_timeout, path, self._visits[path]
        )

    def _on_state_timeout(self, path: str, visit: int) -> None:
        if self._visits.get(path) != visit or path not in self._active:
            return
        if self._status is not Status.RUNNING or self._closing:
            return
        self._timers.pop(path, None)
        # The deadline stays in the checkpoint until the timeout has been acted on: after a
        # crash in between, it fires again at once on resume.
        interrupted = self._cancel_steps(within=path)
        self._start_step(path, self._expire, path, visit, interrupted)

    async def _expire(self, path: str, visit: int, interrupted: list[asyncio.Task[None]]) -> None:
        if interrupted:
            await asyncio.wait(interrupted)
        async with self._fire_lock:
            if self._visits.get(path) != visit or path not in self._active:
                return
            self._log("timeout", state=path)
            await self._raise(TIMEOUT, path)
            await self._drain()

    def _fail(self) -> None:
        """The execution failed: compensate what completed, or end ``failed``."""
        if self._completed:
            self._begin_rollback("failed", Status.FAILED, self._halt())
        else:
            self._finish(Status.FAILED)

    def _begin_rollback(
        self, reason: str, nothing_to_undo: Status, stopped: list[asyncio.Task[None]]
    ) -> None:
        """Decide, now, that the execution rolls back — recorded in the same snapshot as what
        caused it, so a crash before the first compensation still resumes the rollback."""
        self._closing = True
        self._pending.clear()
        self._rollback = (reason, nothing_to_undo.value)
        self._log("rollback", state=self.current, message=reason)
        self._start_step(EXECUTION, self._roll_back, stopped)

    async def _roll_back(self, stopped: list[asyncio.Task[None]] | None = None) -> None:
        """Run the compensation of every completed action, newest first, each once. Each
        compensation's completion is stored before the next starts, so after a crash the
        interrupted one runs again and the finished ones never do."""
        assert self._rollback is not None
        if stopped:  # the interrupted actions' cleanup comes before any undoing
            await asyncio.wait(stopped, timeout=CANCEL_GRACE_SECONDS)
        # What this rollback has compensated so far (before a restart, too): an empty stack
        # after a restart may mean "all undone", not "nothing to undo".
        done = [r for r in self._history[self._rollback_started() :] if r["kind"] == "compensation"]
        if not self._completed and not done:
            self._finish(Status(self._rollback[1]))
            return
        all_ok = not any(r.get("error") is not None for r in done)
        while self._completed:
            plan = self._completed[-1]
            compensation = plan.compensate
            assert compensation is not None
            try:
                _, value = await self._invoke(compensation, plan.path)
            except Exception as exc:  # the rest still run; the execution ends failed
                all_ok = False
                self._log("compensation", state=plan.path, error=_error(exc))
            else:
                self._log("compensation", state=plan.path, result=value)
            self._completed.pop()  # only once it ran: an interrupted one runs again
            await self._flush()
        self._finish(Status.ROLLED_BACK if all_ok else Status.FAILED)

    def _rollback_started(self) -> int:
        """The index of the history record that started the current rollback."""
        for i in range(len(self._history) - 1, -1, -1):
            if self._history[i]["kind"] == "rollback":
                return i
        return len(self._history)

    def _guard_failed(self, guard: Guard, event: str, exc: Exception) -> bool:
        self._log(
            "guard_error", state=guard.source, event=event, message=guard.label, error=_error(exc)
        )
        return guard.blocks_on_error

    async def _await_guard(self, guard: Guard, event: str, pending: Awaitable[Any]) -> bool:
        try:
            return bool(await pending)
        except Exception as exc:
            return self._guard_failed(guard, event, exc)

    def _log(self, kind: str, **fields: Any) -> None:
        # Records are kept as plain dicts on the hot path and become HistoryRecord models only
        # when someone reads them (building a pydantic model per record doubled a transition).
        fields["kind"] = kind
        fields["at"] = time.time()
        self._history.append(fields)
        if self._watchers:
            for waiter in self._watchers:
                if not waiter.done():
                    waiter.set_result(None)
            self._watchers.clear()

    def _finish(self, status: Status) -> None:
        self._halt()
        self._deadlines.clear()
        self._internal.clear()
        self._closing = False
        self._rollback = None
        if self._running_registry is not None:
            self._running_registry.pop(self.id, None)
        self._status = status
        self._log("finished", state=self.current, status=status)
        self._finished.set()

    async def _flush(self) -> None:
        """Commit the records since the last flush with a snapshot, in one transaction.

        Raises:
            StoreError: the write failed; the execution has stopped (see ``_stop``).
        """
        journal = self._journal
        if journal is None:
            return
        async with self._flush_lock:
            self._raise_if_stopped()  # checked under the lock: an earlier flusher may have failed
            try:
                if self._commit is not None and not self._commit.done():
                    await asyncio.shield(self._commit)  # a cancelled flusher's commit, going on
                end = len(self._history)
                if end == self._flushed:
                    return
                records = self._history[self._flushed : end]
                checkpoint = self.checkpoint()
                # The commit runs as its own task: if this caller is cancelled (a timeout around
                # send()), the commit still completes and is counted, so no record is sent twice.
                commit = asyncio.get_running_loop().create_task(
                    journal.commit(self._status.value, checkpoint, records)
                )
                commit.add_done_callback(functools.partial(self._committed, end, checkpoint))
                self._commit = commit
                await asyncio.shield(commit)
            except Exception as exc:
                self._stop(exc)
                self._raise_if_stopped()

    def _stop(self, error: Exception) -> None:
        """A write failed: stop everything this handle runs, at once and without a record or a
        status the database does not have. The database keeps the execution as last stored;
        a new handle (``recover()``) carries it on from there once writes work again."""
        if self._write_failure is not None:
            return
        failure = error if isinstance(error, StoreError) else StoreError(str(error))
        self._write_failure = failure
        self._frozen = f"stopped: a write to its store failed ({failure})"
        logger.error(
            "execution %s stopped: a write to its store failed (%s); it stays as last stored "
            "and store.recover() carries it on once writes work again",
            self.id,
            failure,
        )
        self._halt()
        if self._running_registry is not None:
            self._running_registry.pop(self.id, None)
        if self._stored is not None:  # the handle shows what the database holds, nothing newer
            self._restore(self._stored, self._history[: self._flushed])
        self._finished.set()  # wakes run_to_completion(), which raises the failure
        for waiter in self._watchers:
            if not waiter.done():
                waiter.set_result(None)
        self._watchers.clear()

    def _committed(self, end: int, checkpoint: dict[str, Any], commit: asyncio.Task[None]) -> None:
        if not commit.cancelled() and commit.exception() is None and end >= self._flushed:
            self._flushed = end
            self._stored = checkpoint

    def _context_data(self) -> dict[str, Any]:
        """The context as JSON data for snapshots and checkpoints; an action may have put
        anything into it, so what JSON cannot hold is stored as a stand-in (never an error)."""
        data = stand_in(self._context)
        if isinstance(data, dict):
            return data
        return {str(key): stand_in(value) for key, value in self._context.items()}

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume this execution elsewhere, as JSON-compatible data."""
        order = self._compiled.order
        return {
            "auto": self.auto,
            "status": self._status.value,
            "closing": self._closing,
            "rollback": list(self._rollback) if self._rollback else None,
            "active": sorted(self._active, key=order.__getitem__),
            "fsm_state": self.fsm_state,
            "context": self._context_data(),
            "start_context": self._start_context,
            "pending": dict(self._pending),
            "done_leaves": sorted(self._done_leaves),
            "acted": sorted(self._acted),
            "outcomes": {leaf: list(outcome) for leaf, outcome in self._outcomes.items()},
            "completed": [plan.path for plan in self._completed],
            "results": dict(self._results),  # already JSON data (see _invoke)
            "errors": dict(self._errors),
            "attempts": dict(self._attempts),
            "retry_at": dict(self._retry_at),
            "deadlines": dict(self._deadlines),
        }

    def _restore(self, snapshot: dict[str, Any], records: list[dict[str, Any]]) -> None:
        self.auto = bool(snapshot["auto"])
        self._status = Status(snapshot["status"])
        self._closing = bool(snapshot["closing"])
        rollback = snapshot["rollback"]
        self._rollback = (rollback[0], rollback[1]) if rollback else None
        self._active = set(snapshot["active"])
        self.fsm_state = snapshot["fsm_state"]
        configuration = self.fsm_state if isinstance(self.fsm_state, list) else [self.fsm_state]
        unknown = sorted({str(p) for p in (*self._active, *configuration)} - self._plans.keys())
        if unknown or not self._active:
            # A damaged snapshot, or one of another version: resuming it would run a wrong
            # configuration, so refuse (the store quarantines it).
            raise ValueError(f"its snapshot names states the procedure does not have: {unknown}")
        if not isinstance(snapshot["context"], dict):
            raise ValueError("its snapshot's context is not an object")
        self._context = snapshot["context"]
        self._pending = dict(snapshot["pending"])
        self._done_leaves = set(snapshot["done_leaves"])
        self._acted = set(snapshot["acted"])
        self._outcomes = {
            leaf: (str(event), bool(failed))
            for leaf, (event, failed) in snapshot["outcomes"].items()
        }
        self._completed = [self._plans[path] for path in snapshot["completed"]]
        self._results = dict(snapshot["results"])
        self._errors = dict(snapshot["errors"])
        self._attempts = {k: int(v) for k, v in snapshot["attempts"].items()}
        self._retry_at = {k: float(v) for k, v in snapshot["retry_at"].items()}
        self._deadlines = {k: float(v) for k, v in snapshot["deadlines"].items()}
        self._history = records
        self._history_models = self._history_models[: len(records)]
        self._flushed = len(records)
        self._stored = snapshot
        if self._status is not Status.RUNNING:
            self._finished.set()
            if self._running_registry is not None:
                self._running_registry.pop(self.id, None)

    def _resume(self) -> None:
        """Carry on after a restart: timers from their stored deadlines, actions that had not
        completed (an interrupted attempt runs again with its number), a rollback in
        progress."""
        for path in self._deadlines:
            self._entries += 1
            self._visits[path] = self._entries
            self._arm_timer(path)
        if self._rollback is not None:
            self._start_step(EXECUTION, self._roll_back)
            return
        now = time.time()
        expired = [path for path, deadline in self._deadlines.items() if deadline <= now]
        for leaf in sorted(self._active_leaves(), key=self._compiled.order.__getitem__):
            plan = self._plans[leaf]
            if any(paths.is_within(leaf, path) for path in expired):
                continue  # its time ran out while nothing ran: the timeout fires instead
            if leaf in self._outcomes:  # finished before the crash, not yet acted on
                outcome, failed = self._outcomes[leaf]
                self._start_step(leaf, self._deliver, plan, outcome, failed)
            elif plan.action is not None and leaf not in self._acted:
                attempt = self._attempts.get(leaf, 1)
                retry_at = self._retry_at.get(leaf)
                self._start_step(leaf, self._run_step, plan, attempt, retry_at)

    async def detach(self) -> None:
        """Store what this handle shows, then stop this process's work on the execution (the
        store is closing): it stays ``running`` in the database and resumes from there."""
        if self._write_failure is None:
            with contextlib.suppress(StoreError):  # then it stopped: _stop said so
                await self._flush()
        self._frozen = self._frozen or "detached: its store was closed"
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for step in self._steps.values():
            step.cancel()
        self._steps.clear()
        self._journal = None

    def __repr__(self) -> str:
        return (
            f"<Execution {self.id} {self.procedure}@{self.version} "
            f"{self.current} {self._status.value}>"
        )


async def start_execution(
    compiled: CompiledProcedure,
    execution_id: str,
    context: dict[str, Any],
    *,
    auto: bool = False,
    journal: Journal | None = None,
    running: dict[str, Execution] | None = None,
) -> Execution:
    """Create an execution and enter its initial configuration (completing at once if that is
    a terminal state); with a journal, it is stored before any of its actions runs."""
    execution = Execution(
        compiled, execution_id, context, auto=auto, journal=journal, running=running
    )
    async with execution._flush_lock:  # its steps wait for this before running anything
        async with execution._fire_lock:
            execution._enter_initial()
            await execution._drain()
        if journal is not None:
            end = len(execution._history)
            records = execution._history[:end]
            try:
                checkpoint = execution.checkpoint()
                await journal.create(execution._status.value, checkpoint, records)
            except BaseException:
                execution._halt()  # never stored: nothing of it may run
                if running is not None:
                    running.pop(execution_id, None)
                raise
            execution._flushed, execution._stored = end, checkpoint
    return execution


def restore_execution(
    compiled: CompiledProcedure,
    execution_id: str,
    snapshot: dict[str, Any],
    records: list[dict[str, Any]],
    *,
    journal: Journal | None,
    resume: bool,
    running: dict[str, Execution] | None = None,
) -> Execution:
    """Rebuild a stored execution; with ``resume``, an unfinished one carries on here."""
    execution = Execution(
        compiled,
        execution_id,
        snapshot["start_context"],
        auto=snapshot["auto"],
        journal=journal,
        running=running if resume else None,
    )
    execution._restore(snapshot, records)
    if resume and execution.status is Status.RUNNING:
        execution._resume()
    elif execution.status is Status.RUNNING:
        execution._frozen = "read-only: it was loaded from a read-only store"
    return execution
