"""What every persistent store does through the public API, on SQLite and on PostgreSQL alike
(``url`` is parametrised): what is committed reads back record for record, a step whose
completion is committed never runs again, an interrupted one runs again with its attempt
number, events and timeouts survive reopening. On SQLite one process runs a database's
executions and others read it; on PostgreSQL stores are workers that share them
(tests/storage/test_postgres_workers.py).

A "crash" is ``store.close()`` while an action runs: it detaches the running executions without
recording anything, so they stay ``running`` in the database (a PostgreSQL worker releases them
for another to claim) as after a kill (the SIGKILL tests are SQLite's, in
tests/test_crash_recovery.py, and the workers', in tests/storage/test_worker_takeover.py). What
only one store does is beside its backend: tests/storage/test_durability.py (SQLite's file),
tests/storage/test_postgres_store.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from procstore import ActionInfo, ProcedureStore, Status, StoreError
from procstore.inbox import InboxLoop
from tests import postgres
from tests.conftest import Gate, make_doc, records, wait_until, within


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty store: an SQLite file, or a PostgreSQL database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'procstore.db'}"
        return
    async with postgres.database(request.getfixturevalue("postgres_server")) as database:
        yield database


def step(name: str, target: str | None, **extra: Any) -> dict[str, Any]:
    """A state running action ``app.<name>``, going to ``target`` on success."""
    state: dict[str, Any] = {"action": {"type": "function", "function": f"app.{name}"}, **extra}
    if target is not None:
        state["transitions"] = [{"event": "success", "target": target}]
    return state


# first -> second -> end, each step an action of the application.
TWO_STEPS = make_doc(
    {"first": step("first", "second"), "second": step("second", "end"), "end": {}},
    "first",
    name="two",
)

WAITING = make_doc(
    {
        "wait": {"transitions": [{"event": "approve", "target": "review"}]},
        "review": {"transitions": [{"event": "ok", "target": "done"}]},
        "done": {},
    },
    "wait",
    name="waiting",
)


def dumps(history: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [record.model_dump() for record in history]


async def test_a_finished_execution_reads_back_record_for_record(url: str) -> None:
    failures = iter([ConnectionError("busy")])

    def first(context: dict[str, Any]) -> dict[str, Any]:
        for failure in failures:  # the first attempt fails, the second succeeds
            raise failure
        return {"charged": context["amount"], "note": "é\x00"}

    doc = make_doc(
        {
            "first": step("first", None, retry={"max_attempts": 2}),
            "big": {},
            "small": {},
        },
        "first",
        name="pay",
    )
    doc["definition"]["states"]["first"]["action"]["result"] = "receipt"
    doc["definition"]["states"]["first"]["transitions"] = [
        {"event": "success", "target": "big", "guard": "amount >= 100"},
        {"event": "success", "target": "small"},
    ]
    async with ProcedureStore(url) as store:
        store.register_action("app.first", first)
        await store.register(doc)
        live = await within((await store.start("pay", context={"amount": 5})).run_to_completion())
    assert live.current == "small" and records(live.history, "retry")

    async with ProcedureStore(url, read_only=True) as reader:
        stored = (await reader.get_execution(live.id)).state
    assert dumps(stored.history) == dumps(live.history)
    assert stored.model_dump() == live.model_dump()


async def test_recover_runs_the_interrupted_step_again_and_never_a_committed_one(
    url: str,
) -> None:
    gate = Gate()
    async with ProcedureStore(url) as store:
        store.register_action("app.first", lambda c: "first done")
        store.register_action("app.second", gate.action)
        await store.register(TWO_STEPS)
        execution = await store.start("two", auto=True)
        await within(gate.started.wait())  # first's completion is committed; second runs

    ran: list[tuple[str, int]] = []
    async with ProcedureStore(url) as store:
        store.register_action("app.first", lambda c, info: ran.append(("first", info.attempt)))
        store.register_action("app.second", lambda c, info: ran.append(("second", info.attempt)))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())
    assert final.id == execution.id and final.status is Status.COMPLETED
    assert ran == [("second", 1)]  # the same attempt, and nothing of first
    assert len(records(final.history, "action", state="first")) == 1


async def test_a_graceful_close_lets_the_action_under_way_finish_and_starts_no_new_one(
    url: str,
) -> None:
    gate, second = Gate("first done"), Gate()
    async with ProcedureStore(url) as store:
        store.register_action("app.first", gate.action)
        store.register_action("app.second", second.action)
        await store.register(TWO_STEPS)
        execution = await store.start("two", auto=True)
        await within(gate.started.wait())

        closing = asyncio.ensure_future(store.close(grace=60))
        await asyncio.sleep(0)  # the store winds down: no new action starts from now on
        gate.release.set()
        await within(closing, 30)

    assert gate.returned and second.calls == 0
    async with ProcedureStore(url, read_only=True) as reader:
        stored = (await reader.get_execution(execution.id)).state
    assert (stored.status, stored.current) == (Status.RUNNING, "second")
    assert [r.result for r in records(stored.history, "action", state="first")] == ["first done"]


async def test_a_graceful_close_starts_no_action_while_it_stops_reading_the_inbox(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, second = Gate("first done"), Gate()
    stop_inbox = InboxLoop.stop

    async def slow_stop(inbox: InboxLoop) -> None:
        # Long enough for the released first action to lead to the second, which must wait.
        gate.release.set()
        await asyncio.wait([asyncio.ensure_future(second.started.wait())], timeout=1)
        await stop_inbox(inbox)

    monkeypatch.setattr(InboxLoop, "stop", slow_stop)
    async with ProcedureStore(url) as store:
        store.register_action("app.first", gate.action)
        store.register_action("app.second", second.action)
        await store.register(TWO_STEPS)
        execution = await store.start("two", auto=True)
        await within(gate.started.wait())

        await within(store.close(grace=60), 30)

    assert gate.returned and second.calls == 0
    assert execution.current == "second"


async def test_a_retry_attempt_interrupted_by_a_crash_runs_again_with_its_number(url: str) -> None:
    gate = Gate()

    async def first(context: dict[str, Any], info: ActionInfo) -> Any:
        if info.attempt == 1:
            raise ConnectionError("the first attempt fails")
        return await gate.action(context)  # the second hangs until the "crash"

    doc = make_doc(
        {"first": step("first", "end", retry={"max_attempts": 3, "interval_ms": 1}), "end": {}},
        "first",
    )
    async with ProcedureStore(url) as store:
        store.register_action("app.first", first)
        await store.register(doc)
        await store.start("p", auto=True)
        await within(gate.started.wait())

    attempts: list[int] = []
    async with ProcedureStore(url) as store:
        store.register_action("app.first", lambda c, info: attempts.append(info.attempt))
        (resumed,) = await store.recover()
        assert (await within(resumed.run_to_completion())).status is Status.COMPLETED
    assert attempts == [2]


async def test_a_state_that_timed_out_while_closed_times_out_without_its_action(
    url: str,
) -> None:
    gate = Gate()
    doc = make_doc({"first": step("first", "end", timeout_ms=100), "end": {}}, "first")
    doc["definition"]["states"]["first"]["transitions"].append(
        {"event": "timeout", "target": "end"}
    )
    async with ProcedureStore(url) as store:
        store.register_action("app.first", gate.action)
        await store.register(doc)
        await store.start("p", auto=True)
        await within(gate.started.wait())
    await asyncio.sleep(0.2)  # the state's whole stay runs out while nothing runs

    started: list[int] = []
    async with ProcedureStore(url) as store:
        store.register_action("app.first", lambda c, info: started.append(info.attempt))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())
    assert started == []
    assert [r.kind for r in final.history if r.state == "first"] == [
        "entered",
        "timeout",
        "transition",
    ]


async def test_an_event_sent_to_a_waiting_execution_survives_reopening(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(WAITING)
        execution = await store.start("waiting")
        assert await execution.send("approve")
    async with ProcedureStore(url) as store:
        reopened = await store.get_execution(execution.id)
        assert reopened.current == "review"
        assert await reopened.send("ok")
        assert (await within(reopened.run_to_completion())).status is Status.COMPLETED


async def test_executions_lists_and_filters_what_is_stored(url: str) -> None:
    async with ProcedureStore(url) as store:
        store.register_action("app.first", lambda c: None)
        store.register_action("app.second", lambda c: None)
        await store.register(TWO_STEPS)
        await store.register(WAITING)
        done = await within((await store.start("two")).run_to_completion())
        waiting = await store.start("waiting")

    async with ProcedureStore(url, read_only=True) as reader:
        assert [s.id for s in await reader.executions()] == [done.id, waiting.id]
        assert [s.id for s in await reader.executions(status="running")] == [waiting.id]
        assert [s.id for s in await reader.executions(procedure="two")] == [done.id]
        assert [(p.name, p.version) for p in await reader.list()] == [
            ("two", "1.0"),
            ("waiting", "1.0"),
        ]


async def test_200_concurrent_executions_lose_and_duplicate_no_record(url: str) -> None:
    async with ProcedureStore(url) as store:
        store.register_action("app.first", lambda c: c["n"])
        store.register_action("app.second", lambda c: None)
        await store.register(TWO_STEPS)
        executions = await asyncio.gather(
            *(store.start("two", context={"n": n}, auto=True) for n in range(200))
        )
        finals = await within(asyncio.gather(*(e.run_to_completion() for e in executions)), 60)
    assert {final.status for final in finals} == {Status.COMPLETED}

    async with ProcedureStore(url, read_only=True) as reader:
        for final in finals:
            stored = (await reader.get_execution(final.id)).state
            assert dumps(stored.history) == dumps(final.history)


async def test_one_store_at_a_time_runs_an_sqlite_databases_executions(tmp_path: Path) -> None:
    # PostgreSQL's stores are workers beside each other: tests/storage/test_postgres_workers.py
    url = f"sqlite:///{tmp_path / 'procstore.db'}"
    async with ProcedureStore(url) as runner:
        await runner.register(WAITING)
        waiting = await runner.start("waiting")
        async with ProcedureStore(url) as other:
            with pytest.raises(StoreError, match=f"already used by process {os.getpid()}"):
                await other.start("waiting")
            with pytest.raises(StoreError, match="already used by process"):
                await other.recover()
        async with ProcedureStore(url, read_only=True) as reader:
            handle = await reader.get_execution(waiting.id)  # read, not resumed
            assert handle.current == "wait"
            with pytest.raises(StoreError, match="read-only"):
                await reader.start("waiting")
        assert await waiting.send("approve")  # the runner runs on
    await wait_until(lambda: waiting.current == "review")
