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
from dataclasses import dataclass, field
from typing import Any

from procstore import paths
from procstore.chart import Chart, Transition, build_chart
from procstore.definition import Procedure, TransitionDef
from procstore.describe import describe_action, describe_compensation, describe_retry, format_ms
from procstore.diagrams.model import (
    Box,
    Diagram,
    EdgeKind,
    ExecutionOverlay,
    Outcome,
    StateNode,
    TransitionEdge,
)
from procstore.snapshot import ExecutionState, HistoryRecord, Status
from procstore.validation import Document, read_document

__all__ = ["FANIN_LIMIT", "as_execution", "as_procedure", "extract", "format_ms", "overlay"]

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

    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self.ids = _Ids()

    def node(self, path: str) -> StateNode:
        """The node of ``path`` with its children. Ids are handed out in a fixed order (a
        region before its children, a state after them), so clashes resolve the same way."""
        state = self.chart[path]
        if state.kind == "region":
            node_id = self.ids(path)
            return StateNode(
                path=path,
                name=state.name,
                id=node_id,
                kind="region",
                parent=state.parent,
                initial=state.initial,
                children=tuple(self.node(child) for child in state.children),
            )
        children = tuple(self.node(child) for child in state.children)
        definition = state.state
        assert definition is not None
        outcome: Outcome | None = None
        if state.terminal:
            outcome = "failure" if definition.outcome == "failure" else "success"
        action, compensate = definition.action, definition.compensate
        return StateNode(
            path=path,
            name=state.name,
            id=self.ids(path),
            kind=state.kind,
            parent=state.parent,
            description=definition.description,
            initial=state.initial if state.kind == "compound" else None,
            children=children,
            action=None if action is None else describe_action(action),
            action_timeout_ms=None if action is None else action.timeout_ms,
            retry=None if definition.retry is None else describe_retry(definition.retry),
            timeout_ms=definition.timeout_ms,
            compensate=None if compensate is None else describe_compensation(compensate),
            terminal=state.terminal,
            outcome=outcome,
        )

    def target(self, transition: Transition) -> str:
        """Where ``transition`` is drawn to: its target, or — when it does not resolve — an
        ambiguous name's sibling (validation rejects it anyway), else the name as written (a
        "missing" node)."""
        if transition.target is not None:
            return transition.target
        written = transition.spec.target
        sibling = paths.join(paths.parent_of(transition.source), written)
        known = self.chart.states.get(sibling)
        if paths.SEPARATOR not in written and known is not None and known.kind != "region":
            return sibling
        return written

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
                        source=state.path,
                        target=self.target(transition),
                        event=event,
                        guards=_guards(transition.spec),
                        kind=_edge_kind(event),
                        index=transition.index,
                        # Tried in document order: numbered when there is a choice.
                        order=seen[event] if per_event[event] > 1 else None,
                    )
                )
        return edges


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
        if len(froms) <= FANIN_LIMIT or state.kind != "leaf" or not state.terminal:
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
    known = set(builder.chart.states)
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


# --------------------------------------------------------------------------- overlay


_FAILED = (Status.FAILED, Status.ROLLED_BACK)
#: The events procstore raises itself when a state fails: a transition on one of them handles
#: the failure the document way.
_RAISED = ("error", "timeout")
#: The error type of an attempt procstore cut short (a timeout, a cancel, a transition leaving
#: its state): not a failure of the action.
_INTERRUPTED = "Cancelled"
#: The ``rollback`` record's message when the execution itself failed (not a cancel or a
#: requested rollback).
_FAILURE_ROLLBACK = "failed"


@dataclass
class _Errors:
    """What became of the errors in a history (see :func:`_errors`)."""

    failed: set[str] = field(default_factory=set)
    handled: dict[str, dict[tuple[str, str], None]] = field(default_factory=dict)


def _errors(history: tuple[HistoryRecord, ...]) -> _Errors:
    """Which states failed and which handled their errors.

    A state *raises* when its action fails for good (no retry after it; an attempt procstore
    interrupted does not count) or when its ``timeout_ms`` runs out. The raise is *handled*
    when an ``error`` or ``timeout`` transition fires from the state or an ancestor (the
    transition record names the declaring state): the state gets ``(event, target)``. It
    *failed* when the execution fails while the raise is unhandled, and the state the execution
    ends in with status failed (or rolled_back: failed, then compensated) failed too.
    """
    result = _Errors()
    raised: dict[str, None] = {}  # states whose raise is not handled yet, oldest first
    for record in history:
        state = record.state
        if state is None:
            continue
        kind = record.kind
        if kind == "action" and record.error is not None:
            if record.error.type != _INTERRUPTED:
                raised.pop(state, None)
                raised[state] = None
        elif kind == "internal_error":  # handled like a failed action of the state
            raised.pop(state, None)
            raised[state] = None
        elif kind == "retry":
            raised.pop(state, None)
        elif kind == "timeout":
            raised.pop(state, None)
            raised[state] = None
        elif kind == "transition":
            # The states the transition leaves: the declaring state and everything inside it.
            left = [path for path in raised if paths.is_within(path, state)]
            if record.event in _RAISED:
                origin = left[-1] if left else state
                target = record.target or ""
                result.handled.setdefault(origin, {})[(record.event or "", target)] = None
            for path in left:
                del raised[path]
        elif kind in ("rollback", "finished"):
            failing = (kind == "rollback" and record.message == _FAILURE_ROLLBACK) or (
                kind == "finished" and record.status in _FAILED
            )
            if failing:
                result.failed.update(raised)
            if kind == "finished" and record.status in _FAILED:
                result.failed.add(state)
            raised.clear()
    return result


