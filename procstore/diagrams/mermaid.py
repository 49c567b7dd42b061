"""Mermaid renderer: the neutral :class:`~procstore.diagrams.model.Diagram` as
``stateDiagram-v2`` text (renders on GitHub and in mkdocs-material).

Written by hand: transitions' own Mermaid export crashes on parallel states.

- every state is declared ``state "name" as s_<id>`` (ids are ``[A-Za-z0-9_]``, so any name is
  safe), with its action, retry policy, timeouts and compensation as description lines;
- ``[*] --> initial`` in every scope; terminal states ``--> [*]``;
- compound states are ``state s_x { ... }`` blocks, a parallel state holds one block per region,
  separated by ``--``;
- a transition is written inside the block that holds both its ends, otherwise at the top;
  labels are ``event [guard]``; a choice state is a ``<<choice>>`` diamond, its rules
  ``(1) [guard]``, ``(2) [guard]``, ... in the order they are tried, then ``default``;
- terminal states get the classes ``success`` / ``failure``; an overlaid execution the classes
  ``active``, ``visited``, ``failed`` (the execution failed there), ``handled`` (a declared
  ``error``/``timeout`` transition handled its error; the state also says ``error handled →
  target``), ``compensated``, and fired transitions say how many times in parentheses;
- each state with a ``compensate`` action gets a note with its place in the rollback order
  (``undo 1/3 ← compensate: cancel_car``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from procstore import paths
from procstore.chart import LEAF_KINDS
from procstore.diagrams.extract import format_ms
from procstore.diagrams.model import (
    CALLBACK_LINE,
    FAILED_NOTE,
    TIMES,
    Diagram,
    StateNode,
    TransitionEdge,
)

__all__ = ["to_mermaid"]

INDENT = "    "

#: Class definitions, in the order they are written.
CLASSES: dict[str, str] = {
    "success": "fill:#e8f5e9,stroke:#2e7d32,stroke-width:2px",
    "failure": "fill:#fdecea,stroke:#c62828,stroke-width:2px",
    "visited": "fill:#e3f2fd,stroke:#37474f",
    "active": "fill:#bbdefb,stroke:#1565c0,stroke-width:3px",
    "compensated": "fill:#ffe0b2,stroke:#e65100,stroke-width:2px",
    "handled": "fill:#fff59d,stroke:#a15c00,stroke-width:2px",
    "failed": "fill:#ffcdd2,stroke:#c62828,stroke-width:3px",
}

# Characters Mermaid's state-diagram lexer gives a meaning to inside a label or a quoted name;
# written as Mermaid entity codes (``#58;`` renders as ``:``).
_ENTITIES = {
    "#": "#35;",
    ":": "#58;",
    ";": "#59;",
    '"': "#34;",
    "%": "#37;",
    "\n": " ",
    "\r": " ",
}
_TABLE = str.maketrans(_ENTITIES)


def escape(text: str) -> str:
    """``text`` made safe for a Mermaid label or quoted state name."""
    return text.translate(_TABLE)


def _descriptions(state: StateNode) -> list[str]:
    lines = []
    if state.action is not None:
        lines.append(state.action)
    if state.wait is not None:
        lines.append(state.wait)
    if state.retry is not None:
        lines.append(state.retry)
    if state.action_timeout_ms is not None:
        lines.append(f"attempt timeout {format_ms(state.action_timeout_ms)}")
    if state.timeout_ms is not None and not state.is_cluster:
        lines.append(f"state timeout {format_ms(state.timeout_ms)}")
    if state.callback:
        lines.append(CALLBACK_LINE)
    if state.compensate is not None:
        lines.append(f"↺ {state.compensate}")
    if state.error is not None:
        lines.append(f"fails: {state.error}")
    return lines


def _class_of(state: StateNode, overlaid: bool) -> str | None:
    if overlaid:
        if state.failed:
            return "failed"
        if state.handled:
            return "handled"
        if state.compensated or state.compensation_failed:
            return "compensated"
        if state.active and not state.is_cluster:
            return "active"
    if state.terminal and state.kind in LEAF_KINDS:
        return "failure" if state.outcome == "failure" else "success"
    if overlaid and state.visits and not state.is_cluster:
        return "visited"
    return None


class _Writer:
    def __init__(self, diagram: Diagram) -> None:
        self.diagram = diagram
        self.states = diagram.by_path
        self.overlaid = diagram.execution is not None
        self.lines: list[str] = []
        # Compensable states by their place in the rollback order (see Diagram.compensation_order).
        self.undo = {path: i for i, path in enumerate(diagram.compensation_order)}
        # Transitions by the scope (container path, None = top) they are written in.
        self.edges: dict[str | None, list[TransitionEdge]] = {}
        for edge in diagram.transitions:
            self.edges.setdefault(self.scope_of(edge), []).append(edge)

    def scope_of(self, edge: TransitionEdge) -> str | None:
        source, target = paths.parent_of(edge.source), paths.parent_of(edge.target)
        if edge.target not in self.states or self.states[edge.target].kind == "missing":
            return None
        return source if source == target else None

    def emit(self, depth: int, line: str) -> None:
        self.lines.append(INDENT * depth + line)

    def declare(self, state: StateNode, depth: int) -> None:
        if state.kind == "choice":  # Mermaid's diamond: it has no label of its own
            self.emit(depth, f"state {state.id} <<choice>>")
            return
        self.emit(depth, f'state "{escape(state.name)}" as {state.id}')
        if state.kind == "missing":
            self.emit(depth, f"{state.id} : no such state")
            return
        if not state.is_cluster:
            lines = _descriptions(state)
            if self.overlaid:
                lines += [FAILED_NOTE] if state.failed else []
                lines += state.handled_notes
            for text in lines:
                self.emit(depth, f"{state.id} : {escape(text)}")
            return
        self.emit(depth, f"state {state.id} {{")
        if state.kind == "parallel":
            for i, region in enumerate(state.children):
                if i:
                    self.emit(depth + 1, "--")
                self.declare(region, depth + 1)
        else:
            self.body(state.children, state.initial, state.path, depth + 1)
        self.emit(depth, "}")

    def body(
        self,
        children: Iterable[StateNode],
        initial: str | None,
        scope: str | None,
        depth: int,
    ) -> None:
        children = tuple(children)
        for child in children:
            self.declare(child, depth)
        if initial is not None and initial in self.states:
            self.emit(depth, f"[*] --> {self.states[initial].id}")
        for edge in self.edges.get(scope, ()):
            self.transition(edge, depth)
        for child in children:
            if child.terminal and child.kind != "region":
                self.emit(depth, f"{child.id} --> [*]")
        for child in children:
            if child.path in self.undo:
                self.note(child, depth)
            if child.kind == "map":
                self.map_note(child, depth)

    def note(self, state: StateNode, depth: int) -> None:
        """``undo k/n ← compensate: fn``: the compensation and its place in the rollback."""
        k, n = self.undo[state.path] + 1, len(self.undo)
        text = f"undo {k}/{n} ← {state.compensate}"
        self.emit(depth, f"note right of {state.id} : {escape(text)}")

    def map_note(self, state: StateNode, depth: int) -> None:
        """``map: each of $.orders · 2 at once`` (and, overlaid, ``3/10 done``): Mermaid
        has no stacked box, so a note says that the box runs once per item."""
        text = f"map: {state.map}"
        if self.overlaid and state.items is not None:
            text += f" · {state.items}"
        self.emit(depth, f"note right of {state.id} : {escape(text)}")

    def transition(self, edge: TransitionEdge, depth: int) -> None:
        source, target = self.states[edge.source], self.states[edge.target]
        label = edge.label
        if self.overlaid and edge.fired:
            label += f" ({edge.fired}{TIMES})"
        self.emit(depth, f"{source.id} --> {target.id} : {escape(label)}")

    def write(self) -> str:
        diagram = self.diagram
        title = diagram.title
        if diagram.execution is not None:
            ex = diagram.execution
            title += f" · execution {ex.id[:12]} {ex.status} in {ex.current}"
            if ex.error is not None:
                title += f" · {ex.error}"
        # A JSON string is a YAML double-quoted scalar: any title is safe in the front matter.
        self.lines += ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---"]
        self.lines.append("stateDiagram-v2")
        self.body(diagram.states, diagram.initial, None, 1)
        classes: dict[str, list[str]] = {}
        for state in diagram.walk():
            name = _class_of(state, self.overlaid)
            if name is not None:
                classes.setdefault(name, []).append(state.id)
        for name, style in CLASSES.items():
            if name in classes:
                self.emit(1, f"classDef {name} {style}")
        for name in CLASSES:
            if name in classes:
                self.emit(1, f"class {','.join(classes[name])} {name}")
        return "\n".join(self.lines) + "\n"


def to_mermaid(diagram: Diagram) -> str:
    """``diagram`` as Mermaid ``stateDiagram-v2`` text."""
    return _Writer(diagram).write()
