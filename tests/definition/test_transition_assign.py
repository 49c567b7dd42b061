"""A transition's ``assign`` is checked when the procedure is registered: every problem names
its JSON path and says what would be accepted."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore
from procstore.datapaths import MAX_TEMPLATE_DEPTH
from tests.builders import on
from tests.conftest import make_doc, problem_lines, problems_by_path

WHERE = "$.definition.states.waiting.transitions[0].assign"


def _doc(assign: Any) -> dict[str, Any]:
    return make_doc(
        {"waiting": {"transitions": [on("decide", "done", assign=assign)]}, "done": {}},
        "waiting",
    )


async def test_a_bad_path_in_assign_is_refused_with_its_json_path(store: ProcedureStore) -> None:
    [line] = await problem_lines(store, _doc({"by.$": "event.data"}))
    assert line.startswith(f'{WHERE}["by.$"]: ')
    assert "must start with $" in line


async def test_an_assign_that_is_not_an_object_is_refused(store: ProcedureStore) -> None:
    [line] = await problem_lines(store, _doc("$$.event.data"))
    assert line.startswith(f"{WHERE}: ")


async def test_an_empty_assign_is_refused(store: ProcedureStore) -> None:
    [line] = await problem_lines(store, _doc({}))
    assert line == f"{WHERE}: assign needs at least one key to set in the context"


async def test_an_assign_nested_too_deep_is_refused(store: ProcedureStore) -> None:
    deep: Any = "leaf"
    for _ in range(MAX_TEMPLATE_DEPTH + 1):
        deep = {"x": deep}
    lines = await problem_lines(store, _doc({"a": deep}))
    assert any(f"nested deeper than {MAX_TEMPLATE_DEPTH} levels" in line for line in lines)
    assert all(line.startswith(f"{WHERE}.a") for line in lines)


async def test_a_good_assign_is_registered(store: ProcedureStore) -> None:
    procedure = await store.register(_doc({"by.$": "$$.event.data.by", "step": "done"}))
    assert procedure.definition.states["waiting"].transitions[0].assign == {
        "by.$": "$$.event.data.by",
        "step": "done",
    }


@pytest.mark.parametrize("output", ["order", "$$.event.data", "$.a..b"])
async def test_an_output_must_be_a_path_into_the_context(
    store: ProcedureStore, output: str
) -> None:
    doc = make_doc(
        {"a": {"transitions": [on("go", "b", output=output)]}, "b": {}},
        "a",
    )
    problems = await problems_by_path(store, doc)
    assert list(problems) == ["$.definition.states.a.transitions[0].output"]
