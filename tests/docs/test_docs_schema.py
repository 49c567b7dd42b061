"""docs/definition.md is checked against the definition's JSON Schema.

Every model of ``Procedure.model_json_schema()`` (the document and each of its ``$defs``) has a
section of the page, and every property of the model must be the first cell of a table row in
that section, written as `` `field` ``. The row must also name the property's default (when it
has one other than null) and each allowed value of an enum, as JSON in backticks (`` `3` ``,
`` `"none"` ``, `` `[]` ``). Action models are told apart by their ``type`` constant: each type
has its own row in the actions section, the fields every action has are rows there too, and a
type's own fields are named in its row.

A new field, default, allowed value, action type or model in the schema therefore fails this
test until the page documents it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from procstore.definition import Procedure

PAGE = Path(__file__).resolve().parents[2] / "docs" / "definition.md"

#: The section (heading text) of docs/definition.md that documents each schema model.
SECTIONS = {
    "Procedure": "Document",
    "Definition": "`definition`",
    "StateDef": "States",
    "RegionDef": "Regions",
    "TransitionDef": "Transitions",
    "RetryPolicy": "Retry policy",
    "MapDef": "Map states",
    "JsonValue": "Actions",  # any JSON value: what `args` and `result_selector` hold
    "WaitDef": "Wait states",
    "ChoiceRule": "Choice states",
}
#: Where every action model (one with a ``type`` constant) is documented.
ACTIONS_SECTION = "Actions"

SCHEMA = Procedure.model_json_schema()
MODELS: dict[str, dict[str, Any]] = {SCHEMA["title"]: SCHEMA, **SCHEMA["$defs"]}

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def _sections(text: str) -> dict[str, list[str]]:
    """Heading text -> the lines under it, up to the next heading of the same or a higher level
    (so a section includes its subsections). Fenced code blocks are skipped."""
    headings: list[tuple[int, int, str]] = []  # (line index, level, text)
    lines = text.splitlines()
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            headings.append((i, len(match.group(1)), match.group(2)))
    sections: dict[str, list[str]] = {}
    for n, (start, level, title) in enumerate(headings):
        end = next((i for i, lvl, _ in headings[n + 1 :] if lvl <= level), len(lines))
        sections[title] = lines[start + 1 : end]
    return sections


def _rows(lines: list[str]) -> list[list[str]]:
    """The table body rows among ``lines``, as lists of stripped cells (headers and separator
    rows dropped)."""
    rows: list[list[str]] = []
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("|"):
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if all(set(cell) <= set("-: ") for cell in cells):
            rows.pop()  # the row above a separator is the header
            continue
        rows.append(cells)
    return rows


def _row_for(rows: list[list[str]], name: str) -> list[str] | None:
    """The row whose first cell names ``name`` in backticks (alone or among others)."""
    for row in rows:
        if f"`{name}`" in row[0]:
            return row
    return None


def _code(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _enum_values(prop: dict[str, Any]) -> list[Any]:
    values = list(prop.get("enum", []))
    for option in prop.get("anyOf", []):
        values += option.get("enum", [])
    return values


def _action_models() -> dict[str, dict[str, Any]]:
    return {
        name: model
        for name, model in MODELS.items()
        if "const" in model.get("properties", {}).get("type", {})
    }


SECTIONS_OF_PAGE = _sections(PAGE.read_text(encoding="utf-8"))


def _section_rows(title: str) -> list[list[str]]:
    assert title in SECTIONS_OF_PAGE, f"docs/definition.md has no section titled {title!r}"
    return _rows(SECTIONS_OF_PAGE[title])


def _problems_in_row(model: str, field: str, prop: dict[str, Any], row: list[str]) -> list[str]:
    text = " | ".join(row)
    problems = []
    default = prop.get("default")
    if default is not None and _code(default) not in text:
        problems.append(f"{model}.{field}: its row does not give the default {_code(default)}")
    for value in _enum_values(prop):
        if _code(value) not in text:
            problems.append(f"{model}.{field}: its row does not name the value {_code(value)}")
    return problems


def test_every_schema_model_has_a_section() -> None:
    actions = _action_models()
    unmapped = sorted(set(MODELS) - set(SECTIONS) - set(actions))
    assert not unmapped, (
        f"schema models without a section in docs/definition.md: {unmapped}; document them "
        "and add them to SECTIONS in this test"
    )
    assert actions, "the schema has no action models (models with a `type` constant)"


@pytest.mark.parametrize("model", sorted(set(MODELS) & set(SECTIONS)))
def test_every_field_has_a_row_in_its_models_section(model: str) -> None:
    rows = _section_rows(SECTIONS[model])
    problems = []
    for field, prop in MODELS[model].get("properties", {}).items():
        row = _row_for(rows, field)
        if row is None:
            problems.append(
                f"{model}.{field}: no table row starting with `{field}` under "
                f"'{SECTIONS[model]}' in docs/definition.md"
            )
            continue
        problems += _problems_in_row(model, field, prop, row)
    assert not problems, "\n".join(problems)


def test_every_action_type_and_field_is_documented() -> None:
    rows = _section_rows(ACTIONS_SECTION)
    actions = _action_models()
    common = set.intersection(*(set(m["properties"]) for m in actions.values()))
    problems = []
    for field in sorted(common):
        row = _row_for(rows, field)
        if row is None:
            problems.append(f"action field {field}: no row starting with `{field}` under Actions")
            continue
        prop = actions[min(actions)]["properties"][field]
        problems += _problems_in_row("action", field, prop, row)
    for model, schema in sorted(actions.items()):
        action_type = schema["properties"]["type"]["const"]
        row = _row_for(rows, action_type)
        if row is None:
            problems.append(f"{model}: no row starting with `{action_type}` under Actions")
            continue
        if f"`{action_type}`" not in " ".join(_row_for(rows, "type") or []):
            problems.append(f"{model}: the `type` row does not list `{action_type}`")
        for field in sorted(set(schema["properties"]) - common):
            if f"`{field}`" not in " | ".join(row[1:]):
                problems.append(f"{model}.{field}: not named in the `{action_type}` row")
            problems += _problems_in_row(model, field, schema["properties"][field], row)
    assert not problems, "\n".join(problems)


def test_the_checker_notices_a_missing_field() -> None:
    """The test above would catch a field the page does not mention."""
    rows = _section_rows(SECTIONS["StateDef"])
    assert _row_for(rows, "timeout_ms") is not None
    assert _row_for(rows, "no_such_field") is None
    assert _problems_in_row("M", "f", {"default": 7, "enum": ["a"]}, ["`f`", "x"]) == [
        "M.f: its row does not give the default `7`",
        'M.f: its row does not name the value `"a"`',
    ]
