"""Recovery pauses Python's garbage collector while it decodes and restores executions in
bulk (see ``procstore.storage.values.paused_collector``), and leaves it as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from procstore import ProcedureStore
from tests.conftest import make_doc

WAITING = make_doc({"wait": {"transitions": [{"event": "go", "target": "end"}]}, "end": {}}, "wait")


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


async def _recover(url: str) -> int:
    async with ProcedureStore(url) as store:
        await store.register(WAITING)
        for _ in range(3):
            await store.start("p")
    async with ProcedureStore(url) as store:
        return len(await store.recover())


async def test_recover_leaves_the_garbage_collector_on(url: str, collector_on: None) -> None:
    assert await _recover(url) == 3
    assert gc.isenabled()


async def test_recover_leaves_a_paused_garbage_collector_paused(
    url: str, collector_on: None
) -> None:
    gc.disable()
    assert await _recover(url) == 3
    assert not gc.isenabled()
