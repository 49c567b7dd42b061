"""``SQLiteBackend``: the ``Backend`` on one SQLite database file, assembled from the parts
beside it (``schema`` checks and migrates the file, ``lock`` holds the runner lock, ``writer``
commits, ``reads`` reads)."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self

import aiosqlite

from procstore.errors import StoreError
from procstore.storage.base import (
    QUARANTINED,
)
from procstore.storage.reading import ThroughReader
from procstore.storage.sqlite import lock, schema
from procstore.storage.sqlite.changes import ChangeWatcher
from procstore.storage.sqlite.connections import connect, connect_read_only, connect_writer
from procstore.storage.sqlite.reads import Reader
from procstore.storage.sqlite.threaded import ThreadedConnection
from procstore.storage.sqlite.writer import Writer, WriteStats, now
from procstore.storage.sqlite.writes import (
    Commit,
    CreateExecution,
    DeleteCommands,
    PostCommand,
    Quarantine,
    SaveProcedure,
    SetMeta,
)
from procstore.storage.values import (
    canonical_version,
    check_strings,
    encode_command,
    encode_json,
)

__all__ = ["RUNNER_RETRIES", "RUNNER_RETRY_S", "SQLiteBackend"]

RUNNER_RETRIES: Final = 5
"""How many more times ``acquire_runner_lock`` tries a runner lock another process holds: a
client asking ``has_runner`` holds it for an instant."""

RUNNER_RETRY_S: Final = 0.01
"""The pause before each of those tries."""


class SQLiteBackend(ThroughReader):
    """A ``Backend`` on one SQLite database file.

    Create it with ``open``, not with the constructor. Use it from the event loop that
    opened it.
    """

    def __init__(
        self,
        path: str,
        file: lock.FileKey,
        *,
        reader: aiosqlite.Connection,
        writer: ThreadedConnection | None,
        inline: bool = False,
    ) -> None:
        self._path = path
        self._file = file  # counted in lock's open files by open
        self._reads: Reader = Reader(path, reader)
        self._changes: ChangeWatcher = ChangeWatcher(path, writer if writer is not None else reader)
        self._writer = writer
        self._commits = Writer(path, writer, inline=inline) if writer is not None else None
        self._runner = False
        self._closed = False

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        read_only: bool = False,
    ) -> SQLiteBackend:
        """Open (and if needed create or migrate) the procstore database at ``path``.

        A missing or empty (0-byte) file is initialised. A file that is not a procstore
        database is rejected without being changed in any way.

        Args:
            path: The database file.
            synchronous: SQLite's ``PRAGMA synchronous`` for writes: ``"NORMAL"`` (a commit
                survives a crash of the process; the last commits may be lost if the machine
                loses power) or ``"FULL"`` (every commit is fsynced: it survives power loss too).
            read_only: Open for reading only (listing and loading), e.g. beside a process that
                runs executions. The database must exist and be up to date.

        Returns:
            The open backend.

        Raises:
            StoreError: The file is not a procstore database (another application's SQLite
                database, or not SQLite at all), was written by a newer procstore, cannot be
                read or written, or (read-only) does not exist or needs a migration.
            ValueError: ``synchronous`` is not ``"NORMAL"`` or ``"FULL"``.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        path = os.fspath(path)
        try:
            key = lock.register_file(path, create=not read_only)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise schema.not_procstore(path, "not a regular file") from None
            raise StoreError(f"cannot open {path}: {exc}") from exc
        if key is None:
            raise StoreError(f"{path} is not a procstore database yet: nothing to read")
        try:
            return await cls._open_registered(path, key, synchronous, read_only=read_only)
        except BaseException:
            lock.unregister_file(key, None)  # its connections, if any, are closed
            raise

    @classmethod
    async def _open_registered(
        cls, path: str, key: lock.FileKey, synchronous: str, *, read_only: bool
    ) -> SQLiteBackend:
        """``open`` of a file counted in this process's ``lock.OpenFile`` as ``key``."""
        version = await schema.inspect(path, lock.file_descriptor(key))
        if read_only:
            schema.check_readable(path, version)
            reader = await connect_read_only(path)
            return cls(path, key, reader=reader, writer=None)

        writer = await connect_writer(path)
        try:
            await schema.configure_writer(writer, path, synchronous)
            await schema.migrate(writer, path)
            reader = await connect(path, mode="ro")
        except BaseException:
            await writer.close()
            raise
        return cls(path, key, reader=reader, writer=writer, inline=synchronous == "NORMAL")

    async def close(self) -> None:
        """Finish queued writes, close the database and release the runner lock.

        Closing twice is harmless; every other method raises ``StoreError`` afterwards.
        """
        if self._closed:
            return
        self._closed = True
        self._changes.close()
        try:
            if self._commits is not None:
                await self._commits.stop()
            try:
                await self._reads.close()
            finally:
                if self._writer is not None:
                    # Closed last: the last connection checkpoints the WAL and removes it.
                    await self._writer.close()
        finally:
            # Only now that this backend's connections are closed (see lock.OpenFile).
            self._runner = False
            lock.unregister_file(self._file, self)

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
    def path(self) -> str:
        """The database file, as given to ``open``."""
        return self._path

    @property
    def read_only(self) -> bool:
        """Whether the backend was opened read-only."""
        return self._writer is None

    @property
    def persistent(self) -> bool:
        """Always: what is committed is in the database file."""
        return True

    @property
    def write_stats(self) -> WriteStats:
        """Counters of the writer since the backend was opened (all zero when read-only)."""
        return self._commits.stats if self._commits is not None else WriteStats()

    @property
    def holds_runner_lock(self) -> bool:
        """Whether ``acquire_runner_lock`` succeeded and the backend is still open."""
        return self._runner

    async def acquire_runner_lock(self) -> None:
        """Claim the right to run executions from this database while the backend is open.

        The claim is an exclusive ``flock`` on the database file itself (not on a side file
        that could be deleted, nor on a path: a symlink leads to the same file), and this
        process's other backends on the file are refused too (see ``lock.OpenFile``). It is
        released by ``close`` and, by the operating system, when the process dies however it
        dies. Processes forked while it is held share it until they exit too. The holder
        writes its pid to the ``meta`` table (``runner_pid``), for the error message of those
        refused; the pid does not take part in the locking. Acquiring it again on the same
        backend is a no-op.

        Raises:
            StoreError: Another backend, in this or another process, holds it; or the backend is
                read-only or closed, or the pid cannot be written.
        """
        self._check_open()
        if self._writer is None:
            raise StoreError(f"{self._path} is opened read-only: it cannot run executions")
        if self._runner:
            return
        holder = lock.take_runner(self._file, self, self._path)
        for _ in range(RUNNER_RETRIES):
            if holder != "":  # taken, or held in this process: no probe is in the way
                break
            # Held by another process, or for an instant by a client asking has_runner().
            await asyncio.sleep(RUNNER_RETRY_S)
            holder = lock.take_runner(self._file, self, self._path)
        if holder is not None:
            if not holder:
                holder = await self._reads.runner_pid()
            raise StoreError(f"{self._path} is already used by process {holder} to run executions")
        self._runner = True
        try:
            await self._writing().submit(
                lambda future: SetMeta("runner_pid", str(os.getpid()), future)
            )
        except BaseException:
            lock.release_runner(self._file, self)
            self._runner = False
            raise

    async def has_runner(self) -> bool:
        """``Backend.has_runner``: see ``lock.probe_runner``."""
        self._check_open()
        return lock.probe_runner(self._file, self._path)

    # -- writes: see ``Backend`` for what each does ------------------------------------------------

    async def save_procedure(self, name: str, version: str, document: dict[str, Any]) -> None:
        """``Backend.save_procedure``: versions are compared in their ``canonical_version``
        form, which the ``procedures`` table keeps beside each one."""
        check_strings(name=name, version=version)
        canonical = canonical_version(version)
        await self._writing().submit(
            lambda future: SaveProcedure(
                name, version, canonical, encode_json(document), now(), future
            )
        )

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
        """``Backend.create_execution``, committed with whatever else the writer has queued."""
        check_strings(
            execution_id=execution_id, procedure=procedure, version=version, status=status
        )
        ts = now()
        row = (execution_id, procedure, version, status, encode_json(snapshot), ts, ts)
        journal = [(execution_id, seq, encode_json(r)) for seq, r in enumerate(records, 1)]
        await self._writing().submit(lambda future: CreateExecution(row, journal, future, announce))

    def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> asyncio.Future[None]:
        """``Backend.commit``, queued now, committed with whatever else the writer has
        queued: the future the writer settles (cancelled before the writer takes it, the
        commit is dropped)."""
        check_strings(execution_id=execution_id, status=status)
        row = (status, encode_json(snapshot), now(), execution_id)
        journal = [(execution_id, encode_json(r)) for r in records]
        return self._writing().queue(lambda future: Commit(row, journal, future))

    async def quarantine_execution(self, execution_id: str, reason: str) -> None:
        """``Backend.quarantine_execution``: the reason goes to ``quarantine_reason``."""
        check_strings(execution_id=execution_id, reason=reason)
        row = (QUARANTINED, reason, now(), execution_id)
        await self._writing().submit(lambda future: Quarantine(row, future))

    # -- the inbox: see ``Backend`` ----------------------------------------------------------------

    async def post_command(self, execution_id: str, kind: str, payload: dict[str, Any]) -> int:
        """``Backend.post_command``, committed with whatever else the writer has queued."""
        row = (execution_id, kind, encode_command(execution_id, kind, payload), now())
        posted: list[PostCommand] = []

        def make(future: asyncio.Future[None]) -> PostCommand:
            posted.append(PostCommand(row, future))
            return posted[-1]

        await self._writing().submit(make)
        return posted[-1].id

    async def delete_commands(self, ids: Sequence[int]) -> None:
        """``Backend.delete_commands``, committed with whatever else the writer has queued."""
        if ids:
            await self._writing().submit(lambda future: DeleteCommands(list(ids), future))

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self._path} is closed")

    def _writing(self) -> Writer:
        """The writer, once the backend is known to be open and writable."""
        self._check_open()
        if self._commits is None:
            raise StoreError(f"{self._path} is opened read-only")
        return self._commits
