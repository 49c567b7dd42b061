"""ASL paths as procstore paths (``procstore.datapaths``) and guard expressions.

ASL's reference paths (``$.order.items[0]``, ``$['a b']``) are procstore's syntax already;
what differs is the context object (``$$``): its ASL names are mapped to procstore's facts in
`FACTS`, and a path that reads the input after an ``InputPath`` is prefixed with it, since a
procstore state reads the whole context.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Mapping
from typing import Any, Final

from procstore.datapaths import CONTEXT, FACTS, DataPath, PathError, parse_path, path_text

__all__ = ["FACTS_BY_ASL_NAME", "Untranslatable", "guard_operand", "relative", "template"]

FACTS_BY_ASL_NAME: Final[Mapping[tuple[str, ...], tuple[str, ...]]] = {
    ("Execution", "Id"): ("execution", "id"),
    ("StateMachine", "Name"): ("procedure", "name"),
    ("State", "Name"): ("state",),
    ("Task", "Token"): ("token",),
    ("Map", "Item", "Value"): ("map", "item"),
    ("Map", "Item", "Index"): ("map", "index"),
}
"""The fields of ASL's context object (``$$.Task.Token``) that procstore has, as the segments
of its facts (``$$.token``)."""

# Names a guard expression gives a meaning of its own, hiding context keys of the same name.
_GUARD_NAMES: Final = frozenset({"result", "error", "True", "False", "None"})


class Untranslatable(ValueError):
    """Something in the ASL document has no procstore counterpart; the message says what."""


def relative(text: object, input_path: DataPath | None) -> DataPath:
    """The procstore path for the ASL path ``text``, read in a state whose ``InputPath`` is
    ``input_path`` (``None``: the whole input).

    Raises:
        Untranslatable: It is not a path procstore reads (a JSONPath filter or wildcard, an
            intrinsic function, a context object field procstore does not have).
    """
    if isinstance(text, str) and text.startswith("States."):
        raise Untranslatable(f"the intrinsic function {text.split('(')[0]} is not translated")
    try:
        path = parse_path(text)  # type: ignore[arg-type]
    except PathError as exc:
        raise Untranslatable(f"{exc} (procstore reads .key, ['key'] and [index] paths)") from None
    if path.root == FACTS:
        names = tuple(str(s) for s in path.segments)
        for asl, ours in FACTS_BY_ASL_NAME.items():
            if names[: len(asl)] == asl:
                segments = (*ours, *path.segments[len(asl) :])
                return DataPath(FACTS, segments, path_text(FACTS, segments))
        raise Untranslatable(f"{text} has no procstore counterpart")
    if input_path is None or not input_path.segments:
        return path
    segments = (*input_path.segments, *path.segments)
    return DataPath(CONTEXT, segments, path_text(CONTEXT, segments))


def template(
    value: Any, input_path: DataPath | None
) -> tuple[Any, list[tuple[tuple[str | int, ...], str]]]:
    """An ASL ``Parameters`` (or ``ResultSelector``) object as a procstore template: the same
    object with every ``.$`` path made `relative` to ``input_path``; and what could not be
    translated, each with its location under ``value`` (keys and indexes)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []

    def walk(item: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(item, Mapping):
            out: dict[str, Any] = {}
            for key, inner in item.items():
                if isinstance(key, str) and key.endswith(".$"):
                    try:
                        out[key] = relative(inner, input_path).text
                    except Untranslatable as exc:
                        problems.append(((*loc, key), str(exc)))
                else:
                    out[key] = walk(inner, (*loc, key))
            return out
        if isinstance(item, list):
            return [walk(inner, (*loc, n)) for n, inner in enumerate(item)]
        return item

    return walk(value, ()), problems


def guard_operand(path: DataPath) -> str:
    """The guard expression that reads ``path`` (a context path): its first key as a name,
    the rest as subscripts (``$.order.items[0]`` → ``order["items"][0]``).

    Raises:
        Untranslatable: The path is the whole context, reads the facts, or starts with a key
            that is not usable as a name in a guard.
    """
    if path.root != CONTEXT or not path.segments:
        raise Untranslatable(f"a choice rule cannot read {path.text} (only $.key... paths)")
    first, *rest = path.segments
    if not isinstance(first, str) or not first.isidentifier() or keyword.iskeyword(first):
        raise Untranslatable(f"{path.text}: its first key must be a name to be read by a guard")
    if first in _GUARD_NAMES or first.startswith("_"):
        raise Untranslatable(f"{path.text}: a guard cannot read a context key named {first!r}")
    return first + "".join(f"[{json.dumps(s)}]" for s in rest)
