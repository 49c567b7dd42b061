"""The SQLite backend's writer: one connection, fed by one queue, committing in groups.

Writes from every task of the process go through one queue to one writer connection. The
writer takes whatever is queued (up to ``MAX_BATCH`` writes) and commits it as one SQLite
transaction (*group commit*): no write ever waits on SQLite's file lock inside the process, so
"database is locked" cannot happen between tasks, and with ``synchronous=FULL`` one fsync serves
a whole batch. A round trip to the connection's thread costs more than the SQL of a small
write, so a batch is one call to that thread (``ThreadedConnection.call``): it begins the
transaction, applies the batch with one ``executemany`` per kind of row whatever its size, and
commits; if that finds a problem (an unknown execution, a taken id) the transaction is rolled
back and the batch applied write by write, in the same call. Each write still succeeds or fails
on its own: a write that is rejected (unknown execution, duplicate id, conflicting procedure)
is rejected before it changes anything, so the rest of its batch commits. A failure of the
transaction itself (disk full, I/O error) fails every write of the batch, and none of them is
applied. A write whose caller was cancelled before the writer took it is dropped; one cancelled
later may or may not be committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from procstore.errors import ProcstoreError, StoreError
from procstore.storage.sqlite.connections import BUSY_TIMEOUT_MS
from procstore.storage.sqlite.threaded import ThreadedConnection
from procstore.storage.sqlite.writes import (
    Commit,
    CreateExecution,
    Write,
    apply_alone,
    apply_together,
)

__all__ = [
    "CHECKPOINT_PAGES",
    "INLINE_MAX_WRITES",
    "MAX_BATCH",
    "PAGE_BYTES",
    "WriteStats",
    "Writer",
    "now",
]

MAX_BATCH: Final = 256
"""Most writes committed in one transaction."""

CHECKPOINT_PAGES: Final = 1000
"""How many pages the writer lets the write-ahead log grow by (estimated from what it wrote)
before it checkpoints it, when it commits on the event loop's thread (SQLite's own automatic
checkpoint threshold, which the writer then turns off: see ``Writer``)."""

INLINE_MAX_WRITES: Final = 8
"""The largest batch the writer commits on the event loop's thread (see ``Writer``): a larger
one goes to the connection's thread, where its SQL runs beside the event loop (SQLite lets go
of Python's lock while it works) instead of in turn with it."""

