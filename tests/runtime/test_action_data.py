"""Data flow through actions: `args` rendered at each attempt and passed as keyword arguments,
`result` as a path into the context, `result_selector`, and `noop` with args as a Pass state."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from procstore import ActionInfo, ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import make_doc, records, within


def _one_step(action: dict[str, Any], **state: Any) -> dict[str, Any]:
    """``work`` runs ``action``; success ends in ``done``, error in ``failed``."""
    work = {"action": action, "transitions": [on("success", "done"), on("error", "failed")]}
    return make_doc({"work": {**work, **state}, "done": {}, "failed": {}}, "work")


async def _run(store: ProcedureStore, doc: dict[str, Any], context: dict[str, Any]) -> Any:
    await store.register(doc)
    ex = await within(store.start("p", context=context))
    return await within(ex.run_to_completion(timeout=5.0), 5.0)


async def test_a_function_receives_its_args_as_keyword_arguments(store: ProcedureStore) -> None:
    seen: list[dict[str, Any]] = []

    @store.action("upload")
    def upload(context: dict[str, Any], bucket: str, key: str) -> None:
        seen.append({"bucket": bucket, "key": key})

    action = fn("upload", args={"bucket": "invoices", "key.$": "$.order.id"})
    await _run(store, _one_step(action), {"order": {"id": "A7"}})

    assert seen == [{"bucket": "invoices", "key": "A7"}]


async def test_a_module_function_receives_its_args_as_keyword_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"argactions_{uuid.uuid4().hex}"
    source = "def label(context, *, prefix, id):\n    return f'{prefix}-{id}'\n"
    (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    store = ProcedureStore(allowed_modules=[module])
    args = {"prefix": "INV", "id.$": "$.order.id"}
    action = {"type": "function", "module": module, "function": "label", "args": args}
    try:
        final = await _run(store, _one_step({**action, "result": "label"}), {"order": {"id": 7}})
    finally:
        sys.modules.pop(module, None)

    assert final.context["label"] == "INV-7"


async def test_a_function_with_args_still_receives_the_attempt_info(store: ProcedureStore) -> None:
    seen: list[tuple[ActionInfo, int]] = []

    @store.action("charge")
    def charge(context: dict[str, Any], info: ActionInfo, *, amount: int) -> None:
        seen.append((info, amount))

    final = await _run(store, _one_step(fn("charge", args={"amount": 5})), {})

    assert seen == [(ActionInfo(final.id, "work", 1), 5)]


async def test_an_arg_named_like_the_second_parameter_is_that_parameter(
    store: ProcedureStore,
) -> None:
    seen: list[Any] = []

    @store.action("greet")
    def greet(context: dict[str, Any], name: str) -> None:
        seen.append(name)

    await _run(store, _one_step(fn("greet", args={"name": "Ada"})), {})

    assert seen == ["Ada"]


async def test_args_read_the_execution_facts(store: ProcedureStore) -> None:
    seen: list[dict[str, Any]] = []

    @store.action("note")
    def note(context: dict[str, Any], **facts: Any) -> None:
        seen.append(facts)

    args = {
        "id.$": "$$.execution.id",
        "procedure.$": "$$.procedure.name",
        "version.$": "$$.procedure.version",
        "state.$": "$$.state",
    }
    final = await _run(store, _one_step(fn("note", args=args)), {})

    assert seen == [{"id": final.id, "procedure": "p", "version": "1.0", "state": "work"}]


async def test_args_are_rendered_again_at_each_attempt(store: ProcedureStore) -> None:
    seen: list[int] = []

    @store.action("count")
    def count(context: dict[str, Any], n: int) -> None:
        seen.append(n)
        context["n"] = n + 1
        if n < 3:
            raise RuntimeError("again")

    doc = _one_step(fn("count", args={"n.$": "$.n"}), retry={"interval_ms": 0, "max_attempts": 5})
    await _run(store, doc, {"n": 1})

    assert seen == [1, 2, 3]


async def test_a_path_that_names_nothing_fails_the_attempt_with_path_not_found(
    store: ProcedureStore,
) -> None:
    called: list[str] = []
    store.register_action("upload", lambda context, key: called.append(key))

    final = await _run(store, _one_step(fn("upload", args={"key.$": "$.order.id"})), {})

    assert final.current == "failed"
    [attempt] = records(final.history, "action", state="work")
    assert attempt.error.type == "PathNotFound"
    assert "$.order" in attempt.error.message
    assert called == []


async def test_path_not_found_is_retried_like_any_action_error(store: ProcedureStore) -> None:
    store.register_action("upload", lambda context, key: None)
    retry = {"interval_ms": 0, "max_attempts": 2, "errors": ["PathNotFound"]}
    doc = _one_step(fn("upload", args={"key.$": "$.missing"}), retry=retry)

    final = await _run(store, doc, {})

    assert len(records(final.history, "action", state="work")) == 2


async def test_args_are_a_copy_of_the_context(store: ProcedureStore) -> None:
    @store.action("spoil")
    def spoil(context: dict[str, Any], order: dict[str, Any], tags: list[str]) -> None:
        order["id"] = "changed"
        tags.append("changed")

    action = fn("spoil", args={"order.$": "$.order", "tags": ["a"]})
    final = await _run(store, _one_step(action, retry={"interval_ms": 0}), {"order": {"id": 1}})

    assert final.context == {"order": {"id": 1}}


async def test_constant_args_are_fresh_at_each_attempt(store: ProcedureStore) -> None:
    seen: list[list[str]] = []

    @store.action("spoil")
    def spoil(context: dict[str, Any], tags: list[str]) -> None:
        seen.append(list(tags))
        tags.append("changed")
        if len(seen) < 2:
            raise RuntimeError("again")

    doc = _one_step(fn("spoil", args={"tags": ["a"]}), retry={"interval_ms": 0})
    await _run(store, doc, {})

    assert seen == [["a"], ["a"]]


async def test_a_result_path_creates_the_nested_objects(store: ProcedureStore) -> None:
    store.register_action("build", lambda context: "artifact-1")

    final = await _run(store, _one_step(fn("build", result="$.results.build")), {"results": {}})

    assert final.context == {"results": {"build": "artifact-1"}}


async def test_a_result_path_keeps_what_is_beside_it(store: ProcedureStore) -> None:
    store.register_action("build", lambda context: 2)

    final = await _run(store, _one_step(fn("build", result="$.a.b")), {"a": {"c": 1}})

    assert final.context == {"a": {"c": 1, "b": 2}}


async def test_a_result_without_dollar_is_still_one_top_level_key(store: ProcedureStore) -> None:
    store.register_action("build", lambda context: 2)

    final = await _run(store, _one_step(fn("build", result="results.build")), {})

    assert final.context == {"results.build": 2}


async def test_a_result_at_the_root_replaces_the_whole_context(store: ProcedureStore) -> None:
    store.register_action("fetch", lambda context: {"order": {"id": 7}})

    final = await _run(store, _one_step(fn("fetch", result="$")), {"input": "gone"})

    assert final.context == {"order": {"id": 7}}


async def test_a_result_at_the_root_that_is_not_an_object_fails_the_attempt(
    store: ProcedureStore,
) -> None:
    store.register_action("fetch", lambda context: [1, 2])

    final = await _run(store, _one_step(fn("fetch", result="$")), {"kept": True})

    [attempt] = records(final.history, "action", state="work")
    assert (final.current, attempt.error.type) == ("failed", "PathNotFound")
    assert final.context == {"kept": True}


async def test_a_result_path_through_a_non_object_fails_the_attempt(
    store: ProcedureStore,
) -> None:
    store.register_action("build", lambda context: 2)

    final = await _run(store, _one_step(fn("build", result="$.a.b")), {"a": "text"})

    [attempt] = records(final.history, "action", state="work")
    assert (final.current, attempt.error.type) == ("failed", "PathNotFound")
    assert final.context == {"a": "text"}


async def test_a_result_selector_keeps_only_what_it_names(store: ProcedureStore) -> None:
    store.register_action("fetch", lambda context: {"body": {"id": 7}, "headers": {"x": "y"}})
    action = fn("fetch", result_selector={"id.$": "$.body.id", "source": "api"}, result="out")

    final = await _run(store, _one_step(action), {})

    assert final.context == {"out": {"id": 7, "source": "api"}}


async def test_a_result_selector_reads_a_list_result_by_index(store: ProcedureStore) -> None:
    store.register_action("fetch", lambda context: ("first", "second"))
    action = fn("fetch", result_selector={"last.$": "$[1]"}, result="out")

    final = await _run(store, _one_step(action), {})

    assert final.context == {"out": {"last": "second"}}


async def test_a_result_selector_also_narrows_what_the_history_records(
    store: ProcedureStore,
) -> None:
    store.register_action("fetch", lambda context: {"id": 7, "noise": "x" * 100})

    final = await _run(store, _one_step(fn("fetch", result_selector={"id.$": "$.id"})), {})

    [attempt] = records(final.history, "action", state="work")
    assert (attempt.result, final.context) == ({"id": 7}, {})


async def test_guards_see_the_selected_result(store: ProcedureStore) -> None:
    store.register_action("score", lambda context: {"score": 0.9, "noise": "x"})
    action = fn("score", result_selector={"score.$": "$.score"})
    guard = "len(result) == 1 and result['score'] > 0.5"
    work = {
        "action": action,
        "transitions": [on("success", "high", guard=guard), on("success", "low")],
    }

    final = await _run(store, make_doc({"work": work, "high": {}, "low": {}}, "work"), {})

    assert final.current == "high"


async def test_a_result_selector_path_that_names_nothing_fails_the_attempt(
    store: ProcedureStore,
) -> None:
    store.register_action("fetch", lambda context: {"id": 7})
    action = fn("fetch", result_selector={"x.$": "$.missing"}, result="out")

    final = await _run(store, _one_step(action), {})

    [attempt] = records(final.history, "action", state="work")
    assert (final.current, attempt.error.type) == ("failed", "PathNotFound")


async def test_a_noop_with_args_returns_them_rendered(store: ProcedureStore) -> None:
    action = {"type": "noop", "args": {"total.$": "$.order.total", "currency": "EUR"}}
    doc = _one_step({**action, "result": "$.payment"})

    final = await _run(store, doc, {"order": {"total": 12}})

    assert final.context == {"order": {"total": 12}, "payment": {"total": 12, "currency": "EUR"}}


async def test_a_noop_without_args_still_returns_nothing(store: ProcedureStore) -> None:
    final = await _run(store, _one_step({"type": "noop", "result": "out"}), {})

    assert final.context == {"out": None}


async def test_a_compensation_receives_its_args(store: ProcedureStore) -> None:
    undone: list[str] = []
    store.register_action("reserve", lambda context: "r-1")
    store.register_action("release", lambda context, reservation: undone.append(reservation))
    states = {
        "reserve": {
            "action": fn("reserve", result="$.reservation.id"),
            "compensate": fn("release", args={"reservation.$": "$.reservation.id"}),
            "transitions": [on("success", "broken")],
        },
        "broken": {"action": {"type": "fail"}},
    }

    final = await _run(store, make_doc(states, "reserve"), {})

    assert (final.status, undone) == (Status.ROLLED_BACK, ["r-1"])
