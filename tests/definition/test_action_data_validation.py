"""Registering a procedure checks its actions' `args`, `result` paths and `result_selector`:
each problem is reported at its JSON path, and a function's args are checked against what the
function takes, without importing its module."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from procstore import Procedure, ProcedureStore
from procstore.datapaths import (
    MAX_PATH_LENGTH,
    MAX_PATH_SEGMENTS,
    MAX_TEMPLATE_DEPTH,
    MAX_TEMPLATE_PATHS,
    MAX_TEMPLATE_VALUES,
)
from tests.builders import fn, on
from tests.conftest import make_doc, problems_by_path

ACTION = "$.definition.states.work.action"


def _doc(action: dict[str, Any]) -> dict[str, Any]:
    work = {"action": action, "transitions": [on("success", "done")]}
    return make_doc({"work": work, "done": {}}, "work")


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_a_bad_path_in_args_is_reported_at_its_key(store: ProcedureStore) -> None:
    store.register_action("upload", lambda context, key: None)

    problems = await problems_by_path(store, _doc(fn("upload", args={"key.$": "order.id"})))

    assert list(problems) == [f'{ACTION}.args["key.$"]']
    assert "must start with $" in problems[f'{ACTION}.args["key.$"]'][0]


async def test_a_name_given_twice_in_args_is_refused(store: ProcedureStore) -> None:
    action = {"type": "noop", "args": {"key": "a", "key.$": "$.b"}}

    problems = await problems_by_path(store, _doc(action))

    assert "'key' is given twice" in problems[f'{ACTION}.args["key.$"]'][0]


async def test_a_result_path_that_does_not_parse_is_refused(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, _doc({"type": "noop", "result": "$.a..b"}))

    assert list(problems) == [f"{ACTION}.result"]


async def test_a_result_path_must_name_a_place_in_the_context(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, _doc({"type": "noop", "result": "$$.state"}))

    assert "only be stored at a path into the context" in problems[f"{ACTION}.result"][0]


async def test_a_bad_path_in_a_result_selector_is_reported_at_its_key(
    store: ProcedureStore,
) -> None:
    action = {"type": "noop", "result_selector": {"id.$": "$.a[x]"}}

    problems = await problems_by_path(store, _doc(action))

    assert list(problems) == [f'{ACTION}.result_selector["id.$"]']


async def test_a_compensation_s_args_are_checked_too(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "work": {
                "action": {"type": "noop"},
                "compensate": {"type": "noop", "args": {"x.$": "nope"}},
            }
        },
        "work",
    )

    problems = await problems_by_path(store, doc)

    assert list(problems) == ['$.definition.states.work.compensate.args["x.$"]']


@pytest.mark.parametrize("action_type", ["log", "sleep", "fail"])
async def test_args_are_refused_on_actions_that_take_none(
    store: ProcedureStore, action_type: str
) -> None:
    action = {"type": action_type, "message": "m", "ms": 1, "args": {"a": 1}}
    action.pop("message" if action_type == "sleep" else "ms")

    problems = await problems_by_path(store, _doc(action))

    assert problems == {f"{ACTION}.args": ["unknown field"]}


async def test_args_must_be_an_object(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, _doc({"type": "noop", "args": [1, 2]}))

    assert list(problems) == [f"{ACTION}.args"]


async def test_args_must_be_json_data(store: ProcedureStore) -> None:
    args = {"a": {"b": [1, {2, 3}]}}

    problems = await problems_by_path(store, _doc({"type": "noop", "args": args}))

    assert problems == {f"{ACTION}.args.a.b[1]": ["expected JSON data, got set"]}


async def test_a_key_of_args_that_is_not_a_string_is_reported(store: ProcedureStore) -> None:
    store.register_action("upload", lambda context, **rest: None)

    problems = await problems_by_path(store, _doc(fn("upload", args={"a": {7: "x"}, 8: "y"})))

    assert problems == {
        f"{ACTION}.args.a[7]": ["expected a string, got a number"],
        f"{ACTION}.args[8]": ["expected a string, got a number"],
    }


# -- limits ---------------------------------------------------------------------------------------


async def test_args_nested_too_deeply_are_refused(store: ProcedureStore) -> None:
    action = {"type": "noop", "args": _nested(MAX_TEMPLATE_DEPTH + 1)}

    problems = await problems_by_path(store, _doc(action))

    [(path, messages)] = problems.items()
    assert path.startswith(f"{ACTION}.args.a.a")
    assert f"nested deeper than {MAX_TEMPLATE_DEPTH} levels" in messages[0]


async def test_args_as_deep_as_the_limit_are_accepted(store: ProcedureStore) -> None:
    await store.register(_doc({"type": "noop", "args": _nested(MAX_TEMPLATE_DEPTH)}))


async def test_args_with_too_many_paths_are_refused(store: ProcedureStore) -> None:
    args = {f"k{i}.$": "$.x" for i in range(MAX_TEMPLATE_PATHS + 1)}

    problems = await problems_by_path(store, _doc({"type": "noop", "args": args}))

    assert problems == {
        f"{ACTION}.args": [
            f"at most {MAX_TEMPLATE_PATHS} paths (.$ keys), not {MAX_TEMPLATE_PATHS + 1}"
        ]
    }


async def test_args_with_too_many_values_are_refused(store: ProcedureStore) -> None:
    args = {"items": list(range(MAX_TEMPLATE_VALUES))}

    problems = await problems_by_path(store, _doc({"type": "noop", "args": args}))

    assert problems == {
        f"{ACTION}.args": [f"at most {MAX_TEMPLATE_VALUES} values, not {MAX_TEMPLATE_VALUES + 2}"]
    }


async def test_a_path_longer_than_the_limit_is_refused(store: ProcedureStore) -> None:
    path = "$." + "a" * (MAX_PATH_LENGTH - 1)

    problems = await problems_by_path(store, _doc({"type": "noop", "args": {"x.$": path}}))

    assert f"at most {MAX_PATH_LENGTH} characters" in problems[f'{ACTION}.args["x.$"]'][0]


async def test_a_path_with_too_many_segments_is_refused(store: ProcedureStore) -> None:
    path = "$" + ".a" * (MAX_PATH_SEGMENTS + 1)

    problems = await problems_by_path(store, _doc({"type": "noop", "args": {"x.$": path}}))

    assert f"at most {MAX_PATH_SEGMENTS} segments" in problems[f'{ACTION}.args["x.$"]'][0]


async def test_args_beyond_the_document_limits_are_refused(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, _doc({"type": "noop", "args": _nested(100)}))

    [(path, messages)] = problems.items()
    assert path.startswith(f"{ACTION}.args.a.a")
    assert "MAX_DOCUMENT_DEPTH" in messages[0]


# -- args against the function's parameters -------------------------------------------------------


async def test_an_arg_the_registered_function_does_not_take_is_refused(
    store: ProcedureStore,
) -> None:
    store.register_action("upload", lambda context, bucket, key="k": None)

    problems = await problems_by_path(store, _doc(fn("upload", args={"bucket": 1, "bukcet": 2})))

    assert problems == {
        f"{ACTION}.args.bukcet": ["upload has no parameter 'bukcet' (it takes: bucket, key)"]
    }


async def test_a_required_parameter_the_args_do_not_give_is_refused(
    store: ProcedureStore,
) -> None:
    def upload(context: dict[str, Any], info: Any, *, bucket: str, key: str) -> None: ...

    store.register_action("upload", upload)

    problems = await problems_by_path(store, _doc(fn("upload", args={"bucket": "b"})))

    assert problems == {f"{ACTION}.args": ["upload needs 'key', which args does not give"]}


async def test_an_arg_named_like_the_context_parameter_is_refused(store: ProcedureStore) -> None:
    store.register_action("upload", lambda context, **rest: None)

    problems = await problems_by_path(store, _doc(fn("upload", args={"context": 1})))

    assert problems == {f"{ACTION}.args.context": ["upload already receives 'context' by position"]}


async def test_a_positional_only_parameter_cannot_be_an_arg(store: ProcedureStore) -> None:
    def upload(context: dict[str, Any], info: Any, key: str, /) -> None: ...

    store.register_action("upload", upload)

    problems = await problems_by_path(store, _doc(fn("upload", args={"key": 1})))

    assert problems[f"{ACTION}.args.key"] == ["upload takes 'key' only by position, not by name"]


async def test_a_path_arg_is_checked_by_the_name_it_gives(store: ProcedureStore) -> None:
    store.register_action("upload", lambda context, key: None)

    problems = await problems_by_path(store, _doc(fn("upload", args={"kee.$": "$.k"})))

    assert list(problems) == [f'{ACTION}.args["kee.$"]']


async def test_a_function_with_keyword_catch_all_takes_any_arg(store: ProcedureStore) -> None:
    store.register_action("upload", lambda context, **rest: None)

    await store.register(_doc(fn("upload", args={"anything": 1, "else.$": "$.x"})))


async def test_without_args_the_parameters_are_not_checked(store: ProcedureStore) -> None:
    store.register_action("old", lambda context, info, extra: None)

    await store.register(_doc(fn("old")))


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A module of actions on sys.path, not imported: ``upload(context, *, bucket)``, and a
    decorated ``wrapped``."""
    name = f"dataactions_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import functools\n"
        "def upload(context, *, bucket):\n    return bucket\n"
        "@functools.lru_cache\n"
        "def wrapped(context):\n    return 1\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


async def test_a_module_function_s_args_are_checked_without_importing_it(module: str) -> None:
    store = ProcedureStore(allowed_modules=[module])
    action = {"type": "function", "module": module, "function": "upload", "args": {"bukket": 1}}

    problems = await problems_by_path(store, _doc(action))

    assert problems == {
        f"{ACTION}.args.bukket": [f"{module}.upload has no parameter 'bukket' (it takes: bucket)"],
        f"{ACTION}.args": [f"{module}.upload needs 'bucket', which args does not give"],
    }
    assert module not in sys.modules


async def test_a_decorated_module_function_s_args_are_not_checked(module: str) -> None:
    store = ProcedureStore(allowed_modules=[module])
    action = {"type": "function", "module": module, "function": "wrapped", "args": {"any": 1}}

    await store.register(_doc(action))


def test_the_json_schema_describes_args_and_result_selector() -> None:
    schema = Procedure.model_json_schema()

    function = schema["$defs"]["FunctionAction"]["properties"]
    assert "keyword arguments" in function["args"]["description"]
    assert "return value" in function["result_selector"]["description"]
