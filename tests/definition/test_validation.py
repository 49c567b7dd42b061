"""Registration: validation errors with JSON paths, versions, loading formats, fuzzing."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.spec_actions
from procstore import (
    InvalidProcedure,
    ProcedureNotFound,
    ProcedureStore,
    ProcstoreError,
    VersionConflict,
)
from tests.conftest import SPEC_MODULE, make_doc, problems_by_path


def _valid_doc(name: str = "p", version: str = "1.0") -> dict[str, Any]:
    return make_doc(
        {
            "a": {
                "action": {"type": "log", "message": "hi"},
                "transitions": [{"event": "success", "target": "b"}],
            },
            "b": {},
        },
        "a",
        name=name,
        version=version,
    )


def _doc_with_action(action: dict[str, Any]) -> dict[str, Any]:
    """A procedure whose state ``s`` carries ``action``."""
    return make_doc(
        {
            "s": {"action": action, "transitions": [{"event": "success", "target": "end"}]},
            "end": {},
        },
        "s",
    )


async def _assert_problem(store: ProcedureStore, doc: Any, path: str) -> None:
    found = await problems_by_path(store, doc)
    assert path in found, f"expected a problem at {path!r}, got {found!r}"
    assert all(m.strip() for m in found[path]), f"empty message at {path!r}"


# --- one test per validation error -------------------------------------------------------


@pytest.mark.parametrize("field", ["definition", "name", "version"])
async def test_a_missing_required_field_is_refused_at_its_path(
    store: ProcedureStore, field: str
) -> None:
    doc = _valid_doc()
    del doc[field]
    await _assert_problem(store, doc, f"$.{field}")


@pytest.mark.parametrize("version", ["not a version", "1.0-beta-x-y", "", "v1..0"])
async def test_bad_version_string(store: ProcedureStore, version: str) -> None:
    await _assert_problem(store, _valid_doc(version=version), "$.version")


async def test_empty_states(store: ProcedureStore) -> None:
    await _assert_problem(store, make_doc({}, "a"), "$.definition.states")


async def test_initial_state_not_among_states(store: ProcedureStore) -> None:
    doc = _valid_doc()
    doc["definition"]["initial_state"] = "nowhere"
    await _assert_problem(store, doc, "$.definition.initial_state")


async def test_target_not_among_states(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "a": {
                "transitions": [
                    {"event": "go", "target": "b"},
                    {"event": "error", "target": "nowhere"},
                ]
            },
            "b": {},
        },
        "a",
    )
    await _assert_problem(store, doc, "$.definition.states.a.transitions[1].target")


@pytest.mark.parametrize(
    ("action", "field"),
    [
        pytest.param({"type": "teleport"}, "type", id="unknown type"),
        pytest.param({"type": "log"}, "message", id="log without message"),
        pytest.param({"type": "sleep"}, "ms", id="sleep without ms"),
        pytest.param(
            {"type": "function", "module": SPEC_MODULE}, "function", id="function without function"
        ),
        pytest.param(
            {"type": "function", "module": "json", "function": "dumps"},
            "module",
            id="function of a module not allowed",
        ),
        pytest.param({"type": "log", "message": "x", "colour": "red"}, "colour", id="unknown key"),
    ],
)
async def test_a_bad_action_is_refused_at_its_field(
    store: ProcedureStore, action: dict[str, Any], field: str
) -> None:
    await _assert_problem(store, _doc_with_action(action), f"$.definition.states.s.action.{field}")


async def test_function_action_unknown_registered_name(store: ProcedureStore) -> None:
    store.register_action("known.action", lambda context: None)
    await _assert_problem(
        store,
        _doc_with_action({"type": "function", "function": "no.such.action"}),
        "$.definition.states.s.action.function",
    )


@pytest.mark.parametrize("function", ["no_such_function", "_private_helper", "NOT_CALLABLE"])
async def test_function_action_not_a_public_callable_of_allowed_module(
    store: ProcedureStore, function: str
) -> None:
    await _assert_problem(
        store,
        _doc_with_action({"type": "function", "module": SPEC_MODULE, "function": function}),
        "$.definition.states.s.action.function",
    )


async def test_function_action_not_defined_in_allowed_module(
    store: ProcedureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Present as an attribute of the allowed module, but defined elsewhere (os/posix).
    monkeypatch.setattr(tests.spec_actions, "system", os.system, raising=False)
    await _assert_problem(
        store,
        _doc_with_action({"type": "function", "module": SPEC_MODULE, "function": "system"}),
        "$.definition.states.s.action.function",
    )


async def test_state_unreachable_from_initial_state(store: ProcedureStore) -> None:
    doc = _valid_doc()
    doc["definition"]["states"]["orphan"] = {"transitions": [{"event": "go", "target": "b"}]}
    await _assert_problem(store, doc, "$.definition.states.orphan")


@pytest.mark.parametrize("name", ["b.c", ""])
async def test_state_name_empty_or_with_dot_rejected_at_its_key(
    store: ProcedureStore, name: str
) -> None:
    doc = make_doc({"a": {"transitions": [{"event": "go", "target": name}]}, name: {}}, "a")

    found = await problems_by_path(store, doc)

    # A key that is not an identifier is written in bracket notation; either quote style.
    accepted = {f'$.definition.states["{name}"]', f"$.definition.states['{name}']"}
    assert accepted & set(found), f"expected one of {accepted}, got {found!r}"


async def test_unknown_top_level_key_rejected(store: ProcedureStore) -> None:
    doc = _valid_doc()
    doc["author"] = "me"
    await _assert_problem(store, doc, "$.author")


async def test_several_problems_are_all_reported(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "a": {
                "action": {"type": "teleport"},
                "transitions": [{"event": "go", "target": "nowhere"}],
            },
            "b": {"action": {"type": "sleep"}},
        },
        "a",
    )
    del doc["version"]

    found = await problems_by_path(store, doc)

    expected = {
        "$.version",
        "$.definition.states.a.action.type",
        "$.definition.states.a.transitions[0].target",
        "$.definition.states.b.action.ms",
    }
    assert expected <= set(found), f"missing {expected - set(found)}; got {found!r}"


async def test_str_of_invalid_procedure_lists_every_problem(store: ProcedureStore) -> None:
    doc = _doc_with_action({"type": "sleep"})
    del doc["name"]
    with pytest.raises(InvalidProcedure) as info:
        await store.register(doc)
    exc = info.value
    assert len(exc.errors) >= 2
    lines = [line.strip() for line in str(exc).splitlines()]
    for problem in exc.errors:
        assert f"{problem.path}: {problem.message}" in lines


# --- os.system ---------------------------------------------------------------------------


async def test_os_system_function_action_rejected_at_registration(
    store: ProcedureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def system(*args: Any, **kwargs: Any) -> int:
        calls.append((args, kwargs))
        return 0

    monkeypatch.setattr(os, "system", system)
    doc = make_doc(
        {
            "pwn": {
                "action": {"type": "function", "module": "os", "function": "system"},
                "transitions": [{"event": "success", "target": "end"}],
            },
            "end": {},
        },
        "pwn",
        name="evil",
    )

    await _assert_problem(store, doc, "$.definition.states.pwn.action.module")

    assert await store.list() == []
    with pytest.raises(ProcedureNotFound):
        await store.start("evil", "1.0", {"cmd": "echo pwned"})
    assert calls == []


# --- nothing half-registered ---------------------------------------------------------------


async def test_invalid_document_leaves_store_unchanged(store: ProcedureStore) -> None:
    await store.register(_valid_doc(name="good"))
    before = await store.list()

    bad_new = _valid_doc(name="bad")
    bad_new["definition"]["initial_state"] = "nowhere"
    bad_version = _valid_doc(name="good", version="2.0")
    bad_version["definition"]["states"]["a"]["action"] = {"type": "sleep"}
    for bad in (bad_new, bad_version):
        with pytest.raises(InvalidProcedure):
            await store.register(bad)

    assert await store.list() == before
    with pytest.raises(ProcedureNotFound):
        await store.get("bad")
    with pytest.raises(ProcedureNotFound):
        await store.get("good", "2.0")
    assert (await store.get("good")).version == "1.0"


# --- versions ----------------------------------------------------------------------------


async def test_reregistering_identical_content_is_a_noop(store: ProcedureStore) -> None:
    first = await store.register(_valid_doc())
    again = await store.register(_valid_doc())
    as_json = await store.register(json.dumps(_valid_doc()))

    assert again == first
    assert as_json == first
    listed = await store.list()
    assert [(p.name, p.version) for p in listed] == [("p", "1.0")]


async def test_reregistering_different_content_raises_version_conflict(
    store: ProcedureStore,
) -> None:
    original = await store.register(_valid_doc())
    changed = _valid_doc()
    changed["definition"]["states"]["a"]["action"]["message"] = "changed"

    with pytest.raises(VersionConflict):
        await store.register(changed)

    assert issubclass(VersionConflict, ProcstoreError)
    assert await store.get("p", "1.0") == original
    assert len(await store.list()) == 1


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        (["2.0", "10.0"], "10.0"),
        (["10.0", "2.0"], "10.0"),
        (["1.9", "1.10"], "1.10"),
        (["1.10", "1.9"], "1.10"),
        (["1.0", "2.0.1", "2.0"], "2.0.1"),
    ],
)
async def test_latest_compares_versions_as_versions(
    store: ProcedureStore, versions: list[str], latest: str
) -> None:
    for version in versions:
        await store.register(_valid_doc(version=version))

    assert (await store.get("p")).version == latest
    assert (await store.get("p", None)).version == latest


async def test_start_without_version_uses_latest(store: ProcedureStore) -> None:
    for version in ("2.0", "10.0", "9.0"):
        await store.register(_valid_doc(version=version))

    ex = await asyncio.wait_for(store.start("p", context={}), 2.0)

    assert ex.state.version == "10.0"
    assert ex.state.procedure == "p"


async def test_list_returns_every_version_sorted(store: ProcedureStore) -> None:
    for name, version in [("b", "1.0"), ("a", "10.0"), ("a", "2.0")]:
        await store.register(_valid_doc(name=name, version=version))

    listed = await store.list()

    assert [(p.name, p.version) for p in listed] == [("a", "2.0"), ("a", "10.0"), ("b", "1.0")]


async def test_get_unknown_name_raises_not_found(store: ProcedureStore) -> None:
    await store.register(_valid_doc())
    with pytest.raises(ProcedureNotFound):
        await store.get("nope")
    with pytest.raises(ProcedureNotFound):
        await store.get("nope", "1.0")


async def test_get_unknown_version_raises_not_found(store: ProcedureStore) -> None:
    await store.register(_valid_doc())
    with pytest.raises(ProcedureNotFound):
        await store.get("p", "2.0")


async def test_start_unknown_version_raises_not_found(store: ProcedureStore) -> None:
    await store.register(_valid_doc())
    with pytest.raises(ProcedureNotFound):
        await store.start("p", "2.0", {})
    assert issubclass(ProcedureNotFound, ProcstoreError)


# --- loading formats ---------------------------------------------------------------------


def _rich_doc() -> dict[str, Any]:
    return make_doc(
        {
            "validate": {
                "action": {
                    "type": "function",
                    "module": SPEC_MODULE,
                    "function": "validate",
                    "result": "validation",
                },
                "transitions": [
                    {"event": "success", "target": "build"},
                    {"event": "error", "target": "failed"},
                ],
            },
            "build": {
                "action": {"type": "sleep", "ms": 5},
                "transitions": [{"event": "success", "target": "done"}],
            },
            "failed": {"outcome": "failure", "action": {"type": "log", "message": "oops"}},
            "done": {"action": {"type": "noop"}},
        },
        "validate",
        name="deploy_workflow",
        description="loaded four ways",
    )


async def _load(source: Any) -> Any:
    return await ProcedureStore(allowed_modules=[SPEC_MODULE]).register(source)


async def test_dict_json_string_json_file_and_yaml_file_load_equal(tmp_path: Path) -> None:
    doc = _rich_doc()
    json_path = tmp_path / "proc.json"
    json_path.write_text(json.dumps(doc), encoding="utf-8")
    yaml_path = tmp_path / "proc.yaml"
    yaml_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    yml_path = tmp_path / "proc.yml"
    yml_path.write_text(yaml.safe_dump(doc), encoding="utf-8")

    from_dict = await _load(doc)
    loaded = {
        "json string": await _load(json.dumps(doc)),
        "json Path": await _load(json_path),
        "json str path": await _load(str(json_path)),
        "yaml Path": await _load(yaml_path),
        "yml str path": await _load(str(yml_path)),
    }

    assert from_dict.name == "deploy_workflow"
    assert from_dict.version == "1.0"
    assert from_dict.description == "loaded four ways"
    for how, proc in loaded.items():
        assert proc == from_dict, how
        assert proc.definition == from_dict.definition, how
        assert (proc.name, proc.version, proc.description) == (
            from_dict.name,
            from_dict.version,
            from_dict.description,
        ), how


async def test_register_does_not_mutate_the_callers_dict(store: ProcedureStore) -> None:
    doc = _rich_doc()
    snapshot = copy.deepcopy(doc)
    await store.register(doc)
    assert doc == snapshot


@pytest.mark.parametrize(
    "name", ["missing.json", "missing.yaml", "broken.json", "broken.yaml", "list.json"]
)
async def test_unreadable_or_malformed_file_is_invalid_procedure(
    store: ProcedureStore, tmp_path: Path, name: str
) -> None:
    (tmp_path / "broken.json").write_text('{"name": "p", ', encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2, 3]", encoding="utf-8")

    with pytest.raises(InvalidProcedure):
        await store.register(tmp_path / name)


# --- fuzzing -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

# Values with a chance of meaning something to the validator.
interesting_values: st.SearchStrategy[Any] = st.sampled_from(
    [
        "",
        ".",
        "a.b",
        "a",
        "b",
        "c",
        "end",
        "success",
        "error",
        "1.0",
        "10.0",
        "not a version",
        "os",
        "system",
        SPEC_MODULE,
        "validate",
        "_private_helper",
        "NOT_CALLABLE",
        "known.action",
        "log",
        "sleep",
        "noop",
        "fail",
        "function",
        "failure",
        -1,
        0,
        10**20,
        1.5,
        True,
        None,
        [],
        {},
    ]
)


def _base_doc() -> dict[str, Any]:
    return make_doc(
        {
            "a": {
                "action": {"type": "log", "message": "hi", "result": "r"},
                "transitions": [
                    {"event": "success", "target": "b"},
                    {"event": "error", "target": "c"},
                ],
            },
            "b": {
                "action": {"type": "function", "module": SPEC_MODULE, "function": "build"},
                "transitions": [{"event": "success", "target": "d"}],
            },
            "c": {"action": {"type": "fail", "message": "x"}, "outcome": "failure"},
            "d": {
                "action": {"type": "sleep", "ms": 1},
                "transitions": [{"event": "next", "target": "e"}],
            },
            "e": {"action": {"type": "function", "function": "known.action"}},
        },
        "a",
        description="fuzz base",
    )


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    node = doc
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    doc: Any = _base_doc()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "replace", "add_key", "duplicate"]))
        # A copy: sampled_from hands out the same [] / {} objects, which mutations would edit.
        value = copy.deepcopy(draw(interesting_values | json_values))
        if not path:
            if op == "replace":
                doc = value
            continue
        parent = _parent(doc, path)
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = value
        elif op == "add_key":
            target = parent[key]
            if isinstance(target, dict):
                target[draw(interesting_values.filter(lambda v: isinstance(v, str)))] = value
            elif isinstance(target, list):
                target.append(value)
            else:
                parent[key] = value
        else:  # duplicate a sibling value under another key / index
            if isinstance(parent, dict):
                parent[f"{key}_copy"] = copy.deepcopy(parent[key])
            else:
                parent.append(copy.deepcopy(parent[key]))
    return doc


def _register_or_invalid(value: Any) -> None:
    """``register`` either succeeds or raises InvalidProcedure: never anything else."""

    async def attempt() -> None:
        store = ProcedureStore(allowed_modules=[SPEC_MODULE])
        store.register_action("known.action", lambda context: None)
        try:
            proc = await store.register(value)
        except InvalidProcedure as exc:
            # Either outcome is right, so not pytest.raises: a rejection must say why.
            assert exc.errors  # noqa: PT017
            return
        assert await store.get(proc.name, proc.version) == proc

    asyncio.run(asyncio.wait_for(attempt(), 10.0))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_registers_or_raises_invalid_procedure(value: Any) -> None:
    _register_or_invalid(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_text_registers_or_raises_invalid_procedure(value: Any) -> None:
    _register_or_invalid(json.dumps(value))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_docs())
def test_mutated_procedure_registers_or_raises_invalid_procedure(value: Any) -> None:
    _register_or_invalid(value)


def test_fuzz_base_document_is_valid() -> None:
    # Guards the mutation test above: unmutated, its base document registers.
    async def attempt() -> None:
        store = ProcedureStore(allowed_modules=[SPEC_MODULE])
        store.register_action("known.action", lambda context: None)
        proc = await store.register(_base_doc())
        assert proc.name == "p"

    asyncio.run(attempt())
