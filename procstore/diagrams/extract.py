"""Build the neutral :class:`~procstore.diagrams.model.Diagram` from a procedure, and lay an
execution's snapshot over it.

Only the pydantic models are read: no store, no compiled machine, so a diagram can be drawn of
any document that passes the schema (targets that name no state become ``missing`` nodes instead
of errors). Everything is visited in document order and every identifier is derived from the
state's path, never from object identity, so the output is deterministic.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from procstore import paths
from procstore.chart import LEAF_KINDS, Chart, Transition, build_chart, item_chart
from procstore.definition import MapDef, Procedure, StateDef, TransitionDef
from procstore.describe import (
    describe_action,
    describe_compensation,
    describe_map,
    describe_retry,
    describe_wait,
    format_ms,
)
from procstore.diagrams.model import (
    Box,
    Diagram,
    EdgeKind,
    Outcome,
    StateNode,
    TransitionEdge,
)
from procstore.snapshot import ExecutionState
from procstore.validation import Document, read_document

__all__ = ["FANIN_LIMIT", "as_execution", "as_procedure", "extract", "format_ms"]

#: A terminal leaf entered from more states than this is drawn beside each of them (one
#: :class:`~procstore.diagrams.model.Box` per source state). Without that, a ``failed`` state
#: that every step's ``error`` leads to pulls long edges across the whole chart: unreadable, and
#: slow for Graphviz (a 60-state chain takes seconds, 200 states minutes).
FANIN_LIMIT = 4

_WHITESPACE = re.compile(r"\s+")
_SAFE_CHAR = re.compile(r"[A-Za-z0-9_]")


# --------------------------------------------------------------------------- inputs


def as_procedure(procedure: Procedure | Document) -> Procedure:
    """``procedure`` itself, or the document (dict, JSON text, path to .json/.yaml) parsed.

    Only the schema is checked (pydantic): targets, modules and guards are not resolved, so a
    document can be drawn before it is registered anywhere.
    """
    if isinstance(procedure, Procedure):
        return procedure
    data, _ = read_document(procedure)
    return Procedure.model_validate(data)


def as_execution(execution: ExecutionState | Mapping[str, Any] | Any) -> ExecutionState:
    """An :class:`ExecutionState`, from itself, its JSON form, or an object with ``.state``
    (an :class:`~procstore.Execution`)."""
    if isinstance(execution, ExecutionState):
        return execution
    if isinstance(execution, Mapping):
        return ExecutionState.model_validate(dict(execution))
    state = getattr(execution, "state", None)
    if isinstance(state, ExecutionState):
        return state
    raise TypeError(f"expected an ExecutionState, got {type(execution).__name__}")


# --------------------------------------------------------------------------- text


def _compensation(definition: StateDef) -> str:
    """The compensation in a few words, then its retry policies if it has any."""
    assert definition.compensate is not None
    text = describe_compensation(definition.compensate)
    if definition.compensate_retry is not None:
        text += f" ({describe_retry(definition.compensate_retry)})"
    return text


def _failure_text(error: str | None, cause: str | None) -> str | None:
    """A failure's error and cause as one line (``Declined: the card was refused``)."""
    if error is None and cause is None:
        return None
    return f"{error or 'Failed'}: {cause}" if cause else (error or "Failed")


def _guards(transition: TransitionDef) -> tuple[str, ...]:
    parts: list[str] = []
    if transition.guard is not None:
        parts.append(_WHITESPACE.sub(" ", transition.guard).strip())
    parts += transition.conditions
    parts += (f"!{name}" for name in transition.unless)
    return tuple(parts)


def _edge_kind(event: str) -> EdgeKind:
    if event == "error":
        return "error"
    if event == "timeout":
        return "timeout"
    if event == "done":
        return "done"
    return "normal"


# --------------------------------------------------------------------------- ids


