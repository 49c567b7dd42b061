"""The embedded SQLite backend: one database file, WAL mode, one writer connection.

Layout of the file (schema version 3; see ``MIGRATIONS``):

* ``meta(key, value)``: ``schema_version`` is the last migration applied; ``runner_pid`` the
  pid of the last process that took the runner lock (for error messages). The file header's
  ``PRAGMA application_id`` is ``APPLICATION_ID``, so a procstore database is recognised
  (and anybody else's rejected) before anything in it is read or written.
* ``procedures(seq, name, version, document, saved_at, canonical_version)``: the registry, in
  insertion order. ``canonical_version`` is the version in canonical form
  (``canonical_version``: ``1.0`` and ``1.0.0`` are both ``1``), unique per name, so that one
  version is stored under one spelling; it is ``NULL`` only for an alias that schema 1 let in
  after the first spelling (kept for inspection, never loaded).
* ``executions(seq, id, procedure, version, status, snapshot, created_at, updated_at,
  quarantine_reason)``: one row per execution; ``snapshot`` is replaced on every commit;
  ``quarantine_reason`` says why an execution that cannot be restored has the status
  ``quarantined`` (``NULL`` for every other).
* ``journal(execution_id, seq, record)``: the append-only history, seq 1, 2, ... per execution.

Writes from every task of the process go through one queue to one writer connection. The
writer takes whatever is queued (up to ``MAX_BATCH`` writes) and commits it as one SQLite
transaction (*group commit*): no write ever waits on SQLite's file lock inside the process, so
"database is locked" cannot happen between tasks, and with ``synchronous=FULL`` one fsync serves
a whole batch. Each aiosqlite call is a round trip to the connection's thread (which costs more
than the SQL of a small write), so a batch is applied with one ``executemany`` per kind of row
whatever its size; if that finds a problem (an unknown execution, a taken id) the transaction is
rolled back and the batch applied write by write. Each write still succeeds or fails on its
own: a write that is rejected
(unknown execution, duplicate id, conflicting procedure) is rejected before it changes anything,
so the rest of its batch commits. A failure of the transaction itself (disk full, I/O error)
fails every write of the batch, and none of them is applied. A write whose caller was cancelled
before the writer took it is dropped; one cancelled later may or may not be committed.

Reads use a second, read-only connection, so they see only committed data and never wait for
the writer.

The runner lock (one process runs a database's executions) is an exclusive ``flock`` on the
database file itself, so no path to it (a symlink, another spelling) and no deleted side file
lets a second runner in. See ``_OpenFile`` for why each process keeps one descriptor per file.

Opening checks the file before SQLite writes anything to it: the header is read through the
process's descriptor of the file (see ``_OpenFile``), then the schema and the integrity of every
page (``PRAGMA quick_check``) with a read-only (and, when no ``-wal`` file exists,
``immutable``) connection, so a file that is not a procstore database, or a damaged one, is left
byte-for-byte unchanged and gets no ``-wal``/``-shm`` side files.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, Self

import aiosqlite

from procstore.errors import ExecutionNotFound, ProcstoreError, StoreError, VersionConflict
from procstore.storage.base import (
    QUARANTINED,
    RUNNING,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
from procstore.storage.values import canonical_version, check_strings, encode_json

__all__ = [
    "APPLICATION_ID",
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteBackend",
    "WriteStats",
    "canonical_version",
]

APPLICATION_ID: Final = 0x50535452
"""``PRAGMA application_id`` of every procstore database (the ASCII bytes ``PSTR``)."""

MAX_BATCH: Final = 256
"""Most writes committed in one transaction."""

BUSY_TIMEOUT_MS: Final = 5_000
"""How long a connection waits for another process's lock on the file before failing."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the registry, executions and their journal.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE procedures (
        seq      INTEGER PRIMARY KEY,
        name     TEXT NOT NULL,
        version  TEXT NOT NULL,
        document TEXT NOT NULL,
        saved_at TEXT NOT NULL,
        UNIQUE (name, version)
    );

    CREATE TABLE executions (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        procedure  TEXT NOT NULL,
        version    TEXT NOT NULL,
        status     TEXT NOT NULL,
        snapshot   TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX executions_by_status ON executions (status, seq);
    CREATE INDEX executions_by_procedure ON executions (procedure, seq);

    CREATE TABLE journal (
        execution_id TEXT NOT NULL REFERENCES executions (id),
        seq          INTEGER NOT NULL CHECK (seq >= 1),
        record       TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    """,
    # 2: why a quarantined execution (status 'quarantined') could not be restored.
    """
    ALTER TABLE executions ADD COLUMN quarantine_reason TEXT;
    """,
    # 3: one spelling per version (1.0 and 1.0.0 are one version). Of the spellings schema 1
    # let in, the first saved keeps the version; later ones keep a NULL canonical_version.
    """
    ALTER TABLE procedures ADD COLUMN canonical_version TEXT;

    UPDATE procedures SET canonical_version = procstore_canonical_version(version)
     WHERE seq = (
        SELECT min(first.seq) FROM procedures AS first
         WHERE first.name = procedures.name
           AND procstore_canonical_version(first.version)
               = procstore_canonical_version(procedures.version)
     );

    CREATE UNIQUE INDEX procedures_by_canonical_version
        ON procedures (name, canonical_version);
    """,
)
"""Schema migrations: ``MIGRATIONS[n - 1]`` turns schema ``n - 1`` into schema ``n``.

Append new scripts; never edit a released one. Each is applied inside the transaction that
also records the new schema version, so a failed migration leaves the file as it was.
"""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this procstore writes (the number of migrations)."""


_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100
_PAGE_SIZES: Final = frozenset({1, *(2**n for n in range(9, 16))})  # 1 stands for 65536

_INSERT_EXECUTION: Final = """
    INSERT INTO executions (id, procedure, version, status, snapshot, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO NOTHING
    RETURNING seq
"""
_INSERT_EXECUTION_STRICT: Final = """
    INSERT INTO executions (id, procedure, version, status, snapshot, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_UPDATE_EXECUTION_MANY: Final = (
    "UPDATE executions SET status = ?, snapshot = ?, updated_at = ? WHERE id = ?"
)
_UPDATE_EXECUTION: Final = """
    UPDATE executions SET status = ?, snapshot = ?, updated_at = ? WHERE id = ? RETURNING seq
"""
_INSERT_FIRST_RECORDS: Final = "INSERT INTO journal (execution_id, seq, record) VALUES (?, ?, ?)"
_APPEND_RECORD: Final = """
    INSERT INTO journal (execution_id, seq, record)
    VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM journal WHERE execution_id = ?1), ?2)
