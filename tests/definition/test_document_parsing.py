"""What a procedure document may be as data, before its schema is checked.

JSON has no NaN; a key appears once; YAML aliases are refused (a few bytes of them expand into
gigabytes, or into a cycle); nesting is bounded. Each is an ``InvalidProcedure`` problem with
the JSON path (and, for YAML, the line and column) — never a silent surprise, a
``RecursionError`` or a process that eats the machine.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore
from procstore.documents import MAX_DOCUMENT_DEPTH, MAX_DOCUMENT_VALUES
from tests.conftest import make_doc, problem_lines, register_in_child


def _yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- NaN and Infinity -----------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_or_infinity_in_a_json_document_is_refused_with_its_path(constant: str) -> None:
    text = json.dumps(make_doc({"a": {"timeout_ms": 1}}, "a")).replace(
        '"timeout_ms": 1', f'"timeout_ms": {constant}'
    )
    problems = await problem_lines(ProcedureStore(), text)
    assert problems == [
        f"$.definition.states.a.timeout_ms: {constant} is not allowed: JSON has no NaN or Infinity"
    ]


async def test_nan_in_a_yaml_document_is_refused_with_its_path(tmp_path: Path) -> None:
    path = _yaml_file(
        tmp_path,
        """
        name: p
        version: "1.0"
        definition:
          initial_state: a
          states:
            a: {timeout_ms: .nan}
        """,
    )
    problems = await problem_lines(ProcedureStore(), path)
    assert problems == [
        "$.definition.states.a.timeout_ms: NaN is not allowed: JSON has no NaN or Infinity"
    ]


# -- duplicate keys -------------------------------------------------------------------------


async def test_a_duplicate_key_in_a_json_document_is_refused_with_its_path() -> None:
    text = (
        '{"name": "p", "version": "1.0", "definition": {"initial_state": "a", '
        '"states": {"a": {}, "b": {}, "a": {"description": "second"}}}}'
    )
    problems = await problem_lines(ProcedureStore(), text)
    assert len(problems) == 1
    assert problems[0].startswith("$.definition.states.a: duplicate key 'a'")


async def test_a_duplicate_key_in_a_yaml_document_is_refused_with_its_path_and_line(
    tmp_path: Path,
) -> None:
    path = _yaml_file(
        tmp_path,
        """
        name: p
        version: "1.0"
        definition:
          initial_state: a
          states:
            a: {}
            a: {description: second}
        """,
    )
    problems = await problem_lines(ProcedureStore(), path)
    assert len(problems) == 1
    assert problems[0].startswith("$.definition.states.a: duplicate key 'a' (again at line 8")


# -- YAML aliases ---------------------------------------------------------------------------


async def test_a_yaml_alias_is_refused_with_its_line_and_column(tmp_path: Path) -> None:
    path = _yaml_file(
        tmp_path,
        """
        name: p
        version: "1.0"
        definition:
          initial_state: a
          states:
            a: &leaf {description: x}
            b: *leaf
        """,
    )
    problems = await problem_lines(ProcedureStore(), path)
    assert len(problems) == 1
    assert problems[0].startswith("$: YAML aliases are not allowed (*leaf at line 8 column 8)")


async def test_a_cyclic_yaml_alias_is_refused(tmp_path: Path) -> None:
    path = _yaml_file(
        tmp_path,
        """
        name: p
        version: "1.0"
        definition: &d
          initial_state: a
          states: {a: {}}
          again: *d
        """,
    )
    problems = await problem_lines(ProcedureStore(), path)
    assert problems[0].startswith("$: YAML aliases are not allowed (*d at line 7")


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    # 1.5 KB that expands to 10^9 leaves: refused in a child with capped memory and a timeout,
    # so that expanding it fails the test instead of taking the machine.
    lines = ["name: p", 'version: "1.0"', "l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    lines += ["definition:", "  initial_state: a", "  states:", "    a: {description: *l9}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = register_in_child(path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout.startswith("$: YAML aliases are not allowed (*l0 at line 4")


# -- nesting --------------------------------------------------------------------------------


def _nested(levels: int) -> dict[str, Any]:
    """A document whose description is a list nested ``levels`` deep."""
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return make_doc({"a": {}}, "a", description=value)


@pytest.mark.parametrize("levels", [1_000, 100_000])
async def test_deep_nesting_in_a_json_document_is_refused_not_a_recursion_error(
    levels: int,
) -> None:
    text = json.dumps(make_doc({"a": {}}, "a", description="HERE")).replace(
        '"HERE"', "[" * levels + "]" * levels
    )
    problems = await problem_lines(ProcedureStore(), text)
    assert len(problems) == 1
    assert f"nested more than {MAX_DOCUMENT_DEPTH} levels deep" in problems[0]


async def test_deep_nesting_in_a_yaml_document_is_refused_with_its_line(tmp_path: Path) -> None:
    levels = 300
    path = _yaml_file(
        tmp_path,
        f"""
        name: p
        version: "1.0"
        description: {"[" * levels + "]" * levels}
        definition:
          initial_state: a
          states: {{a: {{}}}}
        """,
    )
    problems = await problem_lines(ProcedureStore(), path)
    assert len(problems) == 1
    expected = f"$: nested more than {MAX_DOCUMENT_DEPTH} levels deep (at line 4"
    assert problems[0].startswith(expected)


async def test_deep_nesting_in_a_dict_is_refused_with_its_path() -> None:
    problems = await problem_lines(ProcedureStore(), _nested(500))
    assert len(problems) == 1
    path, message = problems[0].split(": ", 1)
    assert path.startswith("$.description[0][0]")
    assert message == f"nested more than {MAX_DOCUMENT_DEPTH} levels deep (MAX_DOCUMENT_DEPTH)"


async def test_a_dict_that_contains_itself_is_refused() -> None:
    doc = make_doc({"a": {}}, "a")
    doc["definition"]["states"]["a"]["loop"] = doc
    problems = await problem_lines(ProcedureStore(), doc)
    assert len(problems) == 1
    assert "nested more than" in problems[0]


async def test_a_dict_whose_parts_are_shared_over_and_over_is_refused_by_its_size() -> None:
    # A million values in a few kilobytes of Python: each row is the same list object.
    row = ["x"] * 1_000
    problems = await problem_lines(
        ProcedureStore(), make_doc({"a": {}}, "a", description=[row] * 1_000)
    )
    assert problems == [f"$: more than {MAX_DOCUMENT_VALUES} values (MAX_DOCUMENT_VALUES)"]


async def test_nesting_at_the_limit_is_not_refused_for_depth() -> None:
    # $ -> description -> MAX_DOCUMENT_DEPTH - 1 lists: the deepest list sits at the limit.
    problems = await problem_lines(ProcedureStore(), _nested(MAX_DOCUMENT_DEPTH - 1))
    assert not any("nested more than" in p for p in problems)
    assert any(p.startswith("$.description:") for p in problems)  # a schema problem instead
