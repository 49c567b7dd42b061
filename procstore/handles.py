"""A store's executions as this process holds them: ``Handles`` on the live ones, the journal a
persisted one writes through (``StoreJournal``), the summary of a stored row, restoring a
stored execution as a handle, or quarantining, with a one-line reason, one that cannot be
restored, and adopting one a client started or sent a command to (``Handles.adopt``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from procstore.clock import Clock
from procstore.definition import Procedure
from procstore.errors import ExecutionDamaged, ExecutionNotFound
from procstore.reasons import one_line
from procstore.registry import ProcedureRegistry
from procstore.runtime import (
    Execution,
    awaken,
    is_busy,
    is_parked,
    restore_execution,
    wind_down,
)
from procstore.runtime.hibernation import Sleeper
from procstore.runtime.items import Spawner
from procstore.snapshot import ExecutionSummary, Status
from procstore.storage import QUARANTINED, RUNNING, Backend, StoredExecution
from procstore.storage import ExecutionSummary as StoredSummary
from procstore.storage.values import paused_collector

__all__ = ["WIND_DOWN_POLL_S", "Handles", "StoreJournal", "journal_for", "summary"]

logger = logging.getLogger("procstore")

WIND_DOWN_POLL_S = 0.01
"""How often a store that winds down (``close(grace=...)``) looks whether its executions are
still busy: it waits for actions of any length, so a short poll costs nothing noticeable."""

_STATUSES = frozenset(status.value for status in Status)


class StoreJournal:
    """An execution's place in a backend (see ``procstore.runtime.Journal``)."""

    def __init__(
        self,
        backend: Backend,
        execution_id: str,
        procedure: str,
        version: str,
        *,
        announce: bool = False,
    ) -> None:
        self._backend = backend
        self._id = execution_id
        self._procedure = procedure
        self._version = version
        self._announce = announce  # created by a client: post a start command with it
        self._discarded = False

    def discard(self) -> None:
        """Write nothing more: the execution this journal was given to failed to restore."""
        self._discarded = True

    async def create(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        await self._backend.create_execution(
            self._id,
            self._procedure,
            self._version,
            status,
            snapshot,
            records,
            announce=self._announce,
        )

    def commit(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> Awaitable[None]:
        """The backend's commit as it returns it (SQLite's is queued now: see
        ``procstore.runtime.Journal.commit``)."""
        if self._discarded:
            return asyncio.sleep(0)
        return self._backend.commit(self._id, status, snapshot, records)


def journal_for(backend: Backend, execution_id: str, procedure: Procedure) -> StoreJournal | None:
    """Where a new execution of ``procedure`` is written: ``backend``, or nowhere (``None``)
    when it is not persistent (see ``Backend.persistent``), so that an in-memory execution
    commits nothing per step."""
    if not backend.persistent:
        return None
    return StoreJournal(backend, execution_id, procedure.name, procedure.version)


def summary(row: StoredSummary) -> ExecutionSummary:
    """The summary of a stored execution; one whose status this procstore does not know is
    listed as quarantined, saying so."""
    known = row.status in _STATUSES
    return ExecutionSummary(
        id=row.id,
        procedure=row.procedure,
        version=row.version,
        status=Status(row.status) if known else Status.QUARANTINED,
        created_at=row.created_at,
        updated_at=row.updated_at,
        reason=row.reason if known else _unknown_status(row.status),
    )


class Handles:
    """This process's handles on one store's executions.

    Unfinished executions are kept alive in ``running`` (the runtime adds and removes them);
    finished ones belong to whoever holds their handle and are only tracked while referenced,
    so memory does not grow with finished executions nobody references.

    Args:
        registry: The store's procedure versions, which executions are restored on.
        where: What log messages call the store's storage (its database file).
    """

    def __init__(self, registry: ProcedureRegistry, where: str) -> None:
        self._registry = registry
        self._where = where
        self.running: dict[str, Execution] = {}
        self._tracked: weakref.WeakValueDictionary[str, Execution] = weakref.WeakValueDictionary()
        self._declined: set[str] = set()  # not adopted for want of host code (warned once)
        self.spawner: Spawner | None = None  # how map states start their items (the store's)
        self.sleeper: Sleeper | None = None  # what parks idle executions (the store's)

    def __len__(self) -> int:
        """How many executions are tracked (alive, or referenced by someone)."""
        return len(self._tracked)

    def live(self, execution_id: str) -> Execution | None:
        """This process's handle on an execution, woken if it was parked, unless it is
        detached (a failed write stopped it, say): then the stored execution is loaded anew."""
        live = self._tracked.get(execution_id)
        if live is None or live.detached:
            return None
        awaken(live)
        return live

    def tracked(self, execution_id: str) -> Execution | None:
        """This process's handle on an execution as it is (parked or not, detached or not),
        if anybody still references it."""
        return self._tracked.get(execution_id)

    def track(self, execution: Execution) -> None:
        """Track a handle this store started."""
        self._tracked[execution.id] = execution

    async def restore(
        self,
        backend: Backend,
        stored: StoredExecution,
        *,
        resume: bool,
        frozen: str = "read-only: it was loaded from a read-only store",
    ) -> Execution:
        """A handle on a stored execution (with ``resume``, an unfinished one carries on here;
        without, the handle of an unfinished one is ``frozen`` for that reason).

        Procedure versions another process registered since this store opened are loaded
        first: an execution a client started on one resumes here, never quarantined for it.

        Raises:
            ExecutionDamaged: it cannot be restored; nothing of it runs or is written. With
                ``resume`` it is quarantined too, so that ``recover`` does not meet it again.
        """
        if self._registry.cannot_run(stored.procedure, stored.version) is not None:
            self._registry.load(await backend.load_procedures())
            live = self.live(stored.id)  # restored meanwhile, by another call
            if live is not None:
                return live
        try:
            execution = await _restore(
                stored,
                self._registry,
                backend,
                self.running,
                resume,
                frozen,
                (self.spawner, self.sleeper),
            )
        except ExecutionDamaged as damaged:
            if resume:
                await backend.quarantine_execution(damaged.execution_id, damaged.reason)
                logger.warning(
                    "%s: execution %s is quarantined: %s",
                    self._where,
                    damaged.execution_id,
                    damaged.reason,
                )
            raise
        self._tracked[execution.id] = execution
        return execution

    async def adopt(self, backend: Backend, execution_id: str) -> Execution | None:
        """The handle to apply an inbox command for ``execution_id`` to: this process's live
        one, else the stored execution restored (an unfinished one resumes here; a finished one
        only records what it refuses). Procedures that other processes registered since this
        store opened are loaded first.

        Returns:
            The handle; ``None`` when the execution is unfinished but its procedure names host
            code this store cannot provide (see ``ProcedureRegistry.missing_host_code``): it is
            left, with its commands, for a process that can (a warning says so, once).

        Raises:
            ExecutionNotFound: no execution has that id.
            ExecutionDamaged: it is quarantined, or cannot be restored (then quarantined).
        """
        live = self.live(execution_id)
        if live is not None:
            return live
        stored = await self._load(backend, execution_id)
        registry = self._registry
        if registry.cannot_run(stored.procedure, stored.version) is not None:
            registry.load(await backend.load_procedures())  # registered by a client since
        resume = stored.status == RUNNING
        if resume and registry.cannot_run(stored.procedure, stored.version) is None:
            missing = registry.missing_host_code(stored.procedure, stored.version)
            if missing is not None:
                self._decline(execution_id, missing)
                return None
        live = self.live(execution_id)  # adopted meanwhile, by another call
        if live is not None:
            return live
        return await self.restore(backend, stored, resume=resume)

    async def _load(self, backend: Backend, execution_id: str) -> StoredExecution:
        """The stored execution ``execution_id``, which is not quarantined.

        Raises:
            ExecutionNotFound: no execution has that id.
            ExecutionDamaged: it is quarantined.
        """
        stored = await backend.load_execution(execution_id)
        if stored is None:
            raise ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")
        if stored.status == QUARANTINED:
            reason = stored.reason or "no reason was stored"
            raise ExecutionDamaged(execution_id, reason, quarantined=True)
        return stored

    def _decline(self, execution_id: str, missing: str) -> None:
        if execution_id not in self._declined:
            self._declined.add(execution_id)
            logger.warning(
                "%s: execution %s has commands queued but is not run here: its procedure needs "
                "host code this store does not have (%s); it waits for a process that has it",
                self._where,
                execution_id,
                missing,
            )

    async def bring_back(self, backend: Backend, execution_id: str) -> Execution | None:
        """What ``recover`` does for one execution: this process's handle on it (woken, if it
        was parked), or the stored execution restored (an unfinished one resumes here; one
        that cannot be restored is quarantined). ``None`` when no execution has that id or it
        is quarantined.

        Raises:
            ExecutionDamaged: it cannot be restored (it is quarantined now)."""
        live = self.live(execution_id)
        if live is not None:
            return live
        try:
            stored = await self._load(backend, execution_id)
        except (ExecutionNotFound, ExecutionDamaged):
            return None
        live = self.live(execution_id)  # brought back meanwhile, by another call
        if live is not None:
            return live
        return await self.restore(backend, stored, resume=stored.status == RUNNING)

    async def recover(self, backend: Backend) -> list[Execution]:
        """Resume every unfinished execution ``backend`` stores that no handle here runs yet;
        quarantine each that cannot be restored and go on with the others."""
        resumed = []
        unfinished = await backend.load_unfinished()  # none from a backend not persistent
        with paused_collector():  # what restoring builds lives on: see paused_collector
            for stored in unfinished:
                live = self.live(stored.id)
                if live is None:
                    try:
                        live = await self.restore(backend, stored, resume=True)
                    except ExecutionDamaged:
                        continue
                resumed.append(live)
        return resumed

    async def listing(
        self, backend: Backend, status: str | None, procedure: str | None
    ) -> list[ExecutionSummary]:
        """``ProcedureStore.executions``: the summaries of the stored executions, or of the
        tracked ones for a backend that is not persistent (it holds none of them, see
        ``journal_for``)."""
        if not backend.persistent:
            return self.summaries(status, procedure)
        # A status this procstore does not know is listed as quarantined: ask for all of them
        # when quarantined ones are wanted.
        asked = None if status == Status.QUARANTINED else status
        rows = await backend.list_executions(status=asked, procedure=procedure)
        return [s for s in map(summary, rows) if status is None or s.status == status]

    def summaries(self, status: str | None, procedure: str | None) -> list[ExecutionSummary]:
        """Summaries of the tracked executions, filtered by status and procedure name, oldest
        first: all a store whose backend is not persistent knows of its executions."""
        summaries = []
        for execution in list(self._tracked.values()):
            history = execution.history
            if (status is None or execution.status.value == status) and (
                procedure is None or execution.procedure == procedure
            ):
                summaries.append(
                    ExecutionSummary(
                        id=execution.id,
                        procedure=execution.procedure,
                        version=execution.version,
                        status=execution.status,
                        created_at=history[0].at if history else datetime.now(UTC),
                        updated_at=history[-1].at if history else datetime.now(UTC),
                    )
                )
        return sorted(summaries, key=lambda s: s.created_at)

    def hold_actions(self) -> None:
        """The store is stopping: no new action of the running executions starts from now on
        (see ``wind_down``)."""
        for execution in list(self.running.values()):
            wind_down(execution)

    async def wind_down(self, grace: float, clock: Clock) -> None:
        """Start no new action of the running executions and wait, ``grace`` seconds on
        ``clock`` at most, until none runs an action, a transition or a commit: what is under
        way finishes and is committed before ``detach_running``."""

        def busy() -> bool:  # resumed ones too, while a claim under way completes
            self.hold_actions()
            return any(is_busy(execution) for execution in self.running.values())

        with contextlib.suppress(TimeoutError):
            async with clock.timeout(grace):
                while busy():
                    await clock.sleep(WIND_DOWN_POLL_S)

    async def detach_running(self) -> None:
        """Stop every unfinished execution in this process (each stays as last stored),
        parked ones whose handles are still held too."""
        for execution in list(self.running.values()):
            await execution.detach()
        self.running.clear()
        for execution in list(self._tracked.values()):
            if is_parked(execution) and not execution.detached:
                await execution.detach()


async def _restore(
    stored: StoredExecution,
    registry: ProcedureRegistry,
    backend: Backend,
    running: dict[str, Execution],
    resume: bool,
    frozen: str,
    store: tuple[Spawner | None, Sleeper | None] = (None, None),
) -> Execution:
    """``Handles.restore`` but for the tracking and the quarantine; ``store`` is what the
    store gives each execution (how its map states start items, what parks it)."""
    reason = stored.reason or _cannot_restore(stored, registry)
    if reason is None:
        journal = StoreJournal(backend, stored.id, stored.procedure, stored.version)
        try:
            return restore_execution(
                registry.compiled(stored.procedure, stored.version),
                stored.id,
                stored.snapshot,
                stored.records,
                journal=journal,
                resume=resume,
                running=running,
                frozen=frozen,
                spawner=store[0],
                sleeper=store[1],
            )
        except Exception as exc:  # whatever a damaged snapshot makes restoring raise
            reason = f"its stored state cannot be restored ({type(exc).__name__}: {exc})"
            # The half-restored execution may have registered itself and scheduled its
            # first steps: stop it before they run, and let nothing of it be written.
            journal.discard()
            half = running.pop(stored.id, None)
            if half is not None:
                await half.detach()
    raise ExecutionDamaged(stored.id, one_line(reason))


def _cannot_restore(stored: StoredExecution, registry: ProcedureRegistry) -> str | None:
    """Why ``stored`` cannot be restored, found before trying; ``None`` if nothing is."""
    if stored.status not in _STATUSES:
        return _unknown_status(stored.status)
    return registry.cannot_run(stored.procedure, stored.version)


def _unknown_status(status: str) -> str:
    return f"its stored status {status!r} is unknown to this procstore"
