"""The public handle on one execution, and how executions begin: started, or restored.

An execution moves through its procedure's shared machine (one per procedure version). Entering
a leaf state starts that state's action as a background step; ``error`` (after the last
attempt), ``timeout`` and ``done`` fire by themselves; other outcome events fire by themselves
only while the execution is driven (`Execution.run_to_completion` or ``auto=True``), otherwise
they wait for `Execution.send`. When an execution fails, the compensations of its completed
actions run newest first. What does the work lives in the other modules of this package (see
`procstore.runtime.run`); `Execution` is what a caller holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import procstore.runtime.hibernation as hibernation
import procstore.runtime.saga as saga
import procstore.runtime.steps as steps
import procstore.runtime.timers as timers
from procstore.compiler import RAISED_ONLY, CompiledProcedure
from procstore.errors import InvalidEvent, LeaseLost, StoreError
from procstore.eventdata import event_data
from procstore.runtime.hibernation import Sleeper
from procstore.runtime.items import Spawner
from procstore.runtime.journal import Journal
from procstore.runtime.resume import resume as carry_on
from procstore.runtime.run import Run
from procstore.runtime.state import RunState
from procstore.runtime.steps import EXECUTION
from procstore.snapshot import ErrorInfo, ExecutionState, HistoryRecord, RecordKind, Status

__all__ = [
    "Execution",
    "awaken",
    "drop",
    "hibernate",
    "is_busy",
    "is_parked",
    "restore_execution",
    "start_execution",
    "wind_down",
]


class Execution:
    """A handle on one execution. Create it with ``procstore.ProcedureStore.start``."""

    __slots__ = ("__weakref__", "_run", "id")

    def __init__(self, run: Run) -> None:
        self._run = run
        self.id = run.id
        run.handle = self
        if run.registry is not None:
            run.registry[run.id] = self

    # -- what it is -----------------------------------------------------------------------------

    @property
    def procedure(self) -> str:
        """The name of the procedure this execution runs."""
        return self._run.compiled.procedure.name

    @property
    def version(self) -> str:
        """The version of the procedure this execution runs."""
        return self._run.compiled.procedure.version

    @property
    def auto(self) -> bool:
        """Whether it drives itself (``start(..., auto=True)``)."""
        return self._run.state.auto

    @property
    def current(self) -> str:
        """The active leaf's path or, while parallel regions are active, the outermost active
        parallel state's path."""
        return self._run.router.current

    @property
    def active(self) -> list[str]:
        """The paths of every active leaf state, sorted."""
        return sorted(self._run.router.active_leaves())

    @property
    def status(self) -> Status:
        """The execution's status now."""
        return self._run.state.status

    @property
    def history(self) -> tuple[HistoryRecord, ...]:
        """Every history record so far, oldest first."""
        return self._run.history.models()

    @property
    def state(self) -> ExecutionState:
        """An immutable snapshot of the execution now."""
        return ExecutionState.model_construct(
            id=self.id,
            procedure=self.procedure,
            version=self.version,
            current=self.current,
            active=self.active,
            status=self.status,
            context=self._run.state.context_data(),
            history=self.history,
            error=_error_info(self._run.state.error),
        )

    @property
    def detached(self) -> bool:
        """Whether this handle no longer runs the execution: its store was closed, it was loaded
        from a read-only store, or a write to its store failed. The stored execution goes on
        from what was last stored through a new handle
        ([`get_execution`][procstore.ProcedureStore.get_execution] or
        [`recover`][procstore.ProcedureStore.recover])."""
        return self._run.frozen is not None

    async def watch(self) -> AsyncIterator[HistoryRecord]:
        """Yield every history record — those so far, then each new one as it happens — until
        the execution has finished.

        Raises:
            StoreError: a write to the store failed: the execution stopped here (see
                [`run_to_completion`][procstore.Execution.run_to_completion]).
        """
        run, seen = self._run, 0
        while True:
            records = run.history.models()
            for record in records[seen:]:
                yield record
            seen = len(records)
            if run.state.status is not Status.RUNNING and seen == len(run.history):
                return
            run.writer.raise_if_failed()
            await run.history.waiter()

    # -- moving it --------------------------------------------------------------------------------

    async def send(self, event: str, data: Any = None) -> bool:
        """Process ``event`` after earlier events and after the running actions of the states
        that handle it themselves (a wait state's wait is cut short instead). An event only an
        ancestor state handles is processed at once (leaving that state cancels what runs
        inside it). An event several parallel regions handle fires in each.

        ``data`` is what the event carries (JSON data, at most ``MAX_EVENT_DATA_BYTES`` of
        it): guards read it as ``event["data"]``, a transition's ``assign`` as
        ``$$.event.data``, and the history keeps it on the records of what the event did.

        Returns:
            True when a transition fired; False when the guards of every transition on
            ``event`` blocked it (the state is unchanged).

        Raises:
            InvalidEvent: no active state has a transition on ``event`` that a host may fire,
                or the execution has finished. ``done`` and ``timeout`` are only ever raised by
                procstore itself, and so is ``error`` on a compound or parallel state. Also
                when ``data`` is not JSON data or is too large.
        """
        return await self._send(event, None, data)

    async def _send(self, event: str, command: int | None, data: Any = None) -> bool:
        """``send``; with ``command``, as inbox command ``command`` (see
        `procstore.runtime.received`)."""
        run = self._run
        run.check_writable()
        hibernation.wake(run)
        data = event_data(data, event)
        if event in RAISED_ONLY:
            raise InvalidEvent(
                f"{event!r} is raised by procstore itself (when a compound or parallel state "
                "completes, or a state's timeout_ms runs out); it cannot be sent"
            )
        accepts, tasks = run.compiled.accepts_from_host, run.tasks
        async with run.sending():  # touched once released: it may be parked now
            while True:
                run.refuse_if_finished()
                leaves = run.router.active_leaves()
                own = [leaf for leaf in leaves if accepts(leaf, event)]
                if own:
                    # A map state's items may run for hours, and a wait state does no work to
                    # wait for: their own events fire at once (leaving a map cancels its items).
                    busy = [
                        t
                        for leaf in own
                        if (t := tasks.get(leaf))
                        and not run.plans[leaf].map
                        and not run.plans[leaf].wait
                    ]
                elif any(accepts(p, event) for p in run.state.active if p not in leaves):
                    busy = []
                else:
                    busy = list(tasks.values())
                    if not busy:
                        raise InvalidEvent(
                            f"no active state of {self.current!r} has a transition on {event!r} "
                            f"(they accept: {', '.join(self._sendable_events()) or 'nothing'})"
                        )
                if not busy:
                    break
                await steps.wait_for(busy)
            return await self._fire(event, external=True, command=command, data=data)

    def _sendable_events(self) -> list[str]:
        """The events ``send()`` accepts now, sorted."""
        run = self._run
        return sorted(
            {
                event
                for path in run.state.active
                for event in run.plans[path].events
                if run.compiled.accepts_from_host(path, event)
            }
        )

    async def _fire(
        self,
        event: str,
        origin: str | None = None,
        external: bool = False,
        command: int | None = None,
        data: Any = None,
    ) -> bool:
        run = self._run
        async with run.fire_lock:
            if external:
                # Checked again under the lock: a reset() or cancel() may have got in first.
                run.refuse_if_finished()
                if not any(run.compiled.accepts_from_host(p, event) for p in run.state.active):
                    raise InvalidEvent(f"no active state of {self.current!r} handles {event!r}")
                if command is not None:
                    extra = {"data": data} if data is not None else {}
                    run.receive(command, event=event, **extra)
            fired = await run.router.trigger(event, origin, external=external, data=data)
            await run.router.drain()
        if run.exited:
            await steps.settle_exited(run)
        if run.writer.journal is not None:
            await run.flush()
        return fired

    async def run_to_completion(self, timeout: float | None = None) -> ExecutionState:
        """Drive the execution until it finishes and return its final snapshot.

        While driven, every outcome event fires by itself.

        Raises:
            TimeoutError: it has not finished within ``timeout`` seconds (on the store's clock,
                like the execution's own timeouts). That only ends the wait: the execution
                stays as it is.
            StoreError: a write to the store failed (a full disk, say). The execution stopped
                in this process at once, without changing its status: the database keeps it as
                last stored, and [`recover`][procstore.ProcedureStore.recover] carries it on
                from there once writes work again.
        """
        run = self._run
        if run.state.status is Status.RUNNING:
            run.check_writable()
            hibernation.wake(run)
        run.drivers += 1
        try:
            async with _bound(run, timeout):
                async with run.send_lock:
                    for path, leaf in list(run.state.leaves.items()):
                        outcome, leaf.pending = leaf.pending, None
                        if outcome is not None and run.state.running and path in run.state.active:
                            await self._fire(outcome, path)
                await run.finished.wait()
                run.writer.raise_if_failed()
                final = self.state  # taken now: a reset() may run during the flush
                await run.flush()  # the end is stored before the caller hears of it
        finally:
            run.drivers -= 1
            run.touch()
        return final

    async def reset(self) -> None:
        """Cancel what runs and go back to the initial state with a fresh copy of the start
        context. The reset is recorded; the history is kept.

        A rollback in progress is never cut short: its remaining compensations run, and the
        rollback ends (and is stored) before the reset."""
        run = self._run
        run.check_writable()
        hibernation.wake(run)
        while run.state.closing and EXECUTION in run.tasks:
            await steps.wait_for([run.tasks[EXECUTION]])
        async with run.fire_lock:
            stopped = steps.halt(run)
            run.state.reset()
            if run.registry is not None:
                run.registry[self.id] = self
            run.finished.clear()
            run.log(RecordKind.RESET, state=run.compiled.initial_state)
            run.router.enter_initial()
            await run.router.drain()
        if stopped:
            await asyncio.wait(stopped)  # let the cancelled actions' cleanup run
        await run.flush()
        run.touch()

    async def cancel(self, rollback: bool = False) -> ExecutionState:
        """Cancel the running actions (their ``finally`` runs) and end the execution.

        The status becomes ``cancelled`` at once. With ``rollback=True`` the compensations of
        the completed actions then run, newest first, and the execution ends ``rolled_back``
        (``failed`` if a compensation fails; ``cancelled`` if there was nothing to undo).
        Cancelling a finished execution changes nothing.
        """
        return await self._cancel(rollback, None)

    async def _cancel(self, rollback: bool, command: int | None) -> ExecutionState:
        """``cancel``; with ``command``, as inbox command ``command`` (see
        `procstore.runtime.received`)."""
        run = self._run
        if not run.state.running:
            return self.state
        run.check_writable()
        hibernation.wake(run)
        async with run.fire_lock:
            stopped = steps.halt(run)
            if command is not None:
                run.receive(command, message="cancel with rollback" if rollback else "cancel")
            run.log(RecordKind.CANCELLED, state=self.current)
            if rollback and run.state.completed:
                saga.begin(run, "cancelled", Status.CANCELLED, stopped)
            else:
                run.finish(Status.CANCELLED)
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
        run = self._run
        if not run.state.running:
            raise InvalidEvent(f"execution {self.id} has finished; there is nothing to roll back")
        run.check_writable()
        hibernation.wake(run)
        async with run.fire_lock:
            stopped = steps.halt(run)
            saga.begin(run, "rollback requested", Status.FAILED, stopped)
        return await self._ended(stopped)

    async def _ended(self, stopped: list[asyncio.Task[None]]) -> ExecutionState:
        """After cancel() or rollback(): let the stopped actions clean up, wait for the
        compensations, store the outcome, return the final snapshot."""
        run = self._run
        await steps.let_clean_up(run, stopped)
        await steps.wait_for(list(run.tasks.values()))
        final = self.state  # taken now: a reset() waiting for this end may run during the flush
        await run.flush()
        run.touch()
        return final

    async def detach(self) -> None:
        """Store what this handle shows, then stop this process's work on the execution (the
        store is closing): it stays ``running`` in the database and resumes from there."""
        run = self._run
        if run.writer.failure is None:
            with contextlib.suppress(StoreError):  # then it stopped: the writer said so
                await run.flush()
        run.frozen = run.frozen or "detached: its store was closed"
        timers.cancel_all(run)
        for step in run.tasks.values():
            step.cancel()
        run.tasks.clear()
        run.writer.detach()

    def __repr__(self) -> str:
        return (
            f"<Execution {self.id} {self.procedure}@{self.version} "
            f"{self.current} {self.status.value}>"
        )


