"""Data paths and templates: how a definition points into an execution's data without code.

A **path** names a value in the execution's data, as Step Functions' paths do:

- ``$`` is the context; ``$$`` is what the execution knows about itself (``$$.execution.id``,
  ``$$.state``, and what the feature using the path adds, e.g. ``$$.event.data``);
- then segments: ``.name`` (letters, digits, ``_`` and ``-``), ``["any key"]`` or
  ``['any key']`` (a JSON string), ``[3]`` (a list index, from 0).

``$.order.items[0]["unit price"]`` is the ``unit price`` of the first item of the context's
``order``. A path only reads dicts by key and lists by index: it never reaches an attribute, a
method or any code, whatever the data holds, so an untrusted definition can read no more than
the data it is given.

A **template** is JSON data in which an object's key that ends in ``.$`` takes its value from
the path it holds (again Step Functions' convention)::

    {"bucket": "invoices", "key.$": "$.order.id", "items.$": "$.order.items"}

renders, for a context ``{"order": {"id": "A7", "items": [1, 2]}}``, to
``{"bucket": "invoices", "key": "A7", "items": [1, 2]}``. Every other value is a constant.

Paths and templates are checked when a procedure is registered (`check_path`,
`check_template`: each problem with the JSON path of where it is) and used at run time
(`DataPath.get`, `DataPath.put`, `render`); a path that names nothing there raises
`PathNotFound`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CONTEXT",
    "FACTS",
    "MAX_PATH_LENGTH",
    "MAX_PATH_SEGMENTS",
    "MAX_RENDERED_VALUES",
    "MAX_TEMPLATE_DEPTH",
    "MAX_TEMPLATE_PATHS",
    "MAX_TEMPLATE_VALUES",
    "TEMPLATE_SUFFIX",
    "DataPath",
    "PathError",
    "PathNotFound",
    "RenderTooLarge",
    "check_path",
    "check_template",
    "is_path",
    "parse_path",
    "path_text",
    "render",
]

CONTEXT: Final = "$"
"""The root of a path into the execution's context."""
FACTS: Final = "$$"
"""The root of a path into what the execution knows about itself (its id, its state, ...)."""

MAX_PATH_LENGTH: Final = 500
"""The longest path, in characters."""
MAX_PATH_SEGMENTS: Final = 32
"""The most segments (``.name``, ``[n]``, ``["key"]``) a path may have."""
MAX_TEMPLATE_DEPTH: Final = 10
"""The deepest nesting of objects and lists in a template (``args``, a selector, ...)."""
MAX_TEMPLATE_PATHS: Final = 200
"""The most ``.$`` keys one template may hold: each is a lookup at every run."""
MAX_RENDERED_VALUES: Final = 1_000_000
"""The most values (objects, lists, strings, numbers...) one rendering of a template copies out
of the data: a definition whose paths copy the whole context twice (``{"a.$": "$", "b.$":
"$"}``) would otherwise double it at every step, so a few steps would fill the memory. Over
it, the rendering raises `RenderTooLarge`."""
MAX_TEMPLATE_VALUES: Final = 10_000
"""The most values (objects, lists, constants, paths) one template may hold: it is copied at
every run, so a huge one would cost every attempt what a document costs once."""

TEMPLATE_SUFFIX: Final = ".$"
"""How a template's key that takes its value from a path ends (``"key.$": "$.order.id"``)."""
_TEMPLATE_SUFFIX: Final = TEMPLATE_SUFFIX
_NAME = re.compile(r"\.([A-Za-z0-9_\-]+)")
_INDEX = re.compile(r"\[(0|[1-9][0-9]{0,8})\]")
_QUOTED = re.compile(r"""\[("(?:[^"\\]|\\.)*"|'[^'\\]*')\]""")


class PathError(ValueError):
    """A path or a template that is not well formed; the message says what and where."""


class PathNotFound(LookupError):
    """A path that names nothing in the data it is used on (a key that is not there, an index
    past the end, a segment into something that is not an object or a list)."""


class RenderTooLarge(PathNotFound):
    """A rendering that would copy more than `MAX_RENDERED_VALUES` values out of the data. It
    is handled where a path that names nothing is (the attempt fails, the transition is
    blocked): what it would make cannot be used."""