PAGE_BYTES: Final = 4096
"""The page size the checkpoint estimate assumes (SQLite's default)."""


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

    With ``inline`` (``synchronous=NORMAL``, where a commit writes to the log without waiting
    for the disk), a small batch (at most ``INLINE_MAX_WRITES`` writes) is committed on the
    event loop's own thread when nothing can make it wait: the round trip to the connection's
    thread costs more than such a commit. It only
    begins there if it takes SQLite's write lock at once; when another process holds the lock
    (a client posting a command), the batch goes to the connection's thread, which waits for
    the lock as every write did. SQLite's automatic checkpoint (copying the log into the
    database file, with an fsync) would run inside the commit that crosses its threshold, on
    the event loop; it is turned off, and the writer checkpoints on the connection's thread
    instead after every ``CHECKPOINT_PAGES`` (estimated) pages. ``synchronous=FULL`` commits
    always go to the thread: each waits for an fsync.

    Attributes:
        stats: What it has committed so far.
    """

    def __init__(self, path: str, db: ThreadedConnection, *, inline: bool = False) -> None:
        self._path = path
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._inline = inline
        self._unchecked_pages = 0  # estimated pages written since the last checkpoint
        self.stats = WriteStats()
        self._task = asyncio.get_running_loop().create_task(
            self._write_loop(db), name=f"procstore writer {path}"
        )

    async def submit(self, make: Callable[[asyncio.Future[None]], Write]) -> None:
        """Queue the write ``make(future)`` builds and wait until it is committed or failed."""
        await self.queue(make)

    def queue(self, make: Callable[[asyncio.Future[None]], Write]) -> asyncio.Future[None]:
        """Queue the write ``make(future)`` builds; return ``future``, which is done once the
        write is committed or failed (cancelled before the writer takes it: dropped)."""
        if self._task.done():
            raise StoreError(f"the writer of {self._path} has stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(make(future))
        return future

    async def stop(self) -> None:
        """Commit what is queued, then stop (what is queued later fails as closed)."""
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._task

    async def _write_loop(self, db: ThreadedConnection) -> None:
        """Commit queued writes in batches until the ``None`` that ``stop`` queues."""
        queue = self._queue
        stopping = False
        try:
            if self._inline:
                await db.execute("PRAGMA wal_autocheckpoint = 0")
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
                    await self._checkpoint_if_due(db)
        finally:
            while not queue.empty():
                item = queue.get_nowait()
                if item is not None:
                    _settle(item.future, StoreError(f"the store on {self._path} is closed"))

    async def _checkpoint_if_due(self, db: ThreadedConnection) -> None:
        """Checkpoint the write-ahead log on the connection's thread once the commits since
        the last one have added ``CHECKPOINT_PAGES`` to it (see the class's docstring)."""
        if self._unchecked_pages >= CHECKPOINT_PAGES:
            self._unchecked_pages = 0
            with contextlib.suppress(sqlite3.Error):  # busy or failing: the next one tries again
                await db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _commit_batch(self, db: ThreadedConnection, batch: list[Write]) -> None:
        """Apply ``batch`` in one transaction (here, or in one call to the connection's
        thread: see the class's docstring), then settle each write's future."""
        try:
            done = None
            if self._inline and len(batch) <= INLINE_MAX_WRITES and db.idle:
                done = db.call_here(_commit_now, batch, self._path)
            if done is None:
                done = await db.call(_commit, batch, self._path)
            if self._inline:  # SQLite's own checkpoints are off: count what the log grew by
                self._unchecked_pages += _pages(batch)
            outcomes, one_by_one = done
            self.stats = WriteStats(
                writes=self.stats.writes + len(batch),
                batches=self.stats.batches + 1,
                one_by_one=self.stats.one_by_one + one_by_one,
            )
        except BaseException as exc:
            for write in batch:
                error = StoreError(f"cannot write to {self._path}: {exc!r}")
                error.__cause__ = exc
                _settle(write.future, error)
            if not isinstance(exc, Exception):
                raise
            return
        for write, outcome in zip(batch, outcomes, strict=True):
            _settle(write.future, outcome)


def _commit_now(
    db: sqlite3.Connection, batch: list[Write], where: str
) -> tuple[list[ProcstoreError | None], bool] | None:
    """``_commit``, if SQLite's write lock can be taken without waiting; ``None`` (nothing
    done) if another connection holds it."""
    db.execute("PRAGMA busy_timeout = 0")
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None
        raise
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return _commit(db, batch, where, begun=True)


def _commit(
    db: sqlite3.Connection, batch: list[Write], where: str, *, begun: bool = False
) -> tuple[list[ProcstoreError | None], bool]:
    """Apply ``batch`` in one transaction (``begun``: already begun): together if it can,
    else write by write. Returns each write's outcome, and whether it went write by write.
    A failure of the transaction itself rolls it back and raises."""
    try:
        if not begun:
            db.execute("BEGIN IMMEDIATE")
        outcomes = apply_together(db, batch, where)
        one_by_one = outcomes is None
        if outcomes is None:
            db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            outcomes = [apply_alone(db, write, where) for write in batch]
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return outcomes, one_by_one


def _pages(batch: list[Write]) -> int:
    """An estimate of the pages committing ``batch`` adds to the write-ahead log: two for the
    transaction, and per write one plus its bytes. (Measured with SQLite 3.40: a commit of one
    execution adds 3 pages, a batch of 10 adds 15, a batch of 100 adds 99.)"""
    pages = 2
    for write in batch:
        if isinstance(write, Commit):
            size = len(write.row[1]) + sum(len(record) for _, record in write.journal)
        elif isinstance(write, CreateExecution):
            size = len(write.row[4]) + sum(len(record) for _, _, record in write.journal)
        else:
            size = 0
        pages += 1 + size // PAGE_BYTES
    return pages


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
