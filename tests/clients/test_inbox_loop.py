"""``procstore.inbox.InboxLoop`` on its own: what a process that runs executions does with the
inbox, whichever backend and whichever executions it holds (``adopt`` decides)."""

from __future__ import annotations

import asyncio

import pytest

from procstore import Execution, ProcedureStore, inbox
from procstore.storage import MemoryBackend
from tests.builders import on
from tests.conftest import make_doc, make_execution, wait_until

APPROVAL = make_doc(
    {"wait": {"transitions": [on("approve", "done")]}, "done": {}}, "wait", name="approval"
)


async def test_the_loop_reads_on_after_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(inbox, "IDLE_READ_S", 0.01)
    backend = await MemoryBackend.open()
    await make_execution(backend, "e1")  # the row the inbox's commands are for
    store = ProcedureStore()
    await store.register(APPROVAL)
    execution = await store.start("approval")
    failures = iter([RuntimeError("a defect")])

    async def adopt(execution_id: str) -> Execution | None:
        for failure in failures:
            raise failure
        return execution

    loop = inbox.InboxLoop(backend, adopt, "memory")
    loop.start()
    try:
        await backend.post_command("e1", "event", {"event": "approve"})
        await wait_until(lambda: execution.current == "done", timeout=10)
        while await backend.commands_after(0):  # applied, then deleted
            await asyncio.sleep(0.01)
    finally:
        await loop.stop()
    assert "reading the inbox failed" in caplog.text


async def test_commands_for_an_execution_not_held_here_stay_queued() -> None:
    backend = await MemoryBackend.open()
    await make_execution(backend, "e1")

    async def adopt(execution_id: str) -> Execution | None:
        return None  # another process holds it

    loop = inbox.InboxLoop(backend, adopt, "memory")
    command = await backend.post_command("e1", "event", {"event": "approve"})
    await loop.read()
    await loop.read()
    assert [c.id for c in await backend.commands_after(0)] == [command]
