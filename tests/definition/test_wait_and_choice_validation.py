"""Wait and choice states are checked at registration: each problem with the JSON path of what
is wrong, saying what would be accepted."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore
from tests.builders import on
from tests.conftest import make_doc, problems_by_path

S = "$.definition.states"


def with_state(state: dict[str, Any]) -> dict[str, Any]:
    """A document whose initial state ``s`` is ``state``; ``a`` and ``b`` are terminal."""
    return make_doc({"s": state, "a": {}, "b": {}}, "s")


def choice(**extra: Any) -> dict[str, Any]:
    return {"choice": [{"guard": "x > 1", "target": "a"}], "default": "b", **extra}


async def test_a_state_with_a_wait_and_an_action_is_refused_at_the_wait(
    store: ProcedureStore,
) -> None:
    doc = with_state({"wait": {"seconds": 1}, "action": {"type": "noop"}})
    found = await problems_by_path(store, doc)
    assert "also has action" in found[f"{S}.s.wait"][0]


async def test_a_choice_with_states_is_refused_at_the_choice(store: ProcedureStore) -> None:
    doc = with_state({**choice(), "initial_state": "x", "states": {"x": {}}})
    found = await problems_by_path(store, doc)
    assert "at most one of action, wait, choice, states, parallel" in found[f"{S}.s.choice"][0]


async def test_a_choice_needs_a_default(store: ProcedureStore) -> None:
    doc = with_state({"choice": [{"guard": "x > 1", "target": "a"}]})
    found = await problems_by_path(store, doc)
    assert found[f"{S}.s.default"] == [
        "a choice state needs a default: the state to go to when no rule's guard is true"
    ]


async def test_a_default_without_a_choice_is_refused(store: ProcedureStore) -> None:
    found = await problems_by_path(store, with_state({"default": "a"}))
    assert "only a choice state" in found[f"{S}.s.default"][0]


@pytest.mark.parametrize("key", ["transitions", "timeout_ms", "outcome", "retry"])
async def test_a_choice_has_no_transitions_timeout_outcome_or_retry(
    store: ProcedureStore, key: str
) -> None:
    value = {
        "transitions": [on("go", "a")],
        "timeout_ms": 10,
        "outcome": "failure",
        "retry": {"max_attempts": 2},
    }[key]
    found = await problems_by_path(store, with_state(choice(**{key: value})))
    assert f"it has no {key}" in found[f"{S}.s.{key}"][0]


async def test_a_rule_target_that_names_no_state_is_reported_at_the_rule(
    store: ProcedureStore,
) -> None:
    doc = with_state({"choice": [{"guard": "x", "target": "nowhere"}], "default": "elsewhere"})
    found = await problems_by_path(store, doc)
    assert "nowhere" in found[f"{S}.s.choice[0].target"][0]
    assert "elsewhere" in found[f"{S}.s.default"][0]


async def test_a_rule_guard_that_is_not_a_safe_expression_is_reported_at_the_rule(
    store: ProcedureStore,
) -> None:
    doc = with_state({"choice": [{"guard": "x.__class__", "target": "a"}], "default": "b"})
    found = await problems_by_path(store, doc)
    assert found[f"{S}.s.choice[0].guard"][0].startswith("invalid guard")


async def test_a_rule_needs_a_guard(store: ProcedureStore) -> None:
    doc = with_state({"choice": [{"target": "a"}], "default": "b"})
    found = await problems_by_path(store, doc)
    assert found[f"{S}.s.choice[0].guard"] == ["required field is missing"]


async def test_choices_that_route_to_each_other_in_a_circle_are_refused(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {
            "one": {"choice": [{"guard": "x", "target": "end"}], "default": "two"},
            "two": {"choice": [{"guard": "y", "target": "end"}], "default": "one"},
            "end": {},
        },
        "one",
    )
    found = await problems_by_path(store, doc)
    assert "circle (one → two → one)" in found[f"{S}.one.choice"][0]


async def test_a_choice_may_come_back_to_itself_through_a_state_that_waits(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {
            "pick": {"choice": [{"guard": "ready", "target": "end"}], "default": "pause"},
            "pause": {"wait": {"seconds": 60}, "transitions": [on("success", "pick")]},
            "end": {},
        },
        "pick",
    )
    await store.register(doc)


async def test_a_wait_needs_one_of_its_fields(store: ProcedureStore) -> None:
    found = await problems_by_path(store, with_state({"wait": {}}))
    assert found[f"{S}.s.wait"] == [
        "a wait needs one of seconds, ms, timestamp, seconds_path, timestamp_path"
    ]


async def test_a_wait_with_two_fields_is_refused_at_the_second(store: ProcedureStore) -> None:
    found = await problems_by_path(store, with_state({"wait": {"seconds": 1, "ms": 5}}))
    assert "also has seconds" in found[f"{S}.s.wait.ms"][0]


@pytest.mark.parametrize(
    ("wait", "where", "says"),
    [
        ({"seconds": -1}, "seconds", "greater than or equal to 0"),
        ({"seconds": 10**9}, "seconds", "less than or equal to 31622400"),
        ({"timestamp": "tomorrow"}, "timestamp", "is not an RFC 3339 timestamp"),
        ({"timestamp": "2026-12-24T18:00:00"}, "timestamp", "has no offset"),
        ({"seconds_path": "delay"}, "seconds_path", "must start with $"),
        ({"seconds_path": "$$.state"}, "seconds_path", "a path such as $.delay"),
        ({"timestamp_path": "$"}, "timestamp_path", "a path such as $.delay"),
    ],
    ids=str,
)
async def test_a_wait_value_that_is_no_duration_or_instant_is_refused(
    store: ProcedureStore, wait: dict[str, Any], where: str, says: str
) -> None:
    found = await problems_by_path(store, with_state({"wait": wait}))
    assert says in found[f"{S}.s.wait.{where}"][0]


@pytest.mark.parametrize("key", ["retry", "compensate"])
async def test_a_wait_state_has_no_retry_or_compensation(store: ProcedureStore, key: str) -> None:
    value = {"retry": {"max_attempts": 2}, "compensate": {"type": "noop"}}[key]
    found = await problems_by_path(store, with_state({"wait": {"seconds": 1}, key: value}))
    assert found[f"{S}.s.{key}"] == [f"a wait state runs no action: it has no {key}"]


async def test_a_wait_whose_success_nothing_handles_would_wait_forever(
    store: ProcedureStore,
) -> None:
    doc = make_doc({"s": {"wait": {"seconds": 1}, "transitions": [on("error", "a")]}, "a": {}}, "s")
    found = await problems_by_path(store, doc)
    assert "its wait's success is handled by no transition" in found[f"{S}.s.transitions"][0]


def two_regions(first_default: str) -> dict[str, Any]:
    """A parallel state whose two regions each start with a choice; region r1's default is
    ``first_default``."""
    return make_doc(
        {
            "par": {
                "parallel": {
                    "r1": {
                        "initial_state": "c1",
                        "states": {
                            "c1": {
                                "choice": [{"guard": "x", "target": "y1"}],
                                "default": first_default,
                            },
                            "y1": {},
                        },
                    },
                    "r2": {
                        "initial_state": "c2",
                        "states": {
                            "c2": {"choice": [{"guard": "x", "target": "y2"}], "default": "y2"},
                            "y2": {},
                        },
                    },
                },
                "transitions": [on("done", "end")],
            },
            "end": {},
        },
        "par",
    )


async def test_choices_that_start_two_regions_are_no_circle(store: ProcedureStore) -> None:
    await store.register(two_regions("y1"))


async def test_a_choice_that_enters_its_own_parallel_state_again_is_a_circle(
    store: ProcedureStore,
) -> None:
    found = await problems_by_path(store, two_regions("par"))
    (message,) = found[f"{S}.par.parallel.r1.states.c1.choice"]
    assert "circle (par.r1.c1 → par.r1.c1)" in message
