"""Clients (``ProcedureStore(url, worker=False)``) beside the store that runs the executions,
on SQLite and PostgreSQL alike: what a client starts, sends and cancels reaches the runner
through the inbox and is applied once, in the order it was committed; a client reads what is
committed. The runner and the clients are stores of this process here (each with its own
connections, as in separate processes); tests/clients/test_client_processes.py runs them as
separate processes.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from procstore import (
    ExecutionNotFound,
    InvalidEvent,
    ProcedureStore,
    RemoteExecution,
    Status,
    StoreError,
)
from tests.builders import fn, on
from tests.conftest import Gate, make_doc, records, wait_until, within

APPROVAL = make_doc(
    {
        "wait": {"transitions": [on("approve", "review"), on("reject", "rejected")]},
        "review": {"transitions": [on("ok", "done")]},
        "done": {},
        "rejected": {"outcome": "failure"},
    },
    "wait",
    name="approval",
)

# ship's action is the application's: a runner without it cannot run the procedure.
SHIPPING = make_doc(
    {
        "pack": {
            "action": fn("app.pack", result="box"),
            "compensate": fn("app.unpack"),
            "transitions": [on("success", "ship")],
        },
        "ship": {"transitions": [on("go", "shipped")]},
        "shipped": {},
    },
    "pack",
    name="shipping",
)


def runner(url: str) -> ProcedureStore:
    """The store that runs the executions, with the application's actions."""
    store = ProcedureStore(url)
    store.register_action("app.pack", lambda context: "packed")
    store.register_action("app.unpack", lambda context: "unpacked")
    return store


def client(url: str) -> ProcedureStore[RemoteExecution]:
    """A client. It checks what it registers as every store does, so it knows the application's
    actions by name too (it never calls them)."""
    store = ProcedureStore(url, worker=False)
    store.register_action("app.pack", lambda context: None)
    store.register_action("app.unpack", lambda context: None)
    return store


async def running(url: str) -> ProcedureStore:
    """``runner`` holding the runner lock (and so reading the inbox), with nothing to run."""
    store = runner(url)
    await store.recover()
    return store


async def test_a_client_starts_an_execution_that_the_runner_runs(url: str) -> None:
    async with await running(url) as store, client(url) as remote_store:
        await remote_store.register(SHIPPING)  # after the runner opened: loaded when needed
        handle = await remote_store.start("shipping", auto=True)
        assert isinstance(handle, RemoteExecution)
        assert (handle.current, handle.status) == ("pack", Status.RUNNING)
        live = await within(store.get_execution(handle.id))  # adopted by the runner
        await wait_until(lambda: live.current == "ship", timeout=10)
        await handle.send("go")
        final = await within(handle.run_to_completion(), 10)
    assert (final.status, final.current, final.context) == (
        Status.COMPLETED,
        "shipped",
        {"box": "packed"},
    )


async def test_events_a_client_sends_are_applied_in_order_each_once(url: str) -> None:
    async with await running(url) as store, ProcedureStore(url, worker=False) as client:
        await store.register(APPROVAL)
        execution = await store.start("approval")
        remote = await client.get_execution(execution.id)
        await remote.send("approve")
        await remote.send("ok")
        final = await within(remote.run_to_completion(), 10)
    assert final.status is Status.COMPLETED
    assert [(r.kind, r.event) for r in final.history if r.event is not None] == [
        ("received", "approve"),
        ("transition", "approve"),
        ("entered", "approve"),
        ("received", "ok"),
        ("transition", "ok"),
        ("entered", "ok"),
    ]


async def test_a_client_cancels_with_rollback(url: str) -> None:
    async with await running(url) as store, ProcedureStore(url, worker=False) as client:
        await store.register(SHIPPING)
        execution = await store.start("shipping", auto=True)
        await wait_until(lambda: execution.current == "ship", timeout=10)
        remote = await client.get_execution(execution.id)
        await remote.cancel(rollback=True)
        final = await within(remote.run_to_completion(), 10)
    assert final.status is Status.ROLLED_BACK
    assert [r.message for r in records(final.history, "received")] == ["cancel with rollback"]
    assert [r.result for r in records(final.history, "compensation")] == ["unpacked"]


async def test_an_event_to_a_finished_execution_raises_invalid_event(url: str) -> None:
    async with await running(url) as store, ProcedureStore(url, worker=False) as client:
        await store.register(APPROVAL)
        execution = await store.start("approval")
        await execution.send("reject")
        remote = await client.get_execution(execution.id)
        with pytest.raises(InvalidEvent, match="has finished; it accepts no events"):
            await remote.send("approve")
        assert remote.status is Status.FAILED  # what is committed, read again
        await remote.cancel()  # cancelling a finished execution changes nothing
    async with ProcedureStore(url, read_only=True) as reader:
        assert records((await reader.get_execution(execution.id)).history, "received") == []


async def test_an_event_no_state_accepts_is_refused_before_it_is_queued(url: str) -> None:
    async with ProcedureStore(url) as store, ProcedureStore(url, worker=False) as client:
        await store.register(APPROVAL)
        execution = await store.start("approval")
        remote = await client.get_execution(execution.id)
        with pytest.raises(InvalidEvent, match=r"'aprove' \(they accept: approve, ok, reject\)"):
            await remote.send("aprove")
        with pytest.raises(InvalidEvent, match="raised by procstore itself"):
            await remote.send("done")
        backend = store._backend
        assert backend is not None
        assert await backend.commands_after(0) == []


