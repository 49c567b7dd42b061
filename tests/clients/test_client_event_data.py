"""Events with data from clients, on SQLite and PostgreSQL alike: the data a client's
``send(event, data=...)`` carries travels through the inbox with the event, is applied once
with it, and is committed with the transition it causes."""

from __future__ import annotations

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from tests.builders import on
from tests.conftest import make_doc, records, wait_until, within

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


# --- callbacks ----------------------------------------------------------------------------------

ASK = make_doc(
    {
        "ask": {
            "action": {"type": "function", "function": "mail.ask"},
            "callback": True,
            "transitions": [
                on("success", "approved", assign={"answer.$": "$$.event.data"}),
                on("error", "declined"),
            ],
        },
        "approved": {},
        "declined": {"outcome": "failure"},
    },
    "ask",
    name="ask",
)


def _asking(url: str, tokens: list[str]) -> ProcedureStore:
    """A runner whose ``mail.ask`` keeps the token it is given."""
    store = ProcedureStore(url)
    store.register_action("mail.ask", lambda context, info: tokens.append(info.token))
    return store


async def test_a_client_completes_a_callback_through_the_inbox(url: str) -> None:
    tokens: list[str] = []
    async with _asking(url, tokens) as store, ProcedureStore(url, worker=False) as client:
        await store.recover()
        await store.register(ASK)
        execution = await store.start("ask", auto=True)
        await wait_until(lambda: bool(tokens), timeout=10)
        await client.complete_callback(tokens[0], {"ok": True})
        final = await within(execution.run_to_completion(), 10)
    assert final.context == {"answer": {"ok": True}}
    [received] = records(final.history, "received")
    assert (received.event, received.message, received.data) == (
        "success",
        "callback",
        {"ok": True},
    )


async def test_a_client_fails_a_callback_through_the_inbox(url: str) -> None:
    tokens: list[str] = []
    async with _asking(url, tokens) as store, ProcedureStore(url, worker=False) as client:
        await store.recover()
        await store.register(ASK)
        execution = await store.start("ask", auto=True)
        await wait_until(lambda: bool(tokens), timeout=10)
        await client.fail_callback(tokens[0], "Declined", "no budget")
        final = await within(execution.run_to_completion(), 10)
    assert (final.status, final.current) == (Status.FAILED, "declined")


async def test_a_queued_callback_with_a_wrong_secret_is_refused_by_the_runner(url: str) -> None:
    tokens: list[str] = []
    async with _asking(url, tokens) as store, ProcedureStore(url, worker=False) as client:
        await store.recover()
        await store.register(ASK)
        execution = await store.start("ask", auto=True)
        await wait_until(lambda: bool(tokens), timeout=10)
        await client.complete_callback(f"{execution.id}.forged")
        await wait_until(lambda: bool(records(execution.history, "received")), timeout=10)
    [received] = records(execution.history, "received")
    assert received.message is not None and "waits for that callback token" in received.message
    assert execution.current == "ask"
