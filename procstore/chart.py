"""The resolved chart: a procedure's states as one tree, worked out once.

A `Procedure` (the pydantic models) says what the author wrote; a `Chart` says what it means:
every state with its dotted path, kind, parent, children, initial child and JSON location; every
transition with its target resolved to a path; which states are entered together; which are
reachable. Everything that needs the chart's structure (the static checks, and in time the
compiler, the diagrams and the CLI) reads it from here instead of walking the definition again.

A chart can be built from any document that passes the schema, and from the raw data of one that
does not (what is malformed is left out, so validation checks the rest at the same time). A
target that names no state is kept with the reason it does not resolve (`Transition.target` is
`None`), so a diagram can still draw it; validation reports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from procstore import paths
from procstore.definition import (
    ChoiceRule,
    Definition,
    Procedure,
    RegionDef,
    StateDef,
    TransitionDef,
)

__all__ = [
    "CHOICE_EVENT",
    "LEAF_KINDS",
    "Chart",
    "ChartState",
    "StateKind",
    "Transition",
    "build_chart",
    "item_chart",
]

#: ``leaf``: may run an action; ``compound``: in one child at a time; ``parallel``: in every
#: region at once; ``region``: one region of a parallel state; ``wait``: a leaf that waits
#: (``wait``); ``choice``: a leaf that routes at once on ordered guards (``choice``); ``map``:
#: runs its inline item states once per item of a list, as child executions (its item states
#: are not in this chart: see `item_chart`).
StateKind = Literal["leaf", "compound", "parallel", "region", "wait", "choice", "map"]
#: The kinds of state without children: a leaf, a wait state, a choice state.
LEAF_KINDS: frozenset[str] = frozenset({"leaf", "wait", "choice"})
#: The event of a choice state's rules: fired from the choice state alone, at once on entry,
#: so it never meets an event of the same name a host sends (a choice state is never active
#: when an event is sent).
CHOICE_EVENT = "choice"

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
        definition: The transition as written (its raw mapping, in a chart of raw data); a
            choice state's rule or default as the transition on `CHOICE_EVENT` it is.
        loc: Its location in the document.
        rule: ``transition``; or, for a choice state, ``choice`` (one of its rules, tried in
            `index` order) or ``default`` (tried last).
    """

    source: str
    index: int
    event: str
    target: str | None
    unresolved: str | None
    definition: TransitionDef | Mapping[str, Any]
    loc: Location
    rule: Literal["transition", "choice", "default"] = "transition"

    @property
    def target_loc(self) -> Location:
        """Where its target is written: the transition's (or rule's) ``target``, or a choice
        state's ``default``."""
        return self.loc if self.rule == "default" else (*self.loc, "target")

    @property
    def spec(self) -> TransitionDef:
        """The transition as the schema read it (a chart of a procedure, not of raw data)."""
        if not isinstance(self.definition, TransitionDef):
            raise TypeError(f"transition {self.loc} was not read by the schema")
        return self.definition


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
        definition: The state (or region) as written (its raw mapping, in a chart of raw
            data).
        loc: Its location in the document.
        transitions: Its own transitions, in document order (regions have none).
    """

    path: str
    kind: StateKind
    parent: str | None
    container: str | None
    children: tuple[str, ...]
    initial: str | None
    definition: StateDef | RegionDef | Mapping[str, Any]
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
        initial: The initial state's path (``""`` in a chart of raw data that names none).
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
            elif state.initial is not None and state.initial in self.states:
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

    def reachable(self, follow: Callable[[Transition], bool] | None = None) -> set[str]:
        """Every state some run can be in: from the initial state, through every transition
        of every state entered (a transition of a state fires from anywhere inside it) — or
        only those ``follow`` accepts."""
        seen: set[str] = set()
        todo: list[str] = []

        def enter(target: str) -> None:
            for path in self.entered_by(target):
                if path not in seen:
                    seen.add(path)
                    todo.append(path)

        if self.initial not in self.states:
            return seen
        enter(self.initial)
        entered = {self.initial}
        while todo:
            for transition in self.states[todo.pop()].transitions:
                target = transition.target
                if target is None or (follow is not None and not follow(transition)):
                    continue
                if target not in entered:
                    entered.add(target)
                    enter(target)
        return seen


def build_chart(
    source: Procedure | Definition | Mapping[str, Any], base: Location = ("definition",)
) -> Chart:
    """The resolved chart of a procedure.

    Args:
        source: A procedure (or its definition) that passed the schema; or a raw document as
            read (a mapping with a ``definition``), whatever its shape: what is malformed in it
            is left out (the schema reports it), so that validation can check the rest at the
            same time. A state's `ChartState.definition` is then its raw mapping.
        base: Where the definition is in the document (a map state's item states are under
            the map state's ``map``): the prefix of every location.
    """
    if isinstance(source, Procedure):
        source = source.definition
    if isinstance(source, Definition):
        states: Any = source.states
        initial: Any = source.initial_state
    else:
        definition = source.get("definition")
        definition = definition if isinstance(definition, Mapping) else {}
        states, initial = definition.get("states"), definition.get("initial_state")
    states = states if isinstance(states, Mapping) else {}
    builder = _Builder()
    builder.add(states, None, None, (*base, "states"))
    names = builder.built.keys()
    resolved = {}
    for path in builder.order:  # document order, parents first
        state = builder.built[path]
        if state.kind != "region":
            state = dataclasses.replace(state, transitions=_transitions(state, names))
        resolved[path] = state
    return Chart(
        states=resolved,
        top_level=tuple(builder.top_level),
        initial=initial if isinstance(initial, str) else "",
    )


class _Builder:
    """Walks the definition once, in document order: the one walk of a definition's states."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.built: dict[str, ChartState] = {}
        self.top_level: list[str] = []

    def add(
        self, states: Mapping[Any, Any], parent: str | None, container: str | None, loc: Location
    ) -> tuple[str, ...]:
        added = []
        for name, state in states.items():
            if not isinstance(name, str) or not isinstance(state, StateDef | Mapping):
                continue  # malformed: the schema says so
            path = paths.join(parent, name)
            here = (*loc, name)
            added.append(path)
            if parent is None:
                self.top_level.append(path)
            self.order.append(path)
            kind: StateKind = "leaf"
            children: tuple[str, ...] = ()
            substates, regions = _parts(state)
            if regions is not None:
                kind = "parallel"
                children = tuple(
                    self.region(path, region_name, region, (*here, "parallel", region_name))
                    for region_name, region in regions.items()
                    if isinstance(region_name, str) and isinstance(region, RegionDef | Mapping)
                )
            elif _is_map(state):
                kind = "map"
            elif substates is not None:
                kind = "compound"
                if isinstance(substates, Mapping):
                    children = self.add(substates, path, path, (*here, "states"))
            elif _field(state, "wait") is not None:
                kind = "wait"
            elif _field(state, "choice") is not None:
                kind = "choice"
            initial = _initial(path, state)
            self.built[path] = ChartState(
                path, kind, parent, container, children, initial, state, here
            )
        return tuple(added)

    def region(self, parallel: str, name: str, region: Any, loc: Location) -> str:
        path = paths.join(parallel, name)
        self.order.append(path)
        substates = region.states if isinstance(region, RegionDef) else region.get("states")
        children: tuple[str, ...] = ()
        if isinstance(substates, Mapping):
            children = self.add(substates, path, parallel, (*loc, "states"))
        self.built[path] = ChartState(
            path, "region", parallel, None, children, _initial(path, region), region, loc
        )
        return path


def _is_map(state: StateDef | Mapping[str, Any]) -> bool:
    if isinstance(state, StateDef):
        return state.map is not None
    return isinstance(state.get("map"), Mapping)


def item_chart(state: ChartState) -> Chart | None:
    """The chart of a map state's item states (their locations under the map's ``map``), or
    ``None`` when ``state`` is no map state (or, raw, its ``map`` is not an object)."""
    if state.kind != "map":
        return None
    spec = state.state.map if state.state is not None else state.definition.get("map")  # type: ignore[union-attr]
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return build_chart({"definition": spec}, base=(*state.loc, "map"))
    return build_chart(
        Definition(initial_state=spec.initial_state, states=spec.states), base=(*state.loc, "map")
    )


def _parts(state: StateDef | Mapping[str, Any]) -> tuple[Any, Mapping[Any, Any] | None]:
    """A state's children and regions as written (raw: ``states`` may be anything; a state
    with ``parallel`` is parallel whatever else it has)."""
    if isinstance(state, StateDef):
        return state.states, state.parallel
    regions = state.get("parallel")
    return (state.get("states", None) if "states" in state else None), (
        regions if isinstance(regions, Mapping) else None
    )


def _initial(path: str, state: Any) -> str | None:
    initial = state.initial_state if isinstance(state, StateDef | RegionDef) else None
    if isinstance(state, Mapping):
        initial = state.get("initial_state")
    return paths.join(path, initial) if isinstance(initial, str) and initial else None


def _field(state: StateDef | Mapping[str, Any], name: str) -> Any:
    """A field of a state as written (``None`` when absent)."""
    return getattr(state, name) if isinstance(state, StateDef) else state.get(name)


def _transitions(state: ChartState, names: Collection[str]) -> tuple[Transition, ...]:
    if state.kind == "choice":
        return _choice_rules(state, names)
    written: Any = (
        state.definition.transitions
        if isinstance(state.definition, StateDef)
        else state.definition.get("transitions")  # type: ignore[union-attr]
    )
    transitions = []
    for i, transition in enumerate(written if isinstance(written, list | tuple) else ()):
        event: Any
        target: Any
        if isinstance(transition, TransitionDef):
            event, target = transition.event, transition.target
        elif isinstance(transition, Mapping):
            event, target = transition.get("event"), transition.get("target")
        else:
            continue
        resolved: str | None = None
        unresolved: str | None = None
        if isinstance(target, str) and target:
            try:
                resolved = paths.resolve_target(state.path, target, names)
            except ValueError as exc:
                unresolved = str(exc)
        loc = (*state.loc, "transitions", i)
        name = event if isinstance(event, str) else ""
        transitions.append(Transition(state.path, i, name, resolved, unresolved, transition, loc))
    return tuple(transitions)


def _resolve(source: str, target: Any, names: Collection[str]) -> tuple[str | None, str | None]:
    """``target`` resolved from ``source`` (a path), or why it does not resolve."""
    if not isinstance(target, str) or not target:
        return None, None
    try:
        return paths.resolve_target(source, target, names), None
    except ValueError as exc:
        return None, str(exc)


def _choice_rules(state: ChartState, names: Collection[str]) -> tuple[Transition, ...]:
    """A choice state's rules, then its default, as transitions on `CHOICE_EVENT` in the order
    they are tried (the default, without a guard, last)."""
    rules: Any = _field(state.definition, "choice")  # type: ignore[arg-type]
    default: Any = _field(state.definition, "default")  # type: ignore[arg-type]
    transitions = []
    for i, rule in enumerate(rules if isinstance(rules, list | tuple) else ()):
        if isinstance(rule, Mapping):
            guard, target = rule.get("guard"), rule.get("target")
            written: TransitionDef | Mapping[str, Any] = {"event": CHOICE_EVENT, **rule}
        elif isinstance(rule, ChoiceRule):
            guard, target = rule.guard, rule.target
            written = TransitionDef(event=CHOICE_EVENT, target=target, guard=guard)
        else:
            continue
        resolved, unresolved = _resolve(state.path, target, names)
        loc = (*state.loc, "choice", i)
        transitions.append(
            Transition(
                state.path, i, CHOICE_EVENT, resolved, unresolved, written, loc, rule="choice"
            )
        )
    if isinstance(default, str) and default:
        resolved, unresolved = _resolve(state.path, default, names)
        written = {"event": CHOICE_EVENT, "target": default}
        if isinstance(state.definition, StateDef):
            written = TransitionDef(event=CHOICE_EVENT, target=default)
        loc = (*state.loc, "default")
        index = len(transitions)
        transitions.append(
            Transition(
                state.path, index, CHOICE_EVENT, resolved, unresolved, written, loc, "default"
            )
        )
    return tuple(transitions)
