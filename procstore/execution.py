"""Executions: one run of a compiled procedure, moved by the procedure's shared machine.

An execution is the machine's *model*. Entering a state starts that state's action as a
background task (the *step*); the action's outcome becomes an event. ``error`` fires by itself;
other outcomes fire by themselves only while the execution is driven (``run_to_completion`` or
``auto=True``), otherwise they wait for :meth:`Execution.send`.

Ordering: external events queue on ``_send_lock`` (FIFO) and each waits until no step runs;
machine triggers are serialised by ``_fire_lock``, so transitions never overlap on one model —
which is why procstore needs neither transitions' ``queued`` mode nor its task cancellation.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python
from transitions.extensions.asyncio import AsyncMachine

from procstore.compiler import CompiledProcedure, StatePlan
from procstore.errors import InvalidEvent
from procstore.outcome import Event
from procstore.snapshot import ExecutionState, HistoryRecord, Status

SUCCESS = "success"
ERROR = "error"


def _to_model(record: dict[str, Any]) -> HistoryRecord:
    return HistoryRecord.model_validate({**record, "at": datetime.fromtimestamp(record["at"], UTC)})


def json_compatible(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (a copy); TypeError naming ``what`` when it has none."""
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(f"{what} is not JSON-compatible: {exc}") from None


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
        self._step: asyncio.Task[None] | None = None
        self._pending: str | None = None  # an outcome event waiting for a driver
        self._drivers = 0
        self._send_lock = asyncio.Lock()
        self._fire_lock = asyncio.Lock()
        self._finished = asyncio.Event()
        self._watchers: list[asyncio.Future[None]] = []  # woken by each new history record

    # -- public API ---------------------------------------------------------------------

    @property
    def procedure(self) -> str:
        return self._compiled.procedure.name

    @property
    def version(self) -> str:
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
    def history(self) -> tuple[HistoryRecord, ...]:
        """Every history record so far, oldest first."""
        converted = self._history_models
        converted.extend(_to_model(r) for r in self._history[len(converted) :])
        return tuple(converted)

    @property
    def status(self) -> Status:
        return self._status

    async def watch(self) -> AsyncIterator[HistoryRecord]:
        """Yield every history record — those so far, then each new one as it happens — until
        the execution has finished (or been reset to run again: watching continues)."""
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

        Returns True when a transition fired. Raises :class:`InvalidEvent` when the current
        state has no transition on ``event`` or the execution has finished.
        """
        async with self._send_lock:
            await self._settle()
            if self._status is not Status.RUNNING:
                raise InvalidEvent(
                    f"execution {self.id} is {self._status.value}; it accepts no events"
                )
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
            step, self._step = self._step, None
            if step is not None:
                step.cancel()
            self._context = copy.deepcopy(self._start_context)
            self._status = Status.RUNNING
            self._pending = None
            self._finished.clear()
            initial = self._compiled.initial_state
            self._log("reset", state=initial)
            self._enter(initial, None)
        if step is not None:
            await asyncio.wait([step])  # let the cancelled action's cleanup run

    def begin(self) -> None:
        """Enter the initial state (``add_model`` would not run its ``on_enter``)."""
        self._enter(self._compiled.initial_state, None)

    # -- machine callbacks ------------------------------------------------------------------

    def on_state_entered(self, state: str, event: str, source: str) -> None:
        self._log("transition", event=event, state=source, target=state)
        self._enter(state, event)

    # -- internals ------------------------------------------------------------------------------

    @property
    def _driven(self) -> bool:
        return self.auto or self._drivers > 0

    def _enter(self, state: str, event: str | None) -> None:
        self.fsm_state = state
        self._log("entered", state=state, event=event)
        plan = self._compiled.states[state]
        if plan.action is not None:
            self._step = asyncio.get_running_loop().create_task(self._run_step(plan))
        elif plan.terminal:
            self._finish(Status.FAILED if plan.failure else Status.COMPLETED)

    async def _settle(self) -> None:
        """Wait until no action runs (a finished step may have started the next one)."""
        while (step := self._step) is not None:
            if not step.done():
                try:
                    # shield: a waiter that gives up (a timeout) must not cancel the action.
                    await asyncio.shield(step)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # we are being cancelled, not just the step (by reset/cancel)
            if self._step is step:  # it ended without handing over
                self._step = None

    async def _run_step(self, plan: StatePlan) -> None:
        # This task was created inside a machine callback and inherited transitions' "current
        # task" context; without resetting it, its triggers would count as nested ones.
        AsyncMachine.current_context.set(None)
        try:
            outcome, failed = await self._attempt(plan, 1)
            if plan.terminal:
                self._finish(Status.FAILED if plan.failure or failed else Status.COMPLETED)
            elif failed:
                if self._compiled.accepts(plan.name, ERROR):
                    await self._fire(ERROR)
                else:
                    self._finish(Status.FAILED)
            elif not self._compiled.accepts(plan.name, outcome):
                self._log("ignored", state=plan.name, event=outcome)
            elif self._driven:
                await self._fire(outcome)
            else:
                self._pending = outcome
        finally:
            # Entering the next state replaced the step; otherwise no action runs any more.
            if self._step is asyncio.current_task():
                self._step = None

    async def _attempt(self, plan: StatePlan, attempt: int) -> tuple[str, bool]:
        """Run one attempt of ``plan``'s action; return its outcome event and whether it failed."""
        action = plan.action
        assert action is not None
        try:
            value = await action.invoke(self._context)
            if isinstance(value, Event):
                outcome, value = value.name, value.name
            else:
                outcome = SUCCESS
            if action.result_key is not None:
                # It goes into the context, which must stay plain data (snapshots, storage).
                value = json_compatible(value, f"the result stored as {action.result_key!r}")
            else:  # only recorded in the history: a readable stand-in will do
                value = to_jsonable_python(value, fallback=repr)
        except Exception as exc:  # an action's failure is data: the `error` event
            self._log(
                "action",
                state=plan.name,
                attempt=attempt,
                error={"type": type(exc).__name__, "message": str(exc)},
            )
            return ERROR, True
        if action.result_key is not None:
            self._context[action.result_key] = value
        if action.log_message is not None:
            self._log("log", state=plan.name, message=action.log_message)
        self._log("action", state=plan.name, attempt=attempt, result=value)
        return outcome, False

    async def _fire(self, event: str) -> bool:
        async with self._fire_lock:
            return await self._compiled.fire(self, event)

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
        self._status = status
        self._log("finished", state=self.fsm_state, status=status)
        self._finished.set()

    def __repr__(self) -> str:
        return (
            f"<Execution {self.id} {self.procedure}@{self.version} "
            f"{self.fsm_state} {self._status.value}>"
        )
