"""Where the SQLite writer commits: on the event loop's thread when nothing can make it wait
(``synchronous=NORMAL``, the write lock free, a small batch), on its connection's thread
otherwise; and the write-ahead log it keeps checkpointed meanwhile."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from procstore.storage import SQLiteBackend
from procstore.storage.sqlite.connections import wal_path
from procstore.storage.sqlite.writer import CHECKPOINT_PAGES, INLINE_MAX_WRITES, PAGE_BYTES
from tests.conftest import make_execution, within


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    opened = await SQLiteBackend.open(tmp_path / "procstore.db", synchronous="NORMAL")
    yield opened
    await opened.close()


async def test_a_commit_waits_for_another_connections_write_lock_without_blocking_the_loop(
    backend: SQLiteBackend,
) -> None:
    await make_execution(backend, "e1")
    other = sqlite3.connect(backend.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write, holding SQLite's lock
        commit = asyncio.ensure_future(backend.commit("e1", "done", {"n": 1}, [{"n": 1}]))
        ticks = 0
        for _ in range(5):  # the event loop goes on while the commit waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 5 and not commit.done()
        other.execute("ROLLBACK")
        await within(commit)
    finally:
        other.close()
    stored = await backend.load_execution("e1")
    assert stored is not None and stored.status == "done" and stored.records[-1] == {"n": 1}


async def test_the_write_ahead_log_is_checkpointed_while_commits_run_on_the_loop(
    backend: SQLiteBackend,
) -> None:
    await make_execution(backend, "e1")
    big = {"blob": "x" * PAGE_BYTES * 2}  # three pages or more per commit
    for n in range(CHECKPOINT_PAGES):  # some 3,000 pages of log without a checkpoint
        await backend.commit("e1", "running", big, [{"n": n}])
    # Each checkpoint lets SQLite write the log again from its start: it stays about the size
    # of what is written between two checkpoints.
    assert os.path.getsize(wal_path(backend.path)) < 2 * CHECKPOINT_PAGES * PAGE_BYTES


async def test_the_write_ahead_log_is_checkpointed_when_large_batches_commit_on_the_thread(
    backend: SQLiteBackend,
) -> None:
    ids = [f"e{n}" for n in range(INLINE_MAX_WRITES * 4)]  # batches too large for the loop
    for execution_id in ids:
        await make_execution(backend, execution_id)
    big = {"blob": "x" * PAGE_BYTES * 2}
    for n in range(CHECKPOINT_PAGES // len(ids) * 3):  # some 3,000 pages of log in all
        await asyncio.gather(*(backend.commit(i, "running", big, [{"n": n}]) for i in ids))
    assert backend.write_stats.writes / backend.write_stats.batches > INLINE_MAX_WRITES
    assert os.path.getsize(wal_path(backend.path)) < 2 * CHECKPOINT_PAGES * PAGE_BYTES
