"""Lay an execution's snapshot over a diagram: which states it is in, how often each was
entered and each transition fired, and which states failed, handled an error, timed out or
were compensated — worked out from its history (see `overlay`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from procstore import paths
from procstore.diagrams.extract import as_execution
from procstore.diagrams.model import (
    Box,
    Diagram,
    ExecutionOverlay,
    StateNode,
    TransitionEdge,
)
from procstore.snapshot import ExecutionState, HistoryRecord, Status

__all__ = ["overlay"]


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
        if kind in ("action", "wait") and record.error is not None:  # a wait's WaitError too
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
            _leave(record, state, raised, result)
        elif kind in ("rollback", "finished"):
            _end(record, state, raised, result)
    return result


def _leave(record: HistoryRecord, state: str, raised: dict[str, None], result: _Errors) -> None:
    """A transition ``record`` declared on ``state`` leaves it and every state inside it, so
    their raises are over; an ``error`` or ``timeout`` one handled the newest of those raises
    (the declaring state's own when none is pending)."""
    left = [path for path in raised if paths.is_within(path, state)]
    if record.event in _RAISED:
        origin = left[-1] if left else state
        target = record.target or ""
        result.handled.setdefault(origin, {})[(record.event or "", target)] = None
    for path in left:
        del raised[path]


def _end(record: HistoryRecord, state: str, raised: dict[str, None], result: _Errors) -> None:
    """A rollback or the end of the execution closes every raise: the unhandled ones failed
    when the execution failed (then the state it ends in failed too)."""
    kind = record.kind
    failing = (kind == "rollback" and record.message == _FAILURE_ROLLBACK) or (
        kind == "finished" and record.status in _FAILED
    )
    if failing:
        result.failed.update(raised)
    if kind == "finished" and record.status in _FAILED:
        result.failed.add(state)
    raised.clear()


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


def _items(history: tuple[HistoryRecord, ...]) -> dict[str, str]:
    """Where each map state's items stand, from its last `item` record: ``3/10 done, 1
    failed`` (and how many run, while some do)."""
    latest: dict[str, Any] = {}
    for record in history:
        if record.kind == "item" and record.state is not None and isinstance(record.result, dict):
            latest[record.state] = record.result
        elif record.kind == "entered" and record.state is not None:
            latest.pop(record.state, None)  # a new visit starts from none
    notes = {}
    for state, counts in latest.items():
        count, done, failed = counts.get("count", 0), counts.get("done", 0), counts.get("failed", 0)
        note = f"{done}/{count} done"
        if failed:
            note += f", {failed} failed"
        notes[state] = note
    return notes


def _active_paths(snapshot: ExecutionState) -> list[str]:
    """The execution's current state, then its active states (when the snapshot has them)."""
    raw_active = getattr(snapshot, "active", None)
    active_paths = [snapshot.current]
    if isinstance(raw_active, list | tuple) and raw_active:
        active_paths += [str(p) for p in raw_active]
    return active_paths


def _fired(
    history: tuple[HistoryRecord, ...], edges: list[TransitionEdge]
) -> tuple[Counter[int], dict[str, str]]:
    """How often each edge (by index) fired, and for each state path the box the execution
    last entered it by (for a state drawn more than once)."""
    by_source: dict[str, list[int]] = {}
    for i, edge in enumerate(edges):
        by_source.setdefault(edge.source, []).append(i)
    fired: Counter[int] = Counter()
    last_box: dict[str, str] = {}
    for record in history:
        if record.kind == "transition":
            index = _match_edge(record, by_source, edges)
            if index is not None:
                fired[index] += 1
                edge = edges[index]
                if edge.box is not None:
                    last_box[edge.target] = edge.box
    return fired, last_box


def _error_text(snapshot: ExecutionState) -> str | None:
    """Why the execution failed, in one line, when its snapshot says."""
    error = getattr(snapshot, "error", None)
    if error is None:
        return None
    return f"{error.type}: {error.message}" if error.message else error.type


def overlay(diagram: Diagram, execution: ExecutionState | Mapping[str, Any] | Any) -> Diagram:
    """``diagram`` with ``execution`` drawn on top: its active states, how many times each
    state was entered and each transition fired, the states that failed, handled an error,
    timed out or were compensated, and which box of a state drawn more than once the
    execution came in by."""
    snapshot = as_execution(execution)
    history = snapshot.history

    active_paths = _active_paths(snapshot)
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
    items = _items(history)

    edges = list(diagram.transitions)
    fired, last_box = _fired(history, edges)
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
            items=items.get(path) if state.kind == "map" else None,
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
            error=_error_text(snapshot),
        ),
    )
