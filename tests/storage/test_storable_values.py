"""What actions return or put into the context, and what a persisted store makes of it.

A value JSON cannot hold (NaN, infinity, an object) must never make a commit fail: once, an
action returning NaN made every commit of its execution fail, so each restart re-ran it.
Stored as the action's ``result`` (in the context) it must fail that attempt, naming the value;
kept only in the history, or put into the context by the action itself, it is stored as a
readable stand-in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.conftest import make_doc, records, within


def _doc(result_key: str | None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "function", "function": "produce"}
    if result_key is not None:
        action["result"] = result_key
    return make_doc(
        {
            "work": {
                "action": action,
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "error", "target": "refused"},
                ],
            },
            "done": {},
            "refused": {},
        },
        "work",
    )


async def _run_and_reopen(
    tmp_path: Path, produce: Callable[[dict[str, Any]], Any], result_key: str | None
) -> tuple[Any, Any]:
    """Run one execution to its end in a persisted store; return its final snapshot and the
    snapshot a new store reads back from the database."""
    url = f"sqlite:///{tmp_path / 'values.db'}"
    async with ProcedureStore(url) as store:
        store.register_action("produce", produce)
        await store.register(_doc(result_key))
        ex = await within(store.start("p", context={"keep": 1}))
        final = await within(ex.run_to_completion(timeout=2.0))
    async with ProcedureStore(url, read_only=True) as reader:
        stored = (await reader.get_execution(final.id)).state
    return final, stored


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, {"rate": math.nan}, [1, math.inf]], ids=repr
)
async def test_a_result_stored_in_the_context_that_json_cannot_hold_fails_the_attempt(
    tmp_path: Path, value: Any
) -> None:
    final, stored = await _run_and_reopen(tmp_path, lambda context: value, "rate")

    assert final.current == "refused" and final.status == Status.COMPLETED
    [attempt] = records(final.history, "action", state="work")
    assert attempt.error is not None and attempt.error.type == "TypeError"
    assert "'rate'" in attempt.error.message and "JSON cannot represent" in attempt.error.message
    assert "rate" not in final.context
    assert stored.status == Status.COMPLETED and stored.history == final.history


async def test_the_failure_names_where_the_value_is(tmp_path: Path) -> None:
    final, _ = await _run_and_reopen(tmp_path, lambda context: {"a": [0, math.nan]}, "rate")

    [attempt] = records(final.history, "action", state="work")
    assert attempt.error is not None
    assert "$.a[1] is nan" in attempt.error.message


@pytest.mark.parametrize(
    ("value", "shown"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), ({"x": -math.inf}, {"x": "-Infinity"})],
    ids=repr,
)
async def test_a_result_kept_only_in_the_history_is_stored_as_a_stand_in(
    tmp_path: Path, value: Any, shown: Any
) -> None:
    final, stored = await _run_and_reopen(tmp_path, lambda context: value, None)

    assert final.current == "done" and final.status == Status.COMPLETED
    [attempt] = records(stored.history, "action", state="work")
    assert attempt.result == shown
    assert stored.history == final.history


async def test_a_context_value_an_action_sets_in_place_never_blocks_the_journal(
    tmp_path: Path,
) -> None:
    def produce(context: dict[str, Any]) -> None:
        context["ratio"] = math.inf
        context["thing"] = object()

    final, stored = await _run_and_reopen(tmp_path, produce, None)

    assert final.status == Status.COMPLETED
    assert stored.status == Status.COMPLETED and stored.current == "done"
    assert stored.context["ratio"] == "Infinity"
    assert stored.context["thing"].startswith("<object object")
    assert stored.context["keep"] == 1


async def test_text_with_a_lone_surrogate_is_stored_and_read_back_unchanged(
    tmp_path: Path,
) -> None:
    final, stored = await _run_and_reopen(tmp_path, lambda context: "half \ud800 pair", "text")

    assert final.current == "done"
    assert stored.context["text"] == "half \ud800 pair"
    assert stored.history == final.history


async def test_a_start_context_with_nan_is_refused_before_anything_is_stored(
    tmp_path: Path,
) -> None:
    async with ProcedureStore(f"sqlite:///{tmp_path / 'values.db'}") as store:
        store.register_action("produce", lambda context: None)
        await store.register(_doc(None))
        with pytest.raises(TypeError, match=r"the start context .*\$\.x is nan"):
            await store.start("p", context={"x": math.nan})
        assert await store.executions() == []
