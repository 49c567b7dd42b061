"""The error-handling fields of a definition — lists of retry policies, the errors an error
transition catches, a failure terminal's error and cause, a compensation's retry, the
execution's timeout — are checked at registration, each problem at its JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore
from procstore.definition import MAX_RETRY_POLICIES
from tests.builders import on
from tests.conftest import make_doc, problems_by_path

S = "$.definition.states.s"


def _doc(**state: Any) -> dict[str, Any]:
    fields = {"action": {"type": "noop"}, "transitions": [on("success", "end")], **state}
    return make_doc({"s": fields, "end": {}}, "s")


def _failure_end(**end: Any) -> dict[str, Any]:
    doc = _doc()
    doc["definition"]["states"]["end"] = {"outcome": "failure", **end}
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(_doc(retry={"max_attempts": 2}), id="one policy"),
        pytest.param(
            _doc(retry=[{"errors": ["ValueError"], "max_attempts": 1}, {"errors": ["*"]}]),
            id="a list ending with a catch-all",
        ),
        pytest.param(
            _doc(transitions=[on("success", "end"), on("error", "end", errors=["Timeout"])]),
            id="an error transition with errors",
        ),
        pytest.param(_failure_end(error="Declined", cause="the card was refused"), id="fail"),
        pytest.param(
            _doc(compensate={"type": "noop"}, compensate_retry=[{"max_attempts": 2}]),
            id="compensate_retry",
        ),
        pytest.param(
            {**_doc(), "definition": {**_doc()["definition"], "timeout_ms": 60_000}},
            id="the execution's timeout_ms",
        ),
    ],
)
async def test_the_error_fields_are_accepted(store: ProcedureStore, doc: dict[str, Any]) -> None:
    await store.register(doc)


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        pytest.param(
            _doc(retry=[{"max_attempts": 2}, {"errors": ["ValueError"]}]),
            f"{S}.retry",
            "policy 0 retries every error",
            id="a catch-all policy before another",
        ),
        pytest.param(
            _doc(retry=[{"max_attempts": "x"}]),
            f"{S}.retry[0].max_attempts",
            "expected an integer",
            id="a bad field of a listed policy",
        ),
        pytest.param(
            _doc(retry={"max_attempts": 0}),
            f"{S}.retry.max_attempts",
            "greater than or equal to 1",
            id="a bad field of a single policy",
        ),
        pytest.param(_doc(retry=[]), f"{S}.retry", "at least 1", id="an empty list"),
        pytest.param(
            _doc(retry=[{}] * (MAX_RETRY_POLICIES + 1)),
            f"{S}.retry",
            f"at most {MAX_RETRY_POLICIES}",
            id="too many policies",
        ),
        pytest.param(
            _doc(retry={"errors": ["*", "ValueError"]}),
            f"{S}.retry.errors",
            "must be alone",
            id="a star among other names",
        ),
        pytest.param(
            _doc(transitions=[on("success", "end", errors=["ValueError"])]),
            f"{S}.transitions[0].errors",
            "only transitions on event 'error'",
            id="errors on another event",
        ),
        pytest.param(
            _doc(transitions=[on("success", "end"), on("error", "end", errors="ValueError")]),
            f"{S}.transitions[1].errors",
            "expected a list, got a string",
            id="errors not a list",
        ),
        pytest.param(
            _doc(error="Declined"),
            f"{S}.error",
            "only a failure terminal",
            id="error on a state with transitions",
        ),
        pytest.param(
            make_doc({"s": {"cause": "why"}}, "s"),
            f"{S}.cause",
            "only a failure terminal",
            id="cause on a success terminal",
        ),
        pytest.param(
            _doc(compensate_retry={"max_attempts": 2}),
            f"{S}.compensate_retry",
            "does not have",
            id="compensate_retry without compensate",
        ),
        pytest.param(
            {**_doc(), "definition": {**_doc()["definition"], "timeout_ms": 0}},
            "$.definition.timeout_ms",
            "greater than 0",
            id="a zero execution timeout",
        ),
    ],
)
async def test_a_misplaced_or_malformed_error_field_is_refused_at_its_path(
    store: ProcedureStore, doc: dict[str, Any], path: str, words: str
) -> None:
    problems = await problems_by_path(store, doc)
    assert path in problems, problems
    assert any(words in message for message in problems[path]), problems[path]


async def test_a_compound_state_has_no_error_or_cause(store: ProcedureStore) -> None:
    inner = {"initial_state": "a", "states": {"a": {}}, "error": "X"}
    doc = make_doc({"c": {**inner, "transitions": [on("done", "end")]}, "end": {}}, "c")
    problems = await problems_by_path(store, doc)
    assert any("only leaf states have error" in m for m in problems["$.definition.states.c.error"])


async def test_an_empty_errors_list_on_an_error_transition_is_refused(
    store: ProcedureStore,
) -> None:
    doc = _doc(transitions=[on("success", "end"), {**on("error", "end"), "errors": []}])

    problems = await problems_by_path(store, doc)

    assert "catches nothing" in problems[f"{S}.transitions[1].errors"][0]
