"""Events with data: what ``send(event, data=...)`` carries, what guards and ``assign`` see of
it, what the history keeps, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from procstore.eventdata import MAX_EVENT_DATA_BYTES
from tests.builders import on
from tests.conftest import make_doc, records


def _approval(*transitions: dict[str, Any]) -> dict[str, Any]:
    """``waiting`` takes ``decide`` (with the given transitions) and ``reject``."""
    return make_doc(
        {
            "waiting": {"transitions": [*transitions, on("reject", "rejected")]},
            "approved": {},
            "rejected": {},
        },
        "waiting",
    )


async def _started(store: ProcedureStore, doc: dict[str, Any], **context: Any) -> Any:
    await store.register(doc)
    return await store.start(doc["name"], context=context)


# --- guards -------------------------------------------------------------------------------------


async def test_a_guard_reads_the_data_of_the_event_it_decides_on(store: ProcedureStore) -> None:
    doc = _approval(
        on("decide", "approved", guard="event['data']['approved']"),
        on("decide", "rejected"),
    )
    execution = await _started(store, doc)
    await execution.send("decide", data={"approved": True})
    assert execution.current == "approved"


async def test_a_guard_reads_the_name_of_the_event_it_decides_on(store: ProcedureStore) -> None:
    doc = _approval(on("decide", "approved", guard="event['name'] == 'decide'"))
    execution = await _started(store, doc)
    await execution.send("decide")
    assert execution.current == "approved"


async def test_a_guard_sees_no_data_when_the_event_carries_none(store: ProcedureStore) -> None:
    doc = _approval(
        on("decide", "approved", guard="event['data'] is None"), on("decide", "rejected")
    )
    execution = await _started(store, doc)
    await execution.send("decide")
    assert execution.current == "approved"


async def test_a_context_key_named_event_keeps_its_meaning_in_guards(
    store: ProcedureStore,
) -> None:
    doc = _approval(on("decide", "approved", guard="event == 'from the context'"))
    execution = await _started(store, doc, event="from the context")
    await execution.send("decide", data={"approved": False})
    assert execution.current == "approved"


async def test_a_guard_over_the_data_is_budgeted_like_any_guard(store: ProcedureStore) -> None:
    doc = _approval(on("decide", "approved", guard="str(event['data']) == str(event['data'])"))
    execution = await _started(store, doc)
    assert await execution.send("decide", data=[1] * 60_000) is False
    [error] = records(execution.history, "guard_error")
    assert error.error is not None and error.error.type == "GuardLimitExceeded"


# --- assign -------------------------------------------------------------------------------------


async def test_assign_stores_the_event_data_into_the_context(store: ProcedureStore) -> None:
    doc = _approval(on("decide", "approved", assign={"decision.$": "$$.event.data"}))
    execution = await _started(store, doc)
    await execution.send("decide", data={"approved": True, "by": "ana"})
    assert execution.state.context == {"decision": {"approved": True, "by": "ana"}}


async def test_assign_takes_constants_parts_of_the_data_and_the_context(
    store: ProcedureStore,
) -> None:
    assign = {"by.$": "$$.event.data.by", "order.$": "$.order", "step": "reviewed"}
    doc = _approval(on("decide", "approved", assign=assign))
    execution = await _started(store, doc, order="A7")
    await execution.send("decide", data={"by": "ana"})
    assert execution.state.context == {"order": "A7", "by": "ana", "step": "reviewed"}


async def test_assign_replaces_top_level_keys_and_keeps_the_others(
    store: ProcedureStore,
) -> None:
    doc = _approval(on("decide", "approved", assign={"a.$": "$$.event.data"}))
    execution = await _started(store, doc, a={"old": 1}, b=2)
    await execution.send("decide", data={"new": 1})
    assert execution.state.context == {"a": {"new": 1}, "b": 2}


async def test_the_state_entered_sees_what_the_transition_assigned(store: ProcedureStore) -> None:
    seen: list[Any] = []
    store.action("look")(lambda context: seen.append(context.get("decision")))
    doc = make_doc(
        {
            "waiting": {
                "transitions": [on("decide", "act", assign={"decision.$": "$$.event.data"})]
            },
            "act": {"action": {"type": "function", "function": "look"}},
        },
        "waiting",
    )
    execution = await _started(store, doc)
    await execution.send("decide", data="yes")
    await execution.run_to_completion(timeout=5)
    assert seen == ["yes"]


async def test_an_assign_whose_path_names_nothing_blocks_its_transition(
    store: ProcedureStore,
) -> None:
    doc = _approval(
        on("decide", "approved", assign={"by.$": "$$.event.data.by"}), on("decide", "rejected")
    )
    execution = await _started(store, doc)
    await execution.send("decide", data={"someone": "else"})
    assert execution.current == "rejected"
    [error] = records(execution.history, "guard_error", message="assign")
    assert error.error is not None and error.error.type == "PathNotFound"


async def test_a_blocked_transition_assigns_nothing(store: ProcedureStore) -> None:
    doc = _approval(
        on("decide", "approved", guard="event['data'] == 'yes'", assign={"x.$": "$$.event.data"})
    )
    execution = await _started(store, doc)
    assert await execution.send("decide", data="no") is False
    assert execution.state.context == {}


async def test_assign_sees_the_execution_facts(store: ProcedureStore) -> None:
    assign = {"where.$": "$$.state", "id.$": "$$.execution.id", "name.$": "$$.procedure.name"}
    doc = _approval(on("decide", "approved", assign=assign))
    execution = await _started(store, doc)
    await execution.send("decide")
    assert execution.state.context == {"where": "waiting", "id": execution.id, "name": "p"}


async def test_an_error_transitions_assign_keeps_the_error_it_handles(
    store: ProcedureStore,
) -> None:
    def charge(context: dict[str, Any]) -> None:
        raise ValueError("card refused")

    store.register_action("charge", charge)
    keep = {"failure": {"Error.$": "$$.error.type", "Cause.$": "$$.error.message"}}
    doc = make_doc(
        {
            "charge": {
                "action": {"type": "function", "function": "charge"},
                "transitions": [on("success", "done"), on("error", "declined", assign=keep)],
            },
            "done": {},
            "declined": {},
        },
        "charge",
    )
    execution = await _started(store, doc)
    final = await execution.run_to_completion(timeout=5)
    assert final.context == {"failure": {"Error": "ValueError", "Cause": "card refused"}}


async def test_a_compound_states_error_assign_keeps_its_childs_error(
    store: ProcedureStore,
) -> None:
    def charge(context: dict[str, Any]) -> None:
        raise ValueError("card refused")

    store.register_action("charge", charge)
    keep = {"failure.$": "$$.error"}
    doc = make_doc(
        {
            "pay": {
                "initial_state": "charge",
                "states": {"charge": {"action": {"type": "function", "function": "charge"}}},
                "transitions": [on("done", "paid"), on("error", "declined", assign=keep)],
            },
            "paid": {},
            "declined": {},
        },
        "pay",
    )
    execution = await _started(store, doc)
    final = await execution.run_to_completion(timeout=5)
    assert final.current == "declined"
    assert final.context == {"failure": {"type": "ValueError", "message": "card refused"}}


async def test_a_transitions_output_becomes_the_whole_context(store: ProcedureStore) -> None:
    doc = _approval(on("decide", "approved", assign={"d.$": "$$.event.data"}, output="$.d"))
    execution = await _started(store, doc, order=1)
    await execution.send("decide", data={"approved": True})
    assert (execution.current, execution.state.context) == ("approved", {"approved": True})


async def test_an_output_that_is_no_object_blocks_the_transition(store: ProcedureStore) -> None:
    doc = _approval(on("decide", "approved", output="$.order"))
    execution = await _started(store, doc, order=1)
    assert not await execution.send("decide")
    [error] = records(execution.history, "guard_error")
    assert "the output must be an object, not int" in error.error.message
    assert execution.state.context == {"order": 1}


# --- the history --------------------------------------------------------------------------------


async def test_the_transition_record_keeps_the_event_data(store: ProcedureStore) -> None:
    execution = await _started(store, _approval(on("decide", "approved")))
    await execution.send("decide", data={"approved": True})
    [transition] = records(execution.history, "transition", event="decide")
    assert transition.data == {"approved": True}


async def test_the_blocked_record_keeps_the_event_data(store: ProcedureStore) -> None:
    execution = await _started(
        store, _approval(on("decide", "approved", guard="event['data'] == 'yes'"))
    )
    await execution.send("decide", data=[1, 2])
    [blocked] = records(execution.history, "blocked", event="decide")
    assert blocked.data == [1, 2]


async def test_an_event_without_data_records_none(store: ProcedureStore) -> None:
    execution = await _started(store, _approval(on("decide", "approved")))
    await execution.send("decide")
    [transition] = records(execution.history, "transition", event="decide")
    assert transition.data is None


async def test_the_data_sent_is_a_copy(store: ProcedureStore) -> None:
    doc = _approval(on("decide", "approved", assign={"d.$": "$$.event.data"}))
    execution = await _started(store, doc)
    data = {"items": [1]}
    await execution.send("decide", data=data)
    data["items"].append(2)
    assert execution.state.context == {"d": {"items": [1]}}


# --- refused ------------------------------------------------------------------------------------


async def test_data_that_is_not_json_is_refused_and_nothing_moves(store: ProcedureStore) -> None:
    execution = await _started(store, _approval(on("decide", "approved")))
    with pytest.raises(InvalidEvent, match="data of event 'decide' is not JSON-compatible"):
        await execution.send("decide", data={"when": object()})
    assert execution.current == "waiting"


async def test_nan_in_the_data_is_refused_with_where_it_is(store: ProcedureStore) -> None:
    execution = await _started(store, _approval(on("decide", "approved")))
    with pytest.raises(InvalidEvent, match=r"\$\.a\[1\] is nan"):
        await execution.send("decide", data={"a": [1, float("nan")]})


async def test_data_over_the_size_limit_is_refused(store: ProcedureStore) -> None:
    execution = await _started(store, _approval(on("decide", "approved")))
    with pytest.raises(InvalidEvent, match="MAX_EVENT_DATA_BYTES"):
        await execution.send("decide", data="x" * MAX_EVENT_DATA_BYTES)
    assert execution.status is Status.RUNNING and execution.current == "waiting"