def _match_edge(
    record: HistoryRecord, by_source: Mapping[str, list[int]], edges: list[TransitionEdge]
) -> int | None:
    """The transition a "transition" record is about: declared on its source state or, when the
    event bubbled, on the innermost ancestor; the exact target first."""
    if record.state is None or record.event is None:
        return None
    source: str | None = record.state
    target = record.target
    while source is not None:
        candidates = [i for i in by_source.get(source, ()) if edges[i].event == record.event]
        if candidates:
            if target is None:
                return candidates[0]
            for i in candidates:
                if edges[i].target == target:
                    return i
            for i in candidates:
                if paths.is_within(target, edges[i].target):
                    return i
        source = paths.parent_of(source)
    return None


def _ancestors(path: str) -> Iterable[str]:
    parent = paths.parent_of(path)
    while parent is not None:
        yield parent
        parent = paths.parent_of(parent)


def overlay(diagram: Diagram, execution: ExecutionState | Mapping[str, Any] | Any) -> Diagram:
    """``diagram`` with ``execution`` drawn on top: its active states, how many times each
    state was entered and each transition fired, the states that failed, handled an error,
    timed out or were compensated, and which box of a state drawn more than once the
    execution came in by."""
    snapshot = as_execution(execution)
    history = snapshot.history

    raw_active = getattr(snapshot, "active", None)
    active_paths = [snapshot.current]
    if isinstance(raw_active, list | tuple) and raw_active:
        active_paths += [str(p) for p in raw_active]
    active: set[str] = set()
    for path in active_paths:
        active.add(path)
        active.update(_ancestors(path))

    visits = Counter(r.state for r in history if r.kind == "entered" and r.state is not None)
    attempts = Counter(r.state for r in history if r.kind == "action" and r.state is not None)
    timed_out = {r.state for r in history if r.kind == "timeout" and r.state is not None}
    compensated = Counter(
        r.state
        for r in history
        if r.kind == "compensation" and r.error is None and r.state is not None
    )
    compensation_failed = {
        r.state
        for r in history
        if r.kind == "compensation" and r.error is not None and r.state is not None
    }
    errors = _errors(history)

    edges = list(diagram.transitions)
    by_source: dict[str, list[int]] = {}
    for i, edge in enumerate(edges):
        by_source.setdefault(edge.source, []).append(i)
    fired: Counter[int] = Counter()
    last_box: dict[str, str] = {}  # state path -> the box the execution last entered it by
    for record in history:
        if record.kind == "transition":
            index = _match_edge(record, by_source, edges)
            if index is not None:
                fired[index] += 1
                edge = edges[index]
                if edge.box is not None:
                    last_box[edge.target] = edge.box
    through: Counter[str] = Counter()  # box id -> entries through it
    for i, edge in enumerate(edges):
        if edge.box is not None:
            through[edge.box] += fired[i]

    def boxes(state: StateNode, visited: int) -> tuple[Box, ...]:
        """The state's boxes, each with its share of the visits; the one the execution last
        came in by carries the marks (its own box when it never came in by a transition)."""
        copies = sum(through[box.id] for box in state.boxes if box.copy)
        marked = last_box.get(state.path, state.id)
        return tuple(
            dataclasses.replace(
                box,
                visits=through[box.id] if box.copy else max(0, visited - copies),
                marked=box.id == marked,
            )
            for box in state.boxes
        )

    def paint(state: StateNode) -> StateNode:
        path = state.path
        visited = visits.get(path, 0)
        if visited == 0 and state.is_cluster:
            # Entering a nested state may be recorded only for the leaf: count the cluster as
            # visited when anything inside it was.
            visited = int(any(visits.get(s.path, 0) for s in state.walk()))
        return dataclasses.replace(
            state,
            children=tuple(paint(child) for child in state.children),
            active=path in active,
            visits=visited,
            attempts=attempts.get(path, 0),
            failed=path in errors.failed,
            handled=tuple(errors.handled.get(path, ())),
            timed_out=path in timed_out,
            compensated=compensated.get(path, 0),
            compensation_failed=path in compensation_failed,
            boxes=boxes(state, visited),
        )

    return dataclasses.replace(
        diagram,
        states=tuple(paint(s) for s in diagram.states),
        transitions=tuple(
            dataclasses.replace(edge, fired=fired.get(i, 0)) for i, edge in enumerate(edges)
        ),
        execution=ExecutionOverlay(
            id=snapshot.id,
            status=str(snapshot.status.value),
            current=snapshot.current,
            active=tuple(sorted(set(active_paths))),
        ),
    )