"""
_INSERT_PROCEDURE: Final = """
    INSERT INTO procedures (name, version, document, saved_at, canonical_version)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
    RETURNING seq
"""
_STORED_VERSION: Final = """
    SELECT version, document FROM procedures WHERE name = ? AND canonical_version = ?
"""
_SET_META: Final = """
    INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""
# The execution's row (seq 0) then its records (seq >= 1), in one statement: one consistent
# read without an explicit transaction.
_LOAD_EXECUTION: Final = """
    SELECT 0, snapshot, procedure, version, status, created_at, updated_at, quarantine_reason
      FROM executions WHERE id = ?1
    UNION ALL
    SELECT seq, record, NULL, NULL, NULL, NULL, NULL, NULL FROM journal WHERE execution_id = ?1
    ORDER BY 1
"""


_LOAD_UNFINISHED: Final = """
    SELECT e.seq, 0, e.id, e.snapshot, e.procedure, e.version, e.status, e.created_at,
           e.updated_at, e.quarantine_reason
      FROM executions e WHERE e.status = ?1
    UNION ALL
    SELECT e.seq, j.seq, e.id, j.record, NULL, NULL, NULL, NULL, NULL, NULL
      FROM journal j JOIN executions e ON e.id = j.execution_id WHERE e.status = ?1
    ORDER BY 1, 2
"""
_QUARANTINE: Final = """
    UPDATE executions SET status = ?, quarantine_reason = ?, updated_at = ? WHERE id = ?
    RETURNING seq
"""


