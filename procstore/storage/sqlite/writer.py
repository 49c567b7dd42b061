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
from procstore.storage.sqlite.threaded import ThreadedConnection
from procstore.storage.sqlite.writes import Write, apply_alone, apply_together

__all__ = ["MAX_BATCH", "WriteStats", "Writer", "now"]

MAX_BATCH: Final = 256
"""Most writes committed in one transaction."""


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

    def __init__(self, path: str, db: ThreadedConnection) -> None:
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

    async def _write_loop(self, db: ThreadedConnection) -> None:
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

    async def _commit_batch(self, db: ThreadedConnection, batch: list[Write]) -> None:
        """Apply ``batch`` in one transaction (one call to the connection's thread), then
        settle each write's future."""
        try:
            outcomes, one_by_one = await db.call(_commit, batch, self._path)
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


def _commit(
    db: sqlite3.Connection, batch: list[Write], where: str
) -> tuple[list[ProcstoreError | None], bool]:
    """Apply ``batch`` in one transaction: together if it can, else write by write (on the
    connection's thread). Returns each write's outcome, and whether it went write by write.
    A failure of the transaction itself rolls it back and raises."""
    try:
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
