"""Compensation (saga rollback): when an execution is rolled back, which completed steps are
undone and in what order, ``rollback()``, and how rollback meets send, reset and failures."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from procstore import Event, InvalidEvent, ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import Gate, index_of, make_doc, records, wait_until, within


class Saga:
    """Registers ``do_<step>`` / ``undo_<step>`` actions and logs what ran."""

    def __init__(self, store: ProcedureStore, *steps: str, failing_undo: str | None = None):
        self.log: list[str] = []
        self.contexts: list[dict[str, Any]] = []
        for step in steps:
            store.register_action(f"do_{step}", self._do(step))
            store.register_action(f"undo_{step}", self._undo(step, step == failing_undo))

    def _do(self, step: str) -> Any:
        def do(context: dict[str, Any]) -> str:
            self.log.append(f"do {step}")
            return f"{step}-id"

        return do

    def _undo(self, step: str, fails: bool) -> Any:
        async def undo(context: dict[str, Any]) -> str:
            self.log.append(f"undo {step}")
            self.contexts.append(copy.deepcopy(context))
            if fails:
                raise RuntimeError(f"cannot undo {step}")
            return f"undid {step}"

        return undo

    @property
    def undone(self) -> list[str]:
        return [entry.removeprefix("undo ") for entry in self.log if entry.startswith("undo ")]


def _step(name: str, then: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    transitions = then if isinstance(then, list) else [then]
    return {
        "action": fn(f"do_{name}", result=name),
        "compensate": fn(f"undo_{name}"),
        "transitions": transitions,
    }


def _three_steps_then(last: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    states = {
        "a": _step("a", on("success", "b")),
        "b": _step("b", on("success", "c")),
        "c": _step("c", on("success", "last")),
        "last": last,
    }
    states.update(extra or {})
    return make_doc(states, "a")


async def _finish(ex: Any) -> Any:
    return await within(ex.run_to_completion(timeout=2.0))


async def test_unhandled_error_compensates_newest_first_and_ends_rolled_back(
    store: ProcedureStore,
) -> None:
    saga = Saga(store, "a", "b", "c")
    await store.register(
        _three_steps_then(
            {
                "action": {"type": "fail", "message": "boom"},
                "transitions": [on("success", "never")],
            },
            {"never": {}},
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert saga.undone == ["c", "b", "a"]
    assert final.status == Status.ROLLED_BACK
    assert final.current == "last"
    comps = records(final.history, "compensation")
    assert [r.state for r in comps] == ["c", "b", "a"]
    assert [r.result for r in comps] == ["undid c", "undid b", "undid a"]
    assert all(r.error is None for r in comps)
    rollback = records(final.history, "rollback")
    assert len(rollback) == 1
    assert rollback[0].message == "failed"
    assert index_of(final.history, "action", state="last") < index_of(final.history, "rollback")
    assert index_of(final.history, "rollback") < index_of(final.history, "compensation")
    assert final.history[-1].kind == "finished"
    assert final.history[-1].status == Status.ROLLED_BACK


async def test_handled_error_does_not_compensate(store: ProcedureStore) -> None:
    saga = Saga(store, "a")
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": {"action": {"type": "fail"}, "transitions": [on("error", "recovered")]},
                "recovered": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert final.status == Status.COMPLETED
    assert saga.undone == []
    assert records(final.history, "compensation") == []


async def test_terminal_failure_outcome_compensates(store: ProcedureStore) -> None:
    saga = Saga(store, "a", "b", "c")
    await store.register(_three_steps_then({"outcome": "failure"}))
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert saga.undone == ["c", "b", "a"]
    assert final.status == Status.ROLLED_BACK
    assert final.current == "last"
    assert records(final.history, "rollback")[0].message == "failed"


async def test_terminal_success_outcome_does_not_compensate(store: ProcedureStore) -> None:
    saga = Saga(store, "a", "b", "c")
    await store.register(_three_steps_then({}))
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert final.status == Status.COMPLETED
    assert saga.undone == []
    assert records(final.history, "rollback") == []


async def test_state_completed_twice_in_a_loop_is_compensated_twice(
    store: ProcedureStore,
) -> None:
    undo_contexts: list[int] = []
    count = 0

    def charge(context: dict[str, Any]) -> int:
        nonlocal count
        count += 1
        return count

    def refund(context: dict[str, Any]) -> str:
        undo_contexts.append(context["n"])
        return "refunded"

    store.register_action("charge", charge)
    store.register_action("refund", refund)
    await store.register(
        make_doc(
            {
                "charge": {
                    "action": fn("charge", result="n"),
                    "compensate": fn("refund"),
                    "transitions": [on("success", "check")],
                },
                "check": {
                    "action": {"type": "noop"},
                    "transitions": [
                        {"event": "success", "target": "charge", "guard": "n < 2"},
                        on("success", "broken"),
                    ],
                },
                "broken": {"outcome": "failure"},
            },
            "charge",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert count == 2
    assert len(undo_contexts) == 2
    assert [r.state for r in records(final.history, "compensation")] == ["charge", "charge"]
    assert final.status == Status.ROLLED_BACK


async def test_each_completion_is_compensated_exactly_once(store: ProcedureStore) -> None:
    saga = Saga(store, "a", "b", "c")
    await store.register(_three_steps_then({"outcome": "failure"}))
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)
    await asyncio.sleep(0.02)

    assert sorted(saga.undone) == ["a", "b", "c"]
    assert len(records(final.history, "compensation")) == 3
    assert len(records(ex.state.history, "compensation")) == 3
    with pytest.raises(InvalidEvent):
        await within(ex.rollback())
    assert sorted(saga.undone) == ["a", "b", "c"]


async def test_only_successful_completions_of_compensated_states_are_undone(
    store: ProcedureStore,
) -> None:
    saga = Saga(store, "a", "b")

    def explode(context: dict[str, Any]) -> None:
        raise ValueError("no")

    store.register_action("explode", explode)
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "plain")),
                # No compensate: nothing to undo here.
                "plain": {"action": {"type": "noop"}, "transitions": [on("success", "b")]},
                # Declares a compensation, but its action fails: it never completed.
                "b": {
                    "action": fn("explode"),
                    "compensate": fn("undo_b"),
                    "transitions": [on("success", "done")],
                },
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert saga.undone == ["a"]
    assert [r.state for r in records(final.history, "compensation")] == ["a"]
    assert final.status == Status.ROLLED_BACK
    assert final.current == "b"


async def test_failing_compensation_does_not_stop_the_rest(store: ProcedureStore) -> None:
    saga = Saga(store, "a", "b", "c", failing_undo="b")
    await store.register(_three_steps_then({"outcome": "failure"}))
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert saga.undone == ["c", "b", "a"]
    assert final.status == Status.FAILED
    comps = records(final.history, "compensation")
    assert [r.state for r in comps] == ["c", "b", "a"]
    assert comps[0].error is None and comps[2].error is None
    assert comps[1].error is not None
    assert comps[1].error.type == "RuntimeError"
    assert comps[1].error.message == "cannot undo b"
    assert final.history[-1].kind == "finished"
    assert final.history[-1].status == Status.FAILED


async def test_every_failing_compensation_is_recorded(store: ProcedureStore) -> None:
    def broken(context: dict[str, Any]) -> None:
        raise OSError("undo failed")

    store.register_action("broken", broken)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "compensate": fn("broken"),
                    "transitions": [on("success", "b")],
                },
                "b": {
                    "action": {"type": "noop"},
                    "compensate": {"type": "fail", "message": "x"},
                    "transitions": [on("success", "end")],
                },
                "end": {"outcome": "failure"},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    comps = records(final.history, "compensation")
    assert [(r.state, r.error.type if r.error else None) for r in comps] == [
        ("b", "ActionFailed"),
        ("a", "OSError"),
    ]
    assert final.status == Status.FAILED


async def test_nothing_to_compensate_leaves_status_failed(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {"action": {"type": "noop"}, "transitions": [on("success", "b")]},
                "b": {
                    "action": {"type": "fail"},
                    "compensate": {"type": "noop"},
                    "transitions": [on("success", "c")],
                },
                "c": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert final.status == Status.FAILED
    assert records(final.history, "compensation") == []


async def test_terminal_failure_with_nothing_to_compensate_is_failed(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "a": {"action": {"type": "noop"}, "transitions": [on("success", "x")]},
                "x": {"outcome": "failure"},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)
    assert final.status == Status.FAILED
    assert records(final.history, "compensation") == []


async def test_rollback_on_a_running_execution(store: ProcedureStore) -> None:
    saga = Saga(store, "a", "b")
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": _step("b", on("success", "wait")),
                "wait": {"transitions": [on("go", "done")]},
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True
    assert await within(ex.send("success")) is True
    assert ex.state.current == "wait"

    final = await within(ex.rollback())

    assert final.status == Status.ROLLED_BACK
    assert ex.status == Status.ROLLED_BACK
    assert saga.undone == ["b", "a"]
    assert records(final.history, "rollback")[0].message == "rollback requested"


async def test_rollback_cancels_the_running_action(store: ProcedureStore) -> None:
    saga = Saga(store, "a")
    gate = Gate()
    store.register_action("hang", gate.action)
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": {
                    "action": fn("hang"),
                    "compensate": fn("undo_a"),
                    "transitions": [on("success", "done")],
                },
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True
    await within(gate.started.wait())

    final = await within(ex.rollback())

    assert gate.cancelled and gate.finished.is_set()
    assert saga.undone == ["a"]  # b never completed: only a is undone
    assert final.status == Status.ROLLED_BACK


async def test_rollback_with_nothing_to_compensate_ends_failed(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))

    final = await within(ex.rollback())
    assert final.status == Status.FAILED
    assert records(final.history, "compensation") == []


@pytest.mark.parametrize("how", ["completed", "failed", "rolled_back", "cancelled"])
async def test_rollback_on_a_finished_execution_raises_invalid_event(
    store: ProcedureStore, how: str
) -> None:
    saga = Saga(store, "a")
    last: dict[str, Any] = {"outcome": "failure"} if how in ("failed", "rolled_back") else {}
    first = (
        _step("a", on("success", "wait"))
        if how != "failed"
        else {"action": {"type": "noop"}, "transitions": [on("success", "wait")]}
    )
    await store.register(
        make_doc({"a": first, "wait": {"transitions": [on("go", "last")]}, "last": last}, "a")
    )
    ex = await within(store.start("p", "1.0", {}))
    if how == "cancelled":
        await within(ex.cancel())
    else:
        assert await within(ex.send("success")) is True
        assert await within(ex.send("go")) is True
        await _finish(ex)
    assert ex.status == Status(how)
    undone = list(saga.undone)
    length = len(ex.history)

    with pytest.raises(InvalidEvent):
        await within(ex.rollback())
    assert ex.status == Status(how)
    assert saga.undone == undone
    assert len(ex.history) == length


async def test_compensation_receives_the_context(store: ProcedureStore) -> None:
    saga = Saga(store, "a", "b")
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": _step("b", on("success", "end")),
                "end": {"outcome": "failure"},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"trip": "T-9"}))
    await _finish(ex)

    assert len(saga.contexts) == 2
    for context in saga.contexts:
        assert context["trip"] == "T-9"
        assert context["a"] == "a-id"
        assert context["b"] == "b-id"


async def test_compensation_result_key_is_stored_in_the_context(
    store: ProcedureStore,
) -> None:
    saga = Saga(store, "a")
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("do_a"),
                    "compensate": fn("undo_a", result="undo_note"),
                    "transitions": [on("success", "end")],
                },
                "end": {"outcome": "failure"},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)
    assert saga.undone == ["a"]
    assert final.context["undo_note"] == "undid a"


async def test_send_during_rollback_raises_invalid_event(store: ProcedureStore) -> None:
    gate = Gate()
    store.register_action("slow_undo", gate.action)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "compensate": fn("slow_undo"),
                    "transitions": [on("success", "wait")],
                },
                "wait": {"transitions": [on("go", "done")]},
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True
    rollback = asyncio.create_task(ex.rollback())
    await within(gate.started.wait())
    assert ex.status == Status.RUNNING  # still compensating

    send = asyncio.create_task(ex.send("go"))
    await asyncio.sleep(0.02)
    gate.release.set()
    with pytest.raises(InvalidEvent):
        await within(send)
    final = await within(rollback)

    assert final.status == Status.ROLLED_BACK
    assert records(final.history, "entered", state="done") == []
    assert records(final.history, "transition", event="go") == []


async def test_send_after_rollback_raises_invalid_event(store: ProcedureStore) -> None:
    Saga(store, "a")
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "wait")),
                "wait": {"transitions": [on("go", "done")]},
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True
    await within(ex.rollback())

    with pytest.raises(InvalidEvent):
        await within(ex.send("go"))
    assert ex.state.current == "wait"


async def test_rollback_record_and_compensations_follow_the_failure(
    store: ProcedureStore,
) -> None:
    saga = Saga(store, "a")
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": {
                    "action": {"type": "fail", "message": "card declined"},
                    "transitions": [on("success", "done")],
                },
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True
    await wait_until(lambda: ex.status != Status.RUNNING)  # error fires by itself
    history = ex.state.history

    assert ex.status == Status.ROLLED_BACK
    assert saga.undone == ["a"]
    failed_attempt = index_of(history, "action", state="b")
    error = history[failed_attempt].error
    assert error is not None
    assert error.message == "card declined"
    assert failed_attempt < index_of(history, "rollback") < index_of(history, "compensation")


async def test_action_choosing_its_outcome_event_counts_as_a_completion(
    store: ProcedureStore,
) -> None:
    saga = Saga(store, "a")
    store.register_action("choose", lambda ctx: Event("approve"))
    await store.register(
        make_doc(
            {
                "pick": {
                    "action": fn("choose"),
                    "compensate": fn("undo_a"),
                    "transitions": [on("approve", "end")],
                },
                "end": {"outcome": "failure"},
            },
            "pick",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert saga.undone == ["a"]
    assert final.status == Status.ROLLED_BACK


async def test_hanging_compensation_is_bounded_by_its_timeout_ms(store: ProcedureStore) -> None:
    saga = Saga(store, "a")
    gate = Gate()
    store.register_action("hang", gate.action)
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": {
                    "action": {"type": "noop"},
                    "compensate": fn("hang", timeout_ms=20),
                    "transitions": [on("success", "end")],
                },
                "end": {"outcome": "failure"},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await _finish(ex)

    assert gate.cancelled and gate.finished.is_set()
    comps = records(final.history, "compensation")
    assert [r.state for r in comps] == ["b", "a"]
    assert comps[0].error is not None and comps[0].error.type == "Timeout"
    assert saga.undone == ["a"]
    assert final.status == Status.FAILED


async def test_reset_forgets_the_completions_of_the_old_run(store: ProcedureStore) -> None:
    saga = Saga(store, "a")
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "wait")),
                "wait": {"transitions": [on("go", "done")]},
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True  # a completed once
    await within(ex.reset())
    assert await within(ex.send("success")) is True  # a completed again, in the new run

    final = await within(ex.rollback())
    assert saga.log.count("do a") == 2
    assert saga.undone == ["a"]
    assert len(records(final.history, "compensation")) == 1
    assert final.status == Status.ROLLED_BACK


def _break_retry_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make procstore's own retry scheduling raise: an internal error, not an action's."""

    def broken(policy: Any, failed_attempt: int) -> float:
        raise RuntimeError("defect in the retry scheduler")

    monkeypatch.setattr("procstore.runtime.steps.retry_delay_ms", broken)


