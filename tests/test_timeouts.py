"""Issue 3 — timeouts: per-attempt ``action.timeout_ms`` and per-state ``timeout_ms``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from tests.conftest import Gate, index_of, make_doc, records, wait_until, within


def _fn(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "function", "function": name, **extra}


def _t(target: str, event: str) -> dict[str, Any]:
    return {"event": event, "target": target}


def _kinds(history: Any, *kinds: str) -> list[tuple[str, str | None]]:
    return [(r.kind, r.state) for r in history if r.kind in kinds]


# --- action.timeout_ms ---------------------------------------------------------------------------


async def test_action_timeout_cancels_the_attempt_and_records_timeout(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    store.register_action("hang", gate.action)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": _fn("hang", timeout_ms=20),
                    "transitions": [_t("done", "success"), _t("failed", "error")],
                },
                "done": {},
                "failed": {},
            },
            "a",
        )
    )
    began = time.perf_counter()
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))
    elapsed = time.perf_counter() - began

    assert gate.cancelled, "the attempt was not cancelled"
    assert gate.finished.is_set(), "the action's finally did not run"
    assert not gate.returned
    attempts = records(final.history, "action", state="a")
    assert len(attempts) == 1
    assert attempts[0].error is not None
    assert attempts[0].error.type == "Timeout"
    assert final.current == "failed"
    assert 0.018 <= elapsed < 0.5


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
                    "action": _fn("quick", timeout_ms=200),
                    "transitions": [_t("done", "success")],
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
                    "action": _fn("hang_once", timeout_ms=20),
                    "retry": {"max_attempts": 2, "interval_ms": 1},
                    "transitions": [_t("done", "success"), _t("failed", "error")],
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
        "a": {"action": _fn("hang"), "timeout_ms": timeout_ms, "transitions": transitions},
    }
    for t in transitions:
        states.setdefault(t["target"], {})
    return make_doc(states, "a")


async def test_state_timeout_fires_timeout_by_itself_without_driving(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [_t("done", "success"), _t("late", "timeout")]))
    began = time.perf_counter()
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.state.current == "late", timeout=1.0)
    elapsed = time.perf_counter() - began
    history = ex.state.history
    assert 0.025 <= elapsed < 0.5
    assert gate.cancelled and gate.finished.is_set()
    assert index_of(history, "timeout", state="a") < index_of(
        history, "transition", event="timeout", state="a", target="late"
    )
    assert ex.state.status == Status.COMPLETED


async def test_state_timeout_under_a_driver_moves_on(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [_t("done", "success"), _t("late", "timeout")]))
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.current == "late"
    assert len(records(final.history, "timeout", state="a")) == 1


async def test_state_timeout_without_timeout_transition_goes_to_error(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [_t("done", "success"), _t("failed", "error")]))
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
            store, gate, [_t("failed", "error"), _t("late", "timeout"), _t("done", "success")]
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.state.current == "late", timeout=1.0)
    assert records(ex.state.history, "transition", event="error") == []


async def test_state_timeout_without_timeout_or_error_transition_fails_the_execution(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_timed_state(store, gate, [_t("done", "success")]))
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
            [_t("done", "success"), {"event": "timeout", "target": "late", "guard": "never"}],
        )
    )
    ex = await within(store.start("p", "1.0", {"never": False}))

    await wait_until(lambda: ex.status != Status.RUNNING, timeout=1.0)
    assert ex.state.status == Status.FAILED
    assert ex.state.current == "a"


async def test_state_timeout_while_waiting_for_an_external_event(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "approval": {
                    "timeout_ms": 30,
                    "transitions": [_t("approved", "approve"), _t("expired", "timeout")],
                },
                "approved": {},
                "expired": {},
            },
            "approval",
        )
    )
    began = time.perf_counter()
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.state.current == "expired", timeout=1.0)
    assert time.perf_counter() - began >= 0.025
    assert records(ex.state.history, "timeout", state="approval")
    with pytest.raises(InvalidEvent):
        await within(ex.send("approve"))


async def test_event_before_the_deadline_beats_the_state_timeout(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "approval": {
                    "timeout_ms": 60,
                    "transitions": [_t("approved", "approve"), _t("expired", "timeout")],
                },
                "approved": {"transitions": [_t("done", "finish")]},
                "expired": {},
                "done": {},
            },
            "approval",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("approve")) is True
    length = len(ex.history)

    await asyncio.sleep(0.12)  # well past the old deadline
    state = ex.state
    assert state.current == "approved"
    assert state.status == Status.RUNNING
    assert records(state.history, "timeout") == []
    assert len(state.history) == length, "something happened after the state was left"


async def test_state_timeout_covers_the_retries(store: ProcedureStore) -> None:
    calls = 0

    async def always_fails(context: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    store.register_action("down", always_fails)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": _fn("down"),
                    "retry": {"max_attempts": 5, "interval_ms": 500},
                    "timeout_ms": 40,
                    "transitions": [
                        _t("done", "success"),
                        _t("late", "timeout"),
                        _t("failed", "error"),
                    ],
                },
                "done": {},
                "late": {},
                "failed": {},
            },
            "a",
        )
    )
    began = time.perf_counter()
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.state.current == "late", timeout=1.0)
    elapsed = time.perf_counter() - began

    assert elapsed < 0.4, "the state timeout waited for the retry delay"
    assert calls == 1
    history = ex.state.history
    assert len(records(history, "retry", state="a")) == 1
    assert index_of(history, "retry", state="a") < index_of(history, "timeout", state="a")
    assert records(history, "transition", event="error") == []
    await asyncio.sleep(0.05)
    assert calls == 1, "the cancelled retry ran anyway"


async def test_state_timer_restarts_on_each_entry(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "timeout_ms": 80,
                    "transitions": [_t("b", "go"), _t("expired", "timeout")],
                },
                "b": {"transitions": [_t("a", "back")]},
                "expired": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await asyncio.sleep(0.05)
    assert await within(ex.send("go")) is True
    assert await within(ex.send("back")) is True
    reentered = time.perf_counter()

    await asyncio.sleep(0.05)  # 100 ms after the first entry, 50 ms after the second
    assert ex.state.current == "a"
    assert records(ex.state.history, "timeout") == []

    await wait_until(lambda: ex.state.current == "expired", timeout=1.0)
    assert time.perf_counter() - reentered >= 0.075
    assert len(records(ex.state.history, "timeout")) == 1


async def test_each_execution_has_its_own_state_timer(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {"timeout_ms": 40, "transitions": [_t("b", "go"), _t("expired", "timeout")]},
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
    await store.register(_timed_state(store, gate, [_t("done", "success"), _t("late", "timeout")]))
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
            "action": _fn("reserve", result="reservation"),
            "compensate": _fn("unreserve"),
            "transitions": [_t("charge", "success")],
        },
        "charge": charge,
        "done": {},
    }
    if any(t["target"] == "failed" for t in charge["transitions"]):
        states["failed"] = {"outcome": "failure"}
    return undone, make_doc(states, "reserve")


async def test_retried_action_in_timed_state_whose_timeout_triggers_compensation(
    store: ProcedureStore,
) -> None:
    calls = 0

    async def charge(context: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("gateway down")

    store.register_action("charge", charge)
    undone, doc = _saga(
        store,
        {
            "action": _fn("charge", timeout_ms=20),
            "retry": {"max_attempts": 5, "interval_ms": 30, "backoff_rate": 2.0},
            "timeout_ms": 60,
            "transitions": [_t("done", "success"), _t("failed", "timeout")],
        },
    )
    await store.register(doc)
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert calls == 2  # attempt 1 at 0 ms, attempt 2 at 30 ms, next one due at 90 ms > 60 ms
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
            "action": _fn("charge", timeout_ms=15),
            "retry": {"max_attempts": 2, "interval_ms": 1, "errors": ["Timeout"]},
            "timeout_ms": 1000,
            "transitions": [_t("done", "success"), _t("failed", "error")],
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
    undone, doc = _saga(store, {"timeout_ms": 30, "transitions": [_t("done", "paid")]})
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
                    "transitions": [_t("done", "success"), _t("late", "timeout")],
                },
                # late also accepts success: the old state's unsent outcome must not fire here.
                "late": {"transitions": [_t("stale", "success"), _t("done", "go")]},
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
