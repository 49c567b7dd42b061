"""Executions: one run of a compiled procedure, moved by the procedure's shared machine.

An execution is the machine's *model*. Entering a state starts that state's action as a
background task (the *step*): its attempts, retry delays and outcome. ``error`` (after the last
attempt) and ``timeout`` fire by themselves; other outcomes fire by themselves only while the
execution is driven (``run_to_completion`` or ``auto=True``), otherwise they wait for
:meth:`Execution.send`. When an execution fails, the compensations of its completed actions run
newest first (a saga rollback).

Ordering: external events queue on ``_send_lock`` (FIFO) and each waits until no step runs;
machine triggers are serialised by ``_fire_lock``, so transitions never overlap on one model —
which is why procstore needs neither transitions' ``queued`` mode nor its task cancellation.
Everything an execution runs in the background is its one ``_step`` task or its one state
timer, so stopping an execution is cancelling those two.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import random
import time
from collections import ChainMap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python
from transitions.extensions.asyncio import AsyncMachine

from procstore.compiler import CompiledAction, CompiledProcedure, Guard, StatePlan
from procstore.definition import RetryPolicy
from procstore.errors import InvalidEvent, Timeout
from procstore.outcome import Event
from procstore.snapshot import ExecutionState, HistoryRecord, Status

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
#: How long cancel() waits for a cancelled action's cleanup (its ``finally``) to finish.
CANCEL_GRACE_SECONDS = 1.0


def _to_model(record: dict[str, Any]) -> HistoryRecord:
    return HistoryRecord.model_validate({**record, "at": datetime.fromtimestamp(record["at"], UTC)})


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def json_compatible(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (a copy); TypeError naming ``what`` when it has none."""
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(f"{what} is not JSON-compatible: {exc}") from None


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
    """A handle on one execution. Create it with :meth:`procstore.ProcedureStore.start`."""

    fsm_state: str  # set by the machine (see procstore.compiler.MODEL_ATTRIBUTE)

    def __init__(
        self,
        compiled: CompiledProcedure,
        execution_id: str,
        context: dict[str, Any],
        *,
        auto: bool = False,
    ) -> None:
        self._compiled = compiled
        self.id = execution_id
        self.auto = auto
        self._start_context = context
        self._context: dict[str, Any] = copy.deepcopy(context)
        self._history: list[dict[str, Any]] = []
        self._history_models: list[HistoryRecord] = []  # _history converted so far
        self._status = Status.RUNNING
        self._closing = False  # failing, rolling back or cancelled: no more events
        self._step: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the current state's timeout
        self._entry = 0  # counts state entries: a timer or step of an older entry is stale
        self._last_result: Any = None  # the current state's last action result
        self._completed: list[StatePlan] = []  # completed actions to compensate, oldest first
        self._pending: str | None = None  # an outcome event waiting for a driver
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
    def state(self) -> ExecutionState:
        """An immutable snapshot of the execution now."""
        return ExecutionState.model_construct(
            id=self.id,
            procedure=self.procedure,
            version=self.version,
            current=self.fsm_state,
            status=self._status,
            context=to_jsonable_python(self._context, fallback=repr),
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
        the execution has finished."""
        seen = 0
        while True:
            records = self.history
            for record in records[seen:]:
                yield record
            seen = len(records)
            if self._status is not Status.RUNNING and seen == len(self._history):
                return
            waiter = asyncio.get_running_loop().create_future()
            self._watchers.append(waiter)
            await waiter

    async def send(self, event: str) -> bool:
        """Process ``event``, after any running action and any earlier event.

        Returns True when a transition fired, False when the guards of every transition on
        ``event`` blocked it (the state is unchanged). Raises :class:`InvalidEvent` when the
        current state has no transition on ``event`` or the execution has finished.
        """
        async with self._send_lock:
            await self._settle()
            if self._status is not Status.RUNNING or self._closing:
                raise InvalidEvent(f"execution {self.id} has finished; it accepts no events")
            if not self._compiled.accepts(self.fsm_state, event):
                accepted = ", ".join(sorted(self._compiled.states[self.fsm_state].events))
                raise InvalidEvent(
                    f"state {self.fsm_state!r} has no transition on {event!r} "
                    f"(it accepts: {accepted or 'nothing'})"
                )
            self._pending = None
            return await self._fire(event)

    async def run_to_completion(self, timeout: float | None = None) -> ExecutionState:
        """Drive the execution until it finishes and return its final snapshot.

        While driven, every outcome event fires by itself. Raises :class:`TimeoutError` when it
        has not finished within ``timeout`` seconds; that only ends the wait — the execution
        stays as it is.
        """
        self._drivers += 1
        try:
            async with asyncio.timeout(timeout):
                async with self._send_lock:
                    await self._settle()
                    pending, self._pending = self._pending, None
                    if pending is not None and self._status is Status.RUNNING:
                        await self._fire(pending)
                await self._finished.wait()
        finally:
            self._drivers -= 1
        return self.state

    async def reset(self) -> None:
        """Cancel what runs and go back to the initial state with a fresh copy of the start
        context. The reset is recorded; the history is kept."""
        async with self._fire_lock:
            step = self._halt()
            self._context = copy.deepcopy(self._start_context)
            self._status = Status.RUNNING
            self._closing = False
            self._completed.clear()
            self._pending = None
            self._finished.clear()
            initial = self._compiled.initial_state
            self._log("reset", state=initial)
            self._enter(initial, None)
        if step is not None:
            await asyncio.wait([step])  # let the cancelled action's cleanup run

    async def cancel(self, rollback: bool = False) -> ExecutionState:
        """Cancel the running action (its ``finally`` runs) and end the execution.

        The status becomes ``cancelled`` at once. With ``rollback=True`` the compensations of
        the completed actions then run, newest first, and the execution ends ``rolled_back``
        (``failed`` if a compensation fails; ``cancelled`` if there was nothing to undo).
        Cancelling a finished execution changes nothing.
        """
        if self._status is not Status.RUNNING or self._closing:
            return self.state
        async with self._fire_lock:
            step = self._halt()
            self._log("cancelled", state=self.fsm_state)
            if rollback and self._completed:
                self._start_step(self._roll_back, "cancelled", Status.CANCELLED)
            else:
                self._finish(Status.CANCELLED)
        if step is not None:
            await asyncio.wait([step], timeout=CANCEL_GRACE_SECONDS)
        await self._settle()
        return self.state

    async def rollback(self) -> ExecutionState:
        """Fail the execution on purpose: cancel what runs, then compensate every completed
        action, newest first. Ends ``rolled_back``, or ``failed`` if a compensation fails or
        there was nothing to compensate."""
        if self._status is not Status.RUNNING or self._closing:
            raise InvalidEvent(f"execution {self.id} has finished; there is nothing to roll back")
        async with self._fire_lock:
            step = self._halt()
            self._start_step(self._roll_back, "rollback requested", Status.FAILED)
        if step is not None:
            await asyncio.wait([step], timeout=CANCEL_GRACE_SECONDS)
        await self._settle()
        return self.state

    def begin(self) -> None:
        """Enter the initial state (``add_model`` would not run its ``on_enter``)."""
        self._enter(self._compiled.initial_state, None)

    # -- machine callbacks ------------------------------------------------------------------

    def on_state_entered(self, state: str, event: str, source: str) -> None:
        self._log("transition", event=event, state=source, target=state)
        self._enter(state, event)

    def check_guard(self, guard: Guard, event: str) -> bool | Awaitable[bool]:
        argument = (
            self._context
            if guard.uses_context
            else ChainMap({"result": self._last_result}, self._context)
        )
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

    def _enter(self, state: str, event: str | None) -> None:
        self._cancel_timer()
        self._entry += 1
        self.fsm_state = state
        self._last_result = None
        self._log("entered", state=state, event=event)
        plan = self._compiled.states[state]
        if plan.timeout_s is not None:
            self._timer = asyncio.get_running_loop().call_later(
                plan.timeout_s, self._on_state_timeout, self._entry
            )
        if plan.action is not None:
            self._start_step(self._run_step, plan)
        elif plan.terminal:
            if plan.failure:
                self._start_step(self._fail)
            else:
                self._finish(Status.COMPLETED)

    def _start_step(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        # The coroutine is created inside the task, so a step cancelled before it starts
        # leaves no never-awaited coroutine behind.
        self._step = asyncio.get_running_loop().create_task(self._as_step(work, *args))

    async def _as_step(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        # Steps are created inside machine callbacks and inherit transitions' "current task"
        # context; without resetting it, their triggers would count as nested ones.
        AsyncMachine.current_context.set(None)
        try:
            await work(*args)
        finally:
            # Entering the next state replaced the step; otherwise nothing runs any more.
            if self._step is asyncio.current_task():
                self._step = None

    def _halt(self) -> asyncio.Task[None] | None:
        """Stop the state's timer and cancel the running step; return the step to wait for."""
        self._cancel_timer()
        self._entry += 1
        step, self._step = self._step, None
        if step is None or step is asyncio.current_task() or step.done():
            return None
        step.cancel()
        return step

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _settle(self) -> None:
        """Wait until no step runs (a finished step may have started the next one)."""
        while (step := self._step) is not None:
            if step is asyncio.current_task():
                return
            if not step.done():
                try:
                    # shield: a waiter that gives up (a timeout) must not cancel the action.
                    await asyncio.shield(step)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # we are being cancelled, not just the step
            if self._step is step:  # it ended without handing over
                self._step = None

    async def _run_step(self, plan: StatePlan) -> None:
        outcome, failed = await self._run_action(plan)
        if plan.terminal:
            if plan.failure or failed:
                await self._fail()
            else:
                self._finish(Status.COMPLETED)
        elif failed:
            if not (self._compiled.accepts(plan.name, ERROR) and await self._fire(ERROR)):
                await self._fail()
        elif not self._compiled.accepts(plan.name, outcome):
            self._log("ignored", state=plan.name, event=outcome)
        elif self._driven:
            await self._fire(outcome)
        else:
            self._pending = outcome

    async def _run_action(self, plan: StatePlan) -> tuple[str, bool]:
        """Run ``plan``'s action with its retry policy; return the outcome and whether it
        failed for good."""
        action = plan.action
        assert action is not None
        attempt = 1
        while True:
            try:
                outcome, value = await self._invoke(action)
            except Exception as exc:  # an action's failure is data: the `error` event
                self._log("action", state=plan.name, attempt=attempt, error=_error(exc))
                policy = plan.retry
                if policy is None or attempt >= policy.max_attempts:
                    return ERROR, True
                if not is_retryable(policy, exc):
                    return ERROR, True
                delay_ms = retry_delay_ms(policy, attempt)
                attempt += 1
                self._log("retry", state=plan.name, attempt=attempt, delay_ms=delay_ms)
                await asyncio.sleep(delay_ms / 1000)
                continue
            self._last_result = value
            self._log("action", state=plan.name, attempt=attempt, result=value)
            if plan.compensate is not None:
                self._completed.append(plan)
            return outcome, False

    async def _invoke(self, action: CompiledAction) -> tuple[str, Any]:
        """One attempt: await the action within its timeout, store its result; return the
        outcome event and the result as recorded."""
        if action.timeout_s is None:
            value = await action.invoke(self._context)
        else:
            try:
                async with asyncio.timeout(action.timeout_s) as scope:
                    value = await action.invoke(self._context)
            except TimeoutError:
                if not scope.expired():
                    raise  # the action's own TimeoutError, not our bound
                raise Timeout(f"attempt took longer than {action.timeout_s * 1000:g} ms") from None
        outcome = SUCCESS
        if isinstance(value, Event):
            outcome = value = value.name
        if action.result_key is not None:
            # It goes into the context, which must stay plain data (snapshots, storage).
            value = json_compatible(value, f"the result stored as {action.result_key!r}")
            self._context[action.result_key] = value
        else:  # only recorded in the history: a readable stand-in will do
            value = to_jsonable_python(value, fallback=repr)
        if action.log_message is not None:
            self._log("log", state=self.fsm_state, message=action.log_message)
        return outcome, value

    async def _fire(self, event: str) -> bool:
        async with self._fire_lock:
            fired = await self._compiled.fire(self, event)
        if not fired:
            self._log("blocked", state=self.fsm_state, event=event)
        return fired

    def _on_state_timeout(self, entry: int) -> None:
        if entry != self._entry or self._status is not Status.RUNNING or self._closing:
            return
        self._timer = None
        step = self._halt()
        self._start_step(self._expire, step, self._entry)

    async def _expire(self, interrupted: asyncio.Task[None] | None, entry: int) -> None:
        if interrupted is not None:
            await asyncio.wait([interrupted])
        state = self.fsm_state
        self._log("timeout", state=state)
        for event in (TIMEOUT, ERROR):
            accepted = entry == self._entry and self._compiled.accepts(state, event)
            if accepted and await self._fire(event):
                return
        if entry == self._entry:
            await self._fail()

    async def _fail(self) -> None:
        """The execution failed: compensate what completed, or end ``failed``."""
        if self._completed:
            await self._roll_back("failed", Status.FAILED)
        else:
            self._finish(Status.FAILED)

    async def _roll_back(self, reason: str, nothing_to_undo: Status) -> None:
        """Run the compensation of every completed action, newest first, each once."""
        self._closing = True
        if not self._completed:
            self._finish(nothing_to_undo)
            return
        self._log("rollback", state=self.fsm_state, message=reason)
        all_ok = True
        while self._completed:
            plan = self._completed[-1]
            compensation = plan.compensate
            assert compensation is not None
            try:
                _, value = await self._invoke(compensation)
            except Exception as exc:  # the rest still run; the execution ends failed
                all_ok = False
                self._log("compensation", state=plan.name, error=_error(exc))
            else:
                self._log("compensation", state=plan.name, result=value)
            self._completed.pop()  # only once it ran: an interrupted one runs again
        self._finish(Status.ROLLED_BACK if all_ok else Status.FAILED)

    def _guard_failed(self, guard: Guard, event: str, exc: Exception) -> bool:
        self._log(
            "guard_error", state=self.fsm_state, event=event, message=guard.label, error=_error(exc)
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
        self._cancel_timer()
        self._closing = False
        self._status = status
        self._log("finished", state=self.fsm_state, status=status)
        self._finished.set()

    def __repr__(self) -> str:
        return (
            f"<Execution {self.id} {self.procedure}@{self.version} "
            f"{self.fsm_state} {self._status.value}>"
        )