class _Rejected(Exception):
    """Raised while applying one write, before it changed anything, to fail only that write."""

    def __init__(self, error: ProcstoreError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _SaveProcedure:
    name: str
    version: str
    canonical: str  # canonical_version(version)
    document: str  # JSON
    saved_at: str
    future: asyncio.Future[None]


@dataclass(slots=True)
class _CreateExecution:
    row: tuple[str, str, str, str, str, str, str]  # the columns of _INSERT_EXECUTION
    journal: list[tuple[str, int, str]]  # (execution_id, seq, record JSON)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[0]


@dataclass(slots=True)
class _Commit:
    row: tuple[str, str, str, str]  # (status, snapshot JSON, updated_at, execution_id)
    journal: list[tuple[str, str]]  # (execution_id, record JSON)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[3]


@dataclass(slots=True)
class _SetMeta:
    key: str
    value: str
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Quarantine:
    row: tuple[str, str, str, str]  # (status, reason, updated_at, execution_id)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[3]


_Write = _SaveProcedure | _CreateExecution | _Commit | _SetMeta | _Quarantine


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What the writer of a ``SQLiteBackend`` has committed since it was opened.

    Attributes:
        writes: Writes committed (rejected ones included: they were answered).
        batches: Transactions committed; ``writes / batches`` is the mean batch size.
        one_by_one: Batches applied write by write because the one-statement-per-kind path
            found a problem (an unknown execution, a taken id).
    """

    writes: int = 0
    batches: int = 0
    one_by_one: int = 0


@dataclass(slots=True)
class _OpenFile:
    """What this process has open of one database file (one inode), shared by its backends.

    The runner lock is ``flock(LOCK_EX)`` on a descriptor of the database file. On Linux (and
    the BSDs) ``flock`` locks are independent of the POSIX ``fcntl`` byte-range locks SQLite
    takes on the same file, so the two never interfere. But closing *any* descriptor of a file
    drops *all* of the process's POSIX locks on it, SQLite's included: a descriptor of ours
    must stay open until every SQLite connection of this process on the file is closed. So
    the process keeps one entry per file, counted by the backends open on it, and closes its
    descriptors only after the last of them has closed its connections.

    The entry also records which backend holds the runner lock: ``flock`` on the one shared
    descriptor would succeed for every backend of the process. And it is taken before a backend
    opens anything else of the file: the header check reads through the shared descriptor too,
    since opening and closing the file to read it would drop the locks of the process's other
    backends (an idle WAL connection holds a shared lock on the file, which keeps another
    process's last connection from checkpointing and deleting the ``-wal`` under it).

    Attributes:
        fds: Descriptors of the file (the first carries the lock; a second one appears only
            if the file was replaced while a backend opened it).
        backends: Backends of this process open on the file.
        runner: The backend that holds the runner lock, if any.
    """

    fds: list[int]
    backends: int = 0
    runner: SQLiteBackend | None = None


_FileKey = tuple[int, int]  # (st_dev, st_ino): the file, whatever path leads to it
_OPEN_FILES: dict[_FileKey, _OpenFile] = {}
_OPEN_FILES_LOCK = threading.Lock()  # backends may be opened from several event loops


def _register_file(path: str, *, create: bool) -> _FileKey | None:
    """Count one more backend on the database file at ``path``, before it opens anything of it.

    Returns:
        The file's key, or ``None`` when there is no file (and ``create`` is false). With
        ``create``, a missing file is created empty (which opening then initialises).

    Raises:
        OSError: The file cannot be opened (or, ``ENODEV``, is not a regular file).
    """
    with _OPEN_FILES_LOCK:
        try:
            key = _file_key(os.stat(path))
        except FileNotFoundError:
            if not create:
                return None
            key = None
        entry = _OPEN_FILES.get(key) if key is not None else None
        if entry is None:
            # O_NONBLOCK: a FIFO at the path must not hang the open (regular files ignore it).
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
            fd = os.open(path, flags, 0o644)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)  # no SQLite connection can have this open: it is no database
                raise OSError(errno.ENODEV, "not a regular file")
            key = _file_key(info)  # the file opened, if it was replaced meanwhile
            entry = _OPEN_FILES.get(key)
            if entry is None:
                entry = _OPEN_FILES[key] = _OpenFile(fds=[fd])
            else:
                entry.fds.append(fd)  # never close it early: see _OpenFile
        entry.backends += 1
        return key


def _file_descriptor(key: _FileKey) -> int:
    """The descriptor this process keeps of a registered database file."""
    with _OPEN_FILES_LOCK:
        return _OPEN_FILES[key].fds[0]


def _unregister_file(key: _FileKey, backend: SQLiteBackend | None) -> None:
    """``backend`` (or one that failed to open) has closed its connections: release its runner
    lock and its count."""
    with _OPEN_FILES_LOCK:
        entry = _OPEN_FILES[key]
        if entry.runner is backend:
            entry.runner = None
            with contextlib.suppress(OSError):
                fcntl.flock(entry.fds[0], fcntl.LOCK_UN)
        entry.backends -= 1
        if entry.backends == 0:
            del _OPEN_FILES[key]
            for fd in entry.fds:
                os.close(fd)


def _file_key(stat: os.stat_result) -> _FileKey:
    return stat.st_dev, stat.st_ino


class SQLiteBackend:
    """A ``Backend`` on one SQLite database file.

    Create it with ``open``, not with the constructor. Use it from the event loop that
    opened it.
    """

    def __init__(
        self,
        path: str,
        file: _FileKey,
        *,
        reader: aiosqlite.Connection,
        writer: aiosqlite.Connection | None,
    ) -> None:
        self._path = path
        self._file = file  # counted in _OPEN_FILES by open
        self._reader = reader
        self._writer = writer
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._runner = False
        self._closed = False
        self._stats = WriteStats()
        if writer is not None:
            self._writer_task = asyncio.get_running_loop().create_task(
                self._write_loop(writer), name=f"procstore writer {path}"
            )

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
            key = _register_file(path, create=not read_only)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise _not_procstore(path, "not a regular file") from None
            raise StoreError(f"cannot open {path}: {exc}") from exc
        if key is None:
            raise StoreError(f"{path} is not a procstore database yet: nothing to read")
        try:
            return await cls._open_registered(path, key, synchronous, read_only=read_only)
        except BaseException:
            _unregister_file(key, None)  # its connections, if any, are closed
            raise

    @classmethod
    async def _open_registered(
        cls, path: str, key: _FileKey, synchronous: str, *, read_only: bool
    ) -> SQLiteBackend:
        """``open`` of a file counted in this process's ``_OpenFile`` as ``key``."""
        version = await _inspect(path, _file_descriptor(key))
        if read_only:
            if version is None:
                raise StoreError(f"{path} is not a procstore database yet: nothing to read")
            if version < len(MIGRATIONS):
                raise StoreError(
                    f"{path} has schema {version} and needs migrating to schema "
                    f"{len(MIGRATIONS)}: open it once without read_only"
                )
            reader = await _connect_read_only(path)
            return cls(path, key, reader=reader, writer=None)

        writer = await _connect(path, mode="rwc")
        try:
            await _configure_writer(writer, path, synchronous)
            await _migrate(writer, path)
            reader = await _connect(path, mode="ro")
        except BaseException:
            await writer.close()
            raise
        return cls(path, key, reader=reader, writer=writer)

    async def close(self) -> None:
        """Finish queued writes, close the database and release the runner lock.

        Closing twice is harmless; every other method raises ``StoreError`` afterwards.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer_task is not None:
                self._queue.put_nowait(None)
                with contextlib.suppress(Exception):
                    await self._writer_task
            try:
                await self._reader.close()
            finally:
                if self._writer is not None:
                    # Closed last: the last connection checkpoints the WAL and removes it.
                    await self._writer.close()
        finally:
            # Only now that this backend's connections are closed (see _OpenFile).
            self._runner = False
            _unregister_file(self._file, self)

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
        return self._stats

    @property
    def holds_runner_lock(self) -> bool:
        """Whether ``acquire_runner_lock`` succeeded and the backend is still open."""
        return self._runner

    async def acquire_runner_lock(self) -> None:
        """Claim the right to run executions from this database while the backend is open.

        The claim is an exclusive ``flock`` on the database file itself (not on a side file
        that could be deleted, nor on a path: a symlink leads to the same file), and this
        process's other backends on the file are refused too (see ``_OpenFile``). It is
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
        with _OPEN_FILES_LOCK:
            entry = _OPEN_FILES[self._file]
            holder: str | None = None
            if entry.runner is not None:
                holder = str(os.getpid())
            else:
                try:
                    fcntl.flock(entry.fds[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = ""  # another process: its pid is in the meta table
                except OSError as exc:
                    raise StoreError(f"cannot lock {self._path}: {exc}") from exc
                else:
                    entry.runner = self
                    self._runner = True
        if holder is not None:
            if not holder:
                holder = await self._runner_pid()
            raise StoreError(f"{self._path} is already used by process {holder} to run executions")
        try:
            await self._write(lambda future: _SetMeta("runner_pid", str(os.getpid()), future))
        except BaseException:
            with _OPEN_FILES_LOCK:
                if entry.runner is self:
                    entry.runner = None
                    fcntl.flock(entry.fds[0], fcntl.LOCK_UN)
            self._runner = False
            raise

    async def _runner_pid(self) -> str:
        """The pid the runner lock's holder wrote, or ``(unknown pid)``."""
        with contextlib.suppress(StoreError):
            rows = await self._read("SELECT value FROM meta WHERE key = 'runner_pid'", ())
            if rows and str(rows[0][0]).isdigit():
                return str(rows[0][0])
        return "(unknown pid)"

    # -- registry ----------------------------------------------------------------------------

    async def save_procedure(self, name: str, version: str, document: dict[str, Any]) -> None:
        """Store a procedure document; saving the same ``(name, version)`` again is a no-op.

        Versions are compared in their ``canonical_version`` form: ``1.0`` and ``1.0.0`` are
        one version, which is stored once, under the spelling it was first saved with.

        Args:
            name: The procedure's name.
            version: Its version.
            document: The procedure document (JSON-compatible).

        Raises:
            VersionConflict: ``(name, version)`` is stored with a different document, or under
                another spelling (the message names it).
            StoreError: The backend is read-only or closed, or the write failed.
            TypeError: ``name`` or ``version`` is not a string, or ``document`` holds a value
                JSON cannot represent.
            ValueError: ``document`` holds NaN or infinity.
        """
        check_strings(name=name, version=version)
        canonical = canonical_version(version)
        await self._write(
            lambda future: _SaveProcedure(
                name, version, canonical, encode_json(document), _now(), future
            )
        )

    async def load_procedures(self) -> list[StoredProcedure]:
        """Return every stored procedure version, in the order they were first saved.

        Returns:
            The procedure versions; one whose document is not a JSON object comes with a
            ``reason`` instead of a document.

        Raises:
            StoreError: The backend is closed or the database cannot be read.
        """
        rows = await self._read(
            "SELECT name, version, document, canonical_version FROM procedures ORDER BY seq", ()
        )
        spellings = {(name, canonical): version for name, version, _, canonical in rows}
        procedures = []
        for name, version, text, canonical in rows:
            problems: list[str] = []
            if canonical is None:  # an alias that schema 1 let in after the first spelling
                first = spellings.get((name, canonical_version(version)), "?")
                problems.append(
                    f"it is an alias of version {first!r}, stored before it (they are one version)"
                )
            document = _json_object(text, "its stored document", problems)
            procedures.append(
                StoredProcedure(
                    name=name,
                    version=version,
                    document=None if problems else document,
                    reason=problems[0] if problems else None,
                )
            )
        return procedures

    # -- executions --------------------------------------------------------------------------

    async def create_execution(
        self,
        execution_id: str,
        procedure: str,
        version: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> None:
        """Store a new execution with its first snapshot and journal records (seq 1..n).

        Args:
            execution_id: A new, unique id.
            procedure: Name of the procedure it runs.
            version: Version of that procedure.
            status: Its initial status.
            snapshot: Its initial snapshot.
            records: Its first journal records (may be empty).

        Raises:
            StoreError: The id is already stored, the backend is read-only or closed, or the
                write failed.
            TypeError: An id, name, version or status is not a string, or ``snapshot`` or a
                record holds a value JSON cannot represent.
            ValueError: ``snapshot`` or a record holds NaN or infinity.
        """
        check_strings(
            execution_id=execution_id, procedure=procedure, version=version, status=status
        )
        now = _now()
        row = (execution_id, procedure, version, status, encode_json(snapshot), now, now)
        journal = [(execution_id, seq, encode_json(r)) for seq, r in enumerate(records, 1)]
        await self._write(lambda future: _CreateExecution(row, journal, future))

    async def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> None:
        """In one transaction, append ``records`` to the journal and replace snapshot and status.

        Args:
            execution_id: The execution.
            status: Its new status.
            snapshot: Its new snapshot.
            records: Records to append; their seq numbers continue the journal.

        Raises:
            ExecutionNotFound: No execution with that id is stored.
            StoreError: The backend is read-only or closed, or the write failed.
            TypeError: ``execution_id`` or ``status`` is not a string, or ``snapshot`` or a
                record holds a value JSON cannot represent.
            ValueError: ``snapshot`` or a record holds NaN or infinity.
        """
        check_strings(execution_id=execution_id, status=status)
        row = (status, encode_json(snapshot), _now(), execution_id)
        journal = [(execution_id, encode_json(r)) for r in records]
        await self._write(lambda future: _Commit(row, journal, future))

    async def quarantine_execution(self, execution_id: str, reason: str) -> None:
        """Set an execution's status to ``"quarantined"`` and store ``reason``, leaving its
        snapshot and journal as they are (for whoever repairs it).

        Args:
            execution_id: The execution.
            reason: Why it cannot be restored.

        Raises:
            ExecutionNotFound: No execution with that id is stored.
            StoreError: The backend is read-only or closed, or the write failed.
            TypeError: ``execution_id`` or ``reason`` is not a string.
        """
        check_strings(execution_id=execution_id, reason=reason)
        row = (QUARANTINED, reason, _now(), execution_id)
        await self._write(lambda future: _Quarantine(row, future))

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """Return everything stored about one execution.

        Args:
            execution_id: The execution.

        Returns:
            The execution, or ``None`` when no execution with that id is stored. One whose
            snapshot or journal cannot be read comes with a ``reason``.

        Raises:
            StoreError: The backend is closed or the database cannot be read.
        """
        rows = await self._read(_LOAD_EXECUTION, (execution_id,))
        if not rows:
            return None
        _, snapshot, procedure, version, status, created, updated, reason = rows[0]
        return _stored_execution(
            (execution_id, procedure, version, status, created, updated, reason),
            snapshot,
            [row[1] for row in rows[1:]],
        )

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        """List stored executions in creation order, optionally filtered.

        Args:
            status: Only executions with this status.
            procedure: Only executions of the procedure with this name.

        Returns:
            One summary per matching execution.

        Raises:
            StoreError: The backend is closed or the database cannot be read.
        """
        conditions: list[str] = []
        parameters: list[str] = []
        if status is not None:
            conditions.append("status = ?")
            parameters.append(status)
        if procedure is not None:
            conditions.append("procedure = ?")
            parameters.append(procedure)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self._read(
            "SELECT id, procedure, version, status, created_at, updated_at, quarantine_reason"
            f" FROM executions{where} ORDER BY seq",
            parameters,
        )
        return [
            ExecutionSummary(
                id=row[0],
                procedure=row[1],
                version=row[2],
                status=row[3],
                created_at=_timestamp(row[4], "created_at", []),
                updated_at=_timestamp(row[5], "updated_at", []),
                reason=row[6],
            )
            for row in rows
        ]

    async def unfinished_execution_ids(self) -> list[str]:
        """Return the ids of the executions whose status is ``"running"``, in creation order.

        Returns:
            The ids.

        Raises:
            StoreError: The backend is closed or the database cannot be read.
        """
        rows = await self._read(
            "SELECT id FROM executions WHERE status = ? ORDER BY seq", (RUNNING,)
        )
        return [row[0] for row in rows]

    async def load_unfinished(self) -> list[StoredExecution]:
        """Return everything stored about every execution whose status is ``"running"``, in
        creation order, read in one statement (recovering 10,000 executions one read at a time
        costs a thread round trip each).

        Returns:
            The executions.

        Raises:
            StoreError: The backend is closed or the database cannot be read.
        """
        rows: list[tuple[tuple[Any, ...], str, list[str]]] = []  # (columns, snapshot, records)
        for row in await self._read(_LOAD_UNFINISHED, (RUNNING,)):
            _, seq, execution_id, payload, procedure, version, status, *rest = row
            if seq == 0:
                rows.append(((execution_id, procedure, version, status, *rest), payload, []))
            else:
                rows[-1][2].append(payload)
        return [_stored_execution(*row) for row in rows]

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self._path} is closed")

    async def _read(self, sql: str, parameters: Iterable[Any]) -> list[Any]:
        self._check_open()
        try:
            return list(await self._reader.execute_fetchall(sql, tuple(parameters)))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self._path}: {exc}") from exc

    async def _write(self, make: Callable[[asyncio.Future[None]], _Write]) -> None:
        """Queue the write ``make(future)`` builds and wait until it is committed or failed."""
        self._check_open()
        if self._writer_task is None:
            raise StoreError(f"{self._path} is opened read-only")
        if self._writer_task.done():
            raise StoreError(f"the writer of {self._path} has stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(make(future))
        await future

    async def _write_loop(self, db: aiosqlite.Connection) -> None:
        """Commit queued writes in batches until the ``None`` that ``close`` queues."""
        queue = self._queue
        stopping = False
        try:
            while not stopping:
                item = await queue.get()
                batch: list[_Write] = []
                while True:
                    if item is None:
                        stopping = True
                        break
                    if not item.future.done():  # done already: its caller was cancelled
                        batch.append(item)
                    if len(batch) >= MAX_BATCH or queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    await self._commit_batch(db, batch)
        finally:
            while not queue.empty():
                item = queue.get_nowait()
                if item is not None:
                    _settle(item.future, StoreError(f"the store on {self._path} is closed"))

    async def _commit_batch(self, db: aiosqlite.Connection, batch: list[_Write]) -> None:
        """Apply ``batch`` in one transaction, then settle each write's future."""
        try:
            await db.execute("BEGIN IMMEDIATE")
            outcomes = await self._apply_together(db, batch)
            one_by_one = outcomes is None
            if outcomes is None:
                await db.execute("ROLLBACK")
                await db.execute("BEGIN IMMEDIATE")
                outcomes = [await self._apply_alone(db, write) for write in batch]
            await db.execute("COMMIT")
            self._stats = WriteStats(
                writes=self._stats.writes + len(batch),
                batches=self._stats.batches + 1,
                one_by_one=self._stats.one_by_one + one_by_one,
            )
        except BaseException as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await db.execute("ROLLBACK")
            for write in batch:
                error = StoreError(f"cannot write to {self._path}: {exc!r}")
                error.__cause__ = exc
                _settle(write.future, error)
            if not isinstance(exc, Exception):
                raise
            return
        for write, outcome in zip(batch, outcomes, strict=True):
            _settle(write.future, outcome)

    async def _apply_together(
        self, db: aiosqlite.Connection, batch: list[_Write]
    ) -> list[ProcstoreError | None] | None:
        """Apply a batch with one statement per kind of row (the fast path).

        Creations are applied before commits, so this is only right when no commit in the batch
        precedes the creation of its execution, and it trusts that every commit's execution
        exists and no creation's id is taken. When that does not hold it returns ``None`` (the
        caller rolls back and applies the writes one by one); otherwise one outcome per write.
        """
        created: set[str] = set()
        creating = {w.execution_id for w in batch if isinstance(w, _CreateExecution)}
        for write in batch:
            if isinstance(write, _CreateExecution):
                if write.execution_id in created:
                    return None
                created.add(write.execution_id)
            elif (
                isinstance(write, _Commit)
                and write.execution_id in creating
                and write.execution_id not in created
            ):
                return None
        outcomes: list[ProcstoreError | None] = []
        for write in batch:
            outcome: ProcstoreError | None = None
            if isinstance(write, _SaveProcedure | _SetMeta | _Quarantine):
                try:
                    await self._apply_alone_or_reject(db, write)
                except _Rejected as rejected:
                    outcome = rejected.error
            outcomes.append(outcome)
        creates = [w for w in batch if isinstance(w, _CreateExecution)]
        commits = [w for w in batch if isinstance(w, _Commit)]
        try:
            if creates:
                await db.executemany(_INSERT_EXECUTION_STRICT, [w.row for w in creates])
                first_records = [r for w in creates for r in w.journal]
                if first_records:
                    await db.executemany(_INSERT_FIRST_RECORDS, first_records)
        except sqlite3.IntegrityError:
            return None  # an id is taken (or a value is invalid): sort it out one by one
        if commits:
            cursor = await db.executemany(_UPDATE_EXECUTION_MANY, [w.row for w in commits])
            if cursor.rowcount != len(commits):
                return None  # some execution does not exist
            appended = [r for w in commits for r in w.journal]
            if appended:
                await db.executemany(_APPEND_RECORD, appended)
        return outcomes

    async def _save_procedure(self, db: aiosqlite.Connection, write: _SaveProcedure) -> None:
        """Insert a procedure version, unless it is stored (a no-op when it is stored with the
        same spelling and document); raise ``_Rejected`` otherwise."""
        name, version = write.name, write.version
        stored = list(await db.execute_fetchall(_STORED_VERSION, (name, write.canonical)))
        if stored:
            spelling, document = stored[0]
            if spelling != version:
                raise _Rejected(
                    VersionConflict(
                        f"procedure {name!r} version {version!r} is the same version as "
                        f"{spelling!r}, already stored in {self._path}: register it as "
                        f"{spelling!r}, or under a new version"
                    )
                )
            problems: list[str] = []
            if _json_object(document, "", problems) != json.loads(write.document) or problems:
                raise _Rejected(
                    VersionConflict(
                        f"procedure {name!r} version {version!r} is already stored in "
                        f"{self._path} with different content"
                    )
                )
            return
        parameters = (name, version, write.document, write.saved_at, write.canonical)
        if not await db.execute_fetchall(_INSERT_PROCEDURE, parameters):
            # Only a row schema 1 let in holds this spelling: an alias that is never loaded.
            raise _Rejected(
                VersionConflict(
                    f"procedure {name!r} version {version!r} is already stored in {self._path}"
                    " as an alias of another spelling, and cannot be loaded: register it under"
                    " a new version"
                )
            )

    async def _apply_alone(self, db: aiosqlite.Connection, write: _Write) -> ProcstoreError | None:
        """Apply one write inside the open transaction; return why it was rejected, if it was."""
        try:
            await self._apply_alone_or_reject(db, write)
        except _Rejected as rejected:
            return rejected.error
        return None

    async def _apply_alone_or_reject(self, db: aiosqlite.Connection, write: _Write) -> None:
        """Apply one write, or raise ``_Rejected`` before changing anything."""
        if isinstance(write, _SaveProcedure):
            await self._save_procedure(db, write)
        elif isinstance(write, _SetMeta):
            await db.execute(_SET_META, (write.key, write.value))
        elif isinstance(write, _Quarantine):
            if not await db.execute_fetchall(_QUARANTINE, write.row):
                raise _Rejected(
                    ExecutionNotFound(f"no execution {write.execution_id!r} in {self._path}")
                )
        elif isinstance(write, _CreateExecution):
            if not await db.execute_fetchall(_INSERT_EXECUTION, write.row):
                raise _Rejected(
                    StoreError(f"execution {write.execution_id!r} already exists in {self._path}")
                )
            if write.journal:
                await db.executemany(_INSERT_FIRST_RECORDS, write.journal)
        else:
            if not await db.execute_fetchall(_UPDATE_EXECUTION, write.row):
                raise _Rejected(
                    ExecutionNotFound(f"no execution {write.execution_id!r} in {self._path}")
                )
            if write.journal:
                await db.executemany(_APPEND_RECORD, write.journal)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # stands for a timestamp that cannot be read


def _json_object(text: Any, what: str, problems: list[str]) -> dict[str, Any]:
    """Decode the JSON object ``text``; on failure add why to ``problems`` and return ``{}``."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:  # JSONDecodeError, and bytes that are not UTF-8
        problems.append(f"{what} is not valid JSON ({exc})")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{what} is not a JSON object but {type(value).__name__}")
        return {}
    return value


def _timestamp(text: Any, what: str, problems: list[str]) -> datetime:
    """Parse the stored ISO timestamp ``text``; on failure add why to ``problems``."""
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        problems.append(f"its {what} {text!r} is not a timestamp")
        return _EPOCH


def _stored_execution(
    columns: tuple[Any, ...], snapshot: str, records: list[str]
) -> StoredExecution:
    """A ``StoredExecution`` from its row's ``(id, procedure, version, status, created_at,
    updated_at, quarantine_reason)``, its snapshot and its journal records (all as stored).

    A value that cannot be decoded does not raise: it becomes the execution's ``reason``, so
    that one damaged row leaves every other one readable.
    """
    execution_id, procedure, version, status, created, updated, reason = columns
    problems: list[str] = []
    decoded = _json_object(snapshot, "its stored snapshot", problems)
    journal = [
        _json_object(record, f"its journal record {seq}", problems)
        for seq, record in enumerate(records, 1)
    ]
    created_at = _timestamp(created, "created_at", problems)
    updated_at = _timestamp(updated, "updated_at", problems)
    return StoredExecution(
        id=execution_id,
        procedure=procedure,
        version=version,
        status=status,
        snapshot=decoded,
        records=journal,
        created_at=created_at,
        updated_at=updated_at,
        reason=reason if reason is not None else (problems[0] if problems else None),
    )


def _uri(path: str, **parameters: str) -> str:
    quoted = urllib.parse.quote(os.path.abspath(path))
    return f"file:{quoted}?{urllib.parse.urlencode(parameters)}"


async def _open_connection(path: str, **parameters: str) -> aiosqlite.Connection:
    """``aiosqlite.connect`` to ``path`` with URI ``parameters``, on a daemon thread.

    aiosqlite (since 0.22) runs each connection on a non-daemon thread that ends only when the
    connection is closed, so a program that dies with a store open (an exception outside
    ``async with``) would never exit and never be restarted by its supervisor. A daemon thread
    lets the interpreter exit; for the database that is the same as the process being killed,
    which the write-ahead journal and SQLite's atomic commit are built for (a transaction in
    flight is rolled back). aiosqlite has no option for it (upstream declined one, issue #299),
    so the thread is marked before ``await`` starts it;
    tests/test_crash_recovery.py::test_a_program_that_raises_with_its_store_open_exits
    notices if a new aiosqlite stops honouring it.
    """
    connection = aiosqlite.connect(_uri(path, **parameters), uri=True, isolation_level=None)
    thread = getattr(connection, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True
    return await connection


async def _connect(path: str, **parameters: str) -> aiosqlite.Connection:
    try:
        db = await _open_connection(path, **parameters)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        await db.close()
        raise
    return db


async def _connect_read_only(path: str) -> aiosqlite.Connection:
    """The connection of a read-only backend: ``mode=ro``, or ``immutable`` where that fails.

    SQLite reads a WAL database through its ``-shm`` file, which it creates beside the
    database. On a read-only file system, or in a directory this process cannot write, it
    cannot, and every read fails. If there is no ``-wal`` either, no process has the database
    open, and the file alone is the whole database: it is read as ``immutable`` (no lock, no
    side file), as it is when opened; a process that starts writing it later is not seen.
    """
    db = await _connect(path, mode="ro")
    try:
        await db.execute_fetchall("SELECT count(*) FROM sqlite_schema")
        return db
    except sqlite3.Error as exc:
        await db.close()
        if os.path.exists(_wal_path(path)):
            raise StoreError(f"cannot read {path}: {exc}") from exc
    return await _connect(path, mode="ro", immutable="1")


def _not_procstore(path: str, reason: str) -> StoreError:
    return StoreError(f"{path} is not a procstore database ({reason})")


async def _inspect(path: str, fd: int) -> int | None:
    """Return the schema version of the procstore database at ``path`` without changing it.

    The header is read from ``fd`` (the process's descriptor of the file, see ``_OpenFile``);
    then a read-only connection (``immutable`` when no ``-wal`` exists, so SQLite takes no lock
    and creates no side file) reads the schema and, for a procstore database, runs ``PRAGMA
    quick_check`` over every page, so that a damaged file is refused here, before anything is
    written beside it, rather than by the first read that meets the damage.

    Returns:
        ``None`` for an empty (0-byte) file, or an SQLite database with nothing in it (both are
        initialised); otherwise the stored schema version.

    Raises:
        StoreError: The file is not a procstore database, was written by a newer procstore, or
            is damaged.
    """
    try:
        header = os.pread(fd, _HEADER_SIZE, 0)  # never open and close the file: see _OpenFile
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if not header:
        return None
    if len(header) < _HEADER_SIZE or not header.startswith(_SQLITE_MAGIC):
        raise _not_procstore(path, "not an SQLite database file")
    page_size = int.from_bytes(header[16:18], "big")
    if page_size not in _PAGE_SIZES or header[21:24] != b"\x40\x20\x20":
        raise _not_procstore(path, "corrupt: the SQLite file header is invalid")
    application_id = int.from_bytes(header[68:72], "big", signed=True)
    if application_id not in (0, APPLICATION_ID):
        raise _not_procstore(path, f"another application's SQLite database: {application_id:#x}")
    # Without a -wal file the main file is the whole database: read it as immutable. With one,
    # committed data may still be in it, and the side files exist already.
    wal = _wal_path(path)
    immutable = not os.path.exists(wal)
    try:
        return await _examine(path, immutable=immutable)
    except (sqlite3.Error, _Damaged) as exc:
        if not (immutable and os.path.exists(wal)):
            raise _inspection_error(path, exc) from exc
    # A process opened it and wrote meanwhile (an immutable read may then see a torn file):
    # read it again the ordinary way.
    try:
        return await _examine(path, immutable=False)
    except (sqlite3.Error, _Damaged) as exc:
        raise _inspection_error(path, exc) from exc


class _Damaged(Exception):
    """``PRAGMA quick_check`` found a problem (its first one is the message)."""


def _inspection_error(path: str, exc: Exception) -> StoreError:
    if isinstance(exc, _Damaged):
        return StoreError(
            f"{path} is damaged (PRAGMA quick_check: {exc}); it was left unchanged: restore it "
            "from a backup, or recover what is readable with the sqlite3 shell's .recover"
        )
    return _not_procstore(path, f"unreadable: {exc}")


def _wal_path(path: str) -> str:
    """Where SQLite keeps the database's write-ahead log: beside the file a symlink leads to."""
    return f"{os.path.realpath(path)}-wal"


async def _examine(path: str, *, immutable: bool) -> int | None:
    """``_check_state`` of the file through a read-only connection, then its integrity."""
    parameters = {"mode": "ro", "immutable": "1"} if immutable else {"mode": "ro"}
    db = await _open_connection(path, **parameters)
    try:
        version = _check_state(path, *await _read_state(db))
        if version is not None:
            # quick_check(1) stops at the first problem: one is enough to refuse the file.
            rows = list(await db.execute_fetchall("PRAGMA quick_check(1)"))
            if [tuple(row) for row in rows] != [("ok",)]:
                raise _Damaged(str(rows[0][0]) if rows else "no answer")
        return version
    finally:
        await db.close()


async def _read_state(db: aiosqlite.Connection) -> tuple[int, int, str | None]:
    """Return ``(application_id, number of schema objects, stored schema_version)``."""
    (application_id,) = next(iter(await db.execute_fetchall("PRAGMA application_id")))
    (objects,) = next(iter(await db.execute_fetchall("SELECT count(*) FROM sqlite_schema")))
    version: str | None = None
    if await db.execute_fetchall(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'"
    ):
        rows = list(
            await db.execute_fetchall("SELECT value FROM meta WHERE key = 'schema_version'")
        )
        version = str(rows[0][0]) if rows else None
    return int(application_id), int(objects), version


def _check_state(path: str, application_id: int, objects: int, version: str | None) -> int | None:
    """Classify a database from ``_read_state``: ``None`` if empty, else its schema."""
    if application_id == 0 and objects == 0:
        return None
    if application_id != APPLICATION_ID:
        if application_id == 0:
            raise _not_procstore(path, "an SQLite database with other tables")
        raise _not_procstore(path, f"another application's SQLite database: {application_id:#x}")
    if version is None or not version.isdigit() or int(version) < 1:
        raise _not_procstore(path, f"no valid schema version in its meta table: {version!r}")
    known = len(MIGRATIONS)
    if int(version) > known:
        raise StoreError(
            f"{path} was written by a newer procstore (schema {int(version)}); "
            f"this one knows up to {known}"
        )
    return int(version)


async def _configure_writer(db: aiosqlite.Connection, path: str, synchronous: str) -> None:
    try:
        rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
        if str(rows[0][0]).lower() != "wal":
            raise StoreError(f"cannot use WAL mode on {path} (journal mode {rows[0][0]!r})")
        await db.execute(f"PRAGMA synchronous = {synchronous}")
        await db.execute("PRAGMA foreign_keys = ON")
        # For migration 3, which fills procedures.canonical_version.
        await db.create_function(
            "procstore_canonical_version", 1, canonical_version, deterministic=True
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc


def _statements(script: str) -> list[str]:
    """Split an SQL script into statements (``executescript`` would commit the transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()!r}")
    return statements


async def _migrate(db: aiosqlite.Connection, path: str) -> None:
    """Bring the database up to the latest schema in one transaction (initialise if empty)."""
    target = len(MIGRATIONS)
    current: int | None = None
    try:
        await db.execute("BEGIN IMMEDIATE")
        # Checked again under the write lock: another process may have initialised it since.
        current = _check_state(path, *await _read_state(db)) or 0
        for version in range(current + 1, target + 1):
            for statement in _statements(MIGRATIONS[version - 1]):
                await db.execute(statement)
        if current < target:
            await db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(target),),
            )
        await db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            if current is None:
                raise StoreError(f"cannot open {path}: {exc}") from exc
            raise StoreError(
                f"cannot migrate {path} from schema {current} to {target}: {exc}"
            ) from exc
        raise