@dataclass(frozen=True, slots=True)
class DataPath:
    """A parsed path (see the module's docstring).

    Attributes:
        root: ``$`` (the context) or ``$$`` (the execution's facts).
        segments: The keys (``str``) and list indexes (``int``) from the root.
        text: The path as written.
    """

    root: str
    segments: tuple[str | int, ...]
    text: str

    def get(self, context: Mapping[str, Any], facts: Mapping[str, Any] | None = None) -> Any:
        """The value the path names, in ``context`` (root ``$``) or ``facts`` (``$$``).

        Raises:
            PathNotFound: Nothing is there.
        """
        value: Any = context if self.root == CONTEXT else (facts or {})
        for depth, segment in enumerate(self.segments):
            try:
                if isinstance(segment, int):
                    if not isinstance(value, list):
                        raise TypeError
                    value = value[segment]
                else:
                    if not isinstance(value, Mapping):
                        raise TypeError
                    value = value[segment]
            except (LookupError, TypeError):
                where = path_text(self.root, self.segments[: depth + 1])
                raise PathNotFound(f"{self.text}: nothing at {where}") from None
        return value

    def put(self, target: dict[str, Any], value: Any) -> None:
        """Store ``value`` at the path in ``target`` (a context), creating the objects on the
        way that are missing (``$.a.b`` in ``{}`` gives ``{"a": {"b": value}}``); a list
        index must name an item that exists. ``$`` alone replaces the whole of ``target``
        with ``value``, which must be an object (Step Functions' ``ResultPath: "$"``).

        Raises:
            PathError: The path is not a context path.
            PathNotFound: Something on the way is neither an object nor a list that has the
                index, or ``value`` is not an object for ``$``.
        """
        if self.root != CONTEXT:
            raise PathError(f"{self.text}: only a path into the context ($...) can be set")
        if not self.segments:
            if not isinstance(value, dict):
                kind = type(value).__name__
                raise PathNotFound(f"$: only an object can replace the whole context, not {kind}")
            replacement = dict(value)  # value may be target itself, or share parts with it
            target.clear()
            target.update(replacement)
            return
        node: Any = target
        for depth, segment in enumerate(self.segments):
            last = depth == len(self.segments) - 1
            if isinstance(segment, str) and isinstance(node, dict):
                if last:
                    node[segment] = value
                else:
                    node = node.setdefault(segment, {})
            elif isinstance(segment, int) and isinstance(node, list) and segment < len(node):
                if last:
                    node[segment] = value
                else:
                    node = node[segment]
            else:
                where = path_text(self.root, self.segments[:depth])
                raise PathNotFound(f"{self.text}: cannot store under {where}")


def is_path(text: object) -> bool:
    """Whether ``text`` is written as a path (it starts with ``$``); `parse_path` says whether
    it is a good one."""
    return isinstance(text, str) and text.startswith(CONTEXT)


def parse_path(text: str) -> DataPath:
    """Parse ``text`` (see the module's docstring).

    Raises:
        PathError: It is not a path, or longer than ``MAX_PATH_LENGTH`` characters or
            ``MAX_PATH_SEGMENTS`` segments.
    """
    if not isinstance(text, str):
        raise PathError(f"a path is a string such as '$.order.id', not {type(text).__name__}")
    if len(text) > MAX_PATH_LENGTH:
        raise PathError(f"a path has at most {MAX_PATH_LENGTH} characters, not {len(text)}")
    if text.startswith(FACTS):
        root = FACTS
    elif text.startswith(CONTEXT):
        root = CONTEXT
    else:
        raise PathError(f"{text!r} is not a path: it must start with $ (the context) or $$")
    segments: list[str | int] = []
    at = len(root)
    while at < len(text):
        if match := _NAME.match(text, at):
            segments.append(match.group(1))
        elif match := _INDEX.match(text, at):
            segments.append(int(match.group(1)))
        elif match := _QUOTED.match(text, at):
            segments.append(_unquote(match.group(1)))
        else:
            raise PathError(
                f'{text!r} is not a path: at character {at + 1} expected .name, [index] or ["key"]'
            )
        at = match.end()
        if len(segments) > MAX_PATH_SEGMENTS:
            raise PathError(f"a path has at most {MAX_PATH_SEGMENTS} segments")
    return DataPath(root, tuple(segments), text)