def _error_info(error: dict[str, str] | None) -> ErrorInfo | None:
    if error is None:
        return None
    return ErrorInfo.model_construct(type=error["type"], message=error["message"])


def wind_down(execution: Execution) -> None:
    """The store is stopping: no new action of ``execution`` starts (a step about to run one
    waits until the store detaches the execution); those running finish."""
    execution._run.winding_down = True


def hibernate(execution: Execution) -> float | None:
    """Park ``execution`` if it only waits (see `procstore.runtime.hibernation`): return
    its due time, or ``None`` (nothing done) when it is busy, driven, or not persisted."""
    run = execution._run
    if run.parked or not hibernation.parkable(run):
        return None
    return hibernation.park(run)


def awaken(execution: Execution) -> None:
    """Carry a parked ``execution`` on in place (a no-op for one that is not parked)."""
    hibernation.wake(execution._run)


def is_parked(execution: Execution) -> bool:
    """Whether ``execution`` is parked: nothing of it runs here until it is woken."""
    return execution._run.parked


def is_busy(execution: Execution) -> bool:
    """Whether ``execution`` is running an action, a transition or a commit now: detaching it
    would cut something short."""
    return execution._run.busy


def drop(execution: Execution, reason: LeaseLost) -> None:
    """Another worker holds ``execution`` now: stop it here at once, committing nothing more
    (see `Run.stop`); the handle is detached and says why."""
    execution._run.writer.fail(reason)


