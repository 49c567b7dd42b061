"""What only the SQLite storage backend does: its file, schema and migrations, integrity checks,
the group-commit writer, read-only use and the runner lock across processes. What every backend
does is tests/storage/test_backend_contract.py."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from procstore.errors import ExecutionNotFound, StoreError
from procstore.storage import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SQLiteBackend,
    StoredExecution,
)
from procstore.storage.sqlite import schema
from procstore.storage.sqlite import writes as writes_module
from tests.conftest import fingerprint, make_execution, read_line

# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "procstore.db")


@pytest.fixture
async def backend(db_path: str) -> AsyncIterator[SQLiteBackend]:
    opened = await SQLiteBackend.open(db_path)
    yield opened
    await opened.close()


def raw_query(path: str, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
    """Run ``sql`` on a plain sqlite3 connection (to look at the file behind the backend)."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from procstore.errors import StoreError
    from procstore.storage import SQLiteBackend

    async def main(path: str, action: str) -> None:
        backend = await SQLiteBackend.open(path)
        if action == "try-lock":
            try:
                await backend.acquire_runner_lock()
            except StoreError as exc:
                print(f"error: {exc}", flush=True)
            else:
                print("acquired", flush=True)
            await backend.close()
            return
        await backend.acquire_runner_lock()
        for n in range(3):
            await backend.create_execution(f"child-{n}", "deploy", "1.0", "running", {}, [])
            await backend.commit(f"child-{n}", "running", {"step": 1}, [{"n": 1}, {"n": 2}])
        print("ready", flush=True)
        await asyncio.Event().wait()  # hold the lock and the open database until killed

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def run_child(path: str, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, path, action],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def lock_holder(db_path: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the runner lock on ``db_path`` and has written 3 executions."""
    process = run_child(db_path, "hold")
    try:
        assert read_line(process) == "ready"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


# -- opening and the file -----------------------------------------------------------------------


async def test_a_missing_file_is_initialised(db_path: str) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.close()
    assert raw_query(db_path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert raw_query(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


async def test_an_empty_file_is_initialised(db_path: str) -> None:
    Path(db_path).touch()
    backend = await SQLiteBackend.open(db_path)
    await backend.close()
    assert raw_query(db_path, "PRAGMA application_id") == [(APPLICATION_ID,)]


async def test_the_database_is_in_wal_mode(db_path: str) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.close()
    header = Path(db_path).read_bytes()[:100]
    assert header[18:20] == b"\x02\x02"  # read and write versions 2: WAL


async def test_close_leaves_no_side_files(db_path: str) -> None:
    backend = await SQLiteBackend.open(db_path)
    await make_execution(backend, "e1")
    await backend.close()
    assert sorted(os.listdir(Path(db_path).parent)) == ["procstore.db"]


@pytest.mark.parametrize(("synchronous", "pragma_value"), [("NORMAL", 1), ("FULL", 2)])
async def test_synchronous_setting_is_applied_and_writes_persist(
    db_path: str, synchronous: Any, pragma_value: int
) -> None:
    backend = await SQLiteBackend.open(db_path, synchronous=synchronous)
    assert backend._writer is not None
    assert list(await backend._writer.execute_fetchall("PRAGMA synchronous")) == [(pragma_value,)]
    await make_execution(backend, "e1")
    await backend.commit("e1", "done", {"state": "end"}, [{"kind": "finished"}])
    await backend.close()
    reopened = await SQLiteBackend.open(db_path, synchronous=synchronous)
    stored = await reopened.load_execution("e1")
    await reopened.close()
    assert stored is not None and stored.status == "done" and len(stored.records) == 2


async def test_an_unknown_synchronous_setting_raises_value_error(db_path: str) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        await SQLiteBackend.open(db_path, synchronous="OFF")  # type: ignore[arg-type]
    assert not os.path.exists(db_path)


async def test_reopening_after_close_gives_identical_data(db_path: str) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.save_procedure("deploy", "1.0", {"name": "deploy", "version": "1.0"})
    await backend.save_procedure("audit", "2.1", {"name": "audit", "ünïcode": "✓"})
    for n in range(5):
        await make_execution(backend, f"e{n}", status="running" if n % 2 else "succeeded")
        await backend.commit(f"e{n}", "running", {"state": f"s{n}", "ctx": {"n": n}}, [{"n": n}])
    before = (
        await backend.load_procedures(),
        await backend.list_executions(),
        [await backend.load_execution(f"e{n}") for n in range(5)],
        await backend.unfinished_execution_ids(),
    )
    await backend.close()
    reopened = await SQLiteBackend.open(db_path)
    after = (
        await reopened.load_procedures(),
        await reopened.list_executions(),
        [await reopened.load_execution(f"e{n}") for n in range(5)],
        await reopened.unfinished_execution_ids(),
    )
    await reopened.close()
    assert after == before


# -- files that are not procstore databases ------------------------------------------------------


def _foreign_with_application_id(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA application_id = 305419896")  # 0x12345678
    connection.execute("CREATE TABLE contacts (name TEXT)")
    connection.execute("INSERT INTO contacts VALUES ('ada')")
    connection.commit()
    connection.close()


def _foreign_without_application_id(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    connection.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    connection.commit()
    connection.close()


def _foreign_in_wal_mode(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE events (at REAL)")
    connection.execute("INSERT INTO events VALUES (1.5)")
    connection.commit()
    connection.close()


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(5).randbytes(8192))


def _text_file(path: Path) -> None:
    path.write_text("name: deploy\nversion: 1.0\n")


def _sqlite_header_then_garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + random.Random(7).randbytes(4080))


def _truncated_procstore_database(path: Path) -> None:
    source = path.with_name("source.db")
    connection = sqlite3.connect(source)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in schema.statements(schema.MIGRATIONS[0]):
        connection.execute(statement)
    connection.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    connection.commit()
    connection.close()
    path.write_bytes(source.read_bytes()[:4096])  # page 1 only: the meta table is gone
    source.unlink()


@pytest.mark.parametrize(
    "make",
    [
        _foreign_with_application_id,
        _foreign_without_application_id,
        _foreign_in_wal_mode,
        _random_bytes,
        _text_file,
        _sqlite_header_then_garbage,
        _truncated_procstore_database,
    ],
)
@pytest.mark.parametrize("read_only", [False, True])
async def test_a_file_that_is_not_a_procstore_database_is_rejected_unchanged(
    tmp_path: Path, make: Any, read_only: bool
) -> None:
    path = tmp_path / "other.db"
    make(path)
    before = fingerprint(path)
    with pytest.raises(StoreError, match="is not a procstore database") as caught:
        await SQLiteBackend.open(path, read_only=read_only)
    assert str(path) in str(caught.value)
    assert fingerprint(path) == before  # same bytes, and no -wal / -shm / .lock beside it


def test_a_fifo_in_place_of_the_database_is_rejected_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "procstore.db"
    os.mkfifo(fifo)
    script = (
        "import asyncio, sys\n"
        "from procstore.storage import SQLiteBackend\n"
        "asyncio.run(SQLiteBackend.open(sys.argv[1]))\n"
    )
    child = subprocess.run(  # in a child: a blocking open would hang this process for good
        [sys.executable, "-c", script, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 1
    assert f"StoreError: {fifo} is not a procstore database (not a regular file)" in child.stderr


async def test_a_database_written_by_a_newer_procstore_is_rejected_unchanged(
    db_path: str,
) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.close()
    connection = sqlite3.connect(db_path)
    connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(99),))
    connection.commit()
    connection.close()
    before = fingerprint(Path(db_path))
    with pytest.raises(StoreError) as caught:
        await SQLiteBackend.open(db_path)
    assert str(caught.value) == (
        f"{db_path} was written by a newer procstore (schema 99); "
        f"this one knows up to {SCHEMA_VERSION}"
    )
    assert fingerprint(Path(db_path)) == before


# -- migrations ---------------------------------------------------------------------------------


async def test_a_pending_migration_is_applied_on_open(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await SQLiteBackend.open(db_path)
    await make_execution(backend, "e1")
    await backend.close()
    next_migration = """
        CREATE TABLE tags (execution_id TEXT NOT NULL, tag TEXT NOT NULL);
        CREATE TRIGGER tag_new AFTER INSERT ON executions BEGIN
            INSERT INTO tags VALUES (NEW.id, 'new');
        END;
    """
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, next_migration))
    migrated = await SQLiteBackend.open(db_path)
    await make_execution(migrated, "e2")
    stored = await migrated.load_execution("e1")
    await migrated.close()
    assert raw_query(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION + 1),)
    ]
    assert raw_query(db_path, "SELECT * FROM tags") == [("e2", "new")]
    assert stored is not None and stored.records == [{"kind": "started", "n": 0}]


async def test_a_failing_migration_leaves_the_database_as_it_was(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.close()
    broken = "CREATE TABLE half_done (a INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, broken))
    with pytest.raises(
        StoreError, match=f"cannot migrate .* from schema {SCHEMA_VERSION} to {SCHEMA_VERSION + 1}"
    ):
        await SQLiteBackend.open(db_path)
    assert raw_query(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert raw_query(db_path, "SELECT name FROM sqlite_schema WHERE name = 'half_done'") == []


async def test_read_only_open_of_a_database_needing_migration_raises(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.close()
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, "SELECT 1;"))
    with pytest.raises(StoreError, match="open it once without read_only"):
        await SQLiteBackend.open(db_path, read_only=True)


# -- the journal in the file --------------------------------------------------------------------


async def test_journal_seq_continues_per_execution_from_one(
    db_path: str, backend: SQLiteBackend
) -> None:
    await make_execution(backend, "a", records=2)
    await make_execution(backend, "b", records=0)
    await backend.commit("b", "running", {}, [{"n": 1}])
    await backend.commit("a", "running", {}, [{"n": 3}, {"n": 4}])
    await backend.commit("b", "running", {}, [{"n": 2}])
    rows = raw_query(db_path, "SELECT execution_id, seq FROM journal ORDER BY execution_id, seq")
    assert rows == [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 1), ("b", 2)]


async def test_commit_to_an_unknown_execution_raises_and_writes_nothing(
    db_path: str, backend: SQLiteBackend
) -> None:
    with pytest.raises(ExecutionNotFound, match="'ghost'"):
        await backend.commit("ghost", "running", {}, [{"kind": "x"}])
    assert raw_query(db_path, "SELECT count(*) FROM journal") == [(0,)]


# -- the writer: batching, rejection, cancellation ------------------------------------------------


async def test_1000_concurrent_executions_lose_and_duplicate_no_record(
    db_path: str, backend: SQLiteBackend
) -> None:
    rng = random.Random(1000)
    plans = {
        f"ex-{n:04d}": [rng.randint(0, 3) for _ in range(rng.randint(2, 6))] for n in range(1000)
    }

    async def run(execution_id: str, commits: list[int]) -> list[dict[str, Any]]:
        expected = [{"id": execution_id, "n": 0}]
        await backend.create_execution(execution_id, "p", "1", "running", {"at": 0}, expected)
        for step, count in enumerate(commits, 1):
            new = [{"id": execution_id, "n": len(expected) + i} for i in range(count)]
            expected += new
            status = "running" if step < len(commits) else "succeeded"
            await backend.commit(execution_id, status, {"at": step}, new)
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        return expected

    expected = await asyncio.gather(*(run(i, commits) for i, commits in plans.items()))

    stored = await asyncio.gather(*(backend.load_execution(i) for i in plans))
    for execution_id, records, execution in zip(plans, expected, stored, strict=True):
        assert execution is not None
        assert execution.records == records
        assert execution.status == "succeeded"
        assert execution.snapshot == {"at": len(plans[execution_id])}
    seqs = raw_query(
        db_path,
        "SELECT count(*), sum(seq = rank) FROM (SELECT seq, row_number() "
        "OVER (PARTITION BY execution_id ORDER BY seq) AS rank FROM journal)",
    )
    total = sum(len(records) for records in expected)
    assert seqs == [(total, total)]  # every journal is exactly 1..n


async def test_reads_during_concurrent_writes_see_whole_commits(backend: SQLiteBackend) -> None:
    ids = [f"e{n}" for n in range(50)]
    for execution_id in ids:
        await backend.create_execution(
            execution_id, "p", "1", "running", {"records": 1}, [{"n": 0}]
        )

    async def write(execution_id: str) -> None:
        for n in range(1, 21):
            await backend.commit(execution_id, "running", {"records": n + 1}, [{"n": n}])

    writers = asyncio.gather(*(write(i) for i in ids))
    loads = 0
    rng = random.Random(3)
    while not writers.done():
        stored = await backend.load_execution(rng.choice(ids))
        assert stored is not None
        assert stored.snapshot == {"records": len(stored.records)}
        assert stored.records == [{"n": n} for n in range(len(stored.records))]
        loads += 1
    await writers
    assert loads > 10


async def test_concurrent_writes_are_committed_in_batches(backend: SQLiteBackend) -> None:
    await asyncio.gather(*(make_execution(backend, f"e{n}") for n in range(100)))
    stats = backend.write_stats
    assert stats.writes == 100
    assert stats.batches < 100
    assert stats.one_by_one == 0


async def commit_when_run(backend: SQLiteBackend, *args: Any) -> None:
    """``backend.commit``, queued when the task running it starts, as ``make_execution``'s
    write is: so that a ``gather`` queues its writes in the order it lists them
    (``commit`` queues at once when called)."""
    await backend.commit(*args)


async def test_a_rejected_write_does_not_fail_the_rest_of_its_batch(
    backend: SQLiteBackend,
) -> None:
    await make_execution(backend, "e1")
    results = await asyncio.gather(
        commit_when_run(backend, "e1", "running", {"step": 1}, [{"n": 1}]),
        commit_when_run(backend, "ghost", "running", {}, [{"n": 1}]),
        make_execution(backend, "e1"),
        make_execution(backend, "e2"),
        commit_when_run(backend, "e1", "succeeded", {"step": 2}, [{"n": 2}]),
        return_exceptions=True,
    )
    assert results[0] is None and results[3] is None and results[4] is None
    assert isinstance(results[1], ExecutionNotFound)
    assert isinstance(results[2], StoreError)
    e1 = await backend.load_execution("e1")
    assert e1 is not None and e1.status == "succeeded"
    assert e1.records == [{"kind": "started", "n": 0}, {"n": 1}, {"n": 2}]
    assert await backend.load_execution("e2") is not None
    assert backend.write_stats.one_by_one == 1


async def test_a_commit_to_an_unknown_execution_fails_alone_in_its_batch(
    backend: SQLiteBackend,
) -> None:
    await make_execution(backend, "e1")
    await make_execution(backend, "e2")
    results = await asyncio.gather(
        backend.commit("e1", "running", {}, [{"n": 1}]),
        backend.commit("ghost", "running", {}, [{"n": 1}]),
        backend.commit("e2", "running", {}, [{"n": 1}]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ExecutionNotFound)
    for execution_id in ("e1", "e2"):
        stored = await backend.load_execution(execution_id)
        assert stored is not None and stored.records == [{"kind": "started", "n": 0}, {"n": 1}]


async def test_a_failing_transaction_fails_its_whole_batch_and_applies_nothing(
    backend: SQLiteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_execution(backend, "e1")
    monkeypatch.setattr(writes_module, "_APPEND_RECORD", "INSERT INTO nowhere VALUES (?1, ?2)")
    results = await asyncio.gather(
        make_execution(backend, "e2", records=0),
        commit_when_run(backend, "e1", "succeeded", {"lost": True}, [{"n": 1}]),
        return_exceptions=True,
    )
    monkeypatch.undo()
    assert all(
        isinstance(result, StoreError) and "cannot write" in str(result) for result in results
    )
    assert await backend.load_execution("e2") is None
    e1 = await backend.load_execution("e1")
    assert e1 is not None and e1.status == "running" and len(e1.records) == 1
    await backend.commit("e1", "succeeded", {}, [{"n": 1}])  # the writer carries on


async def test_a_commit_queued_before_its_execution_is_created_is_rejected(
    backend: SQLiteBackend,
) -> None:
    results = await asyncio.gather(
        backend.commit("late", "running", {}, [{"n": 1}]),
        make_execution(backend, "late"),
        return_exceptions=True,
    )
    assert isinstance(results[0], ExecutionNotFound) and results[1] is None
    stored = await backend.load_execution("late")
    assert stored is not None and stored.records == [{"kind": "started", "n": 0}]


async def test_a_write_cancelled_before_the_writer_takes_it_is_dropped(
    backend: SQLiteBackend,
) -> None:
    task = asyncio.create_task(make_execution(backend, "cancelled"))
    await asyncio.sleep(0)  # the task queues its write; the writer has not run yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await make_execution(backend, "after")
    assert await backend.load_execution("cancelled") is None


async def test_close_commits_the_writes_already_queued(db_path: str) -> None:
    backend = await SQLiteBackend.open(db_path)
    writes = [asyncio.create_task(make_execution(backend, f"e{n}")) for n in range(20)]
    await asyncio.sleep(0)
    await backend.close()
    await asyncio.gather(*writes)
    reopened = await SQLiteBackend.open(db_path)
    assert len(await reopened.list_executions()) == 20
    await reopened.close()


# -- read-only use ------------------------------------------------------------------------------


async def test_a_read_only_backend_refuses_writes_and_the_runner_lock(db_path: str) -> None:
    writer = await SQLiteBackend.open(db_path)
    await make_execution(writer, "e1")
    reader = await SQLiteBackend.open(db_path, read_only=True)
    try:
        assert reader.read_only
        with pytest.raises(StoreError, match="read-only"):
            await reader.commit("e1", "running", {}, [])
        with pytest.raises(StoreError, match="read-only"):
            await reader.acquire_runner_lock()
    finally:
        await reader.close()
        await writer.close()


async def test_a_read_only_backend_sees_later_commits(db_path: str) -> None:
    writer = await SQLiteBackend.open(db_path)
    reader = await SQLiteBackend.open(db_path, read_only=True)
    try:
        await make_execution(writer, "e1")
        await writer.commit("e1", "succeeded", {}, [{"n": 1}])
        stored = await reader.load_execution("e1")
        assert stored is not None and stored.status == "succeeded" and len(stored.records) == 2
    finally:
        await reader.close()
        await writer.close()


async def test_read_only_open_of_a_missing_file_raises_and_creates_nothing(
    db_path: str,
) -> None:
    with pytest.raises(StoreError, match="is not a procstore database yet"):
        await SQLiteBackend.open(db_path, read_only=True)
    assert not os.path.exists(db_path)


# -- the runner lock ----------------------------------------------------------------------------


async def test_a_second_backend_in_the_same_process_cannot_take_the_runner_lock(
    db_path: str,
) -> None:
    first = await SQLiteBackend.open(db_path)
    second = await SQLiteBackend.open(db_path)
    try:
        await first.acquire_runner_lock()
        await first.acquire_runner_lock()  # again: a no-op
        with pytest.raises(StoreError, match=f"already used by process {os.getpid()} to run"):
            await second.acquire_runner_lock()
        assert first.holds_runner_lock and not second.holds_runner_lock
    finally:
        await second.close()
        await first.close()


async def test_close_releases_the_runner_lock(db_path: str) -> None:
    first = await SQLiteBackend.open(db_path)
    await first.acquire_runner_lock()
    await first.close()
    second = await SQLiteBackend.open(db_path)
    await second.acquire_runner_lock()
    assert second.holds_runner_lock
    await second.close()


async def test_a_second_process_cannot_take_the_runner_lock(db_path: str) -> None:
    backend = await SQLiteBackend.open(db_path)
    await backend.acquire_runner_lock()
    try:
        child = run_child(db_path, "try-lock")
        line = read_line(child)
        child.communicate(timeout=10)
    finally:
        await backend.close()
    assert line == (f"error: {db_path} is already used by process {os.getpid()} to run executions")


async def test_a_second_process_through_a_symlink_cannot_take_the_runner_lock(
    db_path: str, tmp_path: Path
) -> None:
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    link.symlink_to(db_path)
    backend = await SQLiteBackend.open(db_path)
    await backend.acquire_runner_lock()
    try:
        child = run_child(str(link), "try-lock")
        line = read_line(child)
        child.communicate(timeout=10)
    finally:
        await backend.close()
    assert line == f"error: {link} is already used by process {os.getpid()} to run executions"


async def test_a_second_backend_through_a_symlink_cannot_take_the_runner_lock(
    db_path: str, tmp_path: Path
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(db_path)
    first = await SQLiteBackend.open(db_path)
    second = await SQLiteBackend.open(link)
    try:
        await first.acquire_runner_lock()
        with pytest.raises(StoreError, match=f"already used by process {os.getpid()} to run"):
            await second.acquire_runner_lock()
    finally:
        await second.close()
        await first.close()


async def test_the_runner_lock_keeps_no_file_of_its_own_beside_the_database(
    db_path: str, lock_holder: subprocess.Popen[str]
) -> None:
    name = os.path.basename(db_path)
    assert set(os.listdir(os.path.dirname(db_path))) <= {name, f"{name}-wal", f"{name}-shm"}


async def test_deleting_the_files_beside_the_database_admits_no_second_runner(
    db_path: str, lock_holder: subprocess.Popen[str]
) -> None:
    directory, name = os.path.split(db_path)
    for other in os.listdir(directory):  # all but the database and SQLite's write-ahead log
        if other not in (name, f"{name}-wal", f"{name}-shm"):
            os.unlink(os.path.join(directory, other))
    child = run_child(db_path, "try-lock")
    line = read_line(child)
    child.communicate(timeout=10)
    assert (
        line == f"error: {db_path} is already used by process {lock_holder.pid} to run executions"
    )


async def test_closing_the_runner_keeps_the_sqlite_locks_of_the_process_other_backends(
    db_path: str,
) -> None:
    # An idle WAL connection holds a shared POSIX lock on the file, which tells the last
    # connection to close (in any process) not to checkpoint and delete the -wal and -shm.
    # Closing any descriptor of the file would drop this process's locks: the runner's must
    # stay open while another backend of the process is.
    runner = await SQLiteBackend.open(db_path)
    await runner.acquire_runner_lock()
    await make_execution(runner, "e1")
    reader = await SQLiteBackend.open(db_path, read_only=True)
    try:
        assert [s.id for s in await reader.list_executions()] == ["e1"]
        await runner.close()
        child = run_child(db_path, "try-lock")  # opens the database, then closes it
        assert read_line(child) == "acquired"
        child.communicate(timeout=10)
        assert os.path.exists(f"{db_path}-wal")  # it saw the reader of this process
        assert [s.id for s in await reader.list_executions()] == ["e1"]
    finally:
        await reader.close()


async def test_the_runner_lock_is_released_when_its_holder_is_sigkilled(
    db_path: str, lock_holder: subprocess.Popen[str]
) -> None:
    backend = await SQLiteBackend.open(db_path)
    try:
        with pytest.raises(StoreError, match=f"used by process {lock_holder.pid} to run"):
            await backend.acquire_runner_lock()
        os.kill(lock_holder.pid, signal.SIGKILL)
        assert lock_holder.wait(timeout=10) == -signal.SIGKILL
        await backend.acquire_runner_lock()
        assert backend.holds_runner_lock
    finally:
        await backend.close()


async def test_read_only_listing_works_beside_the_lock_holder(
    db_path: str, lock_holder: subprocess.Popen[str]
) -> None:
    reader = await SQLiteBackend.open(db_path, read_only=True)
    try:
        summaries = await reader.list_executions(status="running")
        stored = await reader.load_execution("child-2")
    finally:
        await reader.close()
    assert [summary.id for summary in summaries] == ["child-0", "child-1", "child-2"]
    assert isinstance(stored, StoredExecution) and stored.records == [{"n": 1}, {"n": 2}]


async def test_commits_survive_a_sigkill_of_the_writing_process(
    db_path: str, lock_holder: subprocess.Popen[str]
) -> None:
    os.kill(lock_holder.pid, signal.SIGKILL)
    lock_holder.wait(timeout=10)
    backend = await SQLiteBackend.open(db_path)
    try:
        await backend.acquire_runner_lock()
        assert await backend.unfinished_execution_ids() == ["child-0", "child-1", "child-2"]
        stored = await backend.load_execution("child-0")
    finally:
        await backend.close()
    assert stored is not None and stored.snapshot == {"step": 1} and len(stored.records) == 2


# -- the benchmark ------------------------------------------------------------------------------


async def test_the_storage_benchmark_measures_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Path(__file__).parents[2] / "perf" / "bench_storage.py"
    spec = importlib.util.spec_from_file_location("bench_storage", script)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_storage", bench)  # dataclasses look it up there
    spec.loader.exec_module(bench)
    row = await bench.measure(tmp_path, "FULL", writers=10, commits=50)
    assert (row.writers, row.commits) == (10, 50)
    assert row.commits_per_second > 0 and row.mean_batch >= 1
    assert os.listdir(tmp_path) == []
