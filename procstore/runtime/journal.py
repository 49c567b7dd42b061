"""Write-ahead: an execution's records and checkpoint, committed before what they lead to runs.

The runtime knows nothing about databases: a persisted execution is given a `Journal` (the
store's view of its row) and writes through a `Writer`, which commits the records appended
since the last commit together with a fresh checkpoint, in one transaction. A failed commit
stops the execution (see `Writer.flush`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from procstore.errors import LeaseLost, StoreError

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["Journal", "Writer"]

logger = logging.getLogger("procstore")


class Journal(Protocol):
    """Where a persistent store keeps an execution: its snapshot and its history records."""

    async def create(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        """Store a new execution with its first records."""

    def commit(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> Awaitable[None]:
        """Append ``records`` and replace the snapshot, in one transaction.

        Awaitable, not necessarily a coroutine: a journal may queue the commit at once and
        return the future its store's writer settles (SQLite's does), which spares a task per
        commit; each task switch costs about as much as SQLite's commit. `Writer` waits for
        it through ``asyncio.shield``, so its caller's cancellation never withdraws it."""


class Writer:
    """Commits one execution's history and checkpoints to its journal (none: in memory).

    Attributes:
        flushed: How many history records the journal holds.
        stored: The checkpoint last committed.
        failure: The failed write that stopped the execution, if one did.
    """

    __slots__ = ("_commit", "_count", "_lock", "_run", "failure", "flushed", "journal", "stored")

    def __init__(self, run: Run, journal: Journal | None) -> None:
        self._run = run
        self.journal = journal
        self._lock = asyncio.Lock()
        # The commit last queued, until a flusher has counted it (its caller was cancelled),
        # and what counts it.
        self._commit: asyncio.Future[None] | None = None
        self._count: Callable[[asyncio.Future[None]], None] | None = None
        self.flushed = 0
        self.stored: dict[str, Any] | None = None
        self.failure: StoreError | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held while committing (and, by a new execution, until it is stored)."""
        return self._lock

    async def create(self) -> None:
        """Store a new execution with what it has recorded so far."""
        assert self.journal is not None
        history = self._run.history
        end = len(history)
        status, checkpoint = self._run.snapshot()
        await self.journal.create(status, checkpoint, history.dicts(0, end))
        self.flushed, self.stored = end, checkpoint
        self._run.touch()

    async def flush(self) -> None:
        """Commit the records since the last flush with a checkpoint, in one transaction.

        Raises:
            StoreError: the write failed (now or before): the execution has stopped.
        """
        journal = self.journal
        if journal is None:
            return
        async with self._lock:
            self.raise_if_failed()  # under the lock: an earlier flusher may have failed
            try:
                previous, count = self._commit, self._count
                if previous is not None and count is not None:
                    # A cancelled flusher's commit may still be going: wait for it. Once done,
                    # count it here: its done callback may not have run yet, and records
                    # taken before it has would be sent twice.
                    await asyncio.shield(previous)
                    count(previous)
                    self._commit = self._count = None
                history = self._run.history
                end = len(history)
                if end == self.flushed:
                    return
                records = history.dicts(self.flushed, end)
                status, checkpoint = self._run.snapshot()
                # Waited for through a shield: if this caller is cancelled (a timeout around
                # send()), the commit still completes and is counted, so no record is sent
                # twice. A future is used as it is; a coroutine becomes a task.
                commit = asyncio.ensure_future(journal.commit(status, checkpoint, records))
                count = functools.partial(self._committed, end, checkpoint)
                commit.add_done_callback(count)  # counted even if this caller is cancelled
                self._commit, self._count = commit, count
                await asyncio.shield(commit)
                count(commit)
                self._commit = self._count = None
                self._run.touch()
            except Exception as exc:
                self.fail(exc)
                self.raise_if_failed()

    def _committed(
        self, end: int, checkpoint: dict[str, Any], commit: asyncio.Future[None]
    ) -> None:
        if not commit.cancelled() and commit.exception() is None and end >= self.flushed:
            self.flushed, self.stored = end, checkpoint
            # Touched here as well as by the flusher: one cancelled meanwhile (a timeout
            # around send()) no longer touches, and an execution is not parked before its
            # records are all committed, so nothing else would look at it again.
            self._run.touch()

    def fail(self, error: Exception) -> None:
        """Stop the execution for ``error`` (a failed write, or a lease another worker took):
        it commits nothing more, and the handle shows what was last committed."""
        if self.failure is not None:
            return
        self.failure = error if isinstance(error, StoreError) else StoreError(str(error))
        if isinstance(error, LeaseLost):  # not a failure: the execution goes on elsewhere
            logger.warning(
                "execution %s dropped here: %s; the worker that holds it carries it on",
                self._run.id,
                error,
            )
        else:
            logger.error(
                "execution %s stopped: a write to its store failed (%s); it stays as last "
                "stored and store.recover() carries it on once writes work again",
                self._run.id,
                self.failure,
            )
        self._run.stop(self.failure)

    def raise_if_failed(self) -> None:
        """Raise the failure that stopped the execution, if a write failed (``LeaseLost``
        when another worker took the execution over)."""
        failure = self.failure
        if isinstance(failure, LeaseLost):
            raise LeaseLost(failure.execution_id, failure.detail) from failure
        if failure is not None:
            raise StoreError(
                f"execution {self._run.id}: this handle is stopped: a write to its store failed "
                f"({self.failure})"
            ) from self.failure

    def detach(self) -> None:
        """Write nothing more (the store is closing, or the execution was found damaged)."""
        self.journal = None
