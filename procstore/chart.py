"""The resolved chart: a procedure's states as one tree, worked out once.

A `Procedure` (the pydantic models) says what the author wrote; a `Chart` says what it means:
every state with its dotted path, kind, parent, children, initial child and JSON location; every
transition with its target resolved to a path; which states are entered together; which are
reachable. Everything that needs the chart's structure (the static checks, and in time the
compiler, the diagrams and the CLI) reads it from here instead of walking the definition again.

A chart can be built from any document that passes the schema: a target that names no state is
kept with the reason it does not resolve (`Transition.target` is `None`), so a diagram can still
draw it; validation reports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from procstore import paths
from procstore.definition import Definition, Procedure, RegionDef, StateDef, TransitionDef

__all__ = ["Chart", "ChartState", "StateKind", "Transition", "build_chart"]

#: ``leaf``: may run an action; ``compound``: in one child at a time; ``parallel``: in every
#: region at once; ``region``: one region of a parallel state.
StateKind = Literal["leaf", "compound", "parallel", "region"]

#: A location in the document, as pydantic gives it: keys and list indexes from the top.
Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Transition:
    """One transition as written, with its target resolved.

    Attributes:
        source: Path of the state that declares it.
        index: Its position among the source's transitions (document order is the order in
            which transitions on the same event are tried).
        event: The event that fires it.
        target: The path of the state it enters, or `None` when the target names no state.
        unresolved: Why the target does not resolve, when it does not.
        definition: The transition as written.
        loc: Its location in the document.
    """

    source: str
    index: int
    event: str
    target: str | None
    unresolved: str | None
    definition: TransitionDef
    loc: Location


@dataclass(frozen=True, slots=True)
class ChartState:
    """One state (or region) of the chart.

    Attributes:
        path: Dotted path from the top, e.g. `checks.credit.run` (regions are path segments).
        kind: leaf, compound, parallel or region.
        parent: Path of the enclosing state or region; `None` at the top.
        container: The compound or parallel state this one completes when it is terminal
            (regions skipped); `None` at the top and for regions.
        children: Paths of the child states (of a parallel state: its regions), in document
            order.
        initial: Path of the child entered first (compound states and regions).
        definition: The state (or region) as written.
        loc: Its location in the document.
        transitions: Its own transitions, in document order (regions have none).
    """

    path: str
    kind: StateKind
    parent: str | None
    container: str | None
    children: tuple[str, ...]
    initial: str | None
    definition: StateDef | RegionDef
    loc: Location
    transitions: tuple[Transition, ...] = ()

    @property
    def name(self) -> str:
        """The state's own name, as written."""
        return self.path.rpartition(paths.SEPARATOR)[2]

    @property
    def state(self) -> StateDef | None:
        """The state definition (`None` for a region)."""
        return self.definition if isinstance(self.definition, StateDef) else None

    @property
    def terminal(self) -> bool:
        """No transitions: completing it completes its container (at the top: the
        execution). Regions are never terminal themselves."""
        return self.kind != "region" and not self.transitions

    @property
    def events(self) -> frozenset[str]:
        """The events of its own transitions."""
        return frozenset(t.event for t in self.transitions)


