"""Static checks of a resolved chart: what would make an execution wait forever, and what the
author cannot have meant.

They run at registration, after the schema and the cross-reference rules passed (so every
target resolves). `check_chart` returns two lists of `Problem`s, each with the JSON path of
what to fix:

- **errors**, which reject the procedure: a misspelt outcome event (`"sucess"` where the
  action's `success` is handled nowhere: "did you mean 'success'?"); a state after whose action
  (or, for a compound or parallel state, after whose completion) nothing can move the execution
  on; states from which no end can be reached at all (a trap such as `b -> b` forever);
- **warnings**, which do not (unless the caller is strict): transitions on an event that can
  never fire there (`done` on a leaf, `timeout` where no `timeout_ms` applies, `error` on a
  compound state inside which nothing can fail); guards that are always false (a constant
  expression), or always true before other transitions on the same event.

An `error` or `timeout` that nothing handles is not reported: it fails the execution (and
compensates), which is a design, not a slip.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from procstore import paths
from procstore.chart import LEAF_KINDS, Chart, ChartState, Transition
from procstore.definition import FailAction, FunctionAction, StateDef
from procstore.documents import json_path
from procstore.errors import Problem
from procstore.guards import GuardExpression, GuardSyntaxError

__all__ = ["Findings", "check_chart"]

SUCCESS, ERROR, TIMEOUT, DONE = "success", "error", "timeout", "done"
#: The events procstore raises itself (an action's success or error, a state timeout, the
#: completion of a compound or parallel state), which a typo silently disconnects.
OUTCOMES = (SUCCESS, ERROR, TIMEOUT, DONE)
#: How close an event name must be to an outcome to be taken for a misspelling of it
#: (difflib's ratio: `sucess` 0.92, `Success` 0.86, `erorr` 0.8, `gone`/`done` 0.75).
TYPO_CUTOFF = 0.8

#: The kinds of the states that do work themselves (an action, a map state's items): the leaves
#: of the state machine.
_RUNS_WORK = frozenset({*LEAF_KINDS, "map"})

_END = ""  # the node "the execution has ended" in the progress graph


@dataclass(frozen=True, slots=True)
class Findings:
    """What `check_chart` found: `errors` reject the procedure, `warnings` do not."""

    errors: list[Problem]
    warnings: list[Problem]


def check_chart(chart: Chart) -> Findings:
    """Check `chart`, whose targets all resolve (the cross-reference rules passed)."""
    checker = _Checker(chart)
    checker.run()
    return Findings(checker.errors, checker.warnings)


class _Checker:
    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self.path = json_path
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.stuck: set[str] = set()  # reported as waiting forever: not again as traps

    def run(self) -> None:
        reachable = self.chart.reachable()
        for state in self.chart:
            if state.kind == "region" or state.path not in reachable:
                continue
            self.check_typos(state)
            self.check_stuck(state)
            self.check_never_fires(state)
            self.check_guards(state)
        self.check_choice_loops(reachable)
        self.check_traps(reachable)

    # -- what moves an execution on ------------------------------------------------------------

    def lineage(self, path: str) -> Iterator[ChartState]:
        """`path`'s state, then its enclosing states (regions skipped), innermost first."""
        yield self.chart[path]
        for ancestor in self.chart.ancestors(path):
            if self.chart[ancestor].kind != "region":
                yield self.chart[ancestor]

    def handled(self, path: str, event: str) -> bool:
        """Whether an `event` raised in `path` finds a transition (it bubbles outwards)."""
        return any(event in state.events for state in self.lineage(path))

    def host_can_move(self, path: str) -> bool:
        """Whether an event of the host's own (not an outcome) moves an execution out of
        `path`. (A host may also send `error` to a leaf, but an execution left waiting for
        that is not waiting by design.)"""
        return any(
            t.event not in OUTCOMES for state in self.lineage(path) for t in state.transitions
        )

    def timed(self, path: str) -> bool:
        """Whether a `timeout_ms` bounds the stay in `path` (its own or an enclosing one's)."""
        return any(_definition(s).timeout_ms is not None for s in self.lineage(path))

    def can_fail(self, path: str) -> bool:
        """Whether something inside `path` can raise `error`: an action that can fail, a
        failure terminal, a `timeout_ms` whose `timeout` nothing inside handles."""
        for inner in self.chart.within(path):
            state = self.chart[inner]
            if state.kind == "region":
                continue
            definition = _definition(state)
            if state.kind in _RUNS_WORK and (_fallible(definition) or definition.is_failure):
                return True
            if definition.timeout_ms is not None and TIMEOUT not in state.events:
                return True
        return False

    def can_complete(self, path: str) -> bool:
        """Whether a compound or parallel state can complete (`done`): a terminal inside."""
        state = self.chart[path]
        if state.kind in LEAF_KINDS:
            return False
        if state.kind == "map":  # when its items have ended
            return True
        regions = state.children if state.kind == "parallel" else (path,)
        return all(any(self.chart[c].terminal for c in self.chart[r].children) for r in regions)

    # -- the checks ----------------------------------------------------------------------------

    def check_typos(self, state: ChartState) -> None:
        """An event that reads like an outcome the state does not handle is a misspelling."""
        if state.kind == "choice":
            return  # its rules are no events
        candidates = [SUCCESS, ERROR, TIMEOUT] + ([DONE] if state.kind not in LEAF_KINDS else [])
        unhandled = [event for event in candidates if event not in state.events]
        for transition in state.transitions:
            if transition.event in OUTCOMES:
                continue
            match = difflib.get_close_matches(transition.event, unhandled, 1, TYPO_CUTOFF)
            if match:
                self.errors.append(
                    Problem(
                        self.path((*transition.loc, "event")),
                        f"{transition.event!r} is no event procstore raises and no transition "
                        f"here handles {match[0]!r}: did you mean {match[0]!r}?",
                    )
                )

    def check_stuck(self, state: ChartState) -> None:
        """After the action succeeds (a leaf) or the state completes (compound, parallel),
        something must move the execution on."""
        if state.terminal or state.kind == "choice":
            return
        if state.kind in LEAF_KINDS:
            action = _definition(state).action
            if state.kind != "wait" and (action is None or isinstance(action, FailAction)):
                return  # no success to handle
            if self.handled(state.path, SUCCESS):
                return
            doing = "wait" if state.kind == "wait" else "action"
            what = f"its {doing}'s success is handled by no transition here or around it"
        else:
            if not self.can_complete(state.path) or DONE in state.events:
                return
            what = f"its completion ({DONE!r}) is handled by no transition of its own"
        if self.host_can_move(state.path) or self.timed(state.path):
            return  # it waits for an event or a timeout, by design
        self.stuck.add(state.path)
        self.errors.append(
            Problem(
                self.path((*state.loc, "transitions")),
                f"{what}, and nothing else can move the execution on: it would wait in "
                f"{state.path!r} forever (add a transition on "
                f"{SUCCESS if state.kind in LEAF_KINDS else DONE!r})",
            )
        )

    def check_never_fires(self, state: ChartState) -> None:
        for transition in state.transitions:
            reason = None
            if transition.event == DONE and state.kind in LEAF_KINDS:
                reason = "done is raised only for compound and parallel states"
            elif transition.event == TIMEOUT and not any(
                self.chart[p].kind != "region" and _definition(self.chart[p]).timeout_ms
                for p in self.chart.within(state.path)
            ):
                reason = "no timeout_ms applies here or inside"
            elif (
                transition.event == ERROR
                and state.kind not in LEAF_KINDS
                and not self.can_fail(state.path)
            ):
                reason = "nothing inside can fail, and a host cannot send error to it"
            if reason is not None:
                self.warnings.append(
                    Problem(
                        self.path((*transition.loc, "event")),
                        f"this transition on {transition.event!r} can never fire: {reason}",
                    )
                )

    def check_guards(self, state: ChartState) -> None:
        for transition in state.transitions:
            guard = transition.spec.guard
            if guard is None:
                continue
            constant = _constant_value(guard)
            if constant is _NOT_CONSTANT:
                continue
            if not constant:
                self.warnings.append(
                    Problem(
                        self.path((*transition.loc, "guard")),
                        f"the guard {guard!r} is always false: this transition never fires",
                    )
                )
            elif any(
                later.event == transition.event for later in _after(state, transition)
            ) and not (
                transition.spec.conditions or transition.spec.unless or transition.spec.errors
            ):
                after = f"the transitions after it on {transition.event!r} never fire"
                if transition.rule == "choice":
                    after = "the rules after it and the default are never used"
                self.warnings.append(
                    Problem(
                        self.path((*transition.loc, "guard")),
                        f"the guard {guard!r} is always true: {after}",
                    )
                )

    def check_choice_loops(self, reachable: set[str]) -> None:
        """Choice states must not route to each other in a circle: routing is instant, so such
        a loop would spin forever without waiting for anything (every choice state a rule
        enters counts: see `entered_from`)."""
        choices = [s.path for s in self.chart if s.kind == "choice" and s.path in reachable]
        routes = {
            path: sorted(
                {
                    entered
                    for t in self.chart[path].transitions
                    if t.target is not None
                    for entered in self.entered_from(path, t.target)
                    if self.chart[entered].kind == "choice"
                },
                key=list(self.chart.states).index,
            )
            for path in choices
        }
        reported: set[str] = set()
        for start in choices:
            loop = _circle(start, routes)
            if loop is None or reported & set(loop):
                continue
            reported |= set(loop)
            self.errors.append(
                Problem(
                    self.path((*self.chart[start].loc, "choice")),
                    "choice states route to each other in a circle ("
                    + " → ".join([*loop, loop[0]])
                    + "): it would never stop; let one of them go to a state that acts or "
                    "waits",
                )
            )

    def entered_from(self, source: str, target: str) -> list[str]:
        """The states a transition from ``source`` enters: ``target``'s entry, and the initial
        states of the other regions of each parallel state it enters into (those it is already
        in, as ``source`` is, are not entered again)."""
        entered, below = list(self.chart.entry(target)), target
        for node in self.chart.ancestors(target):
            if paths.is_within(source, node):
                break
            if self.chart[node].kind == "parallel":
                for region in self.chart[node].children:
                    if region != below:
                        entered += self.chart.entry(region)
            below = node
        return entered

    def check_traps(self, reachable: set[str]) -> None:
        """States from which no end can be reached, whatever happens. (A state already reported
        as waiting forever counts as an end here, so that its fix is asked for once.)"""
        graph = self.progress_graph()
        reverse: dict[str, set[str]] = {}
        for source, targets in graph.items():
            for target in targets:
                reverse.setdefault(target, set()).add(source)
        ends = {_END} | {inner for path in self.stuck for inner in self.chart.within(path)}
        todo = list(ends)
        while todo:
            for source in reverse.get(todo.pop(), ()):
                if source not in ends:
                    ends.add(source)
                    todo.append(source)
        for path in graph:
            if path in reachable and path not in ends:
                self.errors.append(
                    Problem(
                        self.path(self.chart[path].loc),
                        f"no end can be reached from {path!r}: whatever happens there, the "
                        "execution never gets to a terminal state (an endless loop); add a "
                        "transition to a terminal state, e.g. on an event that stops it",
                    )
                )

    def progress_graph(self) -> Mapping[str, set[str]]:
        """From each leaf, the leaves (or the end) an execution in it can move to."""
        chart = self.chart
        graph: dict[str, set[str]] = {}
        for state in chart:
            if state.kind not in _RUNS_WORK:
                continue
            if state.kind == "choice":  # it routes at once, through its own rules only
                graph[state.path] = {
                    leaf for rule in state.transitions for leaf in self.leaves_entered(rule)
                }
                continue
            moves = graph.setdefault(state.path, set())
            definition = _definition(state)
            can_fail = _fallible(definition) or definition.is_failure or self.timed(state.path)
            for holder in self.lineage(state.path):
                for transition in holder.transitions:
                    event = transition.event
                    if (
                        # completion: see below (a map's own `done` is its action's success)
                        (event == DONE and not (holder is state and state.kind == "map"))
                        or (event == TIMEOUT and not self.timed(state.path))
                        # A host may send error to a leaf itself, not to what encloses it.
                        or (event == ERROR and not can_fail and holder is not state)
                    ):
                        continue
                    moves |= self.leaves_entered(transition)
            if state.terminal or definition.is_failure:
                moves |= self.completion(state.path)
            if _fallible(definition) and not self.handled(state.path, ERROR):
                moves.add(_END)  # an unhandled error fails (ends) the execution
            if self.timed(state.path) and not (
                self.handled(state.path, TIMEOUT) or self.handled(state.path, ERROR)
            ):
                moves.add(_END)
        return graph

    def leaves_entered(self, transition: Transition) -> set[str]:
        """The leaves a transition enters (the other regions of a parallel state it enters
        into are left out: they can end, or not, on their own)."""
        assert transition.target is not None
        entry = self.chart.entry(transition.target)
        return {p for p in entry if self.chart[p].kind in _RUNS_WORK}

    def completion(self, path: str) -> set[str]:
        """Where completing terminal `path` leads: its container's `done` transition, or the
        container's own completion, up to the end of the execution."""
        state = self.chart[path]
        if _definition(state).is_failure:
            return {_END}  # handled as an error up the chain, or the execution fails
        container = state.container
        if container is None:
            return {_END}
        holder = self.chart[container]
        if holder.terminal:
            return self.completion(container)
        return {
            leaf for t in holder.transitions if t.event == DONE for leaf in self.leaves_entered(t)
        }