def _id_part(name: str) -> str:
    return "".join(c if _SAFE_CHAR.fullmatch(c) else f"_{ord(c):x}_" for c in name)


class _Ids:
    """Unique ``[A-Za-z0-9_]`` ids from paths: ``s_`` + the encoded path components joined by
    ``__``; a clash (possible only with names containing ``_``) gets a numeric suffix, in
    document order."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, path: str) -> str:
        base = "s_" + "__".join(_id_part(p) for p in path.split(paths.SEPARATOR))
        candidate, n = base, 1
        while candidate in self._used:
            n += 1
            candidate = f"{base}_{n}"
        self._used.add(candidate)
        return candidate


# --------------------------------------------------------------------------- extraction


class _Builder:
    """The diagram's nodes and edges, from the procedure's chart."""

    def __init__(self, chart: Chart, ids: _Ids | None = None, prefix: str | None = None) -> None:
        self.chart = chart
        self.ids = ids or _Ids()
        # A map state's item states are drawn inside it: their paths go under its path.
        self.prefix = prefix
        self.items: dict[str, _Builder] = {}  # the builders of the map states' item states

    def full(self, path: str | None) -> str | None:
        """``path`` (of this builder's chart) as a path of the diagram."""
        if path is None or self.prefix is None:
            return path
        return paths.join(self.prefix, path)

    def node(self, path: str) -> StateNode:
        """The node of ``path`` with its children. Ids are handed out in a fixed order (a
        region before its children, a state after them), so clashes resolve the same way."""
        state = self.chart[path]
        if state.kind == "region":
            node_id = self.ids(str(self.full(path)))
            return StateNode(
                path=str(self.full(path)),
                name=state.name,
                id=node_id,
                kind="region",
                parent=self.full(state.parent),
                initial=self.full(state.initial),
                children=tuple(self.node(child) for child in state.children),
            )
        children = tuple(self.node(child) for child in state.children)
        definition = state.state
        assert definition is not None
        items = item_chart(state)
        if items is not None and definition.map is not None:
            return self.map_node(path, definition.map, items)
        outcome: Outcome | None = None
        if state.terminal:
            outcome = "failure" if definition.outcome == "failure" else "success"
        action, compensate = definition.action, definition.compensate
        return StateNode(
            path=str(self.full(path)),
            name=state.name,
            id=self.ids(str(self.full(path))),
            kind=state.kind,
            parent=self.full(state.parent) or self.prefix,
            description=definition.description,
            initial=self.full(state.initial) if state.kind == "compound" else None,
            children=children,
            action=None if action is None else describe_action(action),
            action_timeout_ms=None if action is None else action.timeout_ms,
            wait=None if definition.wait is None else describe_wait(definition.wait),
            retry=None if definition.retry is None else describe_retry(definition.retry),
            timeout_ms=definition.timeout_ms,
            compensate=None if compensate is None else _compensation(definition),
            callback=definition.callback,
            terminal=state.terminal,
            outcome=outcome,
            error=_failure_text(definition.error, definition.cause),
        )

    def map_node(self, path: str, spec: MapDef, items: Chart) -> StateNode:
        """A map state: a box around its item states, which a builder of their own draws."""
        state, full = self.chart[path], str(self.full(path))
        inner = self.items[path] = _Builder(items, self.ids, full)
        children = tuple(inner.node(child) for child in items.top_level)
        outcome: Outcome | None = "success" if state.terminal else None
        definition = state.state
        assert definition is not None
        return StateNode(
            path=full,
            name=state.name,
            id=self.ids(full),
            kind="map",
            parent=self.full(state.parent) or self.prefix,
            description=definition.description,
            initial=paths.join(full, spec.initial_state),
            children=children,
            timeout_ms=definition.timeout_ms,
            terminal=state.terminal,
            outcome=outcome,
            map=describe_map(spec),
        )

    def target(self, transition: Transition) -> str:
        """Where ``transition`` is drawn to: its target, or — when it does not resolve — an
        ambiguous name's sibling (validation rejects it anyway), else the name as written (a
        "missing" node)."""
        if transition.target is not None:
            return str(self.full(transition.target))
        written = transition.spec.target
        sibling = paths.join(paths.parent_of(transition.source), written)
        known = self.chart.states.get(sibling)
        if paths.SEPARATOR not in written and known is not None and known.kind != "region":
            return str(self.full(sibling))
        return str(self.full(written))

    def transitions(self) -> list[TransitionEdge]:
        edges = []
        for state in self.chart:
            per_event = Counter(transition.event for transition in state.transitions)
            seen: Counter[str] = Counter()
            for transition in state.transitions:
                event = transition.event
                seen[event] += 1
                edges.append(
                    TransitionEdge(
                        source=str(self.full(state.path)),
                        target=self.target(transition),
                        event=event,
                        guards=_guards(transition.spec),
                        errors=transition.spec.errors,
                        kind=_edge_kind(event),
                        index=transition.index,
                        # Tried in document order: numbered when there is a choice.
                        order=_order(transition, seen[event], per_event[event]),
                        rule=transition.rule,
                    )
                )
            if state.path in self.items:
                edges += self.items[state.path].transitions()
        return edges


def _order(transition: Transition, nth: int, of: int) -> int | None:
    """The number an edge is drawn with: a choice rule's place (its default has none), an
    ordinary transition's place among several on its event."""
    if transition.rule != "transition":
        return None if transition.rule == "default" else transition.index + 1
    return nth if of > 1 else None


def _boxes(
    states: Mapping[str, StateNode], edges: Iterable[TransitionEdge]
) -> dict[str, tuple[Box, ...]]:
    """The boxes of the terminal leaves entered from more than :data:`FANIN_LIMIT` states: the
    state's own box beside the first source (in document order), a copy beside each other."""
    sources: dict[str, list[str]] = {}
    for edge in edges:
        seen = sources.setdefault(edge.target, [])
        if edge.source not in seen:
            seen.append(edge.source)
    boxes = {}
    for target, froms in sources.items():
        state = states[target]
        if len(froms) <= FANIN_LIMIT or state.kind not in LEAF_KINDS or not state.terminal:
            continue
        boxes[target] = tuple(
            Box(id=state.id if n == 1 else f"p{n}_{state.id}", source=source, copy=n > 1)
            for n, source in enumerate(froms, start=1)
        )
    return boxes


def _with_boxes(state: StateNode, boxes: Mapping[str, tuple[Box, ...]]) -> StateNode:
    return dataclasses.replace(
        state,
        children=tuple(_with_boxes(child, boxes) for child in state.children),
        boxes=boxes.get(state.path, ()),
    )


def extract(procedure: Procedure | Document) -> Diagram:
    """The diagram of ``procedure`` (a :class:`Procedure` or a document)."""
    procedure = as_procedure(procedure)
    definition = procedure.definition
    builder = _Builder(build_chart(procedure))
    states = [builder.node(path) for path in builder.chart.top_level]
    transitions = builder.transitions()
    known = {node.path for top in states for node in top.walk()}  # map items included
    for edge in transitions:
        if edge.target not in known:
            known.add(edge.target)
            states.append(
                StateNode(
                    path=edge.target, name=edge.target, id=builder.ids(edge.target), kind="missing"
                )
            )
    by_path = {node.path: node for top in states for node in top.walk()}
    boxes = _boxes(by_path, transitions)
    box_of = {(box.source, path): box.id for path, drawn in boxes.items() for box in drawn}
    return Diagram(
        name=procedure.name,
        version=procedure.version,
        description=procedure.description,
        initial=definition.initial_state,
        states=tuple(_with_boxes(state, boxes) for state in states),
        transitions=tuple(
            dataclasses.replace(edge, box=box_of.get((edge.source, edge.target)))
            for edge in transitions
        ),
    )