@dataclass(frozen=True)
class Chart:
    """A procedure's states as one resolved tree (build it with `build_chart`).

    Attributes:
        states: Every state and region by path, in document order (depth first).
        top_level: The top-level states' paths, in document order.
        initial: The initial state's path.
    """

    states: Mapping[str, ChartState]
    top_level: tuple[str, ...]
    initial: str
    _entries: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __getitem__(self, path: str) -> ChartState:
        return self.states[path]

    def __iter__(self) -> Iterator[ChartState]:
        return iter(self.states.values())

    def transitions(self) -> Iterator[Transition]:
        """Every transition, in document order."""
        for state in self.states.values():
            yield from state.transitions

    def ancestors(self, path: str) -> Iterator[str]:
        """The paths of the states and regions enclosing `path`, innermost first."""
        parent = self.states[path].parent
        while parent is not None:
            yield parent
            parent = self.states[parent].parent

    def within(self, path: str) -> Iterator[str]:
        """`path` and every state and region inside it, in document order."""
        yield path
        for child in self.states[path].children:
            yield from self.within(child)

    def entry(self, path: str) -> tuple[str, ...]:
        """The states entered when `path` is entered afresh: itself and its initial
        descendants (every region of a parallel state), parents before children."""
        entry = self._entries.get(path)
        if entry is None:
            state = self.states[path]
            if state.kind == "parallel":
                entry = (path, *(p for region in state.children for p in self.entry(region)))
            elif state.initial is not None:
                entry = (path, *self.entry(state.initial))
            else:
                entry = (path,)
            self._entries[path] = entry
        return entry

    def entered_by(self, target: str) -> list[str]:
        """Every state a transition into `target` may leave active: `target`'s entry, its
        ancestors, and the initial states of the other regions of its parallel ancestors."""
        entered = list(self.entry(target))
        below = target
        for node in self.ancestors(target):
            entered.append(node)
            if self.states[node].kind == "parallel":
                for region in self.states[node].children:
                    if region != below:
                        entered += self.entry(region)
            below = node
        return entered

    def reachable(self) -> set[str]:
        """Every state some run can be in: from the initial state, through every transition
        of every state entered (a transition of a state fires from anywhere inside it)."""
        seen: set[str] = set()
        todo: list[str] = []

        def add(path: str) -> None:
            if path not in seen:
                seen.add(path)
                todo.append(path)

        def enter(target: str) -> None:
            for path in self.entry(target):
                add(path)
            below = target
            for node in self.ancestors(target):
                if node in seen:
                    break  # entered before: its ancestors and other regions were then too
                add(node)
                if self.states[node].kind == "parallel":
                    for region in self.states[node].children:
                        if region != below:
                            for path in self.entry(region):
                                add(path)
                below = node

        enter(self.initial)
        entered = {self.initial}
        while todo:
            for transition in self.states[todo.pop()].transitions:
                target = transition.target
                if target is not None and target not in entered:
                    entered.add(target)
                    enter(target)
        return seen


def build_chart(procedure: Procedure | Definition) -> Chart:
    """The resolved chart of a procedure that passed the schema."""
    definition = procedure.definition if isinstance(procedure, Procedure) else procedure
    builder = _Builder()
    builder.add(definition.states, None, None, ("definition", "states"))
    names = builder.built.keys()
    states = {}
    for path in builder.order:  # document order, parents first
        state = builder.built[path]
        if isinstance(state.definition, StateDef):
            state = dataclasses.replace(state, transitions=_transitions(state, names))
        states[path] = state
    return Chart(
        states=states,
        top_level=tuple(definition.states),
        initial=definition.initial_state,
    )


class _Builder:
    """Walks the definition once, in document order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.built: dict[str, ChartState] = {}

    def add(
        self,
        states: Mapping[str, StateDef],
        parent: str | None,
        container: str | None,
        loc: Location,
    ) -> tuple[str, ...]:
        added = []
        for name, state in states.items():
            path = paths.join(parent, name)
            here = (*loc, name)
            added.append(path)
            self.order.append(path)
            kind: StateKind = "leaf"
            children: tuple[str, ...] = ()
            if state.states is not None:
                kind, children = "compound", self.add(state.states, path, path, (*here, "states"))
            elif state.parallel is not None:
                kind = "parallel"
                children = tuple(
                    self.region(path, region_name, region, (*here, "parallel", region_name))
                    for region_name, region in state.parallel.items()
                )
            initial = paths.join(path, state.initial_state) if state.initial_state else None
            self.built[path] = ChartState(
                path, kind, parent, container, children, initial, state, here
            )
        return tuple(added)

    def region(self, parallel: str, name: str, region: RegionDef, loc: Location) -> str:
        path = paths.join(parallel, name)
        self.order.append(path)
        children = self.add(region.states, path, parallel, (*loc, "states"))
        initial = paths.join(path, region.initial_state)
        self.built[path] = ChartState(
            path, "region", parallel, None, children, initial, region, loc
        )
        return path


def _transitions(state: ChartState, names: Collection[str]) -> tuple[Transition, ...]:
    assert isinstance(state.definition, StateDef)
    transitions = []
    for i, written in enumerate(state.definition.transitions):
        try:
            target: str | None = paths.resolve_target(state.path, written.target, names)
            unresolved = None
        except ValueError as exc:
            target, unresolved = None, str(exc)
        loc = (*state.loc, "transitions", i)
        transitions.append(
            Transition(state.path, i, written.event, target, unresolved, written, loc)
        )
    return tuple(transitions)
