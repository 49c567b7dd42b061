"""Timeouts: an action's ``timeout_ms`` bounds each attempt, a state's ``timeout_ms`` bounds the
whole stay in the state (retries included), and what each cancels and records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from procstore.runtime.steps import CANCEL_GRACE_SECONDS
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import Gate, index_of, make_doc, records, slow_cleanup, wait_until, within


def _kinds(history: Any, *kinds: str) -> list[tuple[str, str | None]]:
    return [(r.kind, r.state) for r in history if r.kind in kinds]


# --- action.timeout_ms ---------------------------------------------------------------------------


async def test_action_timeout_cancels_the_attempt_and_records_timeout(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    timed_store.register_action("hang", gate.action)
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "action": fn("hang", timeout_ms=20),
                    "transitions": [on("success", "done"), on("error", "failed")],
                },
                "done": {},
                "failed": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.019)
    assert gate.started.is_set() and not gate.cancelled, "cut short before its 20 ms"
    await clock.advance(0.001)
    final = await within(ex.run_to_completion())

    assert gate.cancelled, "the attempt was not cancelled"
    assert gate.finished.is_set(), "the action's finally did not run"
    assert not gate.returned
    attempts = records(final.history, "action", state="a")
    assert len(attempts) == 1
    assert attempts[0].error is not None
    assert attempts[0].error.type == "Timeout"
    assert clock.instant(attempts[0].at) == 0.02, "not cut short at 20 ms exactly"
    assert final.current == "failed"


async def test_action_timeout_is_per_attempt_and_a_fast_action_is_unaffected(
    store: ProcedureStore,
) -> None:
    async def quick(context: dict[str, Any]) -> str:
        await asyncio.sleep(0.005)
        return "quick"

    store.register_action("quick", quick)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("quick", timeout_ms=200),
                    "transitions": [on("success", "done")],
                },
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.current == "done"
    assert records(final.history, "action", state="a")[0].result == "quick"


async def test_a_timed_out_attempt_is_retried(store: ProcedureStore) -> None:
    first = Gate()
    calls = 0

    async def hang_once(context: dict[str, Any]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await first.action(context)
        return "second"

    store.register_action("hang_once", hang_once)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("hang_once", timeout_ms=20),
                    "retry": {"max_attempts": 2, "interval_ms": 1},
                    "transitions": [on("success", "done"), on("error", "failed")],
                },
                "done": {},
                "failed": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert first.cancelled and first.finished.is_set()
    attempts = records(final.history, "action", state="a")
    assert [r.attempt for r in attempts] == [1, 2]
    assert attempts[0].error is not None and attempts[0].error.type == "Timeout"
    assert attempts[1].result == "second"
    assert len(records(final.history, "retry", state="a", attempt=2)) == 1
    assert final.current == "done"


# --- state timeout_ms ---------------------------------------------------------------------------


def _timed_state(
    store: ProcedureStore, gate: Gate, transitions: list[dict[str, Any]], timeout_ms: float = 30
) -> dict[str, Any]:
    store.register_action("hang", gate.action)
    states: dict[str, Any] = {
        "a": {"action": fn("hang"), "timeout_ms": timeout_ms, "transitions": transitions},
    }
    for t in transitions:
        states.setdefault(t["target"], {})
    return make_doc(states, "a")


async def test_state_timeout_fires_timeout_by_itself_without_driving(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    await timed_store.register(
        _timed_state(timed_store, gate, [on("success", "done"), on("timeout", "late")])
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.029)
    assert ex.state.current == "a", "the state timed out before its 30 ms"

    await clock.advance(0.001)
    assert ex.state.current == "late"
    history = ex.state.history
    (fired,) = records(history, "timeout", state="a")
    assert clock.instant(fired.at) == 0.03
    assert gate.cancelled and gate.finished.is_set()
    assert index_of(history, "timeout", state="a") < index_of(
        history, "transition", event="timeout", state="a", target="late"
    )
    assert ex.state.status == Status.COMPLETED


async def test_a_state_timeout_fires_after_the_grace_period_of_an_action_ignoring_it(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    """An action whose cleanup outlasts its cancellation holds the timeout off for the grace
    period that cancel and leaving a state give it, no longer: the timeout bounds the state."""
    cleaned = slow_cleanup(timed_store, clock, 5.0)
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "action": fn("slow"),
                    "timeout_ms": 30,
                    "transitions": [on("success", "done"), on("timeout", "late")],
                },
                "done": {},
                "late": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.03 + CANCEL_GRACE_SECONDS - 0.001)
    assert ex.state.current == "a", "the timeout did not give the cleanup its grace period"

    await clock.advance(0.001)
    assert ex.state.current == "late"
    (fired,) = records(ex.state.history, "timeout", state="a")
    assert clock.instant(fired.at) == 0.03 + CANCEL_GRACE_SECONDS
    assert cleaned == []  # the cleanup goes on by itself


async def test_state_timeout_under_a_driver_moves_on(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [on("success", "done"), on("timeout", "late")]))
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.current == "late"
    assert len(records(final.history, "timeout", state="a")) == 1


async def test_state_timeout_without_timeout_transition_goes_to_error(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [on("success", "done"), on("error", "failed")]))
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.state.current == "failed", timeout=1.0)
    history = ex.state.history
    assert records(history, "timeout", state="a")
    assert records(history, "transition", event="error", state="a", target="failed")
    assert gate.cancelled


async def test_timeout_transition_is_preferred_over_error(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(
        _timed_state(
            store, gate, [on("error", "failed"), on("timeout", "late"), on("success", "done")]
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.state.current == "late", timeout=1.0)
    assert records(ex.state.history, "transition", event="error") == []


async def test_state_timeout_without_timeout_or_error_transition_fails_the_execution(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [on("success", "done")]))
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.status != Status.RUNNING, timeout=1.0)
    state = ex.state
    assert state.status == Status.FAILED
    assert state.current == "a"
    assert records(state.history, "timeout", state="a")
    assert records(state.history, "finished", status=Status.FAILED)
    assert gate.cancelled and gate.finished.is_set()


async def test_state_timeout_whose_transition_is_guarded_away_fails_the_execution(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(
        _timed_state(
            store,
            gate,
            [on("success", "done"), {"event": "timeout", "target": "late", "guard": "never"}],
        )
    )
    ex = await within(store.start("p", "1.0", {"never": False}))

    await wait_until(lambda: ex.status != Status.RUNNING, timeout=1.0)
    assert ex.state.status == Status.FAILED
    assert ex.state.current == "a"


async def test_state_timeout_while_waiting_for_an_external_event(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(
        make_doc(
            {
                "approval": {
                    "timeout_ms": 30,
                    "transitions": [on("approve", "approved"), on("timeout", "expired")],
                },
                "approved": {},
                "expired": {},
            },
            "approval",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.029)
    assert ex.state.current == "approval", "the wait timed out before its 30 ms"

    await clock.advance(0.001)
    assert ex.state.current == "expired"
    (fired,) = records(ex.state.history, "timeout", state="approval")
    assert clock.instant(fired.at) == 0.03
    with pytest.raises(InvalidEvent):
        await within(ex.send("approve"))


async def test_event_before_the_deadline_beats_the_state_timeout(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(
        make_doc(
            {
                "approval": {
                    "timeout_ms": 60,
                    "transitions": [on("approve", "approved"), on("timeout", "expired")],
                },
                "approved": {"transitions": [on("finish", "done")]},
                "expired": {},
                "done": {},
            },
            "approval",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.059)
    assert await within(ex.send("approve")) is True
    length = len(ex.history)

    await clock.advance(0.06)  # well past the old deadline
    state = ex.state
    assert state.current == "approved"
    assert state.status == Status.RUNNING
    assert records(state.history, "timeout") == []
    assert len(state.history) == length, "something happened after the state was left"


async def test_state_timeout_covers_the_retries(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    calls = 0

    async def always_fails(context: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    timed_store.register_action("down", always_fails)
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "action": fn("down"),
                    "retry": {"max_attempts": 5, "interval_ms": 500},
                    "timeout_ms": 40,
                    "transitions": [
                        on("success", "done"),
                        on("timeout", "late"),
                        on("error", "failed"),
                    ],
                },
                "done": {},
                "late": {},
                "failed": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.04)
    assert ex.state.current == "late", "the state timeout waited for the retry delay"
    assert calls == 1
    history = ex.state.history
    assert len(records(history, "retry", state="a")) == 1
    assert index_of(history, "retry", state="a") < index_of(history, "timeout", state="a")
    (fired,) = records(history, "timeout", state="a")
    assert clock.instant(fired.at) == 0.04
    assert records(history, "transition", event="error") == []
    await clock.advance(0.5)  # past when the retry was due
    assert calls == 1, "the cancelled retry ran anyway"


async def test_state_timer_restarts_on_each_entry(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(
        make_doc(
            {
                "a": {
                    "timeout_ms": 80,
                    "transitions": [on("go", "b"), on("timeout", "expired")],
                },
                "b": {"transitions": [on("back", "a")]},
                "expired": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.05)
    assert await within(ex.send("go")) is True
    assert await within(ex.send("back")) is True  # re-entered at 50 ms

    await clock.advance(0.079)  # 129 ms after the first entry, 79 ms after the second
    assert ex.state.current == "a"
    assert records(ex.state.history, "timeout") == []

    await clock.advance(0.001)
    assert ex.state.current == "expired"
    (fired,) = records(ex.state.history, "timeout")
    assert clock.instant(fired.at) == 0.13, "not 80 ms after the second entry"


async def test_each_execution_has_its_own_state_timer(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {"timeout_ms": 40, "transitions": [on("go", "b"), on("timeout", "expired")]},
                "b": {},
                "expired": {},
            },
            "a",
        )
    )
    first = await within(store.start("p", "1.0", {}))
    second = await within(store.start("p", "1.0", {}))
    assert await within(first.send("go")) is True

    await wait_until(lambda: second.state.current == "expired", timeout=1.0)
    assert first.state.current == "b"
    assert records(first.state.history, "timeout") == []


async def test_pending_send_does_not_hold_off_the_state_timeout(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [on("success", "done"), on("timeout", "late")]))
    ex = await within(store.start("p", "1.0", {}))
    send = asyncio.create_task(ex.send("success"))

    await wait_until(lambda: ex.state.current == "late", timeout=1.0)
    with pytest.raises(InvalidEvent):
        await within(send)
    assert gate.cancelled


# --- composition ---------------------------------------------------------------------------------


def _saga(store: ProcedureStore, charge: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """reserve (compensated by unreserve) -> charge (``charge``) -> done | failed (failure)."""
    undone: list[str] = []

    def reserve(context: dict[str, Any]) -> str:
        return "R-1"

    def unreserve(context: dict[str, Any]) -> str:
        undone.append(context["reservation"])
        return "released"

    store.register_action("reserve", reserve)
    store.register_action("unreserve", unreserve)
    states: dict[str, Any] = {
        "reserve": {
            "action": fn("reserve", result="reservation"),
            "compensate": fn("unreserve"),
            "transitions": [on("success", "charge")],
        },
        "charge": charge,
        "done": {},
    }
    if any(t["target"] == "failed" for t in charge["transitions"]):
        states["failed"] = {"outcome": "failure"}
    return undone, make_doc(states, "reserve")


async def test_retried_action_in_timed_state_whose_timeout_triggers_compensation(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    calls = 0

    async def charge(context: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("gateway down")

    timed_store.register_action("charge", charge)
    undone, doc = _saga(
        timed_store,
        {
            "action": fn("charge", timeout_ms=20),
            "retry": {"max_attempts": 5, "interval_ms": 30, "backoff_rate": 2.0},
            "timeout_ms": 60,
            "transitions": [on("success", "done"), on("timeout", "failed")],
        },
    )
    await timed_store.register(doc)
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.advance(0.06)
    final = await within(ex.run_to_completion())

    # attempt 1 at 0 ms, attempt 2 at 30 ms, the next one due at 90 ms: after the 60 ms bound
    assert calls == 2
    attempts = records(final.history, "action", state="charge")
    assert [clock.instant(r.at) for r in attempts] == [0.0, 0.03]
    (fired,) = records(final.history, "timeout", state="charge")
    assert clock.instant(fired.at) == 0.06
    assert final.status == Status.ROLLED_BACK
    assert undone == ["R-1"]
    history = final.history
    order = [
        index_of(history, "action", state="charge", attempt=1),
        index_of(history, "retry", state="charge", attempt=2),
        index_of(history, "action", state="charge", attempt=2),
        index_of(history, "timeout", state="charge"),
        index_of(history, "transition", event="timeout", state="charge", target="failed"),
        index_of(history, "rollback"),
        index_of(history, "compensation", state="reserve"),
        index_of(history, "finished", status=Status.ROLLED_BACK),
    ]
    assert order == sorted(order), order
    assert records(history, "compensation", state="charge") == []


async def test_retried_attempt_timeouts_then_error_trigger_compensation(
    store: ProcedureStore,
) -> None:
    gates = [Gate(), Gate()]
    calls = 0

    async def charge(context: dict[str, Any]) -> Any:
        nonlocal calls
        calls += 1
        return await gates[calls - 1].action(context)

    store.register_action("charge", charge)
    undone, doc = _saga(
        store,
        {
            "action": fn("charge", timeout_ms=15),
            "retry": {"max_attempts": 2, "interval_ms": 1, "errors": ["Timeout"]},
            "timeout_ms": 1000,
            "transitions": [on("success", "done"), on("error", "failed")],
        },
    )
    await store.register(doc)
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert all(g.cancelled and g.finished.is_set() for g in gates)
    attempts = records(final.history, "action", state="charge")
    assert [(r.attempt, r.error.type if r.error else None) for r in attempts] == [
        (1, "Timeout"),
        (2, "Timeout"),
    ]
    assert records(final.history, "timeout") == []  # the state bound did not run out
    assert final.current == "failed"
    assert final.status == Status.ROLLED_BACK
    assert undone == ["R-1"]


async def test_state_timeout_with_no_handler_compensates(store: ProcedureStore) -> None:
    undone, doc = _saga(store, {"timeout_ms": 30, "transitions": [on("paid", "done")]})
    await store.register(doc)
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True  # reserve -> charge, which waits

    await wait_until(lambda: ex.status != Status.RUNNING, timeout=1.0)
    assert ex.state.status == Status.ROLLED_BACK
    assert ex.state.current == "charge"
    assert undone == ["R-1"]
    assert records(ex.state.history, "timeout", state="charge")


async def test_state_timeout_covers_an_undriven_wait_after_the_action(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "timeout_ms": 30,
                    "transitions": [on("success", "done"), on("timeout", "late")],
                },
                # late also accepts success: the old state's unsent outcome must not fire here.
                "late": {"transitions": [on("success", "stale"), on("go", "done")]},
                "stale": {},
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.state.current == "late", timeout=1.0)
    assert records(ex.state.history, "action", state="a")[0].result is None

    with pytest.raises(TimeoutError):
        await ex.run_to_completion(timeout=0.05)
    assert ex.state.current == "late"
    assert records(ex.state.history, "entered", state="stale") == []
