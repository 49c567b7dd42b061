"""Events with data from clients, on SQLite and PostgreSQL alike: the data a client's
``send(event, data=...)`` carries travels through the inbox with the event, is applied once
with it, and is committed with the transition it causes."""

from __future__ import annotations

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from tests.builders import on
from tests.conftest import make_doc, records, within

APPROVAL = make_doc(
    {
        "wait": {
            "transitions": [
                on(
                    "decide",
                    "approved",
                    guard="event['data']['approved']",
                    assign={"decision.$": "$$.event.data"},
                ),
                on("decide", "rejected"),
            ]
        },
        "approved": {},
        "rejected": {"outcome": "failure"},
    },
    "wait",
    name="approval",
)


async def test_a_client_sends_an_event_with_data_that_the_runner_applies(url: str) -> None:
    async with ProcedureStore(url) as store, ProcedureStore(url, worker=False) as client:
        await store.recover()
        await store.register(APPROVAL)
        execution = await store.start("approval")
        remote = await client.get_execution(execution.id)
        await remote.send("decide", data={"approved": True, "by": "ana"})
        final = await within(remote.run_to_completion(), 10)
    assert final.status is Status.COMPLETED
    assert final.context == {"decision": {"approved": True, "by": "ana"}}
    [received] = records(final.history, "received")
    [transition] = records(final.history, "transition")
    assert received.data == transition.data == {"approved": True, "by": "ana"}


async def test_the_data_waits_in_the_inbox_for_the_next_runner(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(APPROVAL)
        execution = await store.start("approval")
    async with ProcedureStore(url, worker=False) as client:
        remote = await client.get_execution(execution.id)
        await remote.send("decide", data={"approved": False})
    async with ProcedureStore(url) as runner:
        await runner.recover()
        async with ProcedureStore(url, worker=False) as client:
            final = await within((await client.get_execution(execution.id)).run_to_completion(), 10)
    assert (final.status, final.current) == (Status.FAILED, "rejected")
    assert records(final.history, "transition")[0].data == {"approved": False}


async def test_a_client_refuses_data_that_is_not_json_before_queueing_it(url: str) -> None:
    async with ProcedureStore(url) as store, ProcedureStore(url, worker=False) as client:
        await store.register(APPROVAL)
        execution = await store.start("approval")
        remote = await client.get_execution(execution.id)
        with pytest.raises(InvalidEvent, match="not JSON-compatible"):
            await remote.send("decide", data={"at": object()})
        backend = store._backend
        assert backend is not None
        assert await backend.commands_after(0) == []


async def test_the_data_an_event_assigned_is_there_after_a_restart(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(APPROVAL)
        execution = await store.start("approval")
        await execution.send("decide", data={"approved": True})
    async with ProcedureStore(url) as reopened:
        restored = await reopened.get_execution(execution.id)
        assert restored.state.context == {"decision": {"approved": True}}
        assert records(restored.history, "transition")[0].data == {"approved": True}
