"""What every storage backend does, run once per backend (``backend`` is parametrised).

A new backend joins by adding itself to ``BACKENDS``; PostgreSQL's gets a new database per test
(the ``postgres_url`` fixture). What only one backend does (SQLite's file, write-ahead log,
runner lock across processes, migrations, group commit) is tested beside it:
tests/storage/test_storage_sqlite.py, tests/storage/test_storage_postgres.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC
from typing import Any

import pytest

from procstore.errors import ExecutionNotFound, StoreError, VersionConflict
from procstore.storage import QUARANTINED, Backend, MemoryBackend, SQLiteBackend
from procstore.storage.postgres import PostgresBackend
from tests import postgres
from tests.conftest import make_execution, within

# The URL of the PostgreSQL database of a test, for a second connection to it (``peer``).
_POSTGRES_URL = pytest.StashKey[str]()


@asynccontextmanager
async def _closed_after(opened: Backend) -> AsyncIterator[Backend]:
    try:
        yield opened
    finally:
        await opened.close()


def _memory(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Backend]:
    return _opened(MemoryBackend.open())


def _sqlite(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Backend]:
    return _opened(SQLiteBackend.open(request.getfixturevalue("tmp_path") / "procstore.db"))


@asynccontextmanager
async def _opened(opening: Awaitable[Backend]) -> AsyncIterator[Backend]:
    async with _closed_after(await opening) as backend:
        yield backend


@asynccontextmanager
async def _postgres(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    server = request.getfixturevalue("postgres_server")
    async with (
        postgres.database(server) as url,
        _closed_after(await PostgresBackend.open(url)) as backend,
    ):
        request.node.stash[_POSTGRES_URL] = url
        yield backend


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Backend]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](request) as opened:
        yield opened


@pytest.fixture
async def peer(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Another connection to ``backend``'s database, as another process would open it (in
    memory, where nobody else can reach it, the backend itself)."""
    if isinstance(backend, SQLiteBackend):
        async with _opened(SQLiteBackend.open(backend.path)) as other:
            yield other
    elif isinstance(backend, PostgresBackend):
        async with _opened(PostgresBackend.open(request.node.stash[_POSTGRES_URL])) as other:
            yield other
    else:
        yield backend


async def test_every_backend_satisfies_the_backend_protocol(backend: Backend) -> None:
    assert isinstance(backend, Backend)


# -- registry -----------------------------------------------------------------------------------


async def test_procedures_load_in_insertion_order(backend: Backend) -> None:
    documents = [{"name": name, "version": "1.0"} for name in ("zeta", "alpha", "mid")]
    for document in documents:
        await backend.save_procedure(document["name"], "1.0", document)
    await backend.save_procedure("alpha", "2.0", {"name": "alpha", "version": "2.0"})
    assert [p.document for p in await backend.load_procedures()] == [
        *documents,
        {"name": "alpha", "version": "2.0"},
    ]


async def test_saving_the_same_procedure_again_is_a_no_op(backend: Backend) -> None:
    document = {"name": "deploy", "version": "1.0", "definition": {"states": {"a": {}}}}
    await backend.save_procedure("deploy", "1.0", document)
    await backend.save_procedure("deploy", "1.0", json.loads(json.dumps(document)))
    assert [p.document for p in await backend.load_procedures()] == [document]


async def test_saving_a_different_document_under_a_stored_version_raises(
    backend: Backend,
) -> None:
    await backend.save_procedure("deploy", "1.0", {"name": "deploy", "steps": 1})
    with pytest.raises(VersionConflict, match=r"'deploy' version '1\.0'"):
        await backend.save_procedure("deploy", "1.0", {"name": "deploy", "steps": 2})
    assert [p.document for p in await backend.load_procedures()] == [{"name": "deploy", "steps": 1}]


async def test_the_backend_refuses_an_alias_of_a_stored_version(backend: Backend) -> None:
    document = {"name": "p", "version": "1.0"}
    await backend.save_procedure("p", "1.0", document)
    await backend.save_procedure("p", "1.0", document)  # the same spelling: a no-op
    with pytest.raises(VersionConflict, match=re.escape("'1.0.0' is the same version as '1.0'")):
        await backend.save_procedure("p", "1.0.0", {"name": "p", "version": "1.0.0"})
    assert [(p.name, p.version) for p in await backend.load_procedures()] == [("p", "1.0")]