async def test_an_internal_error_in_a_step_fires_the_states_error_transition(
    store: ProcedureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _break_retry_delays(monkeypatch)
    saga = Saga(store, "a")
    retried = {"action": {"type": "fail"}, "retry": {"max_attempts": 3, "interval_ms": 1}}
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "work")),
                "work": {**retried, "transitions": [on("success", "done"), on("error", "handled")]},
                "done": {},
                "handled": {},
            },
            "a",
        )
    )
    final = await _finish(await within(store.start("p", "1.0", {})))

    assert records(final.history, "internal_error", state="work")
    assert final.current == "handled" and final.status == Status.COMPLETED
    assert saga.undone == []


async def test_an_unhandled_internal_error_compensates_like_an_action_failure(
    store: ProcedureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _break_retry_delays(monkeypatch)
    saga = Saga(store, "a", "b", "c")
    retried = {"action": {"type": "fail"}, "retry": {"max_attempts": 3, "interval_ms": 1}}
    await store.register(
        _three_steps_then({**retried, "transitions": [on("success", "never")]}, {"never": {}})
    )
    final = await _finish(await within(store.start("p", "1.0", {})))

    assert records(final.history, "internal_error", state="last")
    assert saga.undone == ["c", "b", "a"]
    assert final.status == Status.ROLLED_BACK


async def _saga_rolling_back_on_a_gate(
    store: ProcedureStore,
) -> tuple[Saga, Gate, Any, asyncio.Task[Any]]:
    """Steps a and b completed; rollback() was called and b's compensation waits on a gate."""
    saga = Saga(store, "a")
    gate = Gate(result="undid b")
    store.register_action("do_b", lambda context: "b-id")
    store.register_action("undo_b", gate.action)
    await store.register(
        make_doc(
            {
                "a": _step("a", on("success", "b")),
                "b": _step("b", on("success", "wait")),
                "wait": {"transitions": [on("go", "done")]},
                "done": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("success"))
    await within(ex.send("success"))
    rolling_back = asyncio.get_running_loop().create_task(ex.rollback())
    await within(gate.started.wait())
    return saga, gate, ex, rolling_back


async def test_reset_during_a_rollback_lets_every_compensation_finish_first(
    store: ProcedureStore,
) -> None:
    saga, gate, ex, rolling_back = await _saga_rolling_back_on_a_gate(store)
    resetting = asyncio.get_running_loop().create_task(ex.reset())
    await asyncio.sleep(0.01)
    assert not resetting.done()  # waits for the compensation in progress
    gate.release.set()
    await within(resetting)
    await within(rolling_back)

    assert not gate.cancelled and saga.undone == ["a"]  # b's and then a's compensation ran
    kinds = [(r.kind, r.state) for r in ex.history if r.kind in ("compensation", "reset")]
    assert kinds == [("compensation", "b"), ("compensation", "a"), ("reset", "a")]
    assert records(ex.history, "finished", status=Status.ROLLED_BACK)
    assert ex.status == Status.RUNNING and ex.current in ("a", "b", "wait")


async def test_a_rollback_interrupted_by_reset_still_returns_its_final_snapshot(
    store: ProcedureStore,
) -> None:
    _, gate, ex, rolling_back = await _saga_rolling_back_on_a_gate(store)
    resetting = asyncio.get_running_loop().create_task(ex.reset())
    gate.release.set()
    final = await within(rolling_back)
    await within(resetting)

    assert final.status == Status.ROLLED_BACK
    assert final.history[-1].kind == "finished"


async def test_reset_during_a_rollback_is_stored_as_it_happened(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'reset.db'}"
    async with ProcedureStore(url) as store:
        _, gate, ex, rolling_back = await _saga_rolling_back_on_a_gate(store)
        resetting = asyncio.get_running_loop().create_task(ex.reset())
        gate.release.set()
        await within(rolling_back)
        await within(resetting)
        live = ex.history
    async with ProcedureStore(url, read_only=True) as reader:
        stored = (await reader.get_execution(ex.id)).history

    assert stored == live
    kinds = [(r.kind, r.state) for r in stored if r.kind in ("compensation", "finished", "reset")]
    assert kinds == [
        ("compensation", "b"),
        ("compensation", "a"),
        ("finished", "wait"),
        ("reset", "a"),
    ]
