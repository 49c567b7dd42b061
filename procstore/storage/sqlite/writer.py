"""The SQLite backend's writer: one connection, fed by one queue, committing in groups.

Writes from every task of the process go through one queue to one writer connection. The
writer takes whatever is queued (up to ``MAX_BATCH`` writes) and commits it as one SQLite
transaction (*group commit*): no write ever waits on SQLite's file lock inside the process, so
"database is locked" cannot happen between tasks, and with ``synchronous=FULL`` one fsync serves
a whole batch. Each aiosqlite call is a round trip to the connection's thread (which costs more
than the SQL of a small write), so a batch is applied with one ``executemany`` per kind of row
whatever its size; if that finds a problem (an unknown execution, a taken id) the transaction is
rolled back and the batch applied write by write. Each write still succeeds or fails on its
own: a write that is rejected (unknown execution, duplicate id, conflicting procedure) is
rejected before it changes anything, so the rest of its batch commits. A failure of the
transaction itself (disk full, I/O error) fails every write of the batch, and none of them is
applied. A write whose caller was cancelled before the writer took it is dropped; one cancelled
later may or may not be committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiosqlite

from procstore.errors import ExecutionNotFound, ProcstoreError, StoreError, VersionConflict
from procstore.storage.values import json_object

__all__ = [
    "MAX_BATCH",
    "Commit",
    "CreateExecution",
    "DeleteCommands",
    "PostCommand",
    "Quarantine",
    "SaveProcedure",
    "SetMeta",
    "WriteStats",
    "Writer",
    "now",
]

MAX_BATCH: Final = 256
"""Most writes committed in one transaction."""

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
# A command for an execution that exists: no row (rejected) otherwise.
_POST_COMMAND: Final = """
    INSERT INTO inbox (execution_id, kind, payload, posted_at)
    SELECT id, ?2, ?3, ?4 FROM executions WHERE id = ?1
    RETURNING id
"""
_ANNOUNCE: Final = """
    INSERT INTO inbox (execution_id, kind, payload, posted_at) VALUES (?, 'start', '{}', ?)