@pytest.mark.parametrize(
    ("document", "error"), [({"when": object()}, TypeError), ({"x": float("inf")}, ValueError)]
)
async def test_a_document_json_cannot_hold_is_refused_before_saving(
    backend: Backend, document: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await backend.save_procedure("deploy", "1.0", document)
    assert await backend.load_procedures() == []


# -- executions ---------------------------------------------------------------------------------


async def test_a_created_execution_loads_with_its_first_records(backend: Backend) -> None:
    await backend.create_execution(
        "e1", "deploy", "1.0", "running", {"state": "build"}, [{"kind": "a"}, {"kind": "b"}]
    )
    stored = await backend.load_execution("e1")
    assert stored is not None
    assert (stored.id, stored.procedure, stored.version, stored.status) == (
        "e1",
        "deploy",
        "1.0",
        "running",
    )
    assert stored.snapshot == {"state": "build"}
    assert stored.records == [{"kind": "a"}, {"kind": "b"}]


async def test_commit_appends_records_and_replaces_snapshot_and_status(backend: Backend) -> None:
    await make_execution(backend, "e1")
    await backend.commit("e1", "running", {"state": "test"}, [{"kind": "entered", "state": "t"}])
    await backend.commit("e1", "succeeded", {"state": "done"}, [{"kind": "x"}, {"kind": "y"}])
    stored = await backend.load_execution("e1")
    assert stored is not None
    assert stored.status == "succeeded"
    assert stored.snapshot == {"state": "done"}
    assert stored.records == [
        {"kind": "started", "n": 0},
        {"kind": "entered", "state": "t"},
        {"kind": "x"},
        {"kind": "y"},
    ]


async def test_interleaved_commits_keep_each_journal_in_its_own_order(backend: Backend) -> None:
    await make_execution(backend, "a", records=2)
    await make_execution(backend, "b", records=0)
    await backend.commit("b", "running", {}, [{"n": 1}])
    await backend.commit("a", "running", {}, [{"n": 3}, {"n": 4}])
    await backend.commit("b", "running", {}, [{"n": 2}])
    a, b = await backend.load_execution("a"), await backend.load_execution("b")
    assert a is not None and b is not None
    assert a.records == [
        {"kind": "started", "n": 0},
        {"kind": "started", "n": 1},
        {"n": 3},
        {"n": 4},
    ]
    assert b.records == [{"n": 1}, {"n": 2}]


async def test_commit_without_records_replaces_only_the_snapshot(backend: Backend) -> None:
    await make_execution(backend, "e1")
    await backend.commit("e1", "waiting", {"state": "approve"}, [])
    stored = await backend.load_execution("e1")
    assert stored is not None
    assert (stored.status, stored.snapshot) == ("waiting", {"state": "approve"})
    assert stored.records == [{"kind": "started", "n": 0}]


async def test_commit_to_an_unknown_execution_raises_and_stores_nothing(backend: Backend) -> None:
    with pytest.raises(ExecutionNotFound, match="'ghost'"):
        await backend.commit("ghost", "running", {}, [{"kind": "x"}])
    assert await backend.load_execution("ghost") is None
    assert await backend.list_executions() == []


async def test_creating_an_existing_execution_raises_and_keeps_the_first(backend: Backend) -> None:
    await make_execution(backend, "e1", procedure="deploy")
    with pytest.raises(StoreError, match="'e1' already exists"):
        await make_execution(backend, "e1", procedure="other", records=3)
    stored = await backend.load_execution("e1")
    assert stored is not None
    assert stored.procedure == "deploy" and len(stored.records) == 1


async def test_loading_an_unknown_execution_returns_none(backend: Backend) -> None:
    assert await backend.load_execution("ghost") is None


async def test_a_loaded_execution_is_a_copy_of_what_is_stored(backend: Backend) -> None:
    await make_execution(backend, "e1")
    loaded = await backend.load_execution("e1")
    assert loaded is not None
    loaded.snapshot["state"] = "changed"
    loaded.records.append({"kind": "forged"})
    again = await backend.load_execution("e1")
    assert again is not None
    assert again.snapshot == {"state": "start"} and again.records == [{"kind": "started", "n": 0}]


async def test_list_executions_filters_by_status_and_procedure(backend: Backend) -> None:
    await make_execution(backend, "e1", procedure="deploy", status="running")
    await make_execution(backend, "e2", procedure="audit", status="running")
    await make_execution(backend, "e3", procedure="deploy", status="succeeded")
    await make_execution(backend, "e4", procedure="deploy", status="running")

    async def ids(**filters: str) -> list[str]:
        return [summary.id for summary in await backend.list_executions(**filters)]

    assert await ids() == ["e1", "e2", "e3", "e4"]
    assert await ids(status="running") == ["e1", "e2", "e4"]
    assert await ids(procedure="deploy") == ["e1", "e3", "e4"]
    assert await ids(status="running", procedure="deploy") == ["e1", "e4"]
    assert await ids(status="failed") == []


async def test_unfinished_execution_ids_are_the_running_ones(backend: Backend) -> None:
    await make_execution(backend, "e1", status="running")
    await make_execution(backend, "e2", status="running")
    await make_execution(backend, "e3", status="running")
    await backend.commit("e2", "failed", {}, [])
    await backend.commit("e3", "waiting", {}, [])
    assert await backend.unfinished_execution_ids() == ["e1"]


async def test_load_unfinished_returns_every_running_execution_with_its_records(
    backend: Backend,
) -> None:
    for n, status in enumerate(["running", "completed", "running"]):
        records = [{"kind": "entered", "n": n}]
        await backend.create_execution(f"e{n}", "p", "1.0", "running", {"n": n}, records)
        await backend.commit(f"e{n}", status, {"n": n, "done": True}, [{"kind": "x", "n": n}])

    loaded = await backend.load_unfinished()

    assert [e.id for e in loaded] == ["e0", "e2"]
    for stored in loaded:
        one = await backend.load_execution(stored.id)
        assert one is not None
        assert (stored.snapshot, stored.records, stored.status) == (
            one.snapshot,
            one.records,
            one.status,
        )


async def test_timestamps_are_utc_and_updated_at_follows_commits(backend: Backend) -> None:
    await make_execution(backend, "e1")
    created = await backend.load_execution("e1")
    await asyncio.sleep(0.002)
    await backend.commit("e1", "running", {}, [])
    committed = await backend.load_execution("e1")
    assert created is not None and committed is not None
    assert created.created_at.tzinfo == UTC
    assert created.created_at == created.updated_at == committed.created_at
    assert committed.updated_at > created.updated_at
    (summary,) = await backend.list_executions()
    assert (summary.created_at, summary.updated_at) == (committed.created_at, committed.updated_at)


async def test_what_is_stored_comes_back_as_it_was_written(backend: Backend) -> None:
    # Any Python string (a NUL, a lone surrogate), and the keys of every object in their order.
    value = {"zeta": 1, "alpha": {"b": 2, "a": 1}, "nul": "a\x00b", "lone": "\ud800", "é": "😀"}
    await backend.save_procedure("p", "1.0", value)
    await backend.create_execution("e1", "p", "1.0", "running", value, [value])
    await backend.commit("e1", "running", value, [value])
    stored = await backend.load_execution("e1")
    (procedure,) = await backend.load_procedures()
    assert stored is not None
    for loaded in (procedure.document, stored.snapshot, *stored.records):
        assert loaded == value
        assert json.dumps(loaded) == json.dumps(value)  # the same order


@pytest.mark.parametrize(
    ("snapshot", "error"), [({"when": object()}, TypeError), ({"x": float("nan")}, ValueError)]
)
async def test_a_snapshot_json_cannot_hold_is_refused_before_writing(
    backend: Backend, snapshot: dict[str, Any], error: type[Exception]
) -> None:
    await make_execution(backend, "e1")
    with pytest.raises(error):
        await backend.commit("e1", "failed", snapshot, [{"kind": "lost"}])
    stored = await backend.load_execution("e1")
    assert stored is not None and stored.status == "running" and len(stored.records) == 1


async def test_a_non_string_id_raises_type_error(backend: Backend) -> None:
    with pytest.raises(TypeError, match="execution_id must be a str"):
        await backend.create_execution(7, "p", "1", "running", {}, [])  # type: ignore[arg-type]


# -- quarantine ---------------------------------------------------------------------------------


async def test_quarantine_sets_the_status_and_reason_and_keeps_what_is_stored(
    backend: Backend,
) -> None:
    await make_execution(backend, "e1", records=2)
    await backend.quarantine_execution("e1", "its snapshot is damaged")
    stored = await backend.load_execution("e1")
    assert stored is not None
    assert (stored.status, stored.reason) == (QUARANTINED, "its snapshot is damaged")
    assert stored.snapshot == {"state": "start"} and len(stored.records) == 2
    [summary] = await backend.list_executions(status=QUARANTINED)
    assert (summary.id, summary.reason) == ("e1", "its snapshot is damaged")
    assert await backend.unfinished_execution_ids() == []


async def test_quarantining_an_unknown_execution_raises(backend: Backend) -> None:
    with pytest.raises(ExecutionNotFound, match="'ghost'"):
        await backend.quarantine_execution("ghost", "gone")


# -- the inbox ----------------------------------------------------------------------------------


async def test_posted_commands_come_back_in_the_order_they_were_committed(
    backend: Backend,
) -> None:
    await make_execution(backend, "e1")
    await make_execution(backend, "e2")
    first = await backend.post_command("e1", "event", {"event": "approve"})
    second = await backend.post_command("e2", "cancel", {"rollback": True})
    third = await backend.post_command("e1", "event", {"event": "ok"})
    assert first < second < third
    commands = await backend.commands_after(0)
    assert [(c.id, c.execution_id, c.kind, c.payload) for c in commands] == [
        (first, "e1", "event", {"event": "approve"}),
        (second, "e2", "cancel", {"rollback": True}),
        (third, "e1", "event", {"event": "ok"}),
    ]
    assert all(c.posted_at.tzinfo == UTC and c.reason is None for c in commands)


async def test_commands_after_reads_from_an_id_up_to_a_limit_and_for_one_execution(
    backend: Backend,
) -> None:
    await make_execution(backend, "e1")
    await make_execution(backend, "e2")
    ids = [await backend.post_command(e, "event", {"event": "go"}) for e in ("e1", "e2") * 3]
    assert [c.id for c in await backend.commands_after(ids[1])] == ids[2:]
    assert [c.id for c in await backend.commands_after(0, limit=2)] == ids[:2]
    assert [c.id for c in await backend.commands_after(ids[0], execution_id="e1")] == ids[2::2]


async def test_a_command_for_an_unknown_execution_raises_and_stores_nothing(
    backend: Backend,
) -> None:
    with pytest.raises(ExecutionNotFound, match="'ghost'"):
        await backend.post_command("ghost", "event", {"event": "go"})
    assert await backend.commands_after(0) == []


@pytest.mark.parametrize(
    ("kind", "payload", "error"),
    [
        ("reboot", {}, ValueError),
        ("event", {"when": object()}, TypeError),
        ("event", ["go"], TypeError),
    ],
)
async def test_a_command_of_an_unknown_kind_or_unstorable_payload_is_refused(
    backend: Backend, kind: str, payload: Any, error: type[Exception]
) -> None:
    await make_execution(backend, "e1")
    with pytest.raises(error):
        await backend.post_command("e1", kind, payload)
    assert await backend.commands_after(0) == []


async def test_deleted_commands_are_gone_and_their_ids_never_come_back(backend: Backend) -> None:
    await make_execution(backend, "e1")
    first = await backend.post_command("e1", "event", {"event": "a"})
    newest = await backend.post_command("e1", "event", {"event": "b"})
    await backend.delete_commands([first, newest, 10**9])  # an unknown id is ignored
    assert await backend.commands_after(0) == []
    assert await backend.post_command("e1", "event", {"event": "c"}) > newest


async def test_an_announced_execution_is_created_with_a_start_command(backend: Backend) -> None:
    await backend.create_execution("e1", "p", "1.0", "running", {}, [], announce=True)
    await backend.create_execution("e2", "p", "1.0", "running", {}, [])
    [command] = await backend.commands_after(0)
    assert (command.execution_id, command.kind, command.payload) == ("e1", "start", {})


async def test_wait_for_change_returns_soon_after_another_connection_commits(
    backend: Backend, peer: Backend
) -> None:
    await make_execution(peer, "e1")
    before = await backend.wait_for_change(0)
    waiting = asyncio.get_running_loop().create_task(backend.wait_for_change(60))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await peer.post_command("e1", "event", {"event": "go"})
    assert await within(waiting, 10) != before


async def test_wait_for_change_returns_the_same_marker_after_its_timeout(
    backend: Backend,
) -> None:
    before = await backend.wait_for_change(0)
    assert await within(backend.wait_for_change(0.05), 10) == before


async def test_a_change_between_two_waits_ends_the_second_at_once(
    backend: Backend, peer: Backend
) -> None:
    await make_execution(peer, "e1")
    seen = await backend.wait_for_change(0)
    await peer.post_command("e1", "event", {"event": "go"})  # while nobody waits
    assert await within(backend.wait_for_change(60, since=seen), 10) != seen


async def test_closing_ends_a_wait_for_change_with_store_error(backend: Backend) -> None:
    await backend.wait_for_change(0)
    waiting = asyncio.get_running_loop().create_task(backend.wait_for_change(60))
    await asyncio.sleep(0.02)
    await backend.close()
    with pytest.raises(StoreError, match="is closed"):
        await within(waiting, 10)


# -- the runner lock -----------------------------------------------------------------------------


async def test_has_runner_says_whether_some_backend_holds_the_runner_lock(
    backend: Backend, peer: Backend
) -> None:
    assert not await backend.has_runner()
    await peer.acquire_runner_lock()
    assert await backend.has_runner()
    assert await peer.has_runner()


async def test_asking_has_runner_takes_nothing(backend: Backend, peer: Backend) -> None:
    assert not await peer.has_runner()
    await backend.acquire_runner_lock()  # granted: the question kept nothing
    assert await peer.has_runner()


async def test_the_runner_lock_asked_for_many_times_at_once_is_taken_once(
    backend: Backend,
) -> None:
    # A store's first concurrent start() calls all ask for it.
    await within(asyncio.gather(*(backend.acquire_runner_lock() for _ in range(20))), 30)
    await backend.acquire_runner_lock()


# -- closing ------------------------------------------------------------------------------------


async def test_a_closed_backend_raises_store_error(backend: Backend) -> None:
    await backend.close()
    await backend.close()  # harmless
    with pytest.raises(StoreError, match="is closed"):
        await backend.list_executions()
    with pytest.raises(StoreError, match="is closed"):
        await make_execution(backend, "e1")


async def test_due_executions_are_the_running_ones_due_before_the_bound_soonest_first(
    backend: Backend,
) -> None:
    await make_execution(backend, "later", status="running")
    await backend.commit("later", "running", {"due": 2000.5}, [])
    await make_execution(backend, "sooner", status="running")
    await backend.commit("sooner", "running", {"due": 1000}, [])
    await make_execution(backend, "only-an-event", status="running")
    await backend.commit("only-an-event", "running", {"due": 9000.0}, [])
    await make_execution(backend, "finished", status="running")
    await backend.commit("finished", "completed", {"due": 10.0}, [])

    assert await backend.due_executions(before=5000.0) == [("sooner", 1000.0), ("later", 2000.5)]


async def test_a_snapshot_without_a_due_time_is_due_now(backend: Backend) -> None:
    await make_execution(backend, "old", status="running")
    await backend.commit("old", "running", {"state": "a"}, [])
    await make_execution(backend, "odd", status="running")
    await backend.commit("odd", "running", {"due": "soon"}, [])

    assert await backend.due_executions(before=1.0) == [("old", 0.0), ("odd", 0.0)]
