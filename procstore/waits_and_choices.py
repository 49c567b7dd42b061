"""The registration rules of wait and choice states that the schema cannot express.

A state has at most one of ``action``, ``wait``, ``choice``, ``states`` and ``parallel``. A wait
state gives exactly one of its fields, with a path into the context where it reads one; it has
no action, so no ``retry`` or ``compensate``. A choice state routes at once: it needs a
``default`` and has no action, transitions, outcome or timeout of its own. Its targets resolve
like transition targets (`procstore.chart`), its guards are checked like transitions' guards
(`procstore.validation`). Every problem carries the JSON path of what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from procstore.chart import ChartState
from procstore.datapaths import CONTEXT, PathError, parse_path
from procstore.definition import WAIT_FIELDS
from procstore.documents import json_path
from procstore.errors import Problem

__all__ = ["structure_problems"]

#: What a state may be, of which it has one at most.
_WHAT = ("action", "wait", "choice", "states", "parallel")
#: What a wait state (no action) may not have.
_NOT_ON_WAIT = ("retry", "compensate", "compensate_retry", "callback")
#: What a choice state (it routes at once, on its rules) may not have.
_NOT_ON_CHOICE = (
    "retry",
    "compensate",
    "compensate_retry",
    "callback",
    "transitions",
    "outcome",
    "timeout_ms",
)


def structure_problems(state: ChartState, data: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with the wait and choice fields of ``state`` (its raw ``data``)."""
    if state.kind == "region":
        return []
    loc, problems = state.loc, []
    present = [key for key in _WHAT if key in data]
    for key in ("wait", "choice"):
        if key in data and len(present) > 1:
            others = ", ".join(k for k in present if k != key)
            problems.append(
                Problem(
                    json_path((*loc, key)),
                    f"a state has at most one of {', '.join(_WHAT)}; this one also has {others}",
                )
            )
    if "default" in data and "choice" not in data:
        problems.append(
            Problem(
                json_path((*loc, "default")), "only a choice state (one with choice) has a default"
            )
        )
    if state.kind == "wait":
        problems += _wait_problems(state, data)
    if state.kind == "choice":
        for key in _NOT_ON_CHOICE:
            if key in data:
                problems.append(
                    Problem(
                        json_path((*loc, key)),
                        f"a choice state routes at once through its rules and default: it has "
                        f"no {key}",
                    )
                )
        if "default" not in data:
            problems.append(
                Problem(
                    json_path((*loc, "default")),
                    "a choice state needs a default: the state to go to when no rule's guard "
                    "is true",
                )
            )
    return problems


def _wait_problems(state: ChartState, data: Mapping[str, Any]) -> list[Problem]:
    loc, problems = state.loc, []
    for key in _NOT_ON_WAIT:
        if key in data:
            problems.append(
                Problem(json_path((*loc, key)), f"a wait state runs no action: it has no {key}")
            )
    wait = data.get("wait")
    if not isinstance(wait, Mapping):
        return problems  # the schema says so
    given = [key for key in WAIT_FIELDS if wait.get(key) is not None]
    if not given:
        problems.append(
            Problem(
                json_path((*loc, "wait")),
                f"a wait needs one of {', '.join(WAIT_FIELDS)}",
            )
        )
    for key in given[1:]:
        problems.append(
            Problem(
                json_path((*loc, "wait", key)),
                f"a wait has one of {', '.join(WAIT_FIELDS)}: this one also has {given[0]}",
            )
        )
    for key in ("seconds_path", "timestamp_path"):
        text = wait.get(key)
        if not isinstance(text, str):
            continue  # absent, or the schema says so
        try:
            path = parse_path(text)
        except PathError as exc:
            problems.append(Problem(json_path((*loc, "wait", key)), str(exc)))
            continue
        if path.root != CONTEXT or not path.segments:
            problems.append(
                Problem(
                    json_path((*loc, "wait", key)),
                    f"{text!r}: a wait reads a value of the context: a path such as $.delay",
                )
            )
    return problems
