"""Reading and checking procedure documents.

``load_document`` accepts a dict, a JSON string, or a path to a ``.json``/``.yaml`` file and
returns it as a ``LoadedDocument`` (the ``Procedure``, the data as written, the warnings of the
static checks), or raises ``InvalidProcedure`` listing *every* problem found, each with the
JSON path of the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from procstore import arguments, datapaths, documents, paths, waits_and_choices
from procstore.actions import ActionNotAllowed, ActionRegistry
from procstore.chart import LEAF_KINDS, Chart, ChartState, Transition, build_chart, item_chart
from procstore.checks import check_chart
from procstore.compiler import RESERVED_EVENTS
from procstore.datapaths import check_path, check_template, is_path
from procstore.definition import ACTION_TYPES, RETRY_FORMS, FunctionAction, Procedure
from procstore.documents import json_path
from procstore.errors import InvalidProcedure, Problem
from procstore.guards import GuardRegistry, GuardSyntaxError, check_expression

Document = Mapping[str, Any] | str | Path

__all__ = [
    "MAX_STATES",
    "MAX_STATE_DEPTH",
    "Document",
    "LoadedDocument",
    "check_references",
    "json_path",
    "load_document",
    "read_document",
]

#: The most states a definition may have, every nested state and region counted. A real
#: procedure has tens to hundreds; 10,000 register in about a second.
MAX_STATES = 10_000
#: The deepest a state may be nested: the components of its path, regions counted
#: (`fulfilment.packing` is 2 deep).
MAX_STATE_DEPTH = 32

# Keys whose value is an action: pydantic puts the action's ``type`` tag right after them in
# error locations, which is noise to a reader of the document.
_ACTION_KEYS = frozenset({"action", "compensate"})
# Keys whose value is a retry policy or a list of them: the form's tag is noise too.
_RETRY_KEYS = frozenset({"retry", "compensate_retry"})


def read_document(doc: Document) -> tuple[Any, str | None]:
    """Return the raw data of ``doc`` and a name for its source (the file path, if any).

    A string that starts with ``{`` or ``[`` is JSON text; any other string, or a ``Path``, is
    a file (``.yaml``/``.yml``: YAML, otherwise JSON), read by ``procstore.documents`` (a
    regular file of at most ``MAX_DOCUMENT_BYTES``). Whatever the form, the data is checked
    by ``procstore.documents.check_data`` (nesting at most ``MAX_DOCUMENT_DEPTH`` levels).

    Raises:
        InvalidProcedure: the document cannot be read or parsed, or breaks those rules.
    """
    source = None
    try:
        if isinstance(doc, Mapping):
            documents.check_data(doc)
            return doc, None
        if isinstance(doc, str) and doc.lstrip()[:1] in ("{", "["):
            return documents.parse_json(doc), None
        if isinstance(doc, str | Path):
            path = Path(doc)
            source = str(doc)[:200]
            text = documents.read_text(path)
            if path.suffix.lower() in (".yaml", ".yml"):
                return documents.parse_yaml(text), source
            return documents.parse_json(text), source
    except documents.DocumentError as exc:
        raise InvalidProcedure(exc.problems, source) from None
    raise InvalidProcedure([Problem("$", f"expected a procedure object, got {type(doc).__name__}")])


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """A document that passed validation.

    Attributes:
        procedure: The procedure.
        data: The document's data as written (what a persistent store keeps, so it shows the
            document back unchanged).
        source: The file it was read from, or ``None``.
        warnings: What the static checks found probably unmeant (see ``procstore.checks``).
        chart: The procedure's chart (what the compiler builds its machine from).
    """

    procedure: Procedure
    data: Mapping[str, Any]
    source: str | None
    warnings: list[Problem]
    chart: Chart


def load_document(
    doc: Document, actions: ActionRegistry | None, guards: GuardRegistry | None
) -> LoadedDocument:
    """Parse and fully validate ``doc``: the schema, the cross-reference rules, then the static
    checks of its chart (``procstore.checks``). With ``actions`` or ``guards`` ``None``, the
    host code they would check (function actions, guard predicates) is not checked: a diagram
    draws a procedure before it runs anywhere.

    Raises:
        InvalidProcedure: listing every problem found, each with its JSON path.
    """
    data, source = read_document(doc)
    if not isinstance(data, Mapping):
        raise InvalidProcedure(
            [Problem("$", f"expected an object, got {_json_kind(data)}")], source
        )
    # The chart of the raw data: what the schema cannot check is checked on it even when the
    # shape is wrong somewhere, so one round of fixes is enough.
    chart = build_chart(data)
    # Checked first, so that an oversized definition costs a walk, not a full validation.
    too_large = _size_problems(chart)
    if too_large:
        raise InvalidProcedure(too_large, source)
    try:
        procedure: Procedure | None = Procedure.model_validate(data)
        problems = []
    except ValidationError as exc:
        procedure, problems = None, _schema_problems(exc)
    seen = {p.path for p in problems}
    problems += [p for p in _references(chart, data, actions, guards) if p.path not in seen]
    if problems or procedure is None:
        raise InvalidProcedure(problems, source)
    # The chart's checks need every target resolved: they run once everything else passed.
    chart = build_chart(procedure)
    findings = check_chart(chart)
    warnings = list(findings.warnings)
    errors = list(findings.errors)
    for items in _item_charts(chart):  # a map state's item states are a procedure of their own
        found = check_chart(items)
        errors += found.errors
        warnings += found.warnings
    if errors:
        raise InvalidProcedure(errors, source)
    return LoadedDocument(procedure, data, source, warnings, chart)


def _item_charts(chart: Chart) -> list[Chart]:
    """The charts of the item states of every map state in ``chart``, nested ones included."""
    found = []
    for state in chart:
        items = item_chart(state)
        if items is not None:
            found += [items, *_item_charts(items)]
    return found


def _size_problems(chart: Chart) -> list[Problem]:
    """More than `MAX_STATES` states, or states nested deeper than `MAX_STATE_DEPTH` (each
    reported once, at the first level too deep)."""
    charts = [chart, *_item_charts(chart)]
    if sum(len(c.states) for c in charts) > MAX_STATES:
        return [
            Problem(
                json_path(("definition", "states")),
                f"{sum(len(c.states) for c in charts)} states: more than {MAX_STATES} (MAX_STATES)",
            )
        ]
    return [
        Problem(
            json_path(state.loc),
            f"state nested more than {MAX_STATE_DEPTH} levels deep (MAX_STATE_DEPTH)",
        )
        for each in charts
        for state in each
        if paths.depth(state.path) == MAX_STATE_DEPTH + 1
    ]


def _schema_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _strip_json_tags(_strip_union_tags(error["loc"]))
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
            message = _schema_message(error, loc)
        problems.append(Problem(json_path(loc), message))
    return problems


# What a pydantic type error expects, in the document's (JSON's) terms.
_EXPECTED = {
    "string_type": "a string",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
    "tuple_type": "a list",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "invalid-json-value": "JSON data",
}
# What the entries of a mapping are (one, several), by the key that holds it.
_ENTRIES = {"parallel": ("region", "regions"), "states": ("state", "states")}


def _schema_message(error: Any, loc: tuple[str | int, ...]) -> str:
    """Pydantic's message for ``error``, said in terms of the JSON document: ``expected a
    list, got a string`` rather than ``Input should be a valid tuple``."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_json_kind(error.get('input'))}"
    if kind == "too_short" and "min_length" in ctx:
        one, several = _ENTRIES.get(str(loc[-1]) if loc else "", ("entry", "entries"))
        least, has = ctx["min_length"], ctx.get("actual_length", 0)
        return f"needs at least {least} {one if least == 1 else several}, has {has}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    message: str = error["msg"].removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    return message


def _json_kind(value: Any) -> str:
    """What ``value`` is in JSON: an object, a list, a string, a number, true or false, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _strip_union_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for i, item in enumerate(loc):
        if i > 0 and loc[i - 1] in _ACTION_KEYS and item in ACTION_TYPES:
            continue
        if i > 0 and loc[i - 1] in _RETRY_KEYS and item in RETRY_FORMS:
            continue
        out.append(item)
    return tuple(out)


# An action's fields that hold any JSON data (pydantic's JsonValue): its errors' locations
# carry the kind of each value (`dict`, `list`) between the keys, which the document has not.
_TEMPLATE_KEYS = frozenset({"args", "result_selector"})


def _template_at(loc: tuple[str | int, ...]) -> int | None:
    """The index in ``loc`` (union tags stripped) of an action's template field, if any."""
    for i in range(1, len(loc)):
        if loc[i] in _TEMPLATE_KEYS and loc[i - 1] in _ACTION_KEYS:
            return i
    return None


def _strip_json_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    at = _template_at(loc)
    if at is None:
        return loc
    inside = loc[at + 1 :]  # key, tag, key, tag, ...: the tags are at odd places
    return (*loc[: at + 1], *(item for i, item in enumerate(inside) if i % 2 == 0))


_LEAF_ONLY = (
    "action",
    "retry",
    "compensate",
    "compensate_retry",
    "outcome",
    "error",
    "cause",
    "callback",
)


def check_references(
    data: Mapping[str, Any], actions: ActionRegistry | None, guards: GuardRegistry | None
) -> list[Problem]:
    """The rules a schema cannot express: where each field may go, initial states, known and
    unambiguous targets, no transition between parallel regions, reachability, allowed code
    (unless ``actions`` is ``None``), guards (the predicates named: unless ``guards`` is
    ``None``).

    Works on the raw document and skips whatever is malformed (the schema reports that), so
    it can run beside schema validation and report everything in one go.
    """
    return _references(build_chart(data), data, actions, guards)


def _references(
    chart: Chart,
    data: Mapping[str, Any],
    actions: ActionRegistry | None,
    guards: GuardRegistry | None,
    base: tuple[str | int, ...] = ("definition",),
) -> list[Problem]:
    """`check_references` on the chart of ``data`` (whose definition is at ``base`` in the
    document: a map state's item states are under its ``map``)."""
    definition = data.get("definition")
    if not isinstance(definition, Mapping) or not isinstance(definition.get("states"), Mapping):
        return []
    problems: list[Problem] = []
    initial = definition.get("initial_state")
    if isinstance(initial, str) and initial not in definition["states"]:
        problems.append(
            Problem(
                json_path((*base, "initial_state")),
                f"{initial!r} is not among the states ({_names(definition['states'])})",
            )
        )
    parallels = {state.path for state in chart if state.kind == "parallel"}
    crossing: set[tuple[str, int]] = set()
    for state in chart:
        raw: Mapping[str, Any] = state.definition  # type: ignore[assignment]
        problems += _structure_problems(state, raw)
        if state.kind == "map":
            problems += _map_problems(state, raw, actions, guards)
        if state.kind in LEAF_KINDS:
            problems += _failure_terminal_problems(state, raw)
        if state.kind == "region":
            continue
        for transition in state.transitions:
            problems += _transition_problems(transition, parallels, guards, crossing)
        problems += _action_problems(state, raw, actions)
    if isinstance(initial, str) and initial in chart.states:
        problems += _unreachable_problems(chart, initial, crossing)
    return problems


def _action_problems(
    state: ChartState, raw: Mapping[str, Any], actions: ActionRegistry | None
) -> list[Problem]:
    """The problems of a state's action and compensation: their data paths and templates,
    and (with ``actions``) the host code they call."""
    problems: list[Problem] = []
    for key in ("action", "compensate"):
        problems += _data_problems(raw.get(key), (*state.loc, key))
        if actions is not None:
            problems += _function_problems(raw.get(key), (*state.loc, key), actions)
    return problems


def _unreachable_problems(
    chart: Chart, initial: str, crossing: set[tuple[str, int]]
) -> list[Problem]:
    """A problem for each state no run can reach from ``initial`` (a transition crossing
    regions, in ``crossing``, reaches nothing)."""
    reachable = chart.reachable(lambda t: (t.source, t.index) not in crossing)
    return [
        Problem(json_path(state.loc), f"state is unreachable from initial state {initial!r}")
        for state in chart
        if state.path not in reachable
    ]


def _transition_problems(
    transition: Transition,
    parallels: set[str],
    guards: GuardRegistry | None,
    crossing: set[tuple[str, int]],
) -> list[Problem]:
    """A transition's guards, event name and target (one crossing regions goes into
    ``crossing``: it is no way to reach a state)."""
    raw: Mapping[str, Any] = transition.definition  # type: ignore[assignment]
    loc = transition.loc
    problems = _guard_problems(raw, loc, guards) + _assign_problems(raw, loc)
    if "errors" in raw and transition.event != "error":
        problems.append(
            Problem(
                json_path((*loc, "errors")),
                f"only transitions on event 'error' catch error types; this one is on "
                f"{transition.event!r}",
            )
        )
    elif raw.get("errors") == []:
        problems.append(
            Problem(
                json_path((*loc, "errors")),
                'an empty errors list catches nothing: name the error types, or give ["*"] '
                "(or no errors) for every error",
            )
        )
    if transition.event in RESERVED_EVENTS:
        problems.append(
            Problem(
                json_path((*loc, "event")),
                f"event name {transition.event!r} is reserved: the state machine keeps each "
                "execution's state under that name; rename the event",
            )
        )
    if transition.unresolved is not None:
        problems.append(Problem(json_path(transition.target_loc), transition.unresolved))
    elif transition.target is not None:
        crossed = paths.crossed_region(transition.source, transition.target, parallels)
        if crossed is not None:
            crossing.add((transition.source, transition.index))
            problems.append(
                Problem(
                    json_path(transition.target_loc),
                    f"{transition.target!r} is in another region of parallel state {crossed!r}: "
                    "transitions may not cross regions",
                )
            )
    return problems


def _structure_problems(state: ChartState, data: Mapping[str, Any]) -> list[Problem]:
    """Where fields may go: actions and their kin on leaves, initial_state on compounds."""
    loc, problems = state.loc, []
    if state.kind in ("compound", "parallel"):
        for key in _LEAF_ONLY:
            if key in data:
                problems.append(
                    Problem(
                        json_path((*loc, key)),
                        f"only leaf states have {key}; {state.kind} state {state.path!r} "
                        "may have transitions and timeout_ms",
                    )
                )
    if state.kind == "parallel" and "states" in data:
        problems.append(
            Problem(json_path((*loc, "states")), "a state has either states or parallel, not both")
        )
    if state.kind == "parallel" and "initial_state" in data:
        problems.append(
            Problem(
                json_path((*loc, "initial_state")),
                "a parallel state enters all its regions; it has no initial_state",
            )
        )
    problems += _callback_problems(state, data)
    if state.kind in LEAF_KINDS and "initial_state" in data:
        problems.append(
            Problem(
                json_path((*loc, "initial_state")),
                "only a compound state (one with states) has an initial_state",
            )
        )
    problems += waits_and_choices.structure_problems(state, data)
    if state.kind in ("compound", "region"):
        children, initial = data.get("states"), data.get("initial_state")
        if initial is None:
            problems.append(
                Problem(
                    json_path((*loc, "initial_state")),
                    f"{state.kind} {state.path!r} needs an initial_state naming one of its states",
                )
            )
        elif isinstance(initial, str) and isinstance(children, Mapping) and initial not in children:
            problems.append(
                Problem(
                    json_path((*loc, "initial_state")),
                    f"{initial!r} is not a child of {state.path!r} ({_names(children)})",
                )
            )
    return problems


#: The most map states nested in one another: each level multiplies the child executions one
#: execution starts (up to `MAX_MAP_ITEMS` per level), so deeper nesting is refused.
MAX_MAP_NESTING = 2
#: The fields a map state may not have beside ``map``: its work is its items'.
_NOT_WITH_MAP = (
    "action",
    "retry",
    "compensate",
    "outcome",
    "states",
    "parallel",
    "initial_state",
    "callback",
)


def _map_problems(
    state: ChartState,
    data: Mapping[str, Any],
    actions: ActionRegistry | None,
    guards: GuardRegistry | None,
) -> list[Problem]:
    """A map state: nothing beside ``map`` that does work, its paths and template, and its
    item states checked as a definition of their own (at their place in the document)."""
    loc, spec = state.loc, data["map"]
    problems = [
        Problem(
            json_path((*loc, key)),
            f"a map state runs its item states (map); it cannot also have {key}",
        )
        for key in _NOT_WITH_MAP
        if key in data
    ]
    nesting = sum(1 for part in loc if part == "map") + 1
    if nesting > MAX_MAP_NESTING:
        problems.append(
            Problem(
                json_path((*loc, "map")),
                f"a map state inside {nesting - 1} others: at most {MAX_MAP_NESTING} levels "
                "of map states (each level multiplies the items)",
            )
        )
    where = (*loc, "map")
    messages: list[str] = []
    for key, settable in (("items_path", False), ("result", True), ("output_path", False)):
        if isinstance(spec.get(key), str):
            messages += datapaths.check_path(spec[key], json_path((*where, key)), settable=settable)
    if isinstance(spec.get("items_path"), str) and spec["items_path"].startswith("$$"):
        messages.append(
            f"{json_path((*where, 'items_path'))}: the items are a list in the context ($...), "
            "not in the execution's facts ($$...)"
        )
    if "item_selector" in spec:
        messages += datapaths.check_template(
            spec["item_selector"], json_path((*where, "item_selector"))
        )
    for message in messages:
        at, _, text = message.partition(": ")
        problems.append(Problem(at, text))
    items = item_chart(state)
    if items is not None and isinstance(spec.get("states"), Mapping):
        problems += _references(items, {"definition": spec}, actions, guards, where)
    return problems


def _failure_terminal_problems(state: ChartState, data: Mapping[str, Any]) -> list[Problem]:
    """``error`` and ``cause`` belong to a failure terminal; ``compensate_retry`` to a state
    with a ``compensate``."""
    problems = []
    failure_terminal = data.get("outcome") == "failure" and not data.get("transitions")
    for key in ("error", "cause"):
        if key in data and not failure_terminal:
            problems.append(
                Problem(
                    json_path((*state.loc, key)),
                    f"only a failure terminal (outcome: failure, no transitions) has {key}",
                )
            )
    if "compensate_retry" in data and "compensate" not in data:
        problems.append(
            Problem(
                json_path((*state.loc, "compensate_retry")),
                "compensate_retry retries the state's compensate, which it does not have",
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
        spec = FunctionAction(type="function", module=module, function=function)
        registry.check(spec)
    except ActionNotAllowed as exc:
        return [Problem(json_path((*loc, exc.field)), exc.message)]
    except ValidationError:
        return []  # reported by the schema
    args = action.get("args")
    # Without args a callable is called as it always was: only args are checked against it.
    signature = registry.signature(spec) if isinstance(args, Mapping) else None
    if signature is None:
        return []
    what = function if module is None else f"{module}.{function}"
    names = arguments.argument_names(args)
    return [
        Problem(json_path((*loc, "args") if key is None else (*loc, "args", key)), message)
        for key, message in arguments.argument_problems(signature, names, what)
    ]


def _data_problems(action: Any, loc: tuple[str | int, ...]) -> list[Problem]:
    """An action's paths and templates: ``result`` when it is a path, ``args`` and
    ``result_selector`` (see `procstore.datapaths`)."""
    if not isinstance(action, Mapping):
        return []
    messages: list[str] = []
    result = action.get("result")
    if is_path(result):
        messages += check_path(result, json_path((*loc, "result")), settable=True)
    for key in ("args", "result_selector"):
        if isinstance(action.get(key), Mapping):
            messages += check_template(action[key], json_path((*loc, key)))
    return [_as_problem(message) for message in messages]


# The JSON path a `procstore.datapaths` check message starts with (a quoted key may hold ": ").
_MESSAGE = re.compile(r'(\$(?:\.[A-Za-z0-9_\-]+|\[[0-9]+\]|\["(?:[^"\\]|\\.)*"\])*): (.*)', re.S)


def _as_problem(message: str) -> Problem:
    match = _MESSAGE.fullmatch(message)
    return Problem(match.group(1), match.group(2)) if match else Problem("$", message)


def _guard_problems(
    transition: Mapping[str, Any], loc: tuple[str | int, ...], guards: GuardRegistry | None
) -> list[Problem]:
    problems = []
    guard = transition.get("guard")
    if isinstance(guard, str) and guard:
        try:
            check_expression(guard)
        except GuardSyntaxError as exc:
            problems.append(Problem(json_path((*loc, "guard")), f"invalid guard: {exc}"))
    if guards is None:  # the predicates named are not checked
        return problems
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


def _callback_problems(state: ChartState, data: Mapping[str, Any]) -> list[Problem]:
    """A leaf that waits for a callback must hand its token out (an action) and be able to
    leave on it (transitions)."""
    if state.kind != "leaf" or data.get("callback") is not True:
        return []
    where = json_path((*state.loc, "callback"))
    if data.get("action") is None:
        return [
            Problem(
                where,
                f"state {state.path!r} waits for a callback but has no action to hand its token "
                "to the outside system (info.token)",
            )
        ]
    if state.terminal:
        return [
            Problem(
                where,
                f"state {state.path!r} waits for a callback but has no transitions: give it "
                "success (and error) transitions",
            )
        ]
    return []


def _assign_problems(transition: Mapping[str, Any], loc: tuple[str | int, ...]) -> list[Problem]:
    """A transition's ``assign``: a good template (its keys are context keys to set); its
    ``output``: a path into the context."""
    problems = []
    output = transition.get("output")
    if isinstance(output, str):
        where = json_path((*loc, "output"))
        if not output.startswith("$") or output.startswith("$$"):
            problems.append(Problem(where, f"{output!r} is not a path into the context ($...)"))
        else:
            problems += [_problem(message) for message in datapaths.check_path(output, where)]
    assign = transition.get("assign")
    if not isinstance(assign, Mapping):
        return problems  # absent, or not an object: the schema says so
    where = json_path((*loc, "assign"))
    if not assign:
        return [*problems, Problem(where, "assign needs at least one key to set in the context")]
    return problems + [_problem(message) for message in check_template(assign, where)]


def _problem(message: str) -> Problem:
    """A problem from a message that starts with its JSON path (``$.a.b: what``)."""
    path, _, text = message.partition(": ")
    return Problem(path, text)


def _names(states: Mapping[str, Any]) -> str:
    names = sorted(states)
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f", … {len(names) - 10} more" if len(names) > 10 else "")
