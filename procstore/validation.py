"""Reading and checking procedure documents.

:func:`load_procedure` accepts a dict, a JSON string, or a path to a ``.json``/``.yaml`` file and
returns a :class:`~procstore.definition.Procedure`, or raises
:class:`~procstore.errors.InvalidProcedure` listing *every* problem found, each with the JSON
path of the offending value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from procstore.actions import ActionNotAllowed, ActionRegistry
from procstore.definition import ACTION_TYPES, FunctionAction, Procedure
from procstore.errors import InvalidProcedure, Problem
from procstore.guards import GuardRegistry, GuardSyntaxError, check_expression

Document = Mapping[str, Any] | str | Path

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys whose value is an action: pydantic puts the action's ``type`` tag right after them in
# error locations, which is noise to a reader of the document.
_ACTION_KEYS = frozenset({"action", "compensate"})


def json_path(loc: Sequence[str | int]) -> str:
    """Render an error location as a JSON path.

    ``("definition", "states", "a b", "transitions", 0)`` becomes
    ``$.definition.states["a b"].transitions[0]``.
    """
    parts = ["$"]
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _IDENTIFIER.match(item):
            parts.append(f".{item}")
        else:
            parts.append(f"[{json.dumps(item)}]")
    return "".join(parts)


def read_document(doc: Document) -> tuple[Any, str | None]:
    """Return the raw data of ``doc`` and a name for its source (the file path, if any)."""
    if isinstance(doc, Mapping):
        return doc, None
    if isinstance(doc, str) and doc.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(doc), None
        except json.JSONDecodeError as exc:
            raise InvalidProcedure(
                [Problem("$", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
            ) from None
    if isinstance(doc, str | Path):
        return _read_file(Path(doc)), str(doc)
    raise InvalidProcedure([Problem("$", f"expected a procedure object, got {type(doc).__name__}")])


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        message = f"not a JSON document, and cannot read it as a file: {exc}"
        raise InvalidProcedure([Problem("$", message)], source=str(path)[:200]) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = Problem("$", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        raise InvalidProcedure([problem], source=str(path)) from None
    except yaml.YAMLError as exc:
        raise InvalidProcedure([Problem("$", f"not valid YAML: {exc}")], source=str(path)) from None


def load_procedure(doc: Document, actions: ActionRegistry, guards: GuardRegistry) -> Procedure:
    """Parse and fully validate ``doc``; raise :class:`InvalidProcedure` with every problem."""
    data, source = read_document(doc)
    if not isinstance(data, Mapping):
        found = type(data).__name__ if data is not None else "null"
        raise InvalidProcedure([Problem("$", f"expected an object, got {found}")], source)
    try:
        procedure: Procedure | None = Procedure.model_validate(data)
        problems = []
    except ValidationError as exc:
        procedure, problems = None, _schema_problems(exc)
    # The cross-reference rules run on the raw data even when the shape is wrong somewhere,
    # so one round of fixes is enough.
    seen = {p.path for p in problems}
    problems += [p for p in check_references(data, actions, guards) if p.path not in seen]
    if problems or procedure is None:
        raise InvalidProcedure(problems, source)
    return procedure


def _schema_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _strip_union_tags(error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "type")
            message = f"unknown action type; expected one of {', '.join(ACTION_TYPES)}"
            if error["type"] == "union_tag_not_found":
                message = f"missing action type; expected one of {', '.join(ACTION_TYPES)}"
        elif error["type"] == "missing":
            message = "required field is missing"
        elif loc and loc[-1] == "[key]":  # pydantic's marker for a bad dict key
            loc = loc[:-1]
            message = f"invalid state name: {error['msg']}"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(Problem(json_path(loc), message))
    return problems


def _strip_union_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for i, item in enumerate(loc):
        if i > 0 and loc[i - 1] in _ACTION_KEYS and item in ACTION_TYPES:
            continue
        out.append(item)
    return tuple(out)


def check_references(
    data: Mapping[str, Any], actions: ActionRegistry, guards: GuardRegistry
) -> list[Problem]:
    """The rules a schema cannot express: known targets, reachability, allowed code, guards.

    Works on the raw document and skips whatever is malformed (the schema reports that), so
    it can run beside schema validation and report everything in one go.
    """
    definition = data.get("definition")
    if not isinstance(definition, Mapping) or not isinstance(definition.get("states"), Mapping):
        return []
    states: Mapping[Any, Any] = definition["states"]
    initial = definition.get("initial_state")
    problems: list[Problem] = []
    base = ("definition", "states")
    if isinstance(initial, str) and initial not in states:
        problems.append(
            Problem(
                json_path(("definition", "initial_state")),
                f"{initial!r} is not among the states ({_names(states)})",
            )
        )
    edges: dict[str, list[str]] = {}
    for name, state in states.items():
        if not isinstance(name, str) or not isinstance(state, Mapping):
            continue
        edges[name] = []
        transitions = state.get("transitions", [])
        for i, transition in enumerate(transitions if isinstance(transitions, list) else []):
            target = transition.get("target") if isinstance(transition, Mapping) else None
            loc = (*base, name, "transitions", i)
            if isinstance(transition, Mapping):
                problems += _guard_problems(transition, loc, guards)
            if not isinstance(target, str):
                continue
            edges[name].append(target)
            if target not in states:
                problems.append(
                    Problem(
                        json_path((*loc, "target")),
                        f"{target!r} is not among the states ({_names(states)})",
                    )
                )
        for key in ("action", "compensate"):
            problems += _function_problems(state.get(key), (*base, name, key), actions)
    if isinstance(initial, str) and initial in edges:
        reachable = _reachable(initial, edges)
        for name in edges:
            if name not in reachable:
                problems.append(
                    Problem(
                        json_path((*base, name)),
                        f"state is unreachable from initial state {initial!r}",
                    )
                )
    return problems


def _function_problems(
    action: Any, loc: tuple[str | int, ...], registry: ActionRegistry
) -> list[Problem]:
    if not isinstance(action, Mapping) or action.get("type") != "function":
        return []
    module, function = action.get("module"), action.get("function")
    if not isinstance(function, str) or not function or not isinstance(module, str | None):
        return []
    try:
        registry.resolve(FunctionAction(type="function", module=module, function=function))
    except ActionNotAllowed as exc:
        return [Problem(json_path((*loc, exc.field)), exc.message)]
    except ValidationError:
        return []  # reported by the schema
    return []


def _guard_problems(
    transition: Mapping[str, Any], loc: tuple[str | int, ...], guards: GuardRegistry
) -> list[Problem]:
    problems = []
    guard = transition.get("guard")
    if isinstance(guard, str) and guard:
        try:
            check_expression(guard)
        except GuardSyntaxError as exc:
            problems.append(Problem(json_path((*loc, "guard")), f"invalid guard: {exc}"))
    for key in ("conditions", "unless"):
        names = transition.get(key)
        for j, name in enumerate(names if isinstance(names, list) else []):
            if isinstance(name, str) and name and name not in guards:
                problems.append(
                    Problem(
                        json_path((*loc, key, j)),
                        f"no guard named {name!r} is registered with the store",
                    )
                )
    return problems


def _reachable(initial: str, edges: Mapping[str, list[str]]) -> set[str]:
    seen = {initial}
    todo = [initial]
    while todo:
        for target in edges.get(todo.pop(), []):
            if target in edges and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _names(states: Mapping[str, Any]) -> str:
    names = sorted(states)
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f", … {len(names) - 10} more" if len(names) > 10 else "")