_NOT_CONSTANT: Any = object()


class _NameRead(Exception):
    """A guard read a name: its value depends on the execution."""


class _NoNames(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise _NameRead(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        raise _NameRead(key)


def _constant_value(source: str) -> Any:
    """The value of a guard that reads no name (`1 > 2`, `False and x`), or `_NOT_CONSTANT`."""
    try:
        expression = GuardExpression(source)
        return expression(_NoNames())
    except (_NameRead, GuardSyntaxError):
        return _NOT_CONSTANT
    except Exception:
        return _NOT_CONSTANT  # it raises whatever the context: a guard_error at run time


def _circle(start: str, routes: Mapping[str, list[str]]) -> list[str] | None:
    """A path of choice states from ``start`` back to it, if there is one (depth first)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        path, trail = stack.pop()
        for nxt in routes.get(path, ()):
            if nxt == start:
                return trail
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*trail, nxt]))
    return None


def _after(state: ChartState, transition: Transition) -> tuple[Transition, ...]:
    return state.transitions[transition.index + 1 :]


def _definition(state: ChartState) -> StateDef:
    assert isinstance(state.definition, StateDef)
    return state.definition


def _fallible(definition: StateDef) -> bool:
    """Whether the state's action can fail: host code, `fail`, or a bounded attempt."""
    if definition.wait is not None:  # a wait read from the context may find nothing there
        return definition.wait.seconds is None and definition.wait.ms is None
    action = definition.action
    if definition.map is not None:
        return True  # its items may fail beyond what it tolerates, its list may be missing
    if definition.callback:
        return True  # the outside system may fail its callback (fail_callback)
    if action is None:
        return False
    return isinstance(action, FunctionAction | FailAction) or action.timeout_ms is not None
