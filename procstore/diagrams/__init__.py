"""State diagrams of procedures: Graphviz (DOT, SVG, PNG) and Mermaid ``stateDiagram-v2``.

Three steps, as in python-statemachine's diagram package: :func:`diagram` extracts a neutral
:class:`Diagram` from a procedure (and optionally overlays an execution), then one renderer per
format lays it out::

    from procstore.diagrams import diagram, render, to_dot, to_mermaid

    d = diagram(procedure)                      # Procedure, dict, JSON text or a file path
    dot_text = to_dot(d)
    svg = render(procedure, "svg")              # bytes (needs Graphviz's ``dot`` program)
    live = render(procedure, "png", execution=ex.state)

Output is deterministic: the same procedure (and execution) gives byte-identical DOT and
Mermaid text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

from procstore.definition import Procedure
from procstore.diagrams import dot as _dot
from procstore.diagrams import mermaid as _mermaid
from procstore.diagrams.dot import RankDir
from procstore.diagrams.extract import extract
from procstore.diagrams.model import (
    Box,
    Diagram,
    ExecutionOverlay,
    StateNode,
    TransitionEdge,
)
from procstore.diagrams.overlay import overlay
from procstore.validation import Document

__all__ = [
    "FORMATS",
    "Box",
    "Diagram",
    "ExecutionOverlay",
    "Format",
    "StateNode",
    "TransitionEdge",
    "diagram",
    "format_for",
    "render",
    "save",
    "to_dot",
    "to_mermaid",
]

Format = Literal["svg", "png", "dot", "mermaid"]
#: Every format :func:`render` produces: ``svg`` and ``png`` (bytes, through Graphviz), ``dot``
#: and ``mermaid`` (text).
FORMATS: tuple[Format, ...] = ("svg", "png", "dot", "mermaid")

_SUFFIXES: dict[str, Format] = {
    ".svg": "svg",
    ".png": "png",
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
}

Source = Diagram | Procedure | Document


def diagram(procedure: Source, execution: Any = None) -> Diagram:
    """The neutral diagram of ``procedure``, with ``execution`` drawn on top if given.

    Args:
        procedure: A :class:`~procstore.Procedure`, or a document (dict, JSON text, or a path
            to a ``.json``/``.yaml`` file; only its schema is checked), or a :class:`Diagram`.
        execution: An :class:`~procstore.ExecutionState` (or its JSON form, or an
            :class:`~procstore.Execution`): highlights its active states, the transitions that
            fired and how often, and the states that failed or were compensated.
    """
    result = procedure if isinstance(procedure, Diagram) else extract(procedure)
    return result if execution is None else overlay(result, execution)


def to_dot(procedure: Source, execution: Any = None, *, rankdir: RankDir = "TB") -> str:
    """Graphviz DOT source of ``procedure`` (see :func:`diagram` for the arguments)."""
    return _dot.to_dot(diagram(procedure, execution), rankdir=rankdir)


def to_mermaid(procedure: Source, execution: Any = None) -> str:
    """Mermaid ``stateDiagram-v2`` text of ``procedure`` (see :func:`diagram`)."""
    return _mermaid.to_mermaid(diagram(procedure, execution))


@overload
def render(
    procedure: Source,
    format: Literal["svg", "png"],
    execution: Any = None,
    *,
    rankdir: RankDir = "TB",
) -> bytes: ...
@overload
def render(
    procedure: Source,
    format: Literal["dot", "mermaid"],
    execution: Any = None,
    *,
    rankdir: RankDir = "TB",
) -> str: ...
@overload
def render(
    procedure: Source, format: str, execution: Any = None, *, rankdir: RankDir = "TB"
) -> bytes | str: ...
def render(
    procedure: Source, format: str, execution: Any = None, *, rankdir: RankDir = "TB"
) -> bytes | str:
    """``procedure`` in ``format``: ``svg``/``png`` as bytes (Graphviz's ``dot`` program must be
    installed: ``make system-deps``), ``dot``/``mermaid`` as text.

    Raises:
        ValueError: an unknown format.
        graphviz.ExecutableNotFound: svg or png without Graphviz installed.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown diagram format {format!r}: expected one of {', '.join(FORMATS)}")
    model = diagram(procedure, execution)
    if format == "mermaid":
        return _mermaid.to_mermaid(model)
    if format == "dot":
        return _dot.to_dot(model, rankdir=rankdir)
    return _dot.render(model, format, rankdir=rankdir)


def format_for(path: str | Path) -> Format:
    """The format a file name asks for: ``.svg``, ``.png``, ``.dot``/``.gv``,
    ``.mmd``/``.mermaid``.

    Raises:
        ValueError: any other suffix.
    """
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        known = ", ".join(_SUFFIXES)
        raise ValueError(
            f"cannot tell the diagram format from {suffix or 'no suffix'!r} (expected {known})"
        ) from None


def save(
    procedure: Source,
    path: str | Path,
    format: str | None = None,
    execution: Any = None,
    *,
    rankdir: RankDir = "TB",
) -> Path:
    """Write the diagram of ``procedure`` to ``path`` (format from the suffix unless given)."""
    target = Path(path)
    data = render(procedure, format or format_for(target), execution, rankdir=rankdir)
    if isinstance(data, str):
        target.write_text(data, encoding="utf-8")
    else:
        target.write_bytes(data)
    return target
