"""Hibernation: an SQLite store lets go of executions that only wait, after ``hibernate_after``
seconds on its clock, and brings each back from the database when an event, a timer or a
caller needs it, with nothing observable changed."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from pathlib import Path
from typing import Any

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from procstore.hibernator import STALE_DUE_ENTRIES
from procstore.runtime import is_parked
from procstore.storage.base import EVENT
from tests.builders import fn, on, region
from tests.clock import ManualClock
from tests.conftest import (
    FailsThen,
    Gate,
    make_doc,
    python_child,
    records,
    wait_until,
    within,
)

WAITS_FOR_AN_EVENT = make_doc(
    {"ask": {"transitions": [on("approve", "done")]}, "done": {}}, "ask", name="event"
)
RETRIES_LATER = make_doc(
    {
        "call": {
            "action": fn("flaky"),
            "retry": {"max_attempts": 3, "interval_ms": 60_000},
            "transitions": [on("success", "done")],
        },
        "done": {},
    },
    "call",
    name="retry",
)
WAITS_A_MINUTE = make_doc(
    {"w": {"wait": {"seconds": 60}, "transitions": [on("success", "done")]}, "done": {}},
    "w",
    name="wait",
)
TIMES_OUT = make_doc(
    {
        "ask": {
            "timeout_ms": 10_000,
            "transitions": [on("approve", "done"), on("timeout", "late")],
        },
        "done": {},
        "late": {},
    },
    "ask",
    name="timeout",
)


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'procstore.db'}"


async def opened(
    url: str, clock: ManualClock, after: float | None, *docs: dict[str, Any], **code: Any
) -> ProcedureStore:
    """A store on ``url`` hibernating ``after`` seconds, with ``code`` registered as actions
    and ``docs`` registered."""
    store = ProcedureStore(url, clock=clock, hibernate_after=after)
    for name, action in code.items():
        store.register_action(name, action)
    for doc in docs:
        await store.register(doc)
    return store


async def until_stored(store: ProcedureStore, execution_id: str, status: Status) -> None:
    """Wait until the database holds ``execution_id`` with ``status``."""
    while not any(s.id == execution_id for s in await store.executions(status)):
        await asyncio.sleep(0.005)


async def start_hibernated(store: ProcedureStore, name: str, *, auto: bool = False) -> str:
    """Start an execution of ``name`` and wait until the store has let go of it; its id."""
    execution_id = (await store.start(name, auto=auto)).id
    await wait_until(lambda: not in_memory(store, execution_id))
    return execution_id


def in_memory(store: ProcedureStore, execution_id: str) -> bool:
    """Whether the store runs the execution in memory now (not parked, not let go of)."""
    return execution_id in store._executions.running


async def test_an_execution_that_only_waits_leaves_memory_after_the_idle_interval(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 30, WAITS_FOR_AN_EVENT)
    execution = await store.start("event")
    execution_id, gone = execution.id, weakref.ref(execution)
    del execution
    await clock.advance(29.9)
    assert in_memory(store, execution_id)

    await clock.advance(0.2)

    assert not in_memory(store, execution_id)
    gc.collect()
    assert gone() is None, "something still holds the hibernated execution"
    await store.close()


async def test_an_event_to_a_hibernated_execution_brings_it_back_and_moves_it_on(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, WAITS_FOR_AN_EVENT)
    execution_id = await start_hibernated(store, "event")

    execution = await store.get_execution(execution_id)
    assert await within(execution.send("approve"))

    assert execution.status is Status.COMPLETED
    assert [r.kind for r in execution.history].count("entered") == 2, "it started over"
    await store.close()


async def test_a_handle_held_across_hibernation_keeps_working(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, WAITS_FOR_AN_EVENT)
    execution = await store.start("event")
    await wait_until(lambda: is_parked(execution))

    assert (execution.current, execution.status) == ("ask", Status.RUNNING)
    assert await within(execution.send("approve"))
    assert execution.status is Status.COMPLETED
    assert await store.get_execution(execution.id) is execution
    await store.close()


async def test_a_handle_held_across_hibernation_sees_what_another_caller_did(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, WAITS_FOR_AN_EVENT)
    held = await store.start("event")
    await wait_until(lambda: is_parked(held))

    await (await store.get_execution(held.id)).send("approve")

    assert held.status is Status.COMPLETED
    await store.close()


async def test_a_state_timeout_of_a_hibernated_execution_fires_once_at_its_instant(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, TIMES_OUT)
    execution_id = await start_hibernated(store, "timeout")

    await clock.advance(9.999)
    assert not in_memory(store, execution_id)
    await clock.advance(0.001)
    execution = await store.get_execution(execution_id)
    await within(execution.run_to_completion())

    assert execution.current == "late"
    (timeout,) = records(execution.history, "timeout")
    assert clock.instant(timeout.at) == 10.0
    await store.close()


async def test_a_retry_delay_of_a_hibernated_execution_ends_at_its_stored_instant(
    tmp_path: Path, clock: ManualClock
) -> None:
    flaky = FailsThen("ok", ConnectionError("down"))
    store = await opened(sqlite(tmp_path), clock, 0, RETRIES_LATER, flaky=flaky)
    execution_id = await start_hibernated(store, "retry", auto=True)
    assert flaky.attempts == [1]

    await clock.advance(60)
    execution = await store.get_execution(execution_id)
    final = await within(execution.run_to_completion())

    assert flaky.attempts == [1, 2]
    assert final.status is Status.COMPLETED
    (second,) = records(final.history, "action", attempt=2)
    assert clock.instant(second.at) == 60.0
    await store.close()


async def test_a_wait_state_of_a_hibernated_execution_ends_at_its_stored_instant(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, WAITS_A_MINUTE)
    execution_id = await start_hibernated(store, "wait", auto=True)

    await clock.advance(60)
    final = await within((await store.get_execution(execution_id)).run_to_completion())

    assert final.status is Status.COMPLETED
    (left,) = records(final.history, "transition", state="w")
    assert clock.instant(left.at) == 60.0
    assert len(records(final.history, "wait")) == 1, "the wait started over"
    await store.close()


async def test_an_execution_running_an_action_stays_in_memory(
    tmp_path: Path, clock: ManualClock
) -> None:
    gate = Gate()
    busy = make_doc({"work": {"action": fn("gate")}}, "work", name="busy")
    store = await opened(sqlite(tmp_path), clock, 0)
    store.register_action("gate", gate.action)
    await store.register(busy)
    execution = await store.start("busy", auto=True)
    await within(gate.started.wait())

    await clock.advance(3600)

    assert in_memory(store, execution.id) and not is_parked(execution)
    gate.release.set()
    assert (await within(execution.run_to_completion())).status is Status.COMPLETED
    await store.close()


async def test_an_execution_run_to_completion_waits_in_memory(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, WAITS_FOR_AN_EVENT)
    execution = await store.start("event")
    driving = asyncio.ensure_future(execution.run_to_completion())
    await clock.advance(3600)

    assert not is_parked(execution)
    await execution.send("approve")
    assert (await within(driving)).status is Status.COMPLETED
    await store.close()


async def test_without_hibernation_every_execution_stays_in_memory(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, None, WAITS_FOR_AN_EVENT)
    execution_id = (await store.start("event")).id

    await clock.advance(86_400)

    assert in_memory(store, execution_id)
    await store.close()


async def test_work_leaves_what_only_waits_on_disk_and_wakes_it_when_due(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = sqlite(tmp_path)
    store = await opened(url, clock, None, WAITS_FOR_AN_EVENT, TIMES_OUT)
    waiting = (await store.start("event")).id
    timed = (await store.start("timeout")).id
    await store.close()

    store = await opened(url, clock, 30, WAITS_FOR_AN_EVENT, TIMES_OUT)
    await store.work()
    assert not in_memory(store, waiting) and not in_memory(store, timed)

    await clock.advance(10)

    await within(until_stored(store, timed, Status.COMPLETED))
    assert (await store.get_execution(timed)).current == "late"
    assert (await store.get_execution(waiting)).current == "ask"
    await store.close()


async def test_work_resumes_at_once_what_has_work_to_do(tmp_path: Path, clock: ManualClock) -> None:
    url = sqlite(tmp_path)
    gate = Gate()
    busy = make_doc({"work": {"action": fn("gate")}}, "work", name="busy")
    store = await opened(url, clock, None)
    store.register_action("gate", gate.action)
    await store.register(busy)
    execution_id = (await store.start("busy", auto=True)).id
    await within(gate.started.wait())
    await store.close()  # the attempt was cut off: it runs again where the store reopens

    again = Gate()
    store = await opened(url, clock, 0)
    store.register_action("gate", again.action)
    await store.work()

    await within(again.started.wait())
    assert in_memory(store, execution_id)
    again.release.set()
    await wait_until(lambda: not in_memory(store, execution_id))
    assert (await store.get_execution(execution_id)).status is Status.COMPLETED
    await store.close()


async def test_a_callback_completes_a_hibernated_execution(
    tmp_path: Path, clock: ManualClock
) -> None:
    tokens: list[str] = []

    async def hand_out(context: dict[str, Any], info: Any) -> None:
        tokens.append(info.token)

    doc = make_doc(
        {
            "pay": {
                "action": fn("hand_out"),
                "callback": True,
                "transitions": [on("success", "paid")],
            },
            "paid": {},
        },
        "pay",
        name="callback",
    )
    store = await opened(sqlite(tmp_path), clock, 0, hand_out=hand_out)
    await store.register(doc)
    execution_id = (await store.start("callback", auto=True)).id
    await wait_until(lambda: bool(tokens) and not in_memory(store, execution_id))

    await store.complete_callback(tokens[0], {"paid": True})

    final = await within((await store.get_execution(execution_id)).run_to_completion())
    assert final.status is Status.COMPLETED
    await store.close()


@pytest.mark.parametrize("after", [-1, float("nan"), float("inf"), "30", True])
def test_hibernate_after_must_be_seconds_or_none(after: Any) -> None:
    with pytest.raises(ValueError, match="hibernate_after"):
        ProcedureStore(hibernate_after=after)


def test_the_hibernation_benchmark_measures_what_it_says(tmp_path: Path) -> None:
    script = Path(__file__).parents[2] / "perf" / "bench_hibernation.py"
    out = tmp_path / "out.json"
    done = python_child(str(script), "--quick", "--json", str(out), "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    waiting, sends, timeouts = results["waiting"], results["sends"], results["timeouts"]
    assert waiting["executions"] == 1_000 and waiting["in_memory"] == 0
    assert sends["sends"] == 30 and sends["hibernated_ms"]["median"] > 0
    assert timeouts["each_once"] and timeouts["completed"] == timeouts["executions"] == 500
    assert "send() to a hibernated execution" in done.stdout


async def test_a_finished_execution_is_never_parked(tmp_path: Path, clock: ManualClock) -> None:
    store = await opened(sqlite(tmp_path), clock, 0, WAITS_FOR_AN_EVENT)
    execution = await store.start("event")
    await execution.send("approve")

    await clock.advance(60)

    assert execution.status is Status.COMPLETED and not is_parked(execution)
    await store.close()


async def test_work_after_a_close_runs_an_execution_whose_old_handle_is_still_held(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await opened(sqlite(tmp_path), clock, 30, TIMES_OUT)
    held = await store.start("timeout")
    await store.close()  # the held handle is detached now: it runs nothing

    await store.work()
    await clock.advance(10)

    await within(until_stored(store, held.id, Status.COMPLETED))
    assert (await store.get_execution(held.id)).current == "late"
    await store.close()


async def test_an_event_refused_after_waiting_for_a_step_still_lets_it_hibernate(
    tmp_path: Path, clock: ManualClock
) -> None:
    gate = Gate()
    doc = make_doc(
        {
            "work": {"action": fn("gate"), "transitions": [on("success", "ask")]},
            "ask": {"transitions": [on("approve", "done")]},
            "done": {},
        },
        "work",
        name="refuses",
    )
    store = await opened(sqlite(tmp_path), clock, 0, doc, gate=gate.action)
    execution = await store.start("refuses", auto=True)
    await within(gate.started.wait())
    refused = asyncio.ensure_future(execution.send("bogus"))  # waits for the step first
    gate.release.set()
    with pytest.raises(InvalidEvent):
        await within(refused)

    await clock.advance(1)

    assert is_parked(execution)
    await store.close()


async def test_a_callback_refused_after_waiting_for_its_action_still_lets_it_hibernate(
    tmp_path: Path, clock: ManualClock
) -> None:
    gate, tokens = Gate(), []

    async def hand_out_then_fail(context: dict[str, Any], info: Any) -> None:
        tokens.append(info.token)
        await gate.release.wait()
        raise ConnectionError("down")

    doc = make_doc(
        {
            "pay": {
                "action": fn("hand_out_then_fail"),
                "callback": True,
                "transitions": [on("success", "done"), on("error", "ask")],
            },
            "ask": {"transitions": [on("approve", "done")]},
            "done": {},
        },
        "pay",
        name="fails",
    )
    store = await opened(sqlite(tmp_path), clock, 0, doc, hand_out_then_fail=hand_out_then_fail)
    execution = await store.start("fails", auto=True)
    await wait_until(lambda: bool(tokens))
    refused = asyncio.ensure_future(store.complete_callback(tokens[0]))  # waits for the action
    gate.release.set()
    with pytest.raises(InvalidEvent):
        await within(refused)

    await clock.advance(1)

    assert execution.current == "ask" and is_parked(execution)
    await store.close()


async def test_an_execution_whose_step_left_a_state_with_a_running_step_hibernates(
    tmp_path: Path, clock: ManualClock
) -> None:
    async def boom(context: dict[str, Any], info: Any) -> None:
        raise RuntimeError("no")

    doc = make_doc(
        {
            "checks": {
                "parallel": {
                    "fails": region(
                        "run",
                        {
                            "run": {
                                "action": fn("boom"),
                                "transitions": [on("success", "ok"), on("error", "ask")],
                            },
                            "ok": {},
                        },
                    ),
                    "waits": region(
                        "w",
                        {
                            "w": {"wait": {"seconds": 60}, "transitions": [on("success", "ok")]},
                            "ok": {},
                        },
                    ),
                },
            },
            "ask": {"transitions": [on("approve", "done")]},
            "done": {},
        },
        "checks",
        name="leaves",
    )
    store = await opened(sqlite(tmp_path), clock, 0, doc, boom=boom)
    execution = await store.start("leaves", auto=True)
    await wait_until(lambda: execution.current == "ask")

    await clock.advance(1)

    assert is_parked(execution)
    await store.close()


async def test_a_clients_callback_to_a_hibernated_execution_runs_what_follows_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    tokens, gate = [], Gate()

    async def hand_out(context: dict[str, Any], info: Any) -> None:
        tokens.append(info.token)

    doc = make_doc(
        {
            "pay": {
                "action": fn("hand_out"),
                "callback": True,
                "transitions": [on("success", "ship")],
            },
            "ship": {"action": fn("ship"), "transitions": [on("success", "done")]},
            "done": {},
        },
        "pay",
        name="ships",
    )
    url = sqlite(tmp_path)
    store = await opened(url, clock, 0, doc, hand_out=hand_out, ship=gate.action)
    held = await store.start("ships", auto=True)
    await wait_until(lambda: bool(tokens) and is_parked(held))
    client = ProcedureStore(url, worker=False)

    await client.complete_callback(tokens[0])  # applied from the inbox by the store
    await within(gate.started.wait())
    execution = await store.get_execution(held.id)
    gate.release.set()
    final = await within(execution.run_to_completion())

    assert final.status is Status.COMPLETED
    assert len(records(final.history, "action", state="ship")) == 1, "it shipped twice"
    await client.close()
    await store.close()


async def test_a_damaged_command_refused_to_a_hibernated_execution_leaves_its_timer_due(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = sqlite(tmp_path)
    store = await opened(url, clock, 0, TIMES_OUT)
    held = await store.start("timeout")
    await wait_until(lambda: is_parked(held))
    client = ProcedureStore(url, worker=False)
    inbox = await client._opened()  # a damaged command: what no client of this version posts

    await inbox.post_command(held.id, EVENT, {"names": "no event"})
    await wait_until(lambda: bool(records(held.history, "received")))
    await clock.advance(10)

    await within(until_stored(store, held.id, Status.COMPLETED))
    assert (await store.get_execution(held.id)).current == "late"
    await client.close()
    await store.close()


async def test_an_execution_a_client_sent_an_event_leaves_memory_when_hibernated(
    tmp_path: Path, clock: ManualClock
) -> None:
    pings = make_doc(
        {"ask": {"transitions": [on("ping", "ask"), on("approve", "done")]}, "done": {}},
        "ask",
        name="pings",
    )
    url = sqlite(tmp_path)
    store = await opened(url, clock, 0, pings)
    execution_id = (await store.start("pings")).id
    client = ProcedureStore(url, worker=False)
    await (await client.get_execution(execution_id)).send("ping")

    def received_and_parked() -> bool:
        execution = store._executions.tracked(execution_id)
        return (
            execution is not None
            and is_parked(execution)
            and bool(records(execution.history, "received"))
        )

    await wait_until(received_and_parked)
    held = store._executions.tracked(execution_id)
    assert held is not None
    gone = weakref.ref(held)
    del held
    await clock.advance(1)

    gc.collect()
    assert gone() is None, "something still holds the hibernated execution"
    await client.close()
    await store.close()


async def test_the_due_index_does_not_grow_with_how_often_an_execution_is_woken(
    tmp_path: Path, clock: ManualClock
) -> None:
    pinged = make_doc(
        {
            "outer": {
                "timeout_ms": 86_400_000,
                "initial_state": "ask",
                "states": {"ask": {"transitions": [on("ping", "ask")]}},
                "transitions": [on("timeout", "late")],
            },
            "late": {},
        },
        "outer",
        name="pinged",
    )
    store = await opened(sqlite(tmp_path), clock, 0, pinged)
    held = await store.start("pinged")
    await wait_until(lambda: is_parked(held))

    for _ in range(300):
        await held.send("ping")  # woken, then parked again with the same due time
        await wait_until(lambda: is_parked(held))

    assert len(store._hibernator._due) <= 1 + STALE_DUE_ENTRIES
    await clock.advance(86_400)
    await within(until_stored(store, held.id, Status.COMPLETED))
    await store.close()


async def test_an_execution_whose_sender_gave_up_during_the_commit_still_hibernates(
    tmp_path: Path, clock: ManualClock
) -> None:
    two_steps = make_doc(
        {
            "ask": {"transitions": [on("next", "confirm")]},
            "confirm": {"transitions": [on("approve", "done")]},
            "done": {},
        },
        "ask",
        name="two_steps",
    )
    store = await opened(sqlite(tmp_path), clock, 0, two_steps)
    held = await store.start("two_steps")
    await wait_until(lambda: is_parked(held))
    hurried = asyncio.ensure_future(held.send("next"))
    await asyncio.sleep(0)  # the transition is recorded and its commit under way
    hurried.cancel()  # a timeout around send(): the commit still completes

    await wait_until(lambda: is_parked(held))

    assert held.current == "confirm" and hurried.cancelled()
    await store.close()
