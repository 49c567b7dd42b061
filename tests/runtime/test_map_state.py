"""Map states: one child execution per item of a list, with a concurrency limit, the outputs
collected in order, failures tolerated per policy, and the items resumed after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from procstore.actions import ActionRegistry
from procstore.children import CHILD_POLL_SECONDS
from procstore.clock import SYSTEM
from procstore.guards import GuardRegistry
from procstore.registry import ProcedureRegistry
from procstore.storage import StoredProcedure
from tests import postgres
from tests.clock import ManualClock
from tests.conftest import Gate, make_doc, records, wait_until, within


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty store: an SQLite file, or a PostgreSQL database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'procstore.db'}"
        return
    async with postgres.database(request.getfixturevalue("postgres_server")) as database:
        yield database


def map_doc(
    item_states: dict[str, Any] | None = None, transitions: Any = None, **spec: Any
) -> dict[str, Any]:
    """A procedure whose state ``fan`` maps ``$.orders`` to the item states (by default: run
    action ``app.work`` and end), then ends in ``end`` (or ``failed`` on ``error``)."""
    item_states = item_states or {
        "work": {
            "action": {"type": "function", "function": "app.work", "result": "out"},
            "transitions": [{"event": "success", "target": "ok"}],
        },
        "ok": {},
    }
    fan = {
        "map": {
            "items_path": "$.orders",
            "initial_state": next(iter(item_states)),
            "states": item_states,
        }
        | spec,
        "transitions": transitions
        or [{"event": "done", "target": "end"}, {"event": "error", "target": "failed"}],
    }
    states = {"fan": fan, "end": {}}
    if transitions is None:
        states["failed"] = {"outcome": "failure"}
    return make_doc(states, "fan", name="orders")


def double(context: dict[str, Any]) -> Any:
    return context["item"] * 2


async def test_the_outputs_are_collected_in_the_items_order(store: ProcedureStore) -> None:
    store.register_action("app.work", double)
    await store.register(map_doc(result="$.results", output_path="$.out"))
    execution = await store.start("orders", context={"orders": [3, 1, 2]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED
    assert final.context["results"] == [6, 2, 4]


async def test_an_items_output_is_its_whole_final_context_by_default(
    store: ProcedureStore,
) -> None:
    store.register_action("app.work", double)
    await store.register(map_doc(result="$.results"))
    execution = await store.start("orders", context={"orders": [5]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.context["results"] == [{"item": 5, "index": 0, "out": 10}]


async def test_the_item_selector_builds_each_items_start_context(store: ProcedureStore) -> None:
    store.register_action("app.work", lambda c: f"{c['shop']}/{c['order']}#{c['n']}")
    selector = {"shop": "north", "order.$": "$$.map.item.id", "n.$": "$$.map.index"}
    await store.register(map_doc(item_selector=selector, result="$.r", output_path="$.out"))
    execution = await store.start("orders", context={"orders": [{"id": "a"}, {"id": "b"}]})
    final = await within(execution.run_to_completion())
    assert final.context["r"] == ["north/a#0", "north/b#1"]


async def test_an_item_whose_selector_names_nothing_fails_without_starting(
    store: ProcedureStore,
) -> None:
    store.register_action("app.work", lambda c: c["order"])
    selector = {"order.$": "$$.map.item.id"}
    doc = map_doc(item_selector=selector, result="$.r", output_path="$.out", tolerated_failures=1)
    await store.register(doc)
    execution = await store.start("orders", context={"orders": [{"id": "a"}, {"no": "id"}]})
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED
    assert final.context["r"] == ["a", None]
    assert len(await store.executions(procedure="orders#fan")) == 1


async def test_no_more_items_run_at_once_than_max_concurrency(store: ProcedureStore) -> None:
    running, most = 0, 0

    async def work(context: dict[str, Any]) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return 0

    store.register_action("app.work", work)
    await store.register(map_doc(max_concurrency=2))
    execution = await store.start("orders", context={"orders": list(range(7))}, auto=True)
    final = await within(execution.run_to_completion(), 5)
    assert final.status is Status.COMPLETED
    assert most == 2


def fail_odd(context: dict[str, Any]) -> int:
    if context["item"] % 2:
        raise ValueError(f"odd {context['item']}")
    return int(context["item"])


async def test_failed_items_within_the_tolerated_count_still_complete_the_map(
    store: ProcedureStore,
) -> None:
    store.register_action("app.work", fail_odd)
    await store.register(map_doc(tolerated_failures=2, result="$.r", output_path="$.out"))
    execution = await store.start("orders", context={"orders": [0, 1, 2, 3]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED
    assert final.context["r"] == [0, None, 2, None]


async def test_failed_items_within_the_tolerated_percentage_still_complete_the_map(
    store: ProcedureStore,
) -> None:
    store.register_action("app.work", fail_odd)
    await store.register(map_doc(tolerated_failure_percentage=50))
    execution = await store.start("orders", context={"orders": [0, 1, 2, 3]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED


async def test_more_failed_items_than_tolerated_raise_map_failed(store: ProcedureStore) -> None:
    store.register_action("app.work", fail_odd)
    doc = map_doc(
        tolerated_failures=1,
        transitions=[
            {"event": "done", "target": "end"},
            {"event": "error", "target": "end", "guard": "error['type'] == 'MapFailed'"},
        ],
    )
    await store.register(doc)
    execution = await store.start("orders", context={"orders": [1, 3, 5]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED
    assert records(final.history, "transition", state="fan", event="error")


async def test_an_item_failing_without_tolerance_fails_the_map(store: ProcedureStore) -> None:
    store.register_action("app.work", fail_odd)
    await store.register(map_doc())
    execution = await store.start("orders", context={"orders": [0, 1]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.status is Status.FAILED
    assert final.current == "failed"


async def test_the_items_still_running_when_the_map_fails_are_cancelled(
    store: ProcedureStore,
) -> None:
    gate = Gate()

    async def fail_first(context: dict[str, Any]) -> Any:
        if context["index"] == 0:
            await gate.started.wait()  # the other item runs: fail now
            raise ValueError("first")
        return await gate.action(context)

    store.register_action("app.work", fail_first)
    await store.register(map_doc(max_concurrency=2))
    execution = await store.start("orders", context={"orders": ["a", "b"]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.current == "failed"
    await wait_until(lambda: gate.cancelled)
    items = await store.executions(procedure="orders#fan")
    assert sorted(s.status for s in items) == [Status.CANCELLED, Status.FAILED]


async def test_an_empty_list_completes_the_map_with_no_outputs(store: ProcedureStore) -> None:
    store.register_action("app.work", double)
    await store.register(map_doc(result="$.results"))
    execution = await store.start("orders", context={"orders": []}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED
    assert final.context["results"] == []


async def test_an_items_path_that_names_no_list_raises_error_saying_so(
    store: ProcedureStore,
) -> None:
    store.register_action("app.work", double)
    doc = map_doc(
        transitions=[
            {"event": "done", "target": "end"},
            {"event": "error", "target": "end", "guard": "error['type'] == 'MapItemsInvalid'"},
        ]
    )
    await store.register(doc)
    missing = await store.start("orders", context={}, auto=True)
    not_a_list = await store.start("orders", context={"orders": {"a": 1}}, auto=True)
    for execution in (missing, not_a_list):
        final = await within(execution.run_to_completion())
        assert final.current == "end"
        assert records(final.history, "transition", state="fan", event="error")


async def test_a_result_path_that_cannot_be_stored_raises_error(store: ProcedureStore) -> None:
    store.register_action("app.work", double)
    doc = map_doc(
        result="$.summary.results",
        transitions=[
            {"event": "done", "target": "end"},
            {"event": "error", "target": "end", "guard": "error['type'] == 'PathNotFound'"},
        ],
    )
    await store.register(doc)
    execution = await store.start("orders", context={"orders": [1], "summary": "text"})
    final = await within(execution.run_to_completion())
    assert final.current == "end"
    assert records(final.history, "transition", state="fan", event="error")
    assert not records(final.history, "internal_error")


async def test_each_item_is_an_execution_of_the_item_procedure(store: ProcedureStore) -> None:
    store.register_action("app.work", double)
    await store.register(map_doc())
    execution = await store.start("orders", context={"orders": [1, 2]}, auto=True)
    await within(execution.run_to_completion())
    items = await store.executions(procedure="orders#fan")
    assert [s.status for s in items] == [Status.COMPLETED, Status.COMPLETED]
    assert [p.name for p in await store.list()] == ["orders"]


async def test_cancelling_the_parent_cancels_its_running_items(store: ProcedureStore) -> None:
    gate = Gate()
    store.register_action("app.work", gate.action)
    await store.register(map_doc())
    execution = await store.start("orders", context={"orders": [1, 2]}, auto=True)
    await within(gate.started.wait())
    await within(execution.cancel())
    await wait_until(lambda: gate.cancelled)
    items = await store.executions(procedure="orders#fan")
    assert {s.status for s in items} == {Status.CANCELLED}


async def test_rolling_back_the_parent_cancels_its_running_items(store: ProcedureStore) -> None:
    gate = Gate()
    store.register_action("app.work", gate.action)
    await store.register(map_doc())
    execution = await store.start("orders", context={"orders": [1]}, auto=True)
    await within(gate.started.wait())
    await within(execution.rollback())
    await wait_until(lambda: gate.cancelled)
    (item,) = await store.executions(procedure="orders#fan")
    assert item.status is Status.CANCELLED


async def test_leaving_the_map_state_on_its_timeout_cancels_its_items(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    timed_store.register_action("app.work", gate.action)
    doc = map_doc(transitions=[{"event": "timeout", "target": "end"}])
    doc["definition"]["states"]["fan"]["timeout_ms"] = 1000
    await timed_store.register(doc)
    execution = await timed_store.start("orders", context={"orders": [1, 2]}, auto=True)
    await within(gate.started.wait())
    await clock.advance(1)
    final = await within(execution.run_to_completion())
    assert final.current == "end"
    await wait_until(lambda: gate.cancelled)
    items = await timed_store.executions(procedure="orders#fan")
    assert {s.status for s in items} == {Status.CANCELLED}


async def test_a_map_inside_an_items_states_runs_its_own_items(store: ProcedureStore) -> None:
    store.register_action("app.work", double)
    inner = map_doc(result="$.doubled", output_path="$.out")["definition"]["states"]["fan"]
    inner["map"]["items_path"] = "$.item"
    inner["transitions"] = [{"event": "done", "target": "ok"}]
    outer = map_doc({"inner": inner, "ok": {}}, result="$.r", output_path="$.doubled")
    await store.register(outer)
    execution = await store.start("orders", context={"orders": [[1, 2], [3]]}, auto=True)
    final = await within(execution.run_to_completion())
    assert final.context["r"] == [[2, 4], [6]]


async def test_an_event_of_the_map_states_own_leaves_it_at_once_cancelling_its_items(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    store.register_action("app.work", gate.action)
    doc = map_doc(transitions=[{"event": "abort", "target": "end"}])
    await store.register(doc)
    execution = await store.start("orders", context={"orders": [1]}, auto=True)
    await within(gate.started.wait())
    assert await within(execution.send("abort"))
    assert execution.current == "end"
    await wait_until(lambda: gate.cancelled)


async def test_a_crash_mid_map_resumes_the_items_without_running_finished_ones_again(
    url: str,
) -> None:
    gate = Gate()
    ran: list[int] = []

    async def first_run(context: dict[str, Any]) -> Any:
        ran.append(context["item"])
        if context["item"] == 2:
            return await gate.action(context)
        return context["item"]

    async with ProcedureStore(url) as store:
        store.register_action("app.work", first_run)
        await store.register(map_doc(max_concurrency=1, result="$.r", output_path="$.out"))
        execution = await store.start("orders", context={"orders": [0, 1, 2, 3]}, auto=True)
        await within(gate.started.wait())  # items 0 and 1 are done; 2 runs: crash now
    assert ran == [0, 1, 2]

    again: list[int] = []

    def second_run(context: dict[str, Any]) -> Any:
        again.append(context["item"])
        return context["item"]

    async with ProcedureStore(url) as store:
        store.register_action("app.work", second_run)
        await store.recover()
        final = await within((await store.get_execution(execution.id)).run_to_completion())
    assert final.status is Status.COMPLETED
    assert final.context["r"] == [0, 1, 2, 3]
    assert again == [2, 3]


def test_a_stored_procedure_lacks_the_host_code_its_item_states_name() -> None:
    registry = ProcedureRegistry(ActionRegistry([], []), GuardRegistry(), "memory", SYSTEM)
    registry.load([StoredProcedure("orders", "1.0", map_doc())])
    missing = registry.missing_host_code("orders", "1.0")
    assert missing is not None and "'app.work'" in missing
    assert registry.compiled("orders#fan", "1.0").procedure.name == "orders#fan"


async def test_a_worker_running_the_map_waits_for_an_item_another_worker_runs(
    postgres_url: str, clock: ManualClock
) -> None:
    first = Gate()
    async with ProcedureStore(postgres_url, concurrency=0) as store:
        store.register_action("app.work", first.action)
        await store.register(map_doc(result="$.r", output_path="$.out"))
        execution = await store.start("orders", context={"orders": [7]}, auto=True)
        await within(first.started.wait())  # the item runs: close (its lease is released)
    reader = ProcedureStore(postgres_url, worker=False)
    (item,) = [s.id for s in await reader.executions(procedure="orders#fan")]

    async def item_completed() -> None:
        while (await reader.executions(procedure="orders#fan"))[0].status is not Status.COMPLETED:
            await asyncio.sleep(0.01)

    gate = Gate(result=14)
    async with (
        ProcedureStore(postgres_url, concurrency=0) as items_worker,
        ProcedureStore(postgres_url, concurrency=0, clock=clock) as map_worker,
    ):
        items_worker.register_action("app.work", gate.action)
        map_worker.register_action("app.work", double)
        await items_worker.get_execution(item)  # this worker holds the item
        await within(gate.started.wait())
        parent = await map_worker.get_execution(execution.id)  # that one, the map
        await wait_until(lambda: clock.pending() == [CHILD_POLL_SECONDS])  # it polls the item
        gate.release.set()
        await within(item_completed(), 30)  # its end is stored
        await clock.advance(CHILD_POLL_SECONDS)
        final = await within(parent.run_to_completion(), 30)
    await reader.close()
    assert final.status is Status.COMPLETED
    assert final.context["r"] == [14]


async def test_a_map_state_that_timed_out_while_closed_cancels_its_items(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'map.db'}"
    gate = Gate()
    doc = map_doc(transitions=[{"event": "timeout", "target": "end"}])
    doc["definition"]["states"]["fan"]["timeout_ms"] = 1000
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", gate.action)
        await store.register(doc)
        execution = await store.start("orders", context={"orders": [1]}, auto=True)
        await within(gate.started.wait())
    await clock.advance(2)  # the map state's time runs out while nothing runs it

    async def item_cancelled(store: ProcedureStore) -> None:
        while (await store.executions(procedure="orders#fan"))[0].status is not Status.CANCELLED:
            await asyncio.sleep(0.01)

    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", Gate().action)
        await store.recover()
        final = await within((await store.get_execution(execution.id)).run_to_completion())
        assert final.current == "end"
        await within(item_cancelled(store))
