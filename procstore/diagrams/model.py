"""The neutral diagram model: what a state diagram shows, independent of any output format.

:func:`procstore.diagrams.extract.extract` builds it from a procedure (and, optionally, an
execution's snapshot); the renderers (:mod:`~procstore.diagrams.dot`,
:mod:`~procstore.diagrams.mermaid`) only lay it out. Everything here is immutable and kept in
document order, so the same procedure always gives the same diagram.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from procstore.chart import StateKind as ChartStateKind

# The multiplication sign of the backoff rates, also in how many times an edge fired.
from procstore.describe import TIMES as TIMES

#: The chart's kinds (`procstore.chart.StateKind`: leaf, compound, parallel, region, wait,
#: choice), and
#: ``missing``: a transition target that names no state (only in diagrams of documents that
#: were not fully validated).
StateKind = ChartStateKind | Literal["missing"]

#: How a transition is drawn: ``error`` and ``timeout`` apart from the happy path; ``done``
#: (completion of a compound or parallel state) like ``normal``.
EdgeKind = Literal["normal", "error", "timeout", "done"]

#: A terminal state ends its parent successfully or with a failure.
Outcome = Literal["success", "failure"]

#: The overlay's note on a state where the execution failed (:attr:`StateNode.failed`).
FAILED_NOTE = "failed"
#: The line of a state that waits for a callback token after its action.
CALLBACK_LINE = "⧗ waits for callback (token)"


def handled_note(event: str, target: str) -> str:
    """The overlay's note on a state whose error the document handled
    (:attr:`StateNode.handled`): ``error handled → not_booked``."""
    return f"{event} handled → {target}"


@dataclass(frozen=True)
class Box:
    """One box of a state drawn more than once (:attr:`StateNode.boxes`).

    A terminal leaf entered from more than :data:`procstore.diagrams.extract.FANIN_LIMIT` states
    is drawn beside each of them: its own box beside the first, a copy beside each other one.
    It has no outgoing transitions, so a copy hides nothing, and the chart needs no long edges
    across it to one shared box.

    Attributes:
        id: The box's node id: the state's own :attr:`StateNode.id` for its own box, a unique
            ``[A-Za-z0-9_]`` id for a copy.
        source: Path of the state whose transitions to this state end at this box.
        copy: A copy (drawn marked as one), not the state's own box.
        visits: Overlay: how many times the execution entered the state through this box (the
            own box also counts entries that came through no transition, such as the start).
        marked: Overlay: this box carries the state's overlay marks (active, failed, attempts,
            compensation): the execution last entered the state through it. Exactly one box of
            an overlaid state is marked.
    """

    id: str
    source: str
    copy: bool = False
    visits: int = 0
    marked: bool = False


@dataclass(frozen=True)
class StateNode:
    """One state (or region) of the diagram.

    Attributes:
        path: Dotted path from the top (``checks.credit.run``); unique.
        name: The state's own name, as written in the document (the label).
        id: A unique identifier made of ``[A-Za-z0-9_]`` only, safe in DOT and Mermaid.
        kind: leaf, compound, parallel, region or missing.
        parent: Path of the enclosing state or region; ``None`` at the top.
        description: The state's description, if any.
        initial: Path of the child entered first (compound states and regions).
        children: Child states (compound, region) or regions (parallel), in document order.
        action: The action in a few words (``function deploy_actions.build → artifact``).
        action_timeout_ms: The action's per-attempt bound.
        wait: A wait state's wait in a few words (``wait 10s``, ``wait until $.ship_at``).
        retry: The retry policy in a few words (``retry 4x 10ms``, backoff rate, cap, jitter,
            retried errors).
        timeout_ms: The bound on the whole stay in the state.
        compensate: The compensating action in a few words.
        callback: It waits for a callback token (``"callback": true``) after its action.
        terminal: No outgoing transitions: ends its parent (the execution, at the top).
        outcome: For terminal states: how ending here counts; ``None`` otherwise.
        error: For a failure terminal that names one: its error and cause
            (``Declined: the card was refused``).
        active: Overlay: the execution is in this state now (or ended here).
        visits: Overlay: how many times the execution entered the state.
        attempts: Overlay: how many times the state's action ran (retries included).
        failed: Overlay: the execution failed here: it ended in this state with status failed
            (or rolled_back), or this state's action failed for good (or its timeout ran out)
            and no transition handled that.
        handled: Overlay: this state's action failed for good (or its timeout ran out) and a
            transition the document declares for that fired (an ``error`` or ``timeout``
            transition of the state or of an ancestor): ``(event, target path)`` pairs, in the
            order they first happened. A handled error is not a failure of the execution.
        timed_out: Overlay: the state's ``timeout_ms`` ran out.
        compensated: Overlay: how many times the state's action was compensated.
        compensation_failed: Overlay: a compensation of the state's action failed.
        boxes: The boxes the state is drawn as when it is drawn more than once (a terminal leaf
            entered from many states: see :class:`Box`), its own box first; empty when it is
            drawn once. Renderers that draw every state once (Mermaid) ignore them.
        map: A map state's items in a few words (``each of $.orders · 2 at once``); its
            children are its item states (paths under the map state's).
        items: Overlay: where a map state's items stand (``3/10 done, 1 failed``).
    """

    path: str
    name: str
    id: str
    kind: StateKind
    parent: str | None = None
    description: str | None = None
    initial: str | None = None
    children: tuple[StateNode, ...] = ()
    action: str | None = None
    action_timeout_ms: float | None = None
    wait: str | None = None
    retry: str | None = None
    timeout_ms: float | None = None
    compensate: str | None = None
    callback: bool = False
    terminal: bool = False
    outcome: Outcome | None = None
    error: str | None = None
    active: bool = False
    visits: int = 0
    attempts: int = 0
    failed: bool = False
    handled: tuple[tuple[str, str], ...] = ()
    timed_out: bool = False
    compensated: int = 0
    compensation_failed: bool = False
    boxes: tuple[Box, ...] = ()
    map: str | None = None
    items: str | None = None

    def drawn_as(self, box: Box) -> StateNode:
        """The state as ``box`` shows it: the box that carries the overlay (:attr:`Box.marked`)
        shows every mark, the others only how many times the execution came in through them;
        each shows its own share of :attr:`visits`."""
        if box.marked:
            return dataclasses.replace(self, visits=box.visits)
        return dataclasses.replace(
            self,
            active=False,
            visits=box.visits,
            attempts=0,
            failed=False,
            handled=(),
            timed_out=False,
            compensated=0,
            compensation_failed=False,
        )

    @property
    def handled_notes(self) -> tuple[str, ...]:
        """Overlay: ``error handled → target`` for each :attr:`handled` error."""
        return tuple(handled_note(event, target) for event, target in self.handled)

    @property
    def is_cluster(self) -> bool:
        """Drawn as a box around its children (compound, parallel, region, map)."""
        return self.kind in ("compound", "parallel", "region", "map")

    def walk(self) -> Iterator[StateNode]:
        """This state, then every state inside it, depth first in document order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class TransitionEdge:
    """One transition of the document.

    Attributes:
        source: Path of the state that declares it.
        target: Path of the state it enters (resolved from the document's target).
        event: The event that fires it.
        guards: Its guards, each as written for a label: ``amount < 1000``, ``pred``,
            ``!pred`` (``unless``).
        errors: The error types an ``error`` transition catches (its ``errors``), or
            ``None`` for every error.
        kind: How it is drawn (see :data:`EdgeKind`).
        index: Its position among the source state's transitions.
        order: When the source state declares several transitions on the same event: this
            one's place among them, from 1. They are tried in that (document) order and the
            first whose guards pass fires. ``None`` for the only transition on its event.
        box: When the target is drawn more than once (:attr:`StateNode.boxes`): the id of the
            box this edge ends at; ``None`` otherwise.
        fired: Overlay: how many times it fired.
        rule: ``transition``; or a choice state's ``choice`` rule (numbered by :attr:`order`,
            labelled with its guard alone) or its ``default`` (tried last).
    """

    source: str
    target: str
    event: str
    guards: tuple[str, ...] = ()
    errors: tuple[str, ...] | None = None
    kind: EdgeKind = "normal"
    index: int = 0
    order: int | None = None
    box: str | None = None
    fired: int = 0
    rule: Literal["transition", "choice", "default"] = "transition"

    @property
    def label(self) -> str:
        """``event`` or ``event [guard] [pred] [!pred]``, after its :attr:`order` if it has one:
        ``(1) success [amount < 1000]`` (not ``1.``: Markdown, which Mermaid may render labels
        with, reads a leading ``1.`` as a list); the errors an ``error`` transition catches
        follow its event: ``error (ValueError, Timeout)``."""
        if self.rule == "default":
            return "default"
        event = self.event if self.errors is None else f"{self.event} ({', '.join(self.errors)})"
        shown = () if self.rule == "choice" else (event,)
        text = " ".join((*shown, *(f"[{g}]" for g in self.guards)))
        return text if self.order is None else f"({self.order}) {text}"


@dataclass(frozen=True)
class ExecutionOverlay:
    """Where an execution stands, as drawn on top of its procedure."""

    id: str
    status: str
    current: str
    active: tuple[str, ...]
    error: str | None = None  # why it failed (``Timeout: ...``), when it did


@dataclass(frozen=True)
class Diagram:
    """A whole procedure, ready to render.

    Attributes:
        name: The procedure's name.
        version: Its version.
        description: Its description.
        initial: Path of the top-level initial state.
        states: The top-level states, in document order.
        transitions: Every transition, in document order (depth first, like the states).
        execution: The overlaid execution, if any.
    """

    name: str
    version: str
    description: str | None
    initial: str
    states: tuple[StateNode, ...]
    transitions: tuple[TransitionEdge, ...]
    execution: ExecutionOverlay | None = None

    @property
    def title(self) -> str:
        return f"{self.name} {self.version}"

    def walk(self) -> Iterator[StateNode]:
        """Every state and region, depth first in document order."""
        for state in self.states:
            yield from state.walk()

    @cached_property
    def by_path(self) -> dict[str, StateNode]:
        """Every state and region by path."""
        return {state.path: state for state in self.walk()}

    def state(self, path: str) -> StateNode:
        """The state at ``path`` (``KeyError`` if there is none)."""
        return self.by_path[path]

    @cached_property
    def levels(self) -> dict[str, int]:
        """How many transitions it takes to reach each state from the initial one.

        Entering a compound or parallel state enters its initial child (each region's) at the
        same level, and entering a nested state enters its ancestors too; transitions declared
        on a state count from it. States that cannot be reached are left out.
        """
        states = self.by_path
        targets: dict[str, list[str]] = {}
        for edge in self.transitions:
            targets.setdefault(edge.source, []).append(edge.target)
        levels: dict[str, int] = {}
        queue: deque[tuple[str, int]] = deque([(self.initial, 0)])
        while queue:
            path, level = queue.popleft()
            if path in levels or path not in states:
                continue
            levels[path] = level
            state = states[path]
            # Same level first (0-1 BFS): ancestors and initial children enter together.
            if state.parent is not None:
                queue.appendleft((state.parent, level))
            if state.kind == "parallel":
                queue.extendleft((region.path, level) for region in reversed(state.children))
            elif state.initial is not None:
                queue.appendleft((state.initial, level))
            queue.extend((target, level + 1) for target in targets.get(path, ()))
        return levels

    @cached_property
    def compensation_order(self) -> tuple[str, ...]:
        """Paths of the states with a ``compensate`` action, in the order a failure at the end of
        the happy path compensates them: the reverse of the order they are reached from the
        initial state (:attr:`levels`, document order breaking ties). Unreachable states are
        left out (they are never compensated)."""
        levels = self.levels
        reached = [
            (levels[state.path], n, state.path)
            for n, state in enumerate(self.walk())
            if state.compensate is not None and state.path in levels
        ]
        return tuple(path for _, _, path in sorted(reached, reverse=True))
