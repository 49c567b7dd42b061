"""Reading JSON and YAML documents without trusting them.

A procedure document, or a start context given to the CLI, may come from anyone. Reading one
must cost time and memory in proportion to its size, and end in a clear problem (with the
JSON path of the offending value) rather than a hang, a crash or a silent surprise:

- a file is read only if it is a regular file of at most `MAX_DOCUMENT_BYTES` bytes (opened
  without blocking, so a FIFO cannot hang the reader; a device such as `/dev/zero` is refused
  before a byte is read);
- YAML aliases (`*name`) are refused: they let a few bytes expand into gigabytes, or into a
  cycle, and a procedure document has no need for them;
- JSON has no NaN or Infinity: `NaN`, `Infinity` and `-Infinity` (which Python's `json`
  accepts) are refused, and so are non-finite floats in YAML (`.nan`, `.inf`) or a dict;
- a key may appear only once in an object (JSON and YAML would keep the last one silently);
- nesting is limited to `MAX_DOCUMENT_DEPTH` levels and a document to `MAX_DOCUMENT_VALUES`
  values, so that nothing downstream recurses without bound (a dict built in Python may share
  parts many times over, or even contain itself).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from procstore.errors import Problem

#: The largest document or context file read, in bytes (8 MiB: a procedure of 10,000 states
#: is about 1 MiB).
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
#: The deepest nesting of objects and lists in a document (a state nested 32 levels deep sits
#: about 70 levels down).
MAX_DOCUMENT_DEPTH = 100
#: The most values (objects, lists, keys' values, scalars) in a document given as data: bounds
#: the work on a dict whose parts are shared many times over.
MAX_DOCUMENT_VALUES = 1_000_000

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DocumentError(ValueError):
    """A document cannot be read or is not acceptable data; `problems` say where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def json_path(loc: Sequence[str | int]) -> str:
    """Render a location in a document as a JSON path.

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


def read_text(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """The UTF-8 text of the regular file at `path`, at most `limit` bytes.

    The file is opened with `O_NONBLOCK` (opening a FIFO would otherwise wait for a writer)
    and checked with `fstat` on the opened descriptor (no race with a swapped path); at most
    `limit + 1` bytes are read, so a file that grows meanwhile is refused too.

    Raises:
        DocumentError: the file cannot be opened, is not a regular file, is larger than
            `limit` bytes, or is not UTF-8.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise _error(f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _error(f"not a regular file ({_file_kind(mode)}): only files are read")
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise _error(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if remaining <= 0:
        raise _error(f"larger than {limit} bytes (MAX_DOCUMENT_BYTES)")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(f"not UTF-8 text (byte {exc.start})") from None


def parse_json(text: str) -> Any:
    """Parse JSON text and check it with `check_data`; a key repeated in an object is a
    problem at its JSON path.

    Raises:
        DocumentError: the text is not valid JSON, repeats a key, or breaks one of the rules
            of `check_data`.
    """
    # The id of every object with a repeated key -> (the object, kept alive so that its id
    # stays unique, and the repeated keys).
    duplicates: dict[int, tuple[dict[str, Any], list[str]]] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated: list[str] = []
            for key, _ in pairs:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
            duplicates[id(obj)] = (obj, repeated)
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise _error(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # json's parser recurses: deeper than the interpreter allows
        raise _error(f"nested more than {MAX_DOCUMENT_DEPTH} levels deep") from None
    check_data(data, {key: keys for key, (_, keys) in duplicates.items()})
    return data


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases and nesting deeper than `MAX_DOCUMENT_DEPTH`
    while it composes (before anything is built)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _error(
                f"YAML aliases are not allowed (*{event.anchor} at {_where(event.start_mark)}): "
                "write the value out"
            )
        self._depth += 1
        if self._depth > MAX_DOCUMENT_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _error(f"nested more than {MAX_DOCUMENT_DEPTH} levels deep (at {_where(mark)})")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str) -> Any:
    """Parse YAML text (safe types only; no aliases, nesting at most `MAX_DOCUMENT_DEPTH`)
    and check it with `check_data`; a key repeated in a mapping is a problem at its JSON path.

    Raises:
        DocumentError: the text is not valid YAML, uses an alias, nests too deep, repeats a
            key, or breaks one of the rules of `check_data`.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems = _yaml_duplicates(node)
        if problems:
            raise DocumentError(problems)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _error(f"not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    check_data(data)
    return data


def _yaml_duplicates(root: yaml.Node) -> list[Problem]:
    """Every key repeated in a mapping of the composed tree, in document order."""
    found: list[tuple[int, int, Problem]] = []
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, Any]] = set()
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                if (key.tag, name) in seen:
                    mark = key.start_mark
                    found.append((mark.line, mark.column, _duplicate(loc, name, mark)))
                seen.add((key.tag, name))
                stack.append((value, (*loc, name)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
    return [problem for _, _, problem in sorted(found, key=lambda f: f[:2])]


def _duplicate(loc: tuple[str | int, ...], key: str, mark: Any = None) -> Problem:
    where = f" (again at {_where(mark)})" if mark is not None else ""
    return Problem(
        json_path((*loc, key)), f"duplicate key {key!r}{where}: a key may appear only once"
    )


def check_data(data: Any, duplicates: Mapping[int, list[str]] | None = None) -> None:
    """Check parsed or given data: no NaN or Infinity, nesting at most `MAX_DOCUMENT_DEPTH`
    levels, at most `MAX_DOCUMENT_VALUES` values; `duplicates` maps the `id` of an object to
    its keys that appeared more than once (found by `parse_json`).

    Iterative, so a deep or self-containing dict cannot exhaust the stack.

    Raises:
        DocumentError: every problem found, each with its JSON path.
    """
    problems: list[Problem] = []
    count = 0
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        count += 1
        if count > MAX_DOCUMENT_VALUES:
            problems.append(
                Problem("$", f"more than {MAX_DOCUMENT_VALUES} values (MAX_DOCUMENT_VALUES)")
            )
            break
        if isinstance(value, float):
            if not math.isfinite(value):
                name = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
                problems.append(
                    Problem(json_path(loc), f"{name} is not allowed: JSON has no NaN or Infinity")
                )
            continue
        if not isinstance(value, Mapping | list | tuple):
            continue
        if len(loc) >= MAX_DOCUMENT_DEPTH:
            problems.append(
                Problem(
                    json_path(loc),
                    f"nested more than {MAX_DOCUMENT_DEPTH} levels deep (MAX_DOCUMENT_DEPTH)",
                )
            )
            continue
        if isinstance(value, Mapping):
            if duplicates:
                problems += [_duplicate(loc, key) for key in duplicates.get(id(value), ())]
            # Pushed in reverse, so that problems come out in document order.
            stack.extend((item, (*loc, str(key))) for key, item in reversed(list(value.items())))
        else:
            stack.extend((value[i], (*loc, i)) for i in range(len(value) - 1, -1, -1))
    if problems:
        raise DocumentError(problems)


def _error(message: str) -> DocumentError:
    return DocumentError([Problem("$", message)])


def _where(mark: Any) -> str:
    return f"line {mark.line + 1} column {mark.column + 1}"


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")
