"""A store without a URL: its procedures live in its registry and its executions in their
handles (its backend, ``MemoryBackend``, is not persistent: the store writes nothing to it)."""

from __future__ import annotations

import gc

import pytest

from procstore import ExecutionNotFound, ProcedureStore, Status
from tests.conftest import make_doc, within

WAITING = make_doc(
    {"wait": {"transitions": [{"event": "go", "target": "done"}]}, "done": {}}, "wait"
)


async def test_an_in_memory_store_lists_its_executions_oldest_first_and_filtered(
    store: ProcedureStore,
) -> None:
    await store.register(WAITING)
    await store.register({**WAITING, "name": "q"})
    first = await store.start("p")
    second = await store.start("q")
    third = await store.start("p")
    await within(third.send("go"))

    async def ids(**filters: str) -> list[str]:
        return [summary.id for summary in await store.executions(**filters)]

    assert await ids() == [first.id, second.id, third.id]
    assert await ids(status="running") == [first.id, second.id]
    assert await ids(procedure="p") == [first.id, third.id]
    assert await ids(status=Status.COMPLETED) == [third.id]


async def test_an_in_memory_store_finds_an_execution_by_its_handle(store: ProcedureStore) -> None:
    await store.register(WAITING)
    started = await store.start("p")
    assert await store.get_execution(started.id) is started


async def test_an_in_memory_store_forgets_a_finished_execution_nobody_references(
    store: ProcedureStore,
) -> None:
    await store.register(WAITING)
    finished = await store.start("p")
    await within(finished.send("go"))
    execution_id = finished.id
    del finished
    gc.collect()
    assert await store.executions() == []
    with pytest.raises(ExecutionNotFound, match=f"^no execution '{execution_id}'$"):
        await store.get_execution(execution_id)


async def test_recovering_an_in_memory_store_resumes_nothing(store: ProcedureStore) -> None:
    await store.register(WAITING)
    await store.start("p")
    assert await store.recover() == []


async def test_an_in_memory_store_writes_nothing_to_its_backend(store: ProcedureStore) -> None:
    await store.register(WAITING)
    execution = await store.start("p")
    await within(execution.send("go"))
    backend = store._backend
    assert backend is not None and not backend.persistent
    assert await backend.list_executions() == []
    assert await backend.load_procedures() == []
