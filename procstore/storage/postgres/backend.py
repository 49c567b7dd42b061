"""``PostgresBackend``: the ``Backend`` on one PostgreSQL database, assembled from the parts
beside it (``connections`` opens the pool, ``schema`` checks and migrates the database, ``lock``
holds the runner lock, ``writes`` commits, ``reads`` reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import asyncpg

from procstore.errors import StoreError
from procstore.storage.base import (
    COMMANDS_PAGE,
    QUARANTINED,
    Command,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
from procstore.storage.postgres import schema
from procstore.storage.postgres.changes import Listener
from procstore.storage.postgres.connections import (
    CLOSE_TIMEOUT_S,
    DRIVER_ERRORS,
    open_pool,
)
from procstore.storage.postgres.lock import RunnerLock, runner_held
from procstore.storage.postgres.reads import Reader
from procstore.storage.postgres.writes import Writer
from procstore.storage.urls import describe_postgres
from procstore.storage.values import (
    canonical_version,
    check_strings,
    encode_command,
    encode_json,
)

__all__ = ["PostgresBackend"]


class PostgresBackend:
    """A ``Backend`` on one PostgreSQL database.

    Create it with ``open``, not with the constructor. Use it from the event loop that
    opened it.
    """

    def __init__(self, url: str, where: str, pool: asyncpg.Pool, *, read_only: bool) -> None:
        self._url = url
        self._where = where
        self._pool = pool
        self._read_only = read_only
        self._reads = Reader(where, pool)
        self._writes = Writer(where, pool)
        self._changes = Listener(url, where)
        self._runner: RunnerLock | None = None
        # Taking the lock takes a connection and round trips: the first concurrent start()
        # calls of a store all ask for it, and must wait for the one that takes it.
        self._taking_runner = asyncio.Lock()
        self._closed = False

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, read_only: bool = False) -> PostgresBackend:
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
        return cls(url, where, pool, read_only=read_only)

    async def close(self) -> None:
        """Wait for the queries in flight (``CLOSE_TIMEOUT_S`` at most), close the connections
        and release the runner lock.

        Closing twice is harmless; every other method raises ``StoreError`` afterwards.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._changes.close()
            try:
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_S)
            except (TimeoutError, *DRIVER_ERRORS):
                self._pool.terminate()
        finally:
            # Last: nobody else may run the executions while this backend may still commit.
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.release()

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
        """Whether ``acquire_runner_lock`` succeeded and the backend is still open."""
        return self._runner is not None

    async def acquire_runner_lock(self) -> None:
        """Claim the right to run executions from this database while the backend is open.

        The claim is a session advisory lock held on a connection of its own (see
        ``procstore.storage.postgres.lock``), released by ``close`` and, by the server, when
        the process dies however it dies. Acquiring it again on the same backend is a no-op.

        Raises:
            StoreError: Another backend, in this or another process, holds it (the message
                names the process and its host); or the backend is read-only or closed.
        """
        self._check_open()
        if self._read_only:
            raise StoreError(f"{self._where} is opened read-only: it cannot run executions")
        async with self._taking_runner:
            if self._runner is None:
                self._check_open()  # closed while this call waited
                runner = await RunnerLock.take(self._url, self._where)
                if self._closed:  # closed while it was being taken: close() missed it
                    await runner.release()
                    self._check_open()
                self._runner = runner

    async def has_runner(self) -> bool:
        """``Backend.has_runner``, read from ``pg_locks``."""
        self._check_open()
        if self._runner is not None:
            return True
        try:
            async with self._pool.acquire() as connection:
                return await runner_held(connection)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot read {self._where}: {exc}") from exc

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
        await self._writes.create_execution(row, journal, _now(), announce)

    async def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> None:
        """``Backend.commit``, in one statement."""
        check_strings(execution_id=execution_id, status=status)
        text = encode_json(snapshot)
        journal = [encode_json(record) for record in records]
        self._check_writable()
        await self._writes.commit(execution_id, status, text, journal, _now())

    async def quarantine_execution(self, execution_id: str, reason: str) -> None:
        """``Backend.quarantine_execution``: the reason goes to ``quarantine_reason``."""
        check_strings(execution_id=execution_id, reason=reason)
        self._check_writable()
        await self._writes.quarantine(execution_id, QUARANTINED, reason, _now())

    # -- the inbox: see ``Backend`` ----------------------------------------------------------------

    async def post_command(self, execution_id: str, kind: str, payload: dict[str, Any]) -> int:
        """``Backend.post_command``, in one statement (which notifies the change)."""
        text = encode_command(execution_id, kind, payload)
        self._check_writable()
        return await self._writes.post_command(execution_id, kind, text, _now())

    async def commands_after(
        self, after_id: int, limit: int = COMMANDS_PAGE, execution_id: str | None = None
    ) -> list[Command]:
        """``Backend.commands_after``."""
        self._check_open()
        return await self._reads.commands_after(after_id, limit, execution_id)

    async def delete_commands(self, ids: Sequence[int]) -> None:
        """``Backend.delete_commands``, in one statement."""
        self._check_writable()
        if ids:
            await self._writes.delete_commands(list(ids))

    async def wait_for_change(self, timeout: float, since: int | None = None) -> int:
        """``Backend.wait_for_change``: see ``procstore.storage.postgres.changes``."""
        self._check_open()
        marker = await self._changes.wait(timeout, since)
        self._check_open()
        return marker

    # -- reads: see ``Backend`` and ``reads.Reader`` -----------------------------------------------

    async def load_procedures(self) -> list[StoredProcedure]:
        """``Backend.load_procedures``."""
        self._check_open()
        return await self._reads.load_procedures()

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """``Backend.load_execution``, read in one statement."""
        self._check_open()
        return await self._reads.load_execution(execution_id)

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        """``Backend.list_executions``."""
        self._check_open()
        return await self._reads.list_executions(status, procedure)

    async def unfinished_execution_ids(self) -> list[str]:
        """``Backend.unfinished_execution_ids``."""
        self._check_open()
        return await self._reads.unfinished_execution_ids()

    async def load_unfinished(self) -> list[StoredExecution]:
        """``Backend.load_unfinished``, read in one statement."""
        self._check_open()
        return await self._reads.load_unfinished()

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
