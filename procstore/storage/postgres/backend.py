"""``PostgresBackend``: the ``Backend`` (and ``Leasing``) on one PostgreSQL database, assembled
from the parts beside it (``connections`` opens the pool, ``schema`` checks and migrates the
database, ``leases`` claims, renews and releases a worker's leases, ``writes`` commits,
``reads`` reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import asyncpg

from procstore.errors import ExecutionNotFound, LeaseLost, StoreError
from procstore.storage.base import (
    QUARANTINED,
    RUNNING,
)
from procstore.storage.leasing import DEFAULT_LEASE_SECONDS, Claim
from procstore.storage.postgres import schema
from procstore.storage.postgres.changes import Listener
from procstore.storage.postgres.connections import (
    CLOSE_TIMEOUT_S,
    DRIVER_ERRORS,
    open_pool,
)
from procstore.storage.postgres.leases import WORKER_APPLICATION, Leases, new_worker_id
from procstore.storage.postgres.reads import Reader
from procstore.storage.postgres.writes import Fence, Lease, Writer
from procstore.storage.reading import ThroughReader
from procstore.storage.urls import describe_postgres
from procstore.storage.values import (
    canonical_version,
    check_strings,
    encode_command,
    encode_json,
)

__all__ = ["PostgresBackend"]


class PostgresBackend(ThroughReader):
    """A ``Backend`` on one PostgreSQL database, shared by any number of workers through the
    ``Leasing`` protocol.

    Create it with ``open``, not with the constructor. Use it from the event loop that
    opened it.
    """

    def __init__(
        self,
        url: str,
        where: str,
        pool: asyncpg.Pool,
        *,
        read_only: bool,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._url = url
        self._where = where
        self._pool = pool
        self._read_only = read_only
        self._lease_seconds = lease_seconds
        self._reads: Reader = Reader(where, pool)
        self._writes = Writer(where, pool)
        self._worker_id = new_worker_id()
        self._leases: Leases | None = None  # once a worker (acquire_runner_lock)
        self._changes: Listener = Listener(url, where)
        self._closed = False

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(
        cls, url: str, *, read_only: bool = False, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> PostgresBackend:
        """Connect to the database at ``url`` and, unless ``read_only``, create or migrate
        procstore's tables in it.

        A database whose current schema is empty is initialised. One that holds anything else
        (another application's tables) is refused without being changed in any way.

        Args:
            url: ``postgresql://user:password@host:port/dbname`` (or ``postgres://``), with
                libpq's query parameters asyncpg understands (e.g. ``sslmode``).
            read_only: Open for reading only (listing and loading), e.g. beside the process
                that runs executions; the server refuses writes too. The database must hold
                procstore's tables, up to date.
            lease_seconds: How long this backend's leases last without a renewal, once it is
                a worker (``Leasing.lease_seconds``).

        Returns:
            The open backend.

        Raises:
            StoreError: The server cannot be reached or refuses the connection (the message
                names ``host:port/dbname`` and the cause), the database is not procstore's or
                was written by a newer procstore, the tables cannot be created, or (read-only)
                they do not exist or need a migration.
        """
        where = describe_postgres(url)
        pool = await open_pool(url, where, read_only=read_only)
        try:
            async with pool.acquire() as connection:
                if read_only:
                    schema.check_readable(where, await schema.inspect(connection, where))
                else:
                    await schema.migrate(connection, where)
        except BaseException:
            pool.terminate()
            raise
        return cls(url, where, pool, read_only=read_only, lease_seconds=lease_seconds)

    async def close(self) -> None:
        """Release the leases this worker still holds (so that other workers claim them at
        once), wait for the queries in flight (``CLOSE_TIMEOUT_S`` at most) and close the
        connections. The store detaches its executions first: nothing commits afterwards.

        Closing twice is harmless; every other method raises ``StoreError`` afterwards.
        """
        if self._closed:
            return
        self._closed = True
        leases, self._leases = self._leases, None
        try:
            if leases is not None:
                await leases.close()
        finally:
            await self._changes.close()
            try:
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_S)
            except (TimeoutError, *DRIVER_ERRORS):
                self._pool.terminate()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def where(self) -> str:
        """How messages name the database: ``postgresql://host:port/dbname``."""
        return self._where

    @property
    def read_only(self) -> bool:
        """Whether the backend was opened read-only."""
        return self._read_only

    @property
    def persistent(self) -> bool:
        """Always: what is committed is in the database."""
        return True

    @property
    def holds_runner_lock(self) -> bool:
        """Whether ``acquire_runner_lock`` made this backend a worker and it is still open."""
        return self._leases is not None

    async def acquire_runner_lock(self) -> None:
        """Become a worker (a no-op if it is one): from now on the executions this backend
        creates are leased to it, and its commits are fenced (see ``Leasing``). No exclusive
        lock: any number of backends, in any processes, are workers of one database.

        Raises:
            StoreError: The backend is read-only or closed.
        """
        self._check_open()
        if self._read_only:
            raise StoreError(f"{self._where} is opened read-only: it cannot run executions")
        if self._leases is None:
            self._leases = Leases(
                self._url, self._where, self._pool, self._worker_id, self._lease_seconds
            )
        await self._leases.listen()

    # -- leases: see ``Leasing`` and ``leases.Leases`` ---------------------------------------------

    @property
    def worker_id(self) -> str:
        """``Leasing.worker_id`` (chosen when the backend opens)."""
        return self._worker_id

    @property
    def lease_seconds(self) -> float:
        """``Leasing.lease_seconds``."""
        return self._lease_seconds

    def held(self) -> dict[str, int]:
        """``Leasing.held``: none before the backend is a worker."""
        return {} if self._leases is None else self._leases.held()

    async def claim(self, limit: int, execution_id: str | None = None) -> list[Claim]:
        """``Leasing.claim``."""
        return await self._worker().claim(limit, execution_id)

    async def renew(self) -> list[str]:
        """``Leasing.renew``."""
        return await self._worker().renew()

    def forget(self, execution_id: str) -> None:
        """``Leasing.forget``."""
        if self._leases is not None:
            self._leases.forget(execution_id)

    async def release(self, execution_ids: list[str] | None = None) -> None:
        """``Leasing.release``."""
        await self._worker().release(execution_ids)

    async def decline(self, execution_id: str) -> None:
        """``Leasing.decline``."""
        await self._worker().decline(execution_id)

    async def wait_for_work(self, timeout: float) -> None:
        """``Leasing.wait_for_work``."""
        await self._worker().wait_for_work(timeout)

    def _worker(self) -> Leases:
        self._check_open()
        if self._leases is None:
            raise StoreError(f"this store on {self._where} is not a worker (yet)")
        return self._leases

    def _fence(self, execution_id: str) -> Fence | None:
        """What a write to ``execution_id`` is conditional on: a worker's token (raising
        ``LeaseLost`` when it holds none), nothing for a backend that is not a worker."""
        leases = self._leases
        if leases is None:
            return None
        return Fence(leases.fence_of(execution_id), leases.worker_id)

    async def has_runner(self) -> bool:
        """``Backend.has_runner``: this backend is a worker, a live worker lease holds an
        execution of the database (a worker runs it, and applies its commands), or a worker's
        ``LISTEN`` connection is open (an idle worker, which claims what a client starts).
        Nothing is taken."""
        self._check_open()
        if self._leases is not None:
            return True
        return await self._reads.worker_alive(f"{WORKER_APPLICATION}%")

    # -- writes: see ``Backend`` for what each does ------------------------------------------------

    async def save_procedure(self, name: str, version: str, document: dict[str, Any]) -> None:
        """``Backend.save_procedure``: versions are compared in their ``canonical_version``
        form, which the ``procedures`` table keeps beside each one."""
        check_strings(name=name, version=version)
        text = encode_json(document)
        self._check_writable()
        await self._writes.save_procedure(name, version, canonical_version(version), text, _now())

    async def create_execution(
        self,
        execution_id: str,
        procedure: str,
        version: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
        *,
        announce: bool = False,
    ) -> None:
        """``Backend.create_execution``, in one statement."""
        check_strings(
            execution_id=execution_id, procedure=procedure, version=version, status=status
        )
        row = (execution_id, procedure, version, status, encode_json(snapshot))
        journal = [encode_json(record) for record in records]
        self._check_writable()
        leases = self._leases
        lease = None
        if leases is not None and status == RUNNING and not announce:
            lease = Lease(leases.worker_id, leases.lease_seconds)
        await self._writes.create_execution(row, journal, _now(), announce, lease)
        if lease is not None and leases is not None:
            leases.created(execution_id)

    async def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> None:
        """``Backend.commit``, in one statement; a worker's only under its lease, which a
        final status ends (a finished execution that ``reset()`` runs again gets a new one).

        Raises:
            LeaseLost: This worker does not hold the execution's lease (any more).
        """
        check_strings(execution_id=execution_id, status=status)
        text = encode_json(snapshot)
        journal = [encode_json(record) for record in records]
        self._check_writable()
        leases = self._leases
        held = leases is not None and leases.holds(execution_id)
        if leases is not None and status == RUNNING and not held:
            await self._revive(leases, execution_id, status, text, journal)
            return
        # A finished execution this worker does not hold (the inbox's refusal of a command
        # that came after its end): written unfenced, but only while it is still finished.
        finished_only = leases is not None and leases.may_write_finished(execution_id)
        fence = None if finished_only else self._fence(execution_id)
        try:
            applied = await self._writes.commit(
                execution_id, status, text, journal, _now(), fence, finished_only
            )
        except StoreError:
            self._broken(execution_id)
            raise
        if not applied and finished_only:  # it runs again, or another worker was first
            raise LeaseLost(execution_id, "another worker wrote to it first")
        if not applied:
            raise await self._refused(execution_id, fence)
        if status != RUNNING and self._leases is not None:
            self._leases.ended(execution_id)

    async def quarantine_execution(self, execution_id: str, reason: str) -> None:
        """``Backend.quarantine_execution``: the reason goes to ``quarantine_reason``; a
        worker's only under its lease, which it ends."""
        check_strings(execution_id=execution_id, reason=reason)
        self._check_writable()
        fence = self._fence(execution_id)
        try:
            applied = await self._writes.quarantine(
                execution_id, QUARANTINED, reason, _now(), fence
            )
        except StoreError:
            self._broken(execution_id)
            raise
        if not applied:
            raise await self._refused(execution_id, fence)
        if self._leases is not None:
            self._leases.ended(execution_id)

    async def _revive(
        self, leases: Leases, execution_id: str, status: str, snapshot: str, journal: list[str]
    ) -> None:
        """A commit back to running of an execution this worker does not hold: a finished one
        that ``reset()`` starts again takes a new lease; any other is refused."""
        lease = Lease(leases.worker_id, leases.lease_seconds)
        fence = await self._writes.revive(execution_id, status, snapshot, journal, _now(), lease)
        if fence is None:
            raise LeaseLost(execution_id, "this worker holds no lease on it")
        leases.revived(execution_id, fence)

    def _broken(self, execution_id: str) -> None:
        """A write to ``execution_id`` failed: the store stops the execution here, so its
        lease is given back (see ``Leases.broken``)."""
        if self._leases is not None:
            self._leases.broken(execution_id)

    async def _refused(self, execution_id: str, fence: Fence | None) -> Exception:
        """Why a write to ``execution_id`` changed nothing."""
        if fence is None or self._leases is None:
            return ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")
        return await self._leases.refused(execution_id, fence.token)

    # -- the inbox: see ``Backend`` ----------------------------------------------------------------

    async def post_command(self, execution_id: str, kind: str, payload: dict[str, Any]) -> int:
        """``Backend.post_command``, in one statement (which notifies the change)."""
        text = encode_command(execution_id, kind, payload)
        self._check_writable()
        return await self._writes.post_command(execution_id, kind, text, _now())

    async def delete_commands(self, ids: Sequence[int]) -> None:
        """``Backend.delete_commands``, in one statement."""
        self._check_writable()
        if ids:
            await self._writes.delete_commands(list(ids))

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self._where} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise StoreError(f"{self._where} is opened read-only")


def _now() -> datetime:
    """The time a write stamps (``created_at``, ``updated_at``, ``saved_at``): this process's
    clock, in UTC, as the SQLite backend stamps its rows."""
    return datetime.now(UTC)