def check_path(text: object, where: str, *, settable: bool = False) -> list[str]:
    """What is wrong with the path ``text`` (found at the JSON path ``where``), as messages
    that start with ``where``; none if it is good. ``settable``: it must be a context path
    (``$`` alone replaces the whole context), as where a value is stored."""
    try:
        path = parse_path(text)  # type: ignore[arg-type]
    except PathError as exc:
        return [f"{where}: {exc}"]
    if settable and path.root != CONTEXT:
        return [f"{where}: a value can only be stored at a path into the context, e.g. $.a.b"]
    return []


def check_template(template: Any, where: str) -> list[str]:
    """What is wrong with ``template`` (found at the JSON path ``where``): bad paths under
    ``.$`` keys, nesting deeper than ``MAX_TEMPLATE_DEPTH``, more than ``MAX_TEMPLATE_PATHS``
    paths or ``MAX_TEMPLATE_VALUES`` values, two keys that render to the same name (``a`` and
    ``a.$``); each message starts with the JSON path of the place."""
    problems: list[str] = []
    paths = values = 0

    def visit(value: Any, at: str, depth: int) -> None:
        nonlocal paths, values
        values += 1
        if depth > MAX_TEMPLATE_DEPTH:
            problems.append(f"{at}: nested deeper than {MAX_TEMPLATE_DEPTH} levels")
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                inner = f"{at}.{key}" if _NAME.fullmatch(f".{key}") else f"{at}[{json.dumps(key)}]"
                if isinstance(key, str) and key.endswith(_TEMPLATE_SUFFIX):
                    paths += 1
                    values += 1
                    problems.extend(_path_key_problems(value, key, inner))
                else:
                    visit(item, inner, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, f"{at}[{index}]", depth + 1)

    visit(template, where, 0)
    if paths > MAX_TEMPLATE_PATHS:
        problems.append(f"{where}: at most {MAX_TEMPLATE_PATHS} paths (.$ keys), not {paths}")
    if values > MAX_TEMPLATE_VALUES:
        problems.append(f"{where}: at most {MAX_TEMPLATE_VALUES} values, not {values}")
    return problems


def _path_key_problems(template: Mapping[str, Any], key: str, inner: str) -> list[str]:
    """What is wrong with the ``.$`` key ``key`` of ``template`` (found at ``inner``)."""
    name = key[: -len(_TEMPLATE_SUFFIX)]
    if not name:
        return [f"{inner}: a key ending in .$ needs a name before it"]
    if name in template:
        return [f"{inner}: {name!r} is given twice, as {name!r} and {key!r}"]
    return check_path(template[key], inner)


def render(
    template: Any, context: Mapping[str, Any], facts: Mapping[str, Any] | None = None
) -> Any:
    """``template`` with every ``.$`` key replaced by its name and the value of its path (a
    copy: changing what is returned changes neither the template nor the data).

    Raises:
        PathError: A path is not well formed (a template that `check_template` passed has
            none).
        PathNotFound: A path names nothing.
        RenderTooLarge: It would copy more than `MAX_RENDERED_VALUES` values.
    """
    budget = [MAX_RENDERED_VALUES]

    def fill(item: Any) -> Any:
        if isinstance(item, Mapping):
            rendered: dict[str, Any] = {}
            for key, value in item.items():
                if isinstance(key, str) and key.endswith(_TEMPLATE_SUFFIX):
                    found = parse_path(value).get(context, facts)
                    rendered[key[: -len(_TEMPLATE_SUFFIX)]] = _copy(found, budget)
                else:
                    rendered[key] = fill(value)
            return rendered
        if isinstance(item, list):
            return [fill(inner) for inner in item]
        return item

    return fill(template)


def _copy(value: Any, budget: list[int]) -> Any:
    """A deep copy of ``value``, counting each value copied against ``budget[0]``."""
    budget[0] -= 1
    if budget[0] < 0:
        raise RenderTooLarge(
            f"the paths of the template copy more than {MAX_RENDERED_VALUES:,} values"
        )
    if isinstance(value, dict):
        return {key: _copy(item, budget) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item, budget) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return copy.deepcopy(value)  # a host object an action put in the context


def _unquote(quoted: str) -> str:
    if quoted.startswith('"'):
        value = json.loads(quoted)
        assert isinstance(value, str)
        return value
    return quoted[1:-1]


def path_text(root: str, segments: tuple[str | int, ...]) -> str:
    """The path from ``root`` through ``segments``, written as `parse_path` reads it."""
    parts = [root]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _NAME.fullmatch(f".{segment}"):
            parts.append(f".{segment}")
        else:
            parts.append(f"[{json.dumps(segment)}]")
    return "".join(parts)
