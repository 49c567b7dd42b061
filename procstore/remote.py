"""Clients: a store opened with ``worker=False`` runs nothing. It starts executions for whoever
runs the store's executions (the *runner*, in another process), queues events and cancels in
the store's inbox for it, and reads what it committed, through `RemoteExecution` handles.

The runner applies each queued command exactly once, in the order the commands of an execution
were committed (see ``procstore.inbox``); a client's handle only ever shows what is committed.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from procstore.clock import Clock
from procstore.compiler import RAISED_ONLY, CompiledProcedure
from procstore.errors import ExecutionDamaged, ExecutionNotFound, InvalidEvent
from procstore.eventdata import event_data
from procstore.handles import StoreJournal
from procstore.registry import ProcedureRegistry
from procstore.runtime import callbacks, restore_execution, start_execution
from procstore.snapshot import ExecutionState, HistoryRecord, Status
from procstore.storage import QUARANTINED, Backend, StoredExecution
from procstore.storage.base import CANCEL, EVENT

__all__ = ["SAFETY_READ_S", "Client", "RemoteExecution"]

SAFETY_READ_S: Final = 5.0
"""Longest time ``RemoteExecution.run_to_completion`` waits without reading the execution
again: it reads when the store notices a change (see ``Backend.wait_for_change``), and this
bounds the wait should a notification be lost with a connection."""


class Client:
    """What a client store does with executions (see the module's docstring).

    Args:
        backend: The store's open backend.
        registry: The store's procedure versions (others registered meanwhile are loaded
            when a stored execution needs one).
        clock: The store's clock (``run_to_completion``'s timeout runs on it).
        where: How messages name the store (`` in <file>``).
    """

    def __init__(
        self, backend: Backend, registry: ProcedureRegistry, clock: Clock, where: str
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.clock = clock
        self.where = where

    async def start(
        self, compiled: CompiledProcedure, context: dict[str, Any], auto: bool
    ) -> RemoteExecution:
        """Create an execution of ``compiled`` with its initial configuration entered, and a
        start command for the runner, in one transaction; run nothing of it here."""
        procedure = compiled.procedure
        execution_id = uuid.uuid4().hex
        journal = StoreJournal(
            self.backend, execution_id, procedure.name, procedure.version, announce=True
        )
        held = await start_execution(
            compiled, execution_id, context, auto=auto, journal=journal, hold=True
        )
        return RemoteExecution(self, held.state, compiled)

    async def get(self, execution_id: str) -> RemoteExecution:
        """A handle on a stored execution.

        Raises:
            ExecutionNotFound: no execution has that id.
            ExecutionDamaged: it is quarantined, or what is stored cannot be read.
        """
        stored = await self.load(execution_id)
        compiled = await self.compiled(stored)
        return RemoteExecution(self, _snapshot(stored, compiled), compiled)

    async def load(self, execution_id: str) -> StoredExecution:
        """The stored execution (see ``get`` for what it raises)."""
        stored = await self.backend.load_execution(execution_id)
        if stored is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}{self.where}")
        if stored.status == QUARANTINED:
            reason = stored.reason or "no reason was stored"
            raise ExecutionDamaged(execution_id, reason, quarantined=True)
        if stored.reason is not None:
            raise ExecutionDamaged(execution_id, stored.reason)
        return stored

    async def callback(self, token: str, payload: dict[str, Any]) -> None:
        """Queue the completion of callback ``token`` (``payload``: see ``EVENT``) for the
        runner, if its execution is unfinished as committed now.

        Raises:
            InvalidEvent: ``token`` is not a callback token, or its execution has finished.
            ExecutionNotFound: no execution has the id it names.
        """
        stored = await self.load(callbacks.execution_of(token))
        if stored.status != Status.RUNNING:
            raise InvalidEvent(f"execution {stored.id} has finished; it accepts no callbacks")
        await self.backend.post_command(stored.id, EVENT, {**payload, "token": token})

    async def compiled(self, stored: StoredExecution) -> CompiledProcedure:
        """The procedure version ``stored`` runs, loaded from the database if another process
        registered it after this store opened."""
        registry = self.registry
        if registry.cannot_run(stored.procedure, stored.version) is not None:
            registry.load(await self.backend.load_procedures())
        reason = registry.cannot_run(stored.procedure, stored.version)
        if reason is not None:
            raise ExecutionDamaged(stored.id, reason)
        return registry.compiled(stored.procedure, stored.version)


def _snapshot(stored: StoredExecution, compiled: CompiledProcedure) -> ExecutionState:
    """The snapshot of what is committed of ``stored``.

    Raises:
        ExecutionDamaged: its stored checkpoint cannot be read.
    """
    try:
        execution = restore_execution(
            compiled, stored.id, stored.snapshot, stored.records, journal=None, resume=False
        )
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"its stored state cannot be read ({type(exc).__name__}: {exc})"
        raise ExecutionDamaged(stored.id, reason) from None
    return execution.state


class RemoteExecution:
    """A client's handle on one execution that another process runs (get one from a store
    opened with ``worker=False``: its ``start`` or ``get_execution``).

    It shows the execution as last committed (`state`, read again by `refresh`), and moves it
    by queueing commands in the store's inbox, which the process that runs the execution
    applies exactly once, in the order they were committed. Unlike an
    [`Execution`][procstore.Execution]'s, its `send` returns once the event is queued, not once
    it is handled (what it did shows in the history after a `received` record), and
    `run_to_completion` waits for the execution's end without driving it: an execution
    started with ``auto=False`` takes its outcome events from `send`.
    """

    __slots__ = ("_client", "_compiled", "_state", "id")

    def __init__(self, client: Client, state: ExecutionState, compiled: CompiledProcedure) -> None:
        self._client = client
        self._compiled = compiled
        self._state = state
        self.id = state.id

    @property
    def procedure(self) -> str:
        """The name of the procedure this execution runs."""
        return self._state.procedure

    @property
    def version(self) -> str:
        """The version of the procedure this execution runs."""
        return self._state.version

    @property
    def state(self) -> ExecutionState:
        """The execution as last read: what was committed then."""
        return self._state

    @property
    def status(self) -> Status:
        """Its status as last read."""
        return self._state.status

    @property
    def current(self) -> str:
        """Its current state as last read (see ``Execution.current``)."""
        return self._state.current

    @property
    def active(self) -> list[str]:
        """Its active leaf states as last read, sorted."""
        return list(self._state.active)

    @property
    def history(self) -> tuple[HistoryRecord, ...]:
        """Its history as last read, oldest first."""
        return self._state.history

    async def refresh(self) -> ExecutionState:
        """Read what is committed now, and return it (also as `state`).

        Raises:
            ExecutionDamaged: it was quarantined, or what is stored cannot be read.
        """
        stored = await self._client.load(self.id)
        self._state = _snapshot(stored, self._compiled)
        return self._state

    async def send(self, event: str, data: Any = None) -> None:
        """Queue ``event``, carrying ``data`` (JSON data, as for ``Execution.send``), for the
        execution; return once it is committed to the inbox, data included.

        The process that runs the execution handles it as ``Execution.send`` would, once
        (whatever crashes in between), after the events queued before it. Whether it fired a
        transition or was refused shows in the history, in the ``received`` record and those
        after it.

        Raises:
            InvalidEvent: the execution has finished (as committed now), no state of its
                procedure accepts ``event`` from a host (a typo, say), or ``event`` is one
                procstore raises itself (``done``, ``timeout``); or ``data`` is not JSON data
                or is larger than ``MAX_EVENT_DATA_BYTES``.
        """
        self._check_event(event)
        payload: dict[str, Any] = {"event": event}
        if data is not None:
            payload["data"] = event_data(data, event)
        finished = InvalidEvent(f"execution {self.id} has finished; it accepts no events")
        await self._post(EVENT, payload, finished)

    async def cancel(self, rollback: bool = False) -> None:
        """Queue a cancel for the execution (with ``rollback``, its completed actions are
        compensated, newest first, as ``Execution.cancel`` does); return once it is
        committed to the inbox. Cancelling a finished execution changes nothing."""
        await self._post(CANCEL, {"rollback": rollback}, None)

    async def run_to_completion(self, timeout: float | None = None) -> ExecutionState:
        """Wait until the execution has finished, wherever it runs, and return its final
        snapshot. It waits for the store to notice a change (no polling loop where the
        backend notifies), and never drives the execution.

        Raises:
            TimeoutError: it has not finished within ``timeout`` seconds (on the store's
                clock). That only ends the wait.
            ExecutionDamaged: it was quarantined.
        """
        backend = self._client.backend
        if timeout is None:
            return await self._until_finished(backend)
        async with self._client.clock.timeout(timeout):
            return await self._until_finished(backend)

    async def _until_finished(self, backend: Backend) -> ExecutionState:
        marker = await backend.wait_for_change(0)
        while (await self.refresh()).status is Status.RUNNING:
            marker = await backend.wait_for_change(SAFETY_READ_S, since=marker)
        return self._state

    def _check_event(self, event: str) -> None:
        """Refuse at once an event the execution can never take from a host."""
        if event in RAISED_ONLY:
            raise InvalidEvent(
                f"{event!r} is raised by procstore itself (when a compound or parallel state "
                "completes, or a state's timeout_ms runs out); it cannot be sent"
            )
        compiled = self._compiled
        accepted = sorted(
            {
                e
                for path, plan in compiled.states.items()
                for e in plan.events
                if compiled.accepts_from_host(path, e)
            }
        )
        if event not in accepted:
            raise InvalidEvent(
                f"no state of {self.procedure}@{self.version} has a transition on {event!r} "
                f"(they accept: {', '.join(accepted) or 'nothing'})"
            )

    async def _post(self, kind: str, payload: dict[str, Any], finished: Exception | None) -> None:
        """Queue a command if the execution is unfinished as committed now; otherwise raise
        ``finished`` (or do nothing when it is ``None``)."""
        stored = await self._client.load(self.id)
        if stored.status == Status.RUNNING:
            await self._client.backend.post_command(self.id, kind, payload)
            return
        self._state = _snapshot(stored, self._compiled)
        if finished is not None:
            raise finished

    def __repr__(self) -> str:
        return (
            f"<RemoteExecution {self.id} {self.procedure}@{self.version} "
            f"{self.current} {self.status.value}>"
        )