"""
_DELETE_COMMAND: Final = "DELETE FROM inbox WHERE id = ?"
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
class SaveProcedure:
    name: str
    version: str
    canonical: str  # canonical_version(version)
    document: str  # JSON
    saved_at: str
    future: asyncio.Future[None]


@dataclass(slots=True)
class CreateExecution:
    row: tuple[str, str, str, str, str, str, str]  # the columns of _INSERT_EXECUTION
    journal: list[tuple[str, int, str]]  # (execution_id, seq, record JSON)
    future: asyncio.Future[None]
    announce: bool = False  # post a start command for it too (Backend.create_execution)

    @property
    def execution_id(self) -> str:
        return self.row[0]


@dataclass(slots=True)
class Commit:
    row: tuple[str, str, str, str]  # (status, snapshot JSON, updated_at, execution_id)
    journal: list[tuple[str, str]]  # (execution_id, record JSON)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[3]


@dataclass(slots=True)
class SetMeta:
    key: str
    value: str
    future: asyncio.Future[None]


@dataclass(slots=True)
class Quarantine:
    row: tuple[str, str, str, str]  # (status, reason, updated_at, execution_id)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[3]


@dataclass(slots=True)
class PostCommand:
    row: tuple[str, str, str, str]  # (execution_id, kind, payload JSON, posted_at)
    future: asyncio.Future[None]
    id: int = 0  # the command's id, once committed

    @property
    def execution_id(self) -> str:
        return self.row[0]


@dataclass(slots=True)
class DeleteCommands:
    ids: list[int]
    future: asyncio.Future[None]


Write = (
    SaveProcedure | CreateExecution | Commit | SetMeta | Quarantine | PostCommand | DeleteCommands
)


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


class Writer:
    """The writer connection of a ``SQLiteBackend`` and the queue in front of it.

    Attributes:
        stats: What it has committed so far.
    """

    def __init__(self, path: str, db: aiosqlite.Connection) -> None:
        self._path = path
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self.stats = WriteStats()
        self._task = asyncio.get_running_loop().create_task(
            self._write_loop(db), name=f"procstore writer {path}"
        )

    async def submit(self, make: Callable[[asyncio.Future[None]], Write]) -> None:
        """Queue the write ``make(future)`` builds and wait until it is committed or failed."""
        if self._task.done():
            raise StoreError(f"the writer of {self._path} has stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(make(future))
        await future

    async def stop(self) -> None:
        """Commit what is queued, then stop (what is queued later fails as closed)."""
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._task

    async def _write_loop(self, db: aiosqlite.Connection) -> None:
        """Commit queued writes in batches until the ``None`` that ``stop`` queues."""
        queue = self._queue
        stopping = False
        try:
            while not stopping:
                item = await queue.get()
                batch: list[Write] = []
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

    async def _commit_batch(self, db: aiosqlite.Connection, batch: list[Write]) -> None:
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
            self.stats = WriteStats(
                writes=self.stats.writes + len(batch),
                batches=self.stats.batches + 1,
                one_by_one=self.stats.one_by_one + one_by_one,
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
        self, db: aiosqlite.Connection, batch: list[Write]
    ) -> list[ProcstoreError | None] | None:
        """Apply a batch with one statement per kind of row (the fast path).

        Creations are applied before commits, so this is only right when no commit in the batch
        precedes the creation of its execution, and it trusts that every commit's execution
        exists and no creation's id is taken. When that does not hold it returns ``None`` (the
        caller rolls back and applies the writes one by one); otherwise one outcome per write.
        """
        if not _creations_first(batch):
            return None
        outcomes = [
            await self._apply_alone(db, w)
            if isinstance(w, SaveProcedure | SetMeta | Quarantine)
            else None
            for w in batch
        ]
        creates = [w for w in batch if isinstance(w, CreateExecution)]
        commits = [w for w in batch if isinstance(w, Commit)]
        if not await _create_together(db, creates) or not await _commit_together(db, commits):
            return None
        # Last: a command may be for an execution this batch creates.
        for i, write in enumerate(batch):
            if isinstance(write, PostCommand | DeleteCommands):
                outcomes[i] = await self._apply_alone(db, write)
        return outcomes

    async def _save_procedure(self, db: aiosqlite.Connection, write: SaveProcedure) -> None:
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
            if json_object(document, "", problems) != json.loads(write.document) or problems:
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

    async def _apply_alone(self, db: aiosqlite.Connection, write: Write) -> ProcstoreError | None:
        """Apply one write inside the open transaction; return why it was rejected, if it was."""
        try:
            await self._apply_alone_or_reject(db, write)
        except _Rejected as rejected:
            return rejected.error
        return None

    async def _apply_alone_or_reject(self, db: aiosqlite.Connection, write: Write) -> None:
        """Apply one write, or raise ``_Rejected`` before changing anything."""
        if isinstance(write, SaveProcedure):
            await self._save_procedure(db, write)
        elif isinstance(write, SetMeta):
            await db.execute(_SET_META, (write.key, write.value))
        elif isinstance(write, DeleteCommands):
            await db.executemany(_DELETE_COMMAND, [(i,) for i in write.ids])
        elif isinstance(write, CreateExecution):
            await self._create(db, write)
        elif isinstance(write, PostCommand):
            rows = list(await db.execute_fetchall(_POST_COMMAND, write.row))
            self._found(rows, write.execution_id)
            write.id = int(rows[0][0])
        elif isinstance(write, Quarantine):
            self._found(await db.execute_fetchall(_QUARANTINE, write.row), write.execution_id)
        else:
            self._found(await db.execute_fetchall(_UPDATE_EXECUTION, write.row), write.execution_id)
            if write.journal:
                await db.executemany(_APPEND_RECORD, write.journal)

    async def _create(self, db: aiosqlite.Connection, write: CreateExecution) -> None:
        """Insert a new execution, its first records and (announced) its start command."""
        if not await db.execute_fetchall(_INSERT_EXECUTION, write.row):
            raise _Rejected(
                StoreError(f"execution {write.execution_id!r} already exists in {self._path}")
            )
        if write.journal:
            await db.executemany(_INSERT_FIRST_RECORDS, write.journal)
        if write.announce:
            await db.execute(_ANNOUNCE, (write.execution_id, write.row[5]))

    def _found(self, rows: Iterable[Any], execution_id: str) -> None:
        """Reject the write whose statement returned no ``rows``: its execution is unknown."""
        if not list(rows):
            raise _Rejected(ExecutionNotFound(f"no execution {execution_id!r} in {self._path}"))


async def _create_together(db: aiosqlite.Connection, creates: list[CreateExecution]) -> bool:
    """Insert the executions of ``creates`` with one statement per kind of row; ``False``
    when an id is taken (or a value is invalid): the batch is then applied write by write."""
    if not creates:
        return True
    try:
        await db.executemany(_INSERT_EXECUTION_STRICT, [w.row for w in creates])
        first_records = [r for w in creates for r in w.journal]
        if first_records:
            await db.executemany(_INSERT_FIRST_RECORDS, first_records)
        announced = [(w.execution_id, w.row[5]) for w in creates if w.announce]
        if announced:
            await db.executemany(_ANNOUNCE, announced)
    except sqlite3.IntegrityError:
        return False
    return True


async def _commit_together(db: aiosqlite.Connection, commits: list[Commit]) -> bool:
    """Apply ``commits`` with one statement per kind of row; ``False`` when some execution does
    not exist: the batch is then applied write by write."""
    if not commits:
        return True
    cursor = await db.executemany(_UPDATE_EXECUTION_MANY, [w.row for w in commits])
    if cursor.rowcount != len(commits):
        return False
    appended = [r for w in commits for r in w.journal]
    if appended:
        await db.executemany(_APPEND_RECORD, appended)
    return True


def _creations_first(batch: list[Write]) -> bool:
    """Whether ``batch`` creates each execution at most once, and before any commit of it or
    command for it: then applying all its creations before all its commits and commands keeps
    their order."""
    created: set[str] = set()
    creating = {w.execution_id for w in batch if isinstance(w, CreateExecution)}
    for write in batch:
        if isinstance(write, CreateExecution):
            if write.execution_id in created:
                return False
            created.add(write.execution_id)
        elif (
            isinstance(write, Commit | PostCommand)
            and write.execution_id in creating
            and write.execution_id not in created
        ):
            return False
    return True


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def now() -> str:
    """The current UTC time, as the backend stores timestamps."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
