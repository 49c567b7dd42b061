"""A document of the wrong shape is described in the terms of the document someone wrote (JSON
or YAML: objects, lists, strings, numbers), with what to write instead, never in pydantic's
Python terms (``Input should be a valid tuple``)."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import InvalidProcedure, ProcedureStore
from tests.conftest import make_doc


def _doc(**state: Any) -> dict[str, Any]:
    """A procedure whose state ``s`` has the fields ``state`` (then goes to ``end``)."""
    s = {"transitions": [{"event": "go", "target": "end"}], **state}
    return make_doc({"s": s, "end": {}}, "s")


async def _message_at(doc: dict[str, Any], path: str) -> str:
    with pytest.raises(InvalidProcedure) as info:
        await ProcedureStore().register(doc)
    found = {problem.path: problem.message for problem in info.value.errors}
    assert path in found, found
    return found[path]


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (
            _doc(transitions={"event": "go", "target": "end"}),
            "$.definition.states.s.transitions",
            "expected a list, got an object",
        ),
        (
            _doc(
                transitions=[{"event": "go", "target": "end", "conditions": "is_vip"}],
            ),
            "$.definition.states.s.transitions[0].conditions",
            "expected a list, got a string",
        ),
        (
            _doc(retry={"max_attempts": 2, "errors": "Timeout"}),
            "$.definition.states.s.retry.errors",
            "expected a list, got a string",
        ),
        (
            _doc(timeout_ms="soon"),
            "$.definition.states.s.timeout_ms",
            "expected a number, got a string",
        ),
        (
            make_doc({"s": 5}, "s"),
            "$.definition.states.s",
            "expected an object, got a number",
        ),
        (_doc(action="log"), "$.definition.states.s.action", "expected an object, got a string"),
        (
            {**make_doc({"s": {}}, "s"), "name": 7},
            "$.name",
            "expected a string, got a number",
        ),
        (
            _doc(outcome="done"),
            "$.definition.states.s.outcome",
            "must be 'success' or 'failure'",
        ),
    ],
    ids=[
        "transitions-object",
        "conditions-string",
        "retry-errors-string",
        "timeout-string",
        "state-number",
        "action-string",
        "name-number",
        "outcome-literal",
    ],
)
async def test_a_value_of_the_wrong_type_says_what_json_to_write(
    doc: dict[str, Any], path: str, message: str
) -> None:
    assert await _message_at(doc, path) == message


async def test_a_parallel_state_with_one_region_says_it_needs_two() -> None:
    region = {"initial_state": "x", "states": {"x": {}}}
    doc = make_doc({"p": {"parallel": {"only": region}}}, "p")

    message = await _message_at(doc, "$.definition.states.p.parallel")

    assert message == "needs at least 2 regions, has 1"


async def test_a_compound_state_without_states_says_it_needs_one() -> None:
    doc = make_doc({"c": {"initial_state": "x", "states": {}}}, "c")

    message = await _message_at(doc, "$.definition.states.c.states")

    assert message == "needs at least 1 state, has 0"


async def test_an_empty_initial_state_says_it_must_not_be_empty() -> None:
    doc = make_doc({"s": {}}, "")

    assert await _message_at(doc, "$.definition.initial_state") == "must not be empty"


async def test_a_number_out_of_range_says_the_bound() -> None:
    doc = _doc(action={"type": "sleep", "ms": -1})

    message = await _message_at(doc, "$.definition.states.s.action.ms")

    assert message == "must be greater than or equal to 0"


async def test_a_document_that_is_not_an_object_says_what_it_is() -> None:
    with pytest.raises(InvalidProcedure) as info:
        await ProcedureStore().register("[1, 2]")

    assert [str(problem) for problem in info.value.errors] == ["$: expected an object, got a list"]
