"""How a store runs executions in this process: the one runner of an SQLite database (its runner
lock), or one of the workers of a PostgreSQL database (``procstore.worker``).

`Runner` is the part of ``ProcedureStore`` that decides whether this process may run an
execution, resumes stored ones (``recover()``, ``get_execution()``), applies the commands that
clients queue in the inbox to the executions it runs (``procstore.inbox``) and, when the store
closes, winds its executions down and lets go of them.
"""

from __future__ import annotations

import functools
from typing import cast

from procstore.clock import Clock
from procstore.errors import StoreError
from procstore.handles import Handles
from procstore.hibernator import Hibernator
from procstore.inbox import Adopt, InboxLoop
from procstore.registry import ProcedureRegistry
from procstore.runtime import Execution
from procstore.storage import Backend, StoredExecution
from procstore.storage.leasing import Leasing
from procstore.worker import LeasingBackend, Worker

__all__ = ["Runner"]


class Runner:
    """Whether and how one store runs executions here.

    Args:
        handles: The store's executions in this process.
        registry: The store's procedures.
        where: How messages name the store's database.
        concurrency: How many executions a PostgreSQL worker claims at once (0: none).
        clock: The store's clock, which a graceful close waits on.
        hibernator: What parks the idle executions of an SQLite store while it runs them.
    """

    def __init__(
        self,
        handles: Handles,
        registry: ProcedureRegistry,
        where: str,
        concurrency: int,
        clock: Clock,
        hibernator: Hibernator,
    ) -> None:
        self._handles = handles
        self._registry = registry
        self._where = where
        self._concurrency = concurrency
        self._clock = clock
        self._hibernator = hibernator
        self._running = False  # this process may run the database's executions
        self.worker: Worker | None = None  # a PostgreSQL store's, once it runs executions
        self._inbox: InboxLoop | None = None  # a persistent store's, while it runs

    async def join(self, backend: Backend) -> None:
        """Let this process run ``backend``'s executions: take SQLite's runner lock, or make
        this store one of the database's workers (starting its claim loop); then, on a
        persistent backend, read the inbox for the executions it runs (a worker: those it
        holds, see ``Worker.adopt``).

        Raises:
            StoreError: the store is read-only, or (SQLite) another process runs them.
        """
        if self._running:
            return
        if backend.read_only:
            raise StoreError(f"{self._where} is open read-only: it cannot run executions")
        await backend.acquire_runner_lock()
        if self._running:  # joined by a concurrent call meanwhile
            return
        self._running = True
        adopt: Adopt = functools.partial(self._handles.adopt, backend)
        if isinstance(backend, Leasing):
            leasing = cast(LeasingBackend, backend)
            self.worker = Worker(leasing, self._handles, self._registry, self._concurrency)
            self.worker.start()
            adopt = self.worker.adopt
        elif backend.persistent:  # one runner: it may let go of what only waits
            self._hibernator.start(backend)
        if backend.persistent:
            self._inbox = InboxLoop(backend, adopt, self._where)
            self._inbox.start()

    async def work(self, backend: Backend) -> None:
        """``ProcedureStore.work``: join as a worker (PostgreSQL); or (SQLite) resume what
        has work to do now and index the rest, with hibernation, else recover."""
        await self.join(backend)
        if self._hibernator.running:
            await self._hibernator.index(backend)
        elif not isinstance(backend, Leasing):
            await self.recover(backend)

    async def recover(self, backend: Backend) -> list[Execution]:
        """``ProcedureStore.recover``: resume the unfinished executions this process may run
        (a worker's: those no live worker holds)."""
        await self.join(backend)
        if self.worker is not None:
            return await self.worker.recover()
        return await self._handles.recover(backend)

    async def resume(self, backend: Backend, stored: StoredExecution) -> Execution:
        """A handle on the unfinished ``stored`` for ``get_execution``: resumed here, unless
        another worker holds it (then a handle that reads it)."""
        await self.join(backend)
        live = self._handles.live(stored.id)  # resumed meanwhile by another call
        if live is not None:
            return live
        if self.worker is not None:
            return await self.worker.take(stored.id)
        return await self._handles.restore(backend, stored, resume=True)

    async def stop(self, grace: float) -> None:
        """The store closes: claim nothing more; with ``grace``, let the actions under way
        finish (``grace`` seconds at most, starting none); then detach every execution. The
        backend's ``close`` releases a worker's leases after this."""
        if grace > 0:  # at once: an action that a step under way leads to must not start
            self._handles.hold_actions()  # while the inbox and the claims stop
        worker, self.worker = self.worker, None
        inbox, self._inbox = self._inbox, None
        self._running = False
        await self._hibernator.stop()
        if worker is not None:
            worker.stop_claiming()
        if inbox is not None:  # what is not applied stays queued for the next runner
            await inbox.stop()
        if grace > 0:
            await self._handles.wind_down(grace, self._clock)
        if worker is not None:
            await worker.stop()
        await self._handles.detach_running()
