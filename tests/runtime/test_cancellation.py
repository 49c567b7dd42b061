"""Cancelling an execution: what it stops and records, and that nothing is left running after
an execution ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from procstore.runtime.steps import CANCEL_GRACE_SECONDS
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import (
    Gate,
    assert_no_new_tasks,
    index_of,
    make_doc,
    records,
    slow_cleanup,
    wait_until,
    within,
)


def _undo_log(store: ProcedureStore, *, failing: bool = False) -> list[str]:
    log: list[str] = []

    def undo(context: dict[str, Any]) -> str:
        log.append("undo")
        if failing:
            raise RuntimeError("undo failed")
        return "undone"

    store.register_action("undo", undo)
    return log


def _gated_doc(
    store: ProcedureStore,
    gate: Gate,
    *,
    compensated_first: bool = False,
    state_timeout_ms: float | None = None,
) -> dict[str, Any]:
    """[first (noop, maybe compensated) ->] work (gate) -> done."""
    store.register_action("hang", gate.action)
    work: dict[str, Any] = {"action": fn("hang"), "transitions": [on("success", "done")]}
    if state_timeout_ms is not None:
        work["timeout_ms"] = state_timeout_ms
        work["transitions"].append(on("timeout", "late"))
    states: dict[str, Any] = {"work": work, "done": {}}
    if state_timeout_ms is not None:
        states["late"] = {}
    initial = "work"
    if compensated_first:
        states["first"] = {
            "action": {"type": "noop"},
            "compensate": fn("undo"),
            "transitions": [on("success", "work")],
        }
        initial = "first"
    return make_doc(states, initial)


async def _start_in_work(store: ProcedureStore, gate: Gate, context: Any = None) -> Any:
    ex = await within(store.start("p", "1.0", context or {}))
    if ex.state.current != "work":
        assert await within(ex.send("success")) is True
    await within(gate.started.wait())
    return ex


async def test_cancel_interrupts_a_long_action_within_100_ms(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    await timed_store.register(_gated_doc(timed_store, gate))
    ex = await _start_in_work(timed_store, gate)

    final = await clock.instantly(ex.cancel())  # it takes no time at all

    assert gate.cancelled
    assert gate.finished.is_set(), "the action's finally did not run"
    assert not gate.returned
    assert final.status == Status.CANCELLED
    assert ex.status == Status.CANCELLED
    assert final.current == "work"


async def test_cancel_interrupts_a_builtin_sleep_action(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "sleep", "ms": 10_000},
                    "transitions": [on("success", "b")],
                },
                "b": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.01)
    assert clock.pending() == [10.0], "the action is not sleeping"

    final = await clock.instantly(ex.cancel())  # while the action still sleeps
    assert final.status == Status.CANCELLED
    assert clock.pending() == [], "the sleep went on"


async def test_cancel_waits_for_the_actions_async_cleanup(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    cleaned = slow_cleanup(timed_store, clock, 0.01)
    await timed_store.register(
        make_doc({"a": {"action": fn("slow"), "transitions": [on("success", "b")]}, "b": {}}, "a")
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.settle()

    cancelling = asyncio.create_task(ex.cancel())
    await clock.advance(0.009)
    assert not cancelling.done(), "cancel returned before the action's cleanup ended"
    await clock.advance(0.001)
    assert cancelling.done(), "cancel waited on after the cleanup ended"
    assert cleaned == ["cleaned"]


async def test_cancel_waits_for_a_slow_cleanup_only_its_grace_period(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    cleaned = slow_cleanup(timed_store, clock, 5.0)
    await timed_store.register(
        make_doc({"a": {"action": fn("slow"), "transitions": [on("success", "b")]}, "b": {}}, "a")
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.settle()

    cancelling = asyncio.create_task(ex.cancel())
    await clock.advance(CANCEL_GRACE_SECONDS - 0.001)
    assert not cancelling.done(), "cancel did not give the cleanup its grace period"
    await clock.advance(0.001)
    assert cancelling.done(), "cancel waited past its grace period"
    assert cancelling.result().status == Status.CANCELLED
    assert cleaned == []
    await clock.advance(4.0)  # the cleanup goes on, and ends, by itself
    assert cleaned == ["cleaned"]


async def test_rollback_after_cancel_undoes_once_the_grace_period_is_over(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    undone = _undo_log(timed_store)
    slow_cleanup(timed_store, clock, 5.0)
    await timed_store.register(
        make_doc(
            {
                "first": {
                    "action": {"type": "noop"},
                    "compensate": fn("undo"),
                    "transitions": [on("success", "work")],
                },
                "work": {"action": fn("slow"), "transitions": [on("success", "done")]},
                "done": {},
            },
            "first",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.settle()
    assert ex.state.current == "work"

    cancelling = asyncio.create_task(ex.cancel(rollback=True))
    await clock.advance(CANCEL_GRACE_SECONDS - 0.001)
    assert undone == [], "undone while the interrupted action was still cleaning up"
    await clock.advance(0.001)
    assert undone == ["undo"], "the undoing waited past the grace period"
    final = await within(cancelling)
    (compensation,) = records(final.history, "compensation", state="first")
    assert clock.instant(compensation.at) == CANCEL_GRACE_SECONDS
    assert final.status == Status.ROLLED_BACK
    await clock.advance(4.0)  # let the cleanup end


async def test_cancel_records_cancelled(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_gated_doc(store, gate))
    ex = await _start_in_work(store, gate)

    final = await within(ex.cancel())
    cancelled = records(final.history, "cancelled")
    assert len(cancelled) == 1
    assert cancelled[0].state == "work"
    finished = records(final.history, "finished")
    assert len(finished) == 1
    assert finished[0].status == Status.CANCELLED
    assert index_of(final.history, "cancelled") < index_of(final.history, "finished")
    # The interrupted attempt may be recorded, but never as a success.
    assert all(r.error is not None for r in records(final.history, "action", state="work"))


async def test_cancel_of_an_execution_waiting_for_an_event(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))

    final = await within(ex.cancel())
    assert final.status == Status.CANCELLED
    assert final.current == "a"
    assert records(final.history, "cancelled", state="a")


async def test_cancel_with_rollback_compensates_and_ends_rolled_back(
    store: ProcedureStore,
) -> None:
    undone = _undo_log(store)
    gate = Gate()
    await store.register(_gated_doc(store, gate, compensated_first=True))
    ex = await _start_in_work(store, gate)

    final = await within(ex.cancel(rollback=True))

    assert gate.cancelled and gate.finished.is_set()
    assert undone == ["undo"]
    assert final.status == Status.ROLLED_BACK
    history = final.history
    assert records(history, "cancelled", state="work")
    rollback = records(history, "rollback")
    assert len(rollback) == 1
    assert rollback[0].message == "cancelled"
    assert index_of(history, "cancelled") < index_of(history, "compensation", state="first")
    assert history[-1].kind == "finished"
    assert history[-1].status == Status.ROLLED_BACK


async def test_cancel_with_rollback_ends_failed_when_a_compensation_fails(
    store: ProcedureStore,
) -> None:
    undone = _undo_log(store, failing=True)
    gate = Gate()
    await store.register(_gated_doc(store, gate, compensated_first=True))
    ex = await _start_in_work(store, gate)

    final = await within(ex.cancel(rollback=True))

    assert undone == ["undo"]
    assert final.status == Status.FAILED
    comps = records(final.history, "compensation", state="first")
    assert len(comps) == 1
    assert comps[0].error is not None
    assert comps[0].error.message == "undo failed"
    assert records(final.history, "cancelled")


async def test_cancel_with_rollback_and_nothing_to_undo_stays_cancelled(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_gated_doc(store, gate))
    ex = await _start_in_work(store, gate)

    final = await within(ex.cancel(rollback=True))
    assert final.status == Status.CANCELLED
    assert records(final.history, "compensation") == []


async def test_cancel_without_rollback_does_not_compensate(store: ProcedureStore) -> None:
    undone = _undo_log(store)
    gate = Gate()
    await store.register(_gated_doc(store, gate, compensated_first=True))
    ex = await _start_in_work(store, gate)

    final = await within(ex.cancel())
    await asyncio.sleep(0.02)
    assert final.status == Status.CANCELLED
    assert undone == []
    assert records(ex.state.history, "compensation") == []


async def test_cancel_during_a_retry_delay_stops_further_attempts(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    calls = 0

    async def down(context: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    timed_store.register_action("down", down)
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "action": fn("down"),
                    "retry": {"max_attempts": 5, "interval_ms": 40},
                    "transitions": [on("success", "b"), on("error", "b")],
                },
                "b": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.02)
    assert records(ex.history, "retry"), "not waiting to retry"

    await clock.instantly(ex.cancel())  # during the 40 ms delay
    await clock.advance(0.1)
    assert calls == 1
    assert ex.status == Status.CANCELLED
    assert len(records(ex.history, "action")) == 1


async def test_cancel_releases_a_waiting_driver(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_gated_doc(store, gate))
    ex = await _start_in_work(store, gate)
    driver = asyncio.create_task(ex.run_to_completion(timeout=2.0))
    await asyncio.sleep(0.01)

    await within(ex.cancel())
    final = await within(driver, 0.5)
    assert final.status == Status.CANCELLED


async def test_waiting_send_is_released_by_cancel_with_invalid_event(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_gated_doc(store, gate))
    ex = await _start_in_work(store, gate)
    send = asyncio.create_task(ex.send("success"))
    await asyncio.sleep(0.01)
    assert not send.done(), "send() did not wait for the running action"

    await within(ex.cancel())
    with pytest.raises(InvalidEvent):
        await within(send, 0.5)
    assert ex.state.current == "work"
    assert records(ex.history, "transition", state="work") == []


async def test_send_after_cancel_raises_invalid_event(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.cancel())

    with pytest.raises(InvalidEvent):
        await within(ex.send("go"))
    assert ex.state.current == "a"
    assert ex.status == Status.CANCELLED


@pytest.mark.parametrize("how", ["completed", "failed", "cancelled"])
async def test_cancelling_a_finished_execution_is_a_no_op(store: ProcedureStore, how: str) -> None:
    last: dict[str, Any] = {"outcome": "failure"} if how == "failed" else {}
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": last}, "a"))
    ex = await within(store.start("p", "1.0", {}))
    if how == "cancelled":
        await within(ex.cancel())
    else:
        assert await within(ex.send("go")) is True
    before = ex.state
    assert before.status == Status(how)

    after = await within(ex.cancel())
    again = await within(ex.cancel(rollback=True))

    assert after.status == again.status == Status(how)
    assert ex.state.history == before.history
    assert len(records(ex.state.history, "cancelled")) == (1 if how == "cancelled" else 0)


# --- nothing survives ----------------------------------------------------------------------------


async def test_no_task_or_timer_survives_a_finished_execution(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    baseline = set(asyncio.all_tasks())
    calls = 0

    async def flaky(context: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("blip")
        return "ok"

    timed_store.register_action("flaky", flaky)
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "action": fn("flaky", timeout_ms=100),
                    "retry": {"max_attempts": 2, "interval_ms": 1},
                    "timeout_ms": 60,
                    "transitions": [on("success", "b"), on("timeout", "late")],
                },
                "b": {"action": {"type": "noop"}, "timeout_ms": 60},
                "late": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.advance(0.001)  # the retry
    final = await within(ex.run_to_completion())
    assert final.status == Status.COMPLETED
    assert final.current == "b"
    length = len(ex.history)

    await assert_no_new_tasks(baseline)
    assert clock.pending() == [], "a timer survived"
    await clock.advance(0.1)  # past both states' deadlines
    assert len(ex.history) == length
    assert records(ex.history, "timeout") == []
    await assert_no_new_tasks(baseline)


async def test_no_task_or_timer_survives_a_cancelled_execution(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    baseline = set(asyncio.all_tasks())
    gate = Gate()
    await timed_store.register(_gated_doc(timed_store, gate, state_timeout_ms=50))
    ex = await _start_in_work(timed_store, gate)

    await within(ex.cancel())
    await assert_no_new_tasks(baseline)
    assert clock.pending() == [], "the state's timer survived"
    length = len(ex.history)

    await clock.advance(0.1)  # past the state's deadline
    assert len(ex.history) == length
    assert records(ex.history, "timeout") == []
    assert ex.state.current == "work"
    assert ex.status == Status.CANCELLED


async def test_no_task_survives_a_cancel_with_rollback(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    baseline = set(asyncio.all_tasks())
    _undo_log(timed_store)
    gate = Gate()
    await timed_store.register(
        _gated_doc(timed_store, gate, compensated_first=True, state_timeout_ms=50)
    )
    ex = await _start_in_work(timed_store, gate)

    await within(ex.cancel(rollback=True))
    assert ex.status == Status.ROLLED_BACK
    await assert_no_new_tasks(baseline)
    assert clock.pending() == [], "a timer survived"
    length = len(ex.history)
    await clock.advance(0.1)  # past the state's deadline
    assert len(ex.history) == length


async def test_nothing_of_the_old_run_survives_a_reset(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    baseline = set(asyncio.all_tasks())
    gate = Gate()
    timed_store.register_action("hang", gate.action)
    await timed_store.register(
        make_doc(
            {
                "start": {"transitions": [on("go", "work")]},
                "work": {
                    "action": fn("hang"),
                    "timeout_ms": 50,
                    "transitions": [on("success", "done"), on("timeout", "late")],
                },
                "done": {},
                "late": {},
            },
            "start",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    assert await within(ex.send("go")) is True
    await within(gate.started.wait())
    before_reset = {t for t in asyncio.all_tasks() if t not in baseline}
    assert before_reset, "expected the running action's task"

    await within(ex.reset())

    assert gate.cancelled and gate.finished.is_set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(t.done() for t in before_reset), "a task of the old run survived the reset"
    await assert_no_new_tasks(baseline)  # the initial state has no action
    assert ex.state.current == "start"
    assert ex.status == Status.RUNNING
    assert clock.pending() == [], "the old state's timer survived"

    await clock.advance(0.1)  # past the old state's deadline
    assert ex.state.current == "start"
    assert records(ex.history, "timeout") == []
    assert records(ex.history, "reset", state="start")


async def test_no_task_survives_a_state_timeout_with_no_handler(store: ProcedureStore) -> None:
    baseline = set(asyncio.all_tasks())
    gate = Gate()
    store.register_action("hang", gate.action)
    await store.register(
        make_doc(
            {
                "a": {"action": fn("hang"), "timeout_ms": 20, "transitions": [on("success", "b")]},
                "b": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.status != Status.RUNNING, timeout=1.0)

    assert ex.status == Status.FAILED
    assert gate.cancelled and gate.finished.is_set()
    await assert_no_new_tasks(baseline)