async def test_commands_sent_while_no_runner_runs_are_applied_by_the_next(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(APPROVAL)
        execution = await store.start("approval")
    async with ProcedureStore(url, worker=False) as client:
        remote = await client.get_execution(execution.id)
        assert not await client.has_runner()
        await remote.send("approve")
        await remote.send("ok")
        assert (await remote.refresh()).current == "wait"  # queued, not applied
        async with await running(url):
            assert await client.has_runner()
            final = await within(remote.run_to_completion(), 10)
    assert final.status is Status.COMPLETED
    assert [r.event for r in records(final.history, "received")] == ["approve", "ok"]


async def test_the_runner_deletes_the_commands_it_applied(url: str) -> None:
    async with await running(url) as store, ProcedureStore(url, worker=False) as client:
        await store.register(APPROVAL)
        remote = await client.start("approval")
        await remote.send("approve")
        await within(wait_for_current(remote, "review"), 10)
        backend = store._backend
        assert backend is not None

        async def emptied() -> None:
            while await backend.commands_after(0):
                await asyncio.sleep(0.01)

        await within(emptied(), 10)


async def wait_for_current(remote: RemoteExecution, state: str) -> None:
    while (await remote.refresh()).current != state:
        await asyncio.sleep(0.01)


async def test_an_execution_whose_actions_the_runner_lacks_waits_for_one_that_has_them(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with client(url) as remote_store:
        await remote_store.register(SHIPPING)
        remote = await remote_store.start("shipping", auto=True)
    async with ProcedureStore(url) as lacking:
        await lacking.register(APPROVAL)
        await lacking.start("approval")  # the runner lock: it reads the inbox
        with caplog.at_level(logging.WARNING, logger="procstore"):
            await wait_until(lambda: "not run here" in caplog.text, timeout=10)
        assert "no action named 'app.pack'" in caplog.text
    async with await running(url) as store:  # the next runner has them
        live = await within(store.get_execution(remote.id))
        await wait_until(lambda: live.current == "ship", timeout=10)
        [pack] = records(live.history, "action", state="pack")  # it ran here only
        assert pack.result == "packed"


async def test_a_client_never_takes_the_runner_lock_nor_runs_anything(url: str) -> None:
    async with ProcedureStore(url, worker=False) as client:
        await client.register(APPROVAL)
        await client.start("approval")
        with pytest.raises(StoreError, match=r"client \(worker=False\): it runs no execution"):
            await client.recover()
        async with ProcedureStore(url) as store:
            await store.recover()  # a runner beside it: granted
            assert await client.has_runner()


async def test_a_client_finds_no_unknown_execution(url: str) -> None:
    async with ProcedureStore(url, worker=False) as client:
        with pytest.raises(ExecutionNotFound, match="'ghost'"):
            await client.get_execution("ghost")


async def test_run_to_completion_of_a_client_times_out_without_changing_anything(
    url: str,
) -> None:
    async with ProcedureStore(url, worker=False) as client:
        await client.register(APPROVAL)
        remote = await client.start("approval")
        with pytest.raises(TimeoutError):
            await within(remote.run_to_completion(timeout=0.05), 10)
        assert (await remote.refresh()).status is Status.RUNNING


async def test_a_store_in_memory_cannot_be_a_client() -> None:
    with pytest.raises(ValueError, match="worker=False needs a URL"):
        ProcedureStore(worker=False)


async def test_an_action_waiting_to_finish_holds_up_only_its_own_executions_events(
    url: str,
) -> None:
    gate = Gate()
    doc = make_doc(
        {
            "work": {"action": fn("app.work"), "transitions": [on("stop", "stopped")]},
            "stopped": {},
        },
        "work",
        name="busy",
    )
    async with await running(url) as store, ProcedureStore(url, worker=False) as client:
        store.register_action("app.work", gate.action)
        await store.register(doc)
        await store.register(APPROVAL)
        busy = await store.start("busy")
        await within(gate.started.wait())
        waiting = await store.start("approval")
        await (await client.get_execution(busy.id)).send("stop")  # waits for work's action
        await (await client.get_execution(waiting.id)).send("approve")
        await wait_until(lambda: waiting.current == "review", timeout=10)
        assert busy.current == "work"
        gate.release.set()
        await wait_until(lambda: busy.current == "stopped", timeout=10)


async def test_a_runner_starts_a_procedure_a_client_registered_after_it_opened(url: str) -> None:
    async with await running(url) as store, client(url) as remote_store:
        await remote_store.register(APPROVAL)
        execution = await store.start("approval")
        assert (await store.get("approval")).name == "approval"
        assert execution.current == "wait"


async def test_closing_the_runner_lets_a_command_being_applied_commit(url: str) -> None:
    checking, release = asyncio.Event(), asyncio.Event()

    async def slow_check(context: dict[str, object]) -> bool:
        checking.set()
        await release.wait()
        return True

    doc = make_doc(
        {"wait": {"transitions": [on("approve", "done", conditions=["slow"])]}, "done": {}},
        "wait",
        name="guarded",
    )
    store = await running(url)
    store.register_guard("slow", slow_check)
    await store.register(doc)
    execution = await store.start("guarded")
    async with client(url) as remote_store:
        await (await remote_store.get_execution(execution.id)).send("approve")
        await within(checking.wait(), 10)  # the runner is applying it: in the guard
        closing = asyncio.get_running_loop().create_task(store.close())
        await asyncio.sleep(0.05)
        release.set()
        await within(closing, 10)
        final = (await remote_store.get_execution(execution.id)).state
    assert final.current == "done"
    assert [r.event for r in records(final.history, "received")] == ["approve"]