def _bound(run: Run, seconds: float | None) -> AbstractAsyncContextManager[Any]:
    """A timeout of ``seconds`` on the run's clock; no bound when ``seconds`` is None."""
    if seconds is None:
        return contextlib.nullcontext()
    return run.clock.timeout(seconds)


async def start_execution(
    compiled: CompiledProcedure,
    execution_id: str,
    context: dict[str, Any],
    *,
    auto: bool = False,
    journal: Journal | None = None,
    running: dict[str, Execution] | None = None,
    hold: bool = False,
    spawner: Spawner | None = None,
    sleeper: Sleeper | None = None,
) -> Execution:
    """Create an execution and enter its initial configuration (completing at once if that is
    a terminal state); with a journal, it is stored before any of its actions runs.

    With ``hold`` (a client's start, with a journal), it is stored and nothing of it runs
    here: the handle is frozen at its first snapshot, for whoever runs the store's executions
    to resume it from there."""
    fresh = RunState.fresh(context, auto)
    run = Run(compiled, execution_id, fresh, journal, running, spawner, sleeper)
    execution = Execution(run)
    async with run.writer.lock:  # its steps wait for this before running anything
        async with run.fire_lock:
            run.router.enter_initial()
            await run.router.drain()
        if journal is not None:
            try:
                await run.writer.create()
            except BaseException:
                steps.halt(run)  # never stored: nothing of it may run
                run.unregister()
                raise
        if hold:
            steps.halt(run)  # before its steps get the lock: none has started
            run.unregister()
            run.writer.detach()
            run.frozen = "held: it is stored for another process to run"
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
    frozen: str = "read-only: it was loaded from a read-only store",
    spawner: Spawner | None = None,
    sleeper: Sleeper | None = None,
) -> Execution:
    """Rebuild a stored execution; with ``resume``, an unfinished one carries on here;
    without, the handle of an unfinished one is ``frozen`` for that reason.

    Raises:
        ValueError, KeyError, TypeError: the stored checkpoint is damaged (nothing of it runs).
    """
    run = Run(compiled, execution_id, RunState.fresh({}, False), journal, None, spawner, sleeper)
    run.restore(snapshot, records)
    if resume and run.state.status is Status.RUNNING:
        run.registry = running
        execution = Execution(run)
        carry_on(run)
        run.touch()
        return execution
    execution = Execution(run)
    if run.state.status is Status.RUNNING:
        run.frozen = frozen
    return execution
