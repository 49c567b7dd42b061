"""Running an execution, one behaviour per test: start, send and outcome events; errors that
fire by themselves; outcome events that fire only while driven; terminal states, timeouts,
reset and event names; history and context; nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import json
import uuid
import weakref
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from procstore import (
    Event,
    ExecutionState,
    InvalidEvent,
    InvalidProcedure,
    ProcedureNotFound,
    ProcedureStore,
    ProcstoreError,
    Status,
    VersionConflict,
)
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import Gate, index_of, make_doc, records, wait_until, within

# --- start, send, outcome events ----------------------------------------------------------


async def test_start_returns_with_initial_state_entered_while_its_action_runs(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    store.register_action("blocked", gate.action)
    await store.register(
        make_doc(
            {"a": {"action": fn("blocked"), "transitions": [on("success", "b")]}, "b": {}}, "a"
        )
    )

    ex = await within(store.start("p", "1.0", {}), 1.0)
    try:
        state = ex.state
        assert state.current == "a"
        assert state.status == Status.RUNNING
        assert index_of(state.history, "entered", state="a", event=None) == 0
        await within(gate.started.wait(), 1.0)
        assert not gate.finished.is_set()
        assert records(ex.state.history, "action") == []
    finally:
        gate.release.set()


async def test_send_waits_for_the_running_action(store: ProcedureStore) -> None:
    gate = Gate(result="ok")
    store.register_action("blocked", gate.action)
    await store.register(
        make_doc(
            {"a": {"action": fn("blocked"), "transitions": [on("success", "b")]}, "b": {}}, "a"
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    send = asyncio.create_task(ex.send("success"))
    done, _ = await asyncio.wait({send}, timeout=0.05)
    assert not done, "send() returned while the action was still running"
    assert ex.state.current == "a"

    gate.release.set()
    assert await within(send) is True
    state = ex.state
    assert state.current == "b"
    # The action was awaited, not cancelled by the event.
    assert gate.returned and not gate.cancelled
    action = records(state.history, "action", state="a")
    assert len(action) == 1
    assert action[0].result == "ok"
    assert action[0].error is None
    assert index_of(state.history, "action", state="a") < index_of(
        state.history, "transition", event="success"
    )


def test_status_is_a_str_enum_with_the_contract_values() -> None:
    assert {s.value for s in Status} == {
        "running",
        "completed",
        "failed",
        "cancelled",
        "rolled_back",
        "quarantined",  # a stored execution that cannot be restored (never a live one)
    }
    assert all(isinstance(s, str) for s in Status)
    assert Status("completed") is Status.COMPLETED
    assert Status("failed") == "failed"


def test_event_carries_its_name() -> None:
    assert Event("approve").name == "approve"


def test_every_error_subclasses_procstore_error() -> None:
    for error in (InvalidProcedure, VersionConflict, ProcedureNotFound, InvalidEvent):
        assert issubclass(error, ProcstoreError)
        assert issubclass(error, Exception)


async def test_execution_ids_are_unique_uuid4_hex(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {}}, "a"))

    ids = [(await within(store.start("p", "1.0", {}))).id for _ in range(50)]

    assert len(set(ids)) == len(ids)
    for execution_id in ids:
        assert uuid.UUID(hex=execution_id).version == 4
        assert execution_id == uuid.UUID(hex=execution_id).hex


class _Opaque:
    """A return value with no JSON form."""


async def test_returning_any_value_normally_is_the_success_event(store: ProcedureStore) -> None:
    # Returning normally is the outcome event success, whatever the value (even one with no JSON
    # form).
    store.register_action("opaque", lambda context: _Opaque())
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("opaque"),
                    "transitions": [on("success", "ok"), on("error", "err")],
                },
                "ok": {},
                "err": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert final.current == "ok"
    [attempt] = records(final.history, "action", state="a")
    assert attempt.error is None
    json.loads(final.model_dump_json())  # the snapshot stays JSON-serialisable


async def test_abandoning_a_waiting_send_leaves_the_action_running(store: ProcedureStore) -> None:
    # Only reset() (and the later cancel()) interrupt an action; a caller giving up on send()
    # -- here through asyncio.wait_for -- only ends its own wait.
    gate = Gate()
    store.register_action("blocked", gate.action)
    await store.register(
        make_doc(
            {"a": {"action": fn("blocked"), "transitions": [on("success", "b")]}, "b": {}}, "a"
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(gate.started.wait())

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ex.send("success"), 0.03)
    await asyncio.sleep(0.01)

    assert not gate.cancelled
    assert not gate.finished.is_set()
    assert ex.state.current == "a"
    gate.release.set()
    assert await within(ex.send("success")) is True
    assert ex.state.current == "b"
    [attempt] = records(ex.state.history, "action", state="a")
    assert attempt.result == "released"


async def test_send_returns_true_when_a_transition_fires(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))

    fired = await within(ex.send("go"))

    assert fired is True
    assert ex.state.current == "b"


async def test_state_without_action_waits_for_send(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}, auto=True))

    await asyncio.sleep(0.03)

    assert ex.state.current == "a"
    assert ex.state.status == Status.RUNNING
    assert records(ex.state.history, "transition") == []


async def test_event_not_accepted_raises_invalid_event_and_leaves_state_unchanged(
    store: ProcedureStore,
) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {"k": 1}))
    before = ex.state

    with pytest.raises(InvalidEvent):
        await within(ex.send("nope"))

    after = ex.state
    assert after.current == "a"
    assert after.status == Status.RUNNING
    assert after.context == {"k": 1}
    assert records(after.history, "transition") == records(before.history, "transition") == []


@pytest.mark.parametrize(
    ("terminal", "status"),
    [({}, Status.COMPLETED), ({"outcome": "failure"}, Status.FAILED)],
)
async def test_any_event_to_a_finished_execution_raises_invalid_event(
    store: ProcedureStore, terminal: dict[str, Any], status: Status
) -> None:
    await store.register(
        make_doc({"a": {"transitions": [on("go", "b"), on("again", "b")]}, "b": terminal}, "a")
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))
    final = await within(ex.run_to_completion(timeout=1.0))
    assert final.status == status

    for event in ("go", "again", "success", "error", "anything"):
        with pytest.raises(InvalidEvent):
            await within(ex.send(event))

    assert ex.state.current == "b"
    assert ex.state.status == status


# --- error fires by itself ----------------------------------------------------------------


async def test_error_fires_by_itself_to_the_error_transition(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "fail", "message": "broken"},
                    "transitions": [on("success", "done"), on("error", "handled")],
                },
                "handled": {"transitions": [on("go", "done")]},
                "done": {},
            },
            "a",
        )
    )

    ex = await within(store.start("p", "1.0", {}))  # not driven, no send()
    await wait_until(lambda: ex.state.current == "handled", timeout=1.0)

    state = ex.state
    assert state.status == Status.RUNNING
    transition = records(state.history, "transition", state="a")
    assert [(t.event, t.target) for t in transition] == [("error", "handled")]


async def test_error_without_error_transition_fails_in_place(store: ProcedureStore) -> None:
    def explode(context: dict[str, Any]) -> None:
        raise ValueError("boom")

    store.register_action("explode", explode)
    await store.register(
        make_doc(
            {"a": {"action": fn("explode"), "transitions": [on("success", "b")]}, "b": {}}, "a"
        )
    )

    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.state.status != Status.RUNNING, timeout=1.0)

    state = ex.state
    assert state.status == Status.FAILED
    assert state.current == "a"
    failed = [r for r in records(state.history, "action", state="a") if r.error is not None]
    assert len(failed) == 1
    assert failed[0].error.type.endswith("ValueError")
    assert failed[0].error.message == "boom"
    assert records(state.history, "finished", state="a", status=Status.FAILED)


async def test_fail_action_error_is_recorded_with_its_message(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "fail", "message": "nope"},
                    "transitions": [on("go", "b")],
                },
                "b": {},
            },
            "a",
        )
    )

    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.state.status == Status.FAILED, timeout=1.0)

    [attempt] = records(ex.state.history, "action", state="a")
    assert attempt.error is not None
    assert attempt.error.type.endswith("ActionFailed")
    assert attempt.error.message == "nope"


# --- other outcome events fire only while driven -------------------------------------------


async def test_success_does_not_fire_by_itself_when_not_driven(store: ProcedureStore) -> None:
    ran = asyncio.Event()

    def work(context: dict[str, Any]) -> str:
        ran.set()
        return "worked"

    store.register_action("work", work)
    await store.register(
        make_doc({"a": {"action": fn("work"), "transitions": [on("success", "b")]}, "b": {}}, "a")
    )
    ex = await within(store.start("p", "1.0", {}))

    await within(ran.wait())
    await wait_until(lambda: bool(records(ex.state.history, "action", state="a")))
    await asyncio.sleep(0.03)

    assert ex.state.current == "a"
    assert ex.state.status == Status.RUNNING
    assert records(ex.state.history, "transition") == []
    # ...it waits for send():
    assert await within(ex.send("success")) is True
    assert ex.state.current == "b"


def _noop_chain() -> dict[str, Any]:
    return make_doc(
        {
            "a": {"action": {"type": "noop"}, "transitions": [on("success", "b")]},
            "b": {"action": {"type": "noop"}, "transitions": [on("success", "c")]},
            "c": {},
        },
        "a",
    )


async def test_success_fires_under_run_to_completion(store: ProcedureStore) -> None:
    await store.register(_noop_chain())
    ex = await within(store.start("p", "1.0", {}))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert final.current == "c"
    assert final.status == Status.COMPLETED
    transitions = records(final.history, "transition")
    assert [(t.state, t.event, t.target) for t in transitions] == [
        ("a", "success", "b"),
        ("b", "success", "c"),
    ]
    assert ex.state == final


async def test_success_fires_under_start_auto(store: ProcedureStore) -> None:
    await store.register(_noop_chain())

    ex = await within(store.start("p", "1.0", {}, auto=True))
    await wait_until(lambda: ex.state.status == Status.COMPLETED, timeout=1.0)

    assert ex.state.current == "c"
    assert [t.event for t in records(ex.state.history, "transition")] == ["success", "success"]


def _approval_doc() -> dict[str, Any]:
    return make_doc(
        {
            "review": {
                "action": fn("review"),
                "transitions": [on("success", "rejected"), on("approve", "approved")],
            },
            "approved": {},
            "rejected": {"outcome": "failure"},
        },
        "review",
    )


async def test_returned_event_fires_its_event_under_driving(store: ProcedureStore) -> None:
    store.register_action("review", lambda context: Event("approve"))
    await store.register(_approval_doc())
    ex = await within(store.start("p", "1.0", {}))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert final.current == "approved"
    assert final.status == Status.COMPLETED
    [transition] = records(final.history, "transition")
    assert (transition.state, transition.event, transition.target) == (
        "review",
        "approve",
        "approved",
    )


async def test_returned_event_waits_for_send_when_not_driven(store: ProcedureStore) -> None:
    store.register_action("review", lambda context: Event("approve"))
    await store.register(_approval_doc())
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: bool(records(ex.state.history, "action", state="review")))
    await asyncio.sleep(0.03)
    assert ex.state.current == "review"

    assert await within(ex.send("approve")) is True
    assert ex.state.current == "approved"


async def test_outcome_event_without_transition_is_recorded_then_waits(
    store: ProcedureStore,
) -> None:
    store.register_action("odd", lambda context: Event("unheard_of"))
    await store.register(
        make_doc({"a": {"action": fn("odd"), "transitions": [on("go", "b")]}, "b": {}}, "a")
    )

    ex = await within(store.start("p", "1.0", {}, auto=True))
    await wait_until(lambda: any(r.event == "unheard_of" for r in ex.state.history))
    await asyncio.sleep(0.02)

    assert ex.state.current == "a"
    assert ex.state.status == Status.RUNNING
    assert await within(ex.send("go")) is True
    assert ex.state.current == "b"


async def test_events_sent_while_an_action_runs_are_processed_in_order(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    store.register_action("blocked", gate.action)
    await store.register(
        make_doc(
            {
                "a": {"action": fn("blocked"), "transitions": [on("one", "b")]},
                "b": {"transitions": [on("two", "c")]},
                "c": {"transitions": [on("three", "d")]},
                "d": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(gate.started.wait())

    sends = []
    for event in ("one", "two", "three"):
        sends.append(asyncio.create_task(ex.send(event)))
        await asyncio.sleep(0)
    done, _ = await asyncio.wait(sends, timeout=0.03)
    assert not done
    gate.release.set()

    assert await within(asyncio.gather(*sends)) == [True, True, True]
    state = ex.state
    assert state.current == "d"
    assert state.status == Status.COMPLETED
    assert [t.event for t in records(state.history, "transition")] == ["one", "two", "three"]


# --- terminal states, timeouts, reset, event names -----------------------------------------


async def test_terminal_state_action_runs_before_status_completed(store: ProcedureStore) -> None:
    holder: dict[str, Any] = {}
    seen: list[tuple[str, Status]] = []

    def finish(context: dict[str, Any]) -> str:
        state = holder["ex"].state
        seen.append((state.current, state.status))
        return "finished"

    store.register_action("finish", finish)
    await store.register(
        make_doc({"a": {"transitions": [on("go", "done")]}, "done": {"action": fn("finish")}}, "a")
    )
    ex = holder["ex"] = await within(store.start("p", "1.0", {}))

    await within(ex.send("go"))
    final = await within(ex.run_to_completion(timeout=1.0))

    assert seen == [("done", Status.RUNNING)]
    assert final.status == Status.COMPLETED
    assert final.current == "done"
    assert index_of(final.history, "action", state="done") < index_of(
        final.history, "finished", state="done"
    )


async def test_terminal_state_with_outcome_failure_fails(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {"transitions": [on("go", "bad")]},
                "bad": {"outcome": "failure", "action": {"type": "log", "message": "x"}},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert final.current == "bad"
    assert final.status == Status.FAILED
    assert records(final.history, "finished", state="bad", status=Status.FAILED)


async def test_terminal_state_whose_action_fails_fails(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {"a": {"transitions": [on("go", "done")]}, "done": {"action": {"type": "fail"}}}, "a"
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert final.current == "done"
    assert final.status == Status.FAILED


async def test_run_to_completion_timeout_raises_and_leaves_execution_usable(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    timed_store.register_action("blocked", gate.action)
    await timed_store.register(
        make_doc(
            {"a": {"action": fn("blocked"), "transitions": [on("success", "b")]}, "b": {}}, "a"
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))

    driving = asyncio.create_task(ex.run_to_completion(timeout=0.05))
    await clock.advance(0.049)
    assert not driving.done(), "the wait ended before its timeout"
    await clock.advance(0.001)  # the timeout is on the store's clock
    assert driving.done(), "the wait went on past its timeout"
    with pytest.raises(TimeoutError):
        driving.result()

    assert ex.state.current == "a"
    assert ex.state.status == Status.RUNNING
    assert not gate.cancelled
    gate.release.set()
    final = await within(ex.run_to_completion())
    assert final.current == "b"
    assert final.status == Status.COMPLETED
    [attempt] = records(final.history, "action", state="a")
    assert attempt.result == "released"


def _reset_doc() -> dict[str, Any]:
    return make_doc(
        {
            "a": {"transitions": [on("go", "b")]},
            "b": {"action": fn("work"), "transitions": [on("success", "c")]},
            "c": {},
        },
        "a",
    )


async def test_reset_cancels_the_running_action(store: ProcedureStore) -> None:
    gate = Gate()
    store.register_action("work", gate.action)
    await store.register(_reset_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))
    await within(gate.started.wait())

    await within(ex.reset())
    await within(gate.finished.wait(), 1.0)  # its finally ran

    assert gate.cancelled
    assert not gate.returned
    await asyncio.sleep(0.02)
    state = ex.state
    assert state.current == "a"
    assert state.status == Status.RUNNING
    reset_at = index_of(state.history, "reset")
    assert records(state.history[reset_at:], "transition") == []


async def test_reset_returns_to_initial_state_with_fresh_start_context(
    store: ProcedureStore,
) -> None:
    def work(context: dict[str, Any]) -> None:
        context["items"].append(1)
        context["added"] = True

    store.register_action("work", work)
    await store.register(_reset_doc())
    start_context: dict[str, Any] = {"items": []}
    ex = await within(store.start("p", "1.0", start_context))
    await within(ex.send("go"))
    await wait_until(lambda: bool(records(ex.state.history, "action", state="b")))
    assert ex.state.context == {"items": [1], "added": True}

    await within(ex.reset())

    assert ex.state.current == "a"
    assert ex.state.context == {"items": []}
    assert start_context == {"items": []}
    # A fresh copy each time: running the action again starts from the start context.
    await within(ex.send("go"))
    await wait_until(lambda: len(records(ex.state.history, "action", state="b")) == 2)
    assert ex.state.context == {"items": [1], "added": True}


async def test_reset_ignores_changes_the_caller_made_to_its_dict_after_start(
    store: ProcedureStore,
) -> None:
    store.register_action("work", lambda context: None)
    await store.register(_reset_doc())
    start_context: dict[str, Any] = {"items": [1]}
    ex = await within(store.start("p", "1.0", start_context))

    start_context["items"].append(2)
    start_context["late"] = True
    await within(ex.reset())

    assert ex.state.context == {"items": [1]}


async def test_reset_is_recorded_in_history(store: ProcedureStore) -> None:
    store.register_action("work", lambda context: None)
    await store.register(_reset_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    await within(ex.reset())

    history = ex.state.history
    reset_at = index_of(history, "reset", state="a")
    assert reset_at > index_of(history, "entered", state="b")
    assert history[reset_at + 1 :][0].kind == "entered"
    assert (history[reset_at + 1].state, history[reset_at + 1].event) == ("a", None)


@pytest.mark.parametrize(
    "event",
    [
        "state",
        "reset",
        "trigger",
        "send",
        "to_done",
        "machine",
        "to_a",
        "is_a",
        "may_go",
        "run_to_completion",
        "id",
        "history",
        "with space",
    ],
)
async def test_reserved_looking_event_names_are_ordinary_events(
    store: ProcedureStore, event: str
) -> None:
    await store.register(make_doc({"a": {"transitions": [on(event, "done")]}, "done": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))
    other = await within(store.start("p", "1.0", {}))

    assert await within(ex.send(event)) is True

    assert isinstance(ex.state, ExecutionState)
    assert ex.state.current == "done"
    assert ex.state.status == Status.COMPLETED
    [transition] = records(ex.state.history, "transition")
    assert transition.event == event
    assert other.state.current == "a"
    # The event did not replace the execution's own methods.
    with pytest.raises(InvalidEvent):
        await within(other.send("not-" + event))
    assert await within(other.send(event)) is True


@pytest.mark.parametrize(
    "name",
    ["*", "=", "initial", "state", "send", "reset", "trigger", "fsm_state", "None", "a b", "0"],
)
async def test_any_valid_state_name_is_an_ordinary_state(store: ProcedureStore, name: str) -> None:
    # State names need only be non-empty without ".": names that mean something to
    # transitions ("*" is its wildcard source, "=" its reflexive target) must not leak through.
    await store.register(
        make_doc(
            {
                "a": {"transitions": [on("go", name)]},
                name: {"transitions": [on("go", "b")]},
                "b": {"transitions": [on("go", "c")]},
                "c": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    visited = []
    for _ in range(3):
        assert await within(ex.send("go")) is True
        visited.append(ex.state.current)

    assert visited == [name, "b", "c"]
    assert ex.state.status == Status.COMPLETED
    transitions = [(t.state, t.target) for t in records(ex.state.history, "transition")]
    assert transitions == [("a", name), (name, "b"), ("b", "c")]


# --- history and context -------------------------------------------------------------------


async def test_executions_never_share_context(store: ProcedureStore) -> None:
    def mutate(context: dict[str, Any]) -> None:
        context["nested"]["items"].append("x")
        context["added"] = 1

    store.register_action("work", mutate)
    await store.register(_reset_doc())
    start_context: dict[str, Any] = {"nested": {"items": []}}
    pristine = copy.deepcopy(start_context)
    one = await within(store.start("p", "1.0", start_context))
    two = await within(store.start("p", "1.0", start_context))

    await within(one.send("go"))
    await wait_until(lambda: bool(records(one.state.history, "action", state="b")))

    assert one.state.context == {"nested": {"items": ["x"]}, "added": 1}
    assert two.state.context == pristine
    assert start_context == pristine


async def test_snapshot_context_is_detached_from_the_execution(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {"nested": {"items": []}}))

    snapshot = ex.state
    try:
        snapshot.context["injected"] = True
        snapshot.context["nested"]["items"].append("x")
    except TypeError:
        pass  # a read-only mapping is fine too

    assert ex.state.context == {"nested": {"items": []}}


async def test_history_records_entered_action_and_transition_in_order(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "a": {"action": {"type": "noop"}, "transitions": [on("success", "b")]},
                "b": {
                    "action": {"type": "log", "message": "hello"},
                    "transitions": [on("success", "c")],
                },
                "c": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    history = (await within(ex.run_to_completion(timeout=1.0))).history

    assert isinstance(history, tuple)
    expected: list[tuple[str, dict[str, Any]]] = [
        ("entered", dict(state="a", event=None)),
        ("action", dict(state="a", attempt=1, error=None)),
        ("transition", dict(state="a", event="success", target="b")),
        ("entered", dict(state="b", event="success")),
        ("action", dict(state="b", attempt=1, error=None)),
        ("transition", dict(state="b", event="success", target="c")),
        ("entered", dict(state="c", event="success")),
        ("finished", dict(state="c", status=Status.COMPLETED)),
    ]
    positions = [index_of(history, kind, **fields) for kind, fields in expected]
    assert positions == sorted(positions), [history[i].kind for i in positions]
    assert history[0].kind == "entered"
    for record in history:
        assert record.at.tzinfo is not None
        assert record.at.utcoffset() == timedelta(0)
    stamps = [r.at for r in history]
    assert stamps == sorted(stamps)


async def test_result_key_stores_the_return_value_in_context(store: ProcedureStore) -> None:
    store.register_action("compute", lambda context: {"answer": context["q"] * 2})
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("compute", result="out"),
                    "transitions": [on("success", "b")],
                },
                "b": {
                    "action": {
                        "type": "function",
                        "module": "tests.spec_actions",
                        "function": "build",
                        "result": "artifact",
                    }
                },
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"q": 21}))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert final.context == {"q": 21, "out": {"answer": 42}, "artifact": "built"}
    [attempt] = records(final.history, "action", state="a")
    assert attempt.result == {"answer": 42}


async def test_snapshot_is_immutable(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))
    snapshot = ex.state

    with pytest.raises((ValidationError, TypeError, AttributeError)):
        snapshot.current = "b"  # type: ignore[misc]
    with pytest.raises((ValidationError, TypeError, AttributeError)):
        snapshot.status = Status.COMPLETED  # type: ignore[misc]
    with pytest.raises((ValidationError, TypeError, AttributeError)):
        snapshot.history[0].kind = "forged"  # type: ignore[misc]
    assert isinstance(snapshot.history, tuple)

    await within(ex.send("go"))

    assert snapshot.current == "a"
    assert snapshot.status == Status.RUNNING
    assert ex.state.current == "b"


async def test_snapshot_is_json_serialisable(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "fail", "message": "bad"},
                    "transitions": [on("error", "b")],
                },
                "b": {"action": {"type": "log", "message": "handled"}},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"n": 1, "tags": ["x"]}))
    state = await within(ex.run_to_completion(timeout=1.0))

    data = json.loads(state.model_dump_json())
    also = json.loads(json.dumps(state.model_dump(mode="json")))

    assert data == also
    assert data["id"] == ex.id
    assert data["procedure"] == "p"
    assert data["version"] == "1.0"
    assert data["current"] == "b"
    assert data["status"] == "completed"
    assert data["context"] == {"n": 1, "tags": ["x"]}
    assert len(data["history"]) == len(state.history)
    errors = [r["error"] for r in data["history"] if r["error"] is not None]
    assert errors and errors[0]["message"] == "bad"
    assert all(isinstance(r["at"], str) for r in data["history"])


@pytest.mark.parametrize("registration", ["decorator", "register_action"])
@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_sync_and_async_registered_actions_work(
    store: ProcedureStore, flavour: str, registration: str
) -> None:
    seen: list[dict[str, Any]] = []

    def sync_action(context: dict[str, Any]) -> str:
        seen.append(dict(context))
        return "sync-result"

    async def async_action(context: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        seen.append(dict(context))
        return "async-result"

    action = sync_action if flavour == "sync" else async_action
    if registration == "decorator":
        returned = store.action("my.action")(action)
        assert returned is action
    else:
        store.register_action("my.action", action)
    await store.register(
        make_doc(
            {
                "a": {"action": fn("my.action", result="r"), "transitions": [on("success", "b")]},
                "b": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"k": "v"}))

    final = await within(ex.run_to_completion(timeout=1.0))

    assert seen == [{"k": "v"}]
    assert final.current == "b"
    assert final.context["r"] == f"{flavour}-result"
    [attempt] = records(final.history, "action", state="a")
    assert attempt.result == f"{flavour}-result"


async def test_log_action_message_appears_in_history(store: ProcedureStore) -> None:
    await store.register(
        make_doc({"a": {"action": {"type": "log", "message": "Hello, history"}}}, "a")
    )
    ex = await within(store.start("p", "1.0", {}))

    final = await within(ex.run_to_completion(timeout=1.0))

    logs = records(final.history, "log")
    assert [(r.state, r.message) for r in logs] == [("a", "Hello, history")]


async def test_sleep_action_takes_about_its_ms(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(
        make_doc(
            {
                "a": {"action": {"type": "sleep", "ms": 60}, "transitions": [on("success", "b")]},
                "b": {},
            },
            "a",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))

    await clock.advance(0.059)
    assert ex.state.current == "a", "the sleep ended before its 60 ms"
    await clock.advance(0.001)
    assert ex.state.current == "b"
    (slept,) = records(ex.state.history, "action", state="a")
    assert clock.instant(slept.at) == 0.06


# --- leaks -------------------------------------------------------------------------------


def _find_machines(root: Any, depth: int = 4) -> list[Any]:  # noqa: C901
    """transitions Machine objects reachable from ``root`` through a few attribute hops."""
    from transitions import Machine

    found: dict[int, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, level: int) -> None:  # noqa: C901
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        if isinstance(obj, Machine):
            found[id(obj)] = obj
            return
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            children = list(obj)
        elif isinstance(obj, str | bytes | int | float | bool) or obj is None:
            return
        else:
            children = []
            for attrs in (
                getattr(obj, "__dict__", None),
                getattr(obj, "__pydantic_private__", None),
            ):
                if isinstance(attrs, dict):
                    children.extend(attrs.values())
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(obj, slot):
                        children.append(getattr(obj, slot))
        for child in children[:1000]:
            walk(child, level + 1)

    walk(root, 0)
    return list(found.values())


def _count_instances(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


async def test_nothing_leaks_after_many_finished_executions(store: ProcedureStore) -> None:
    store.register_action("choose", lambda context: Event("other"))
    await store.register(
        make_doc(
            {
                "a": {"action": {"type": "noop"}, "transitions": [on("success", "b")]},
                "b": {
                    "action": {"type": "log", "message": "m"},
                    "transitions": [on("success", "c")],
                },
                "c": {},
            },
            "a",
            name="ok",
        )
    )
    await store.register(
        make_doc(
            {"a": {"action": {"type": "fail"}, "transitions": [on("go", "b")]}, "b": {}},
            "a",
            name="bad",
        )
    )
    await store.register(
        make_doc(
            {"a": {"action": fn("choose"), "transitions": [on("other", "b")]}, "b": {}},
            "a",
            name="choice",
        )
    )
    warm = await within(store.start("ok", "1.0", {}))
    await within(warm.run_to_completion(timeout=1.0))
    exec_type = type(warm)
    del warm
    await asyncio.sleep(0)
    gc.collect()

    baseline_tasks = len(asyncio.all_tasks())
    baseline_count = _count_instances(exec_type)
    machines = _find_machines(store)
    baseline_models = [len(m.models) for m in machines]

    refs: list[weakref.ref[Any]] = []
    names = ("ok", "bad", "choice")
    for i in range(2000):
        ex = await store.start(names[i % 3], "1.0", {"i": i, "payload": list(range(10))})
        final = await asyncio.wait_for(ex.run_to_completion(timeout=1.0), 2.0)
        assert final.status in (Status.COMPLETED, Status.FAILED)
        if i % 10 == 0:
            with contextlib.suppress(TypeError):  # not weak-referenceable: counted below
                refs.append(weakref.ref(ex))
    del ex, final

    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks, timeout=2.0)
    gc.collect()

    assert len(asyncio.all_tasks()) == baseline_tasks
    assert _count_instances(exec_type) == baseline_count
    assert all(r() is None for r in refs)
    # The compiled machines (if reachable from the store) did not accumulate models.
    assert [len(m.models) for m in machines] == baseline_models
