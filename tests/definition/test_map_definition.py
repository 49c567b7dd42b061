"""Map states in a document: the `map` field's paths, limits and inline item states are checked
at registration, each problem with its JSON path."""

from __future__ import annotations

from typing import Any

from procstore import ProcedureStore
from procstore.definition import MAX_MAP_CONCURRENCY
from procstore.validation import MAX_MAP_NESTING
from tests.conftest import make_doc, problems_by_path

FAN = "$.definition.states.fan"


def doc(fan_extra: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """``fan`` maps ``$.orders`` over a one-state item (``spec`` added to its ``map``)."""
    item = {"items_path": "$.orders", "initial_state": "one", "states": {"one": {}}} | spec
    fan = {"map": item, "transitions": [{"event": "done", "target": "end"}]} | (fan_extra or {})
    return make_doc({"fan": fan, "end": {}}, "fan")


async def test_a_map_state_registers(store: ProcedureStore) -> None:
    procedure = await store.register(doc(max_concurrency=3, result="$.r", output_path="$.x"))
    assert procedure.definition.states["fan"].is_map


async def test_a_map_state_cannot_also_run_an_action_or_have_states(
    store: ProcedureStore,
) -> None:
    extra = {"action": {"type": "noop"}, "states": {"x": {}}, "initial_state": "x"}
    problems = await problems_by_path(store, doc(extra))
    for key in ("action", "states", "initial_state"):
        assert any("a map state" in m for m in problems[f"{FAN}.{key}"])


async def test_the_items_path_must_be_a_path(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, doc(items_path="orders"))
    assert "is not a path" in problems[f"{FAN}.map.items_path"][0]


async def test_the_result_must_be_a_path_into_the_context(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, doc(result="$$.execution"))
    assert "into the context" in problems[f"{FAN}.map.result"][0]


async def test_the_item_selector_is_checked_as_a_template(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, doc(item_selector={"id.$": "item.id"}))
    assert any("is not a path" in m for m in problems[f'{FAN}.map.item_selector["id.$"]'])


async def test_max_concurrency_is_bounded(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, doc(max_concurrency=MAX_MAP_CONCURRENCY + 1))
    assert f"{FAN}.map.max_concurrency" in problems


async def test_the_item_states_are_checked_at_their_place_in_the_document(
    store: ProcedureStore,
) -> None:
    states = {"one": {"transitions": [{"event": "go", "target": "nowhere"}]}}
    problems = await problems_by_path(store, doc(initial_state="none", states=states))
    assert "is not among the states" in problems[f"{FAN}.map.initial_state"][0]
    assert f"{FAN}.map.states.one.transitions[0].target" in problems


async def test_an_item_state_cannot_target_a_state_of_the_parent(store: ProcedureStore) -> None:
    states = {"one": {"transitions": [{"event": "go", "target": "end"}]}, "two": {}}
    problems = await problems_by_path(store, doc(states=states))
    assert f"{FAN}.map.states.one.transitions[0].target" in problems


async def test_the_static_checks_run_on_the_item_states(store: ProcedureStore) -> None:
    states = {
        "one": {
            "action": {"type": "noop"},
            "transitions": [{"event": "sucess", "target": "two"}],
        },
        "two": {},
    }
    problems = await problems_by_path(store, doc(states=states))
    assert "did you mean 'success'" in problems[f"{FAN}.map.states.one.transitions[0].event"][0]


async def test_a_map_state_whose_done_nothing_handles_is_refused(store: ProcedureStore) -> None:
    fan = {"transitions": [{"event": "error", "target": "end"}]}
    problems = await problems_by_path(store, doc(fan))
    assert any("'done'" in m for m in problems[f"{FAN}.transitions"])


def _nested(levels: int) -> dict[str, Any]:
    """A map state whose item is a map state, ``levels`` deep."""
    item: dict[str, Any] = {"one": {}}
    for _ in range(levels - 1):
        inner = {"items_path": "$.xs", "initial_state": "one", "states": item}
        item = {"m": {"map": inner, "transitions": [{"event": "done", "target": "end"}]}, "end": {}}
        item = {"one": item["m"], "end": {}}
    return doc(states=item) if levels > 1 else doc()


async def test_map_states_nest_at_most_max_map_nesting_deep(store: ProcedureStore) -> None:
    await store.register(_nested(MAX_MAP_NESTING))

    problems = await problems_by_path(store, _nested(MAX_MAP_NESTING + 1))

    [(path, [message])] = problems.items()
    assert path.endswith(".map") and f"at most {MAX_MAP_NESTING} levels" in message


async def test_a_map_state_does_not_wait_for_a_callback(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, doc({"callback": True}))
    assert any("a map state" in m for m in problems[f"{FAN}.callback"])


async def test_the_items_are_a_list_in_the_context_not_in_the_facts(
    store: ProcedureStore,
) -> None:
    problems = await problems_by_path(store, doc(items_path="$$.state"))
    assert "not in the execution's facts" in problems[f"{FAN}.map.items_path"][0]
