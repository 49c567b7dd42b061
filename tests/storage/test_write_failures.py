"""A persisted store whose writes fail (a full disk): executions stop, nothing is invented.

The disk is "filled" with SQLite's own ``PRAGMA max_page_count`` on the store's writer
connection: the next write that needs a new page fails with ``SQLITE_FULL`` ("database or disk
is full"), exactly the error a full disk gives. Raising it again frees the space.

Once, a failed write turned live executions into in-memory ``failed`` ghosts while the database
kept them ``running``, printed "Task exception was never retrieved", and ``recover()`` in the
same process returned the dead handles.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from procstore import ProcedureStore, Status, StoreError
from procstore.storage.sqlite import SQLiteBackend
from tests.conftest import Gate, make_doc, records, within

BIG = "x" * 20_000  # a result that needs new pages to be stored


async def _set_max_pages(store: ProcedureStore, pages: int | None) -> None:
    """Fill the database file (``pages=None``: to the pages it has now) or free it again."""
    backend = store._backend
    assert isinstance(backend, SQLiteBackend)
    writer = backend._writer
    assert writer is not None
    if pages is None:
        [(pages,)] = list(await writer.execute_fetchall("PRAGMA page_count"))
    await writer.execute(f"PRAGMA max_page_count = {pages}")


class Recorder:
    """The event loop's unhandled-exception reports ("Task exception was never retrieved")."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.reports.append(context)


@pytest.fixture
async def unhandled() -> AsyncIterator[Recorder]:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(recorder)
    yield recorder
    gc.collect()  # tasks whose exception nobody retrieved report it when collected
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert recorder.reports == []


class Saga:
    """a (compensated) then b, whose action waits on a gate and returns a big result."""

    def __init__(self, store: ProcedureStore) -> None:
        self.gate = Gate(result=BIG)
        self.did_a = 0
        self.undid_a = 0
        store.register_action("do_a", self.do_a)
        store.register_action("undo_a", self.undo_a)
        store.register_action("do_b", self.gate.action)

    def do_a(self, context: dict[str, Any]) -> str:
        self.did_a += 1
        return "a-id"

    def undo_a(self, context: dict[str, Any]) -> None:
        self.undid_a += 1

    DOC = make_doc(
        {
            "a": {
                "action": {"type": "function", "function": "do_a"},
                "compensate": {"type": "function", "function": "undo_a"},
                "transitions": [{"event": "success", "target": "b"}],
            },
            "b": {
                "action": {"type": "function", "function": "do_b"},
                "transitions": [{"event": "success", "target": "done"}],
            },
            "done": {},
        },
        "a",
    )


async def _stopped_by_a_full_disk(store: ProcedureStore) -> tuple[Saga, Any]:
    """An execution whose step b completes while the disk is full."""
    saga = Saga(store)
    await store.register(Saga.DOC)
    ex = await within(store.start("p", auto=True))
    await within(saga.gate.started.wait())
    await _set_max_pages(store, None)
    saga.gate.release.set()
    with pytest.raises(StoreError, match="full"):
        await within(ex.run_to_completion())
    return saga, ex


async def test_a_failed_write_stops_the_execution_without_inventing_a_status(
    url: str, unhandled: Recorder
) -> None:
    async with ProcedureStore(url) as store:
        _, ex = await _stopped_by_a_full_disk(store)

        assert ex.status == Status.RUNNING
        assert records(ex.history, "finished") == []
        assert records(ex.history, "internal_error") == []
        assert records(ex.history, "rollback") == []
        async with ProcedureStore(url, read_only=True) as reader:
            [summary] = await reader.executions()
            assert summary.status == Status.RUNNING


async def test_a_stopped_execution_refuses_events_with_the_store_error(
    url: str, unhandled: Recorder
) -> None:
    async with ProcedureStore(url) as store:
        _, ex = await _stopped_by_a_full_disk(store)

        with pytest.raises(StoreError, match="a write to its store failed"):
            await ex.send("success")
        with pytest.raises(StoreError, match="a write to its store failed"):
            await ex.run_to_completion()


async def test_the_failed_write_is_logged_once(
    url: str, unhandled: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="procstore"):
        async with ProcedureStore(url) as store:
            _, ex = await _stopped_by_a_full_disk(store)
            await asyncio.sleep(0.05)  # let any other step of it notice too
    mentions = [r for r in caplog.records if ex.id in r.getMessage()]
    assert len(mentions) == 1, [r.getMessage() for r in mentions]
    assert "full" in mentions[0].getMessage()


async def test_recover_in_the_same_process_resumes_from_the_database_once_writes_work(
    url: str, unhandled: Recorder
) -> None:
    async with ProcedureStore(url) as store:
        saga, ex = await _stopped_by_a_full_disk(store)
        await _set_max_pages(store, 1_000_000)  # space again

        [resumed] = await within(store.recover())
        assert resumed is not ex and resumed.id == ex.id
        final = await within(resumed.run_to_completion())

        assert final.status == Status.COMPLETED and final.current == "done"
        assert saga.did_a == 1  # committed before the disk filled: never again
        assert saga.gate.calls == 2  # its completion was never stored: it runs again
        assert saga.undid_a == 0
    async with ProcedureStore(url, read_only=True) as reader:
        stored = (await reader.get_execution(ex.id)).state
    assert stored.history == final.history
    assert len(records(stored.history, "action", state="a")) == 1


async def test_get_execution_replaces_a_stopped_handle_with_the_stored_execution(
    url: str, unhandled: Recorder
) -> None:
    async with ProcedureStore(url) as store:
        _, ex = await _stopped_by_a_full_disk(store)
        await _set_max_pages(store, 1_000_000)

        again = await within(store.get_execution(ex.id))
        assert again is not ex
        final = await within(again.run_to_completion())
        assert final.status == Status.COMPLETED
