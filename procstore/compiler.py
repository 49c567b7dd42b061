"""Compile a validated procedure into one ``transitions`` AsyncMachine.

This happens once per procedure version. Executions never build a machine: each execution is
a *model* that the shared machine moves between states (``Event.trigger(model)``), without
``add_model`` — its bookkeeping list (``Machine.models``) grows with every live execution and
makes attaching and detaching O(live executions). transitions still owns the states, the
transitions, the guards (its ``conditions``/``unless``) and the callbacks; procstore owns what
the callbacks do.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from transitions.extensions.asyncio import (
    AsyncEvent,
    AsyncEventData,
    AsyncMachine,
    AsyncState,
    AsyncTransition,
    HierarchicalAsyncMachine,
    NestedAsyncState,
    NestedAsyncTransition,
)

from procstore import datapaths, paths
from procstore.actions import ActionRegistry, Invoker, make_invoker
from procstore.chart import LEAF_KINDS, Chart, ChartState, StateKind, build_chart
from procstore.clock import SYSTEM, Clock
from procstore.datapaths import DataPath, is_path, parse_path
from procstore.definition import (
    MAX_MAP_CONCURRENCY,
    Action,
    Definition,
    FunctionAction,
    LogAction,
    MapDef,
    NoopAction,
    Procedure,
    RetryPolicy,
    TransitionDef,
    WaitDef,
    retry_policies,
)
from procstore.guards import GuardCallable, GuardExpression, GuardRegistry

#: The attribute of a model that holds its current state's name. Not ``state``: that name is
#: the execution's public snapshot.
MODEL_ATTRIBUTE = "fsm_state"

#: Events only procstore raises, never a host's ``send()``: ``done`` (a compound or parallel
#: state completed) and ``timeout`` (a state's ``timeout_ms`` ran out).
RAISED_ONLY = frozenset({"done", "timeout"})
#: Events procstore alone raises on compound and parallel states (a child ended in failure); a
#: host may still send them to a leaf (to report work done outside as failed, say).
RAISED_ON_CONTAINERS = frozenset({"error"})
#: Event names the machine cannot take. transitions 0.9.3 has one rule of its own:
#: ``Machine.add_transition`` refuses a trigger named like the model attribute ("Trigger name
#: cannot be same as model attribute name."). Its other names never meet procstore's: the
#: machine has no models (``model=None``), so it attaches no ``to_*``, ``is_*``, ``may_*`` or
#: trigger methods to anything, and its wildcards (``*``, ``=``) are replaced by names with a
#: dot, which state names cannot contain. So any state name works, and any event name but this.
RESERVED_EVENTS = frozenset({MODEL_ATTRIBUTE})

#: What a guard check is: a function of the execution's guard names (context + ``result``).
GuardCheck = Callable[[Mapping[str, Any]], Any]


class MachineModel(Protocol):
    """What the runtime provides to be moved by a compiled machine."""

    fsm_state: Any

    def on_transition(self, source: str, target: str, event: str) -> None:
        """A transition's guards passed; it is about to exit ``source`` and enter ``target``."""

    def on_state_entered(self, path: str, event: str) -> None:
        """The model has entered state ``path`` (every level: compound, region, leaf)."""

    def on_state_exited(self, path: str) -> None:
        """The model has left state ``path``."""

    def in_scope(self, source: str) -> bool:
        """Whether a transition declared on ``source`` may handle the event being fired."""

    def check_guard(self, check: Guard, event: str) -> Any:
        """Evaluate ``check`` for a transition on ``event``: a bool or an awaitable of one."""

    def catches(self, errors: tuple[str, ...]) -> bool:
        """Whether the error being raised is one of ``errors`` (a transition's ``errors``)."""

    def prepare_assign(self, assign: Assign, event: str) -> bool:
        """The guards of a transition on ``event`` with ``assign`` passed: render what it
        assigns; False blocks the transition (a path in it names nothing)."""

    def apply_assign(self) -> None:
        """The transition whose ``assign`` was prepared last fires: store what it assigns."""


@dataclass(frozen=True, slots=True)
class Guard:
    """One compiled guard of a transition.

    Attributes:
        label: How the guard reads in the history (the expression, or the predicate's name).
        check: Evaluates it (sync or async) given the execution's names or context.
        uses_context: ``check`` takes the context (a predicate) rather than the names.
        blocks_on_error: What the check reports when it raises, so that a failing guard always
            blocks its transition: False for ``conditions``, True for ``unless``.
        source: The path of the state that declares the transition.
    """

    label: str
    check: GuardCheck
    uses_context: bool
    blocks_on_error: bool
    source: str


@dataclass(frozen=True, slots=True)
class Assign:
    """A transition's ``assign`` and ``output``: a template rendered when its guards pass and
    merged into the context when it fires, then the path whose object becomes the context.

    Attributes:
        template: The template (see `procstore.datapaths`), an object (empty: none).
        source: The path of the state that declares the transition.
        guard: How a failed rendering is recorded (a ``guard_error`` labelled ``assign``).
        output: The ``output`` path, if the transition has one.
    """

    template: dict[str, Any]
    source: str
    guard: Guard
    output: DataPath | None = None


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """An action ready to run: what to await, its per-attempt bound, where its result goes
    (``result_key``, a context key, or ``result_path``, a path: at most one is set), its
    ``args`` template and its ``result_selector`` (``None`` when it has none)."""

    spec: Action
    invoke: Invoker
    timeout_s: float | None
    result_key: str | None
    log_message: str | None
    result_path: DataPath | None = None
    args: dict[str, Any] | None = None
    result_selector: dict[str, Any] | None = None


#: Between a procedure's name and a map state's path in the name of the procedure its items
#: run (``orders#fan_out``): a character procedure names cannot contain, so no registered
#: procedure can take that name.
ITEM_SEPARATOR = "#"


def item_procedure_name(procedure: str, path: str) -> str:
    """The name of the procedure the items of map state ``path`` of ``procedure`` run."""
    return f"{procedure}{ITEM_SEPARATOR}{path}"


def item_procedures(procedure: Procedure) -> list[Procedure]:
    """The procedures the map states of ``procedure`` run per item (nested ones too), each
    named by `item_procedure_name`, with ``procedure``'s version. Their states were validated
    with ``procedure``'s document."""
    found = []
    for path, state in build_chart(procedure).states.items():
        spec = state.state.map if state.state is not None else None
        if spec is None:
            continue
        item = Procedure.model_construct(
            name=item_procedure_name(procedure.name, path),
            version=procedure.version,
            description=None,
            definition=Definition(initial_state=spec.initial_state, states=spec.states),
        )
        found += [item, *item_procedures(item)]
    return found


@dataclass(frozen=True, slots=True)
class MapPlan:
    """What a map state runs: one child execution of ``procedure`` per item.

    Attributes:
        procedure: The item procedure's name (`item_procedure_name`); its version is the
            parent's.
        items: Where the list is.
        selector: The template of an item's start context, or ``None`` for the default.
        max_concurrency: The most children running at once.
        result: Where the outputs go, in the items' order, or ``None``.
        output: Which part of a child's final context is its output (``None``: all of it).
        tolerated_failures: The failures allowed (count), or ``None``.
        tolerated_percentage: The failures allowed (% of the items), or ``None``.
    """

    procedure: str
    items: datapaths.DataPath
    selector: Any
    max_concurrency: int
    result: datapaths.DataPath | None
    output: datapaths.DataPath | None
    tolerated_failures: int | None
    tolerated_percentage: float | None

    def over_tolerance(self, failures: int, count: int) -> bool:
        """Whether ``failures`` of ``count`` items fail the map (Step Functions: either
        threshold exceeded; with none set, any failure)."""
        count_limit, share = self.tolerated_failures, self.tolerated_percentage
        if count_limit is None and share is None:
            return failures > 0
        if count_limit is not None and failures > count_limit:
            return True
        return share is not None and count > 0 and failures * 100 > share * count


def _map_plan(procedure: str, path: str, spec: MapDef) -> MapPlan:
    def optional(text: str | None) -> datapaths.DataPath | None:
        return datapaths.parse_path(text) if text is not None else None

    return MapPlan(
        procedure=item_procedure_name(procedure, path),
        items=datapaths.parse_path(spec.items_path),
        selector=spec.item_selector,
        max_concurrency=spec.max_concurrency or MAX_MAP_CONCURRENCY,
        result=optional(spec.result),
        output=optional(spec.output_path),
        tolerated_failures=spec.tolerated_failures,
        tolerated_percentage=spec.tolerated_failure_percentage,
    )


@dataclass(frozen=True, slots=True)
class StatePlan:
    """What a state means to the runtime.

    Attributes:
        path: The state's dotted path.
        kind: ``leaf``, ``compound``, ``parallel``, ``region``, ``wait`` or ``choice``.
        container: The compound or parallel state this one completes (regions skipped), or
            ``None`` at the top.
        children: Paths of the child states (regions, for a parallel state).
        initial: The child entered first (compound states and regions).
        terminal: No transitions: completing it completes its container.
        failure: A terminal leaf whose ``outcome`` is ``failure``.
        events: The events of the state's own transitions.
        map: A map state's items (its kind is ``map``).
        retry: Its action's retry policies, in the order they are matched.
        compensate_retry: Its compensation's retry policies, likewise.
        failure_error: A failure terminal's error (``type``: its ``error``, ``message``: its
            ``cause``), or ``None`` when it names none.
        wait: A wait state's wait.
    """

    path: str
    kind: StateKind
    container: str | None
    children: tuple[str, ...]
    initial: str | None
    action: CompiledAction | None
    retry: tuple[RetryPolicy, ...]
    timeout_s: float | None
    compensate: CompiledAction | None
    terminal: bool
    failure: bool
    events: frozenset[str]
    map: MapPlan | None = None
    compensate_retry: tuple[RetryPolicy, ...] = ()
    failure_error: dict[str, str] | None = None
    callback: bool = False  # it waits for a callback token (see procstore.runtime.callbacks)
    wait: WaitDef | None = None

    @property
    def name(self) -> str:
        return self.path

    @property
    def works(self) -> bool:
        """A leaf of the machine: a leaf, wait or choice state, or a map state (its items are
        not states of this machine)."""
        return self.kind in LEAF_KINDS or self.kind == "map"


def _call(funcs: list[Any], event_data: Any) -> Awaitable[None] | None:
    """Call ``funcs`` in order with ``event_data``. procstore's callbacks are synchronous but
    for guards: while they return no awaitable nothing else is made (no coroutine per list);
    from the first that does, the rest run in the awaitable returned."""
    for index, func in enumerate(funcs):
        result = func(event_data)
        if result is not None and inspect.isawaitable(result):
            return _finish(result, funcs[index + 1 :], event_data)
    return None


async def _finish(pending: Awaitable[Any], funcs: list[Any], event_data: Any) -> None:
    await pending
    await _run_callbacks(funcs, event_data)


async def _run_callbacks(funcs: list[Any], event_data: Any) -> None:
    """Call ``funcs`` in order with ``event_data``, awaiting what returns an awaitable."""
    pending = _call(funcs, event_data)
    if pending is not None:
        await pending


class _Sequential:
    """What procstore changes in transitions' async machines.

    transitions runs every callback list through ``asyncio.gather``, which wraps each callback
    in a task: ~10 gathers per transition dominate its cost. procstore's callbacks are short and
    ordered by design, so awaiting them in sequence keeps the documented order and is ~2.6x
    cheaper. Guards are awaited in order too and stop at the first that blocks.

    Every callback procstore gives the machine is a callable taking the event data
    (``send_event=True``), never a name to resolve on the model, so callbacks are called directly
    (no ``resolve_callable``). And procstore runs one trigger at a time per execution (its fire
    lock): transitions' per-model task bookkeeping, which lets a new transition cancel a running
    one, has nothing to do, so ``process_context`` just runs the trigger.
    """

    # transitions reads "*" as "every state" and "=" as "the same state"; procstore's state
    # names may be anything without a dot, so its wildcards contain one.
    wildcard_all = ".*"
    wildcard_same = ".="

    def __getattr__(self, name: str) -> Any:
        # transitions probes ``hasattr(machine, "model_graphs")`` twice per transition, which
        # ends in Machine.__getattr__'s slow path; answer "no" at once for that name.
        if name == "model_graphs":
            raise AttributeError(name)
        return super().__getattr__(name)  # type: ignore[misc]

    async def callbacks(self, funcs: Any, event_data: Any) -> None:
        await _run_callbacks(funcs, event_data)

    async def callback(self, func: Any, event_data: Any) -> None:
        await _run_callbacks([func], event_data)

    @staticmethod
    async def await_all(callables: list[Callable[[], Any]]) -> list[Any]:
        # transitions only awaits conditions through here (procstore never dispatches), and
        # reads the list with all(): stopping at the first failing guard gives the same answer
        # without evaluating — or recording errors of — the guards after it.
        results = []
        for func in callables:
            result = await func()
            results.append(result)
            if not result:
                break
        return results

    async def process_context(self, func: Callable[[], Awaitable[Any]], model: Any) -> Any:
        return await func()

    async def cancel_running_transitions(self, model: Any, msg: Any = None) -> None:
        return None


class _Transition:
    """transitions' ``AsyncTransition.execute`` with the empty callback lists skipped and no
    task cancellation (see ``_Sequential``); guards checked in order without a partial and a
    coroutine per guard: each condition is called with the event data, awaited only when it
    returns an awaitable, and the first that fails ends the check (as
    ``_Sequential.await_all`` does). The state change itself is the machine kind's."""

    conditions: list[Any]
    prepare: list[Any]
    before: list[Any]
    after: list[Any]
    dest: str | None

    async def _eval_conditions(self, event_data: Any) -> bool:
        for condition in self.conditions:
            result = condition.func(event_data)
            if inspect.isawaitable(result):
                result = await result
            if result != condition.target:
                return False
        return True

    async def execute(self, event_data: Any) -> bool:
        machine = event_data.machine
        if self.prepare:
            await _run_callbacks(self.prepare, event_data)
        if self.conditions and not await self._eval_conditions(event_data):
            return False
        if (pending := _call(machine.before_state_change, event_data)) is not None:
            await pending
        if (pending := _call(self.before, event_data)) is not None:
            await pending
        if self.dest:  # None: an internal transition, no state change
            # The machine kind's: a class after this one in the MRO has it.
            await cast(Any, self)._change_state(event_data)
        if self.after:
            await _run_callbacks(self.after, event_data)
        if machine.after_state_change:
            await _run_callbacks(machine.after_state_change, event_data)
        return True


class SequentialTransition(_Transition, AsyncTransition):  # type: ignore[misc]
    """A flat machine's transition (see ``_Transition``), without transitions' graph styling
    (procstore draws its own diagrams)."""

    source: str

    async def _change_state(self, event_data: Any) -> None:  # type: ignore[override]
        # The states are SequentialStates: their enter/exit call their callback lists, which
        # are called here directly (no coroutine per state when every callback is sync).
        machine = event_data.machine
        states = machine.states
        if (pending := _call(states[self.source].on_exit, event_data)) is not None:
            await pending
        setattr(event_data.model, machine.model_attribute, self.dest)
        dest = states[self.dest]
        event_data.state = dest
        if (pending := _call(dest.on_enter, event_data)) is not None:
            await pending
        if dest.final and machine.on_final:
            await _run_callbacks(machine.on_final, event_data)


class _InOrder:
    """A state's ``enter`` and ``exit`` that call its callbacks in order (see
    ``_run_callbacks``), shared by the flat and the nested state classes."""

    on_enter: list[Any]
    on_exit: list[Any]

    async def enter(self, event_data: Any) -> None:
        if self.on_enter:
            await _run_callbacks(self.on_enter, event_data)

    async def exit(self, event_data: Any) -> None:
        if self.on_exit:
            await _run_callbacks(self.on_exit, event_data)


class SequentialState(_InOrder, AsyncState):  # type: ignore[misc]
    """A flat machine's state: its callbacks called in order (see ``_Sequential``)."""


class SequentialEvent(AsyncEvent):
    """A flat machine's event: transitions' ``AsyncEvent`` without the per-model task
    bookkeeping (see ``_Sequential``) and, when the machine has none, without its
    ``prepare_event``, ``finalize_event`` and ``on_exception`` lists."""

    async def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        machine = self.machine
        event_data = AsyncEventData(None, self, machine, model, args=args, kwargs=kwargs)
        if machine.finalize_event or machine.on_exception:
            return bool(await super()._trigger(event_data))
        state = machine.states[getattr(model, machine.model_attribute)]
        event_data.state = state
        if not self._is_valid_source(state):
            return False
        if machine.prepare_event:
            await _run_callbacks(machine.prepare_event, event_data)
        for transition in self.transitions[state.name]:
            event_data.transition = transition
            event_data.result = await transition.execute(event_data)
            if event_data.result:
                break
        return bool(event_data.result)


class SequentialAsyncMachine(_Sequential, AsyncMachine):  # type: ignore[misc]
    """The flat machine: AsyncMachine with procstore's changes (see ``_Sequential``)."""

    state_cls = SequentialState  # type: ignore[assignment]
    transition_cls = SequentialTransition
    event_cls = SequentialEvent


class DottedState(_InOrder, NestedAsyncState):  # type: ignore[misc]
    """A nested state whose path separator is ``.`` (per machine; transitions' default ``_``
    may appear in procstore's state names), its callbacks called in order."""

    separator = paths.SEPARATOR


class SequentialNestedTransition(_Transition, NestedAsyncTransition):  # type: ignore[misc]
    """A hierarchical machine's transition (see ``_Transition``), its state change
    transitions' own."""


class SequentialHierarchicalMachine(_Sequential, HierarchicalAsyncMachine):  # type: ignore[misc]
    """The machine for compound and parallel states, with procstore's changes."""

    state_cls = DottedState
    transition_cls = SequentialNestedTransition


@dataclass(frozen=True, slots=True)
class CompiledProcedure:
    """A procedure version compiled once: its machine and a plan per state.

    Attributes:
        flat: Only leaf states: the flat machine, one active state, no scope guards.
        entries: For every state, the states entered when it is entered afresh (itself and
            its initial descendants, parents first).
        order: Every state's position in the document, for document-order listings.
        top_level: The top-level states' paths, in document order.
        clock: The time its executions run on: their timestamps, retry delays, timeouts and
            ``sleep`` actions (the store's clock; tests give a manual one).
    """

    procedure: Procedure
    machine: SequentialAsyncMachine | SequentialHierarchicalMachine
    states: dict[str, StatePlan]
    flat: bool
    entries: dict[str, tuple[str, ...]]
    order: dict[str, int]
    top_level: tuple[str, ...]
    clock: Clock

    @property
    def initial_state(self) -> str:
        return self.procedure.definition.initial_state

    @property
    def timeout_s(self) -> float | None:
        """The definition's ``timeout_ms`` (the whole execution's bound), in seconds."""
        timeout_ms = self.procedure.definition.timeout_ms
        return timeout_ms / 1000 if timeout_ms is not None else None

    @property
    def initial_entry(self) -> tuple[str, ...]:
        """The states entered at start, parents before children."""
        return self.entries[self.initial_state]

    def accepts(self, state: str, event: str) -> bool:
        """Whether ``state`` has a transition of its own on ``event``."""
        return event in self.states[state].events

    def accepts_from_host(self, state: str, event: str) -> bool:
        """Whether ``state`` has a transition on ``event`` that a host may fire with ``send()``:
        not one on an event only procstore raises (see ``RAISED_ONLY``)."""
        if event in RAISED_ONLY or (
            event in RAISED_ON_CONTAINERS and self.states[state].kind not in LEAF_KINDS
        ):
            return False
        return event in self.states[state].events

    async def fire(self, model: MachineModel, event: str) -> bool:
        """Trigger ``event`` on ``model``; True when a transition fired."""
        machine = cast(Any, self.machine)
        if self.flat:
            return bool(await machine.events[event].trigger(model))
        return bool(await machine.trigger_event(model, event))


class Fired(Protocol):
    """What procstore's callbacks read of the event data transitions gives them (typed here,
    so that the callbacks, called a few times per transition, need no ``cast`` calls)."""

    model: MachineModel
    event: Any
    transition: Any


def _before(event_data: Fired) -> None:
    transition = event_data.transition
    event_data.model.on_transition(transition.source, transition.dest, event_data.event.name)


def _entered(path: str) -> Callable[[Fired], None]:
    def entered(event_data: Fired) -> None:
        event_data.model.on_state_entered(path, event_data.event.name)

    return entered


def _exited(path: str) -> Callable[[Fired], None]:
    def exited(event_data: Fired) -> None:
        event_data.model.on_state_exited(path)

    return exited


def _in_scope(path: str) -> Callable[[Fired], bool]:
    def in_scope(event_data: Fired) -> bool:
        return event_data.model.in_scope(path)

    return in_scope


def _condition(guard: Guard) -> Callable[[Fired], Any]:
    def condition(event_data: Fired) -> Any:
        return event_data.model.check_guard(guard, event_data.event.name)

    return condition


def _catches(errors: tuple[str, ...]) -> Callable[[Fired], bool]:
    def catches(event_data: Fired) -> bool:
        return event_data.model.catches(errors)

    return catches


def _assign_blocked(assign: Assign) -> Callable[[Fired], bool]:
    # The last of a transition's ``unless`` checks: it runs once every guard has passed.
    def blocked(event_data: Fired) -> bool:
        return not event_data.model.prepare_assign(assign, event_data.event.name)

    return blocked


def _assign_checks(assign: Assign | None) -> list[Callable[[Fired], bool]]:
    return [_assign_blocked(assign)] if assign is not None else []


def _assign(event_data: Fired) -> None:
    event_data.model.apply_assign()


def _compile_assign(transition: TransitionDef, source: str) -> Assign | None:
    if transition.assign is None and transition.output is None:
        return None
    guard = Guard("assign", lambda _: True, False, False, source)
    output = parse_path(transition.output) if transition.output is not None else None
    return Assign(dict(transition.assign or {}), source, guard, output)


def _predicate_check(registry: GuardRegistry, name: str) -> GuardCheck:
    # Resolved at each evaluation, so the host may (re-)register predicates at any time.
    def check(context: Mapping[str, Any]) -> Any:
        predicate: GuardCallable = registry.resolve(name)
        return predicate(cast(dict[str, Any], context))

    return check


def compile_guards(
    transition: TransitionDef, source: str, registry: GuardRegistry
) -> tuple[list[Guard], list[Guard]]:
    """The ``conditions`` and ``unless`` guards of ``transition``, in evaluation order."""
    conditions: list[Guard] = []
    if transition.guard is not None:
        expression = GuardExpression(transition.guard)
        conditions.append(Guard(transition.guard, expression, False, False, source))
    conditions += [
        Guard(name, _predicate_check(registry, name), True, False, source)
        for name in transition.conditions
    ]
    unless = [
        Guard(name, _predicate_check(registry, name), True, True, source)
        for name in transition.unless
    ]
    return conditions, unless


def _compile_action(
    spec: Action | None, registry: ActionRegistry, clock: Clock
) -> CompiledAction | None:
    if spec is None:
        return None
    result_is_path = is_path(spec.result)
    return CompiledAction(
        spec=spec,
        invoke=make_invoker(spec, registry, clock),
        timeout_s=spec.timeout_ms / 1000 if spec.timeout_ms is not None else None,
        result_key=None if result_is_path else spec.result,
        log_message=spec.message if isinstance(spec, LogAction) else None,
        result_path=parse_path(spec.result) if spec.result is not None and result_is_path else None,
        args=spec.args if isinstance(spec, NoopAction | FunctionAction) else None,
        result_selector=(
            spec.result_selector if isinstance(spec, NoopAction | FunctionAction) else None
        ),
    )


def _plan(
    state: ChartState, actions: ActionRegistry, clock: Clock, procedure: str = ""
) -> StatePlan:
    """What ``state`` means to the runtime: its place in the chart and its compiled actions."""
    definition = state.state  # None for a region
    spec = definition.map if definition is not None else None
    timeout_ms = definition.timeout_ms if definition is not None else None
    return StatePlan(
        path=state.path,
        kind=state.kind,
        container=state.container,
        children=state.children,
        initial=state.initial,
        action=(
            _compile_action(definition.action, actions, clock) if definition is not None else None
        ),
        retry=retry_policies(definition.retry if definition is not None else None),
        timeout_s=timeout_ms / 1000 if timeout_ms is not None else None,
        compensate=(
            _compile_action(definition.compensate, actions, clock)
            if definition is not None
            else None
        ),
        terminal=state.terminal,
        failure=definition is not None and definition.is_failure,
        events=state.events,
        map=_map_plan(procedure, state.path, spec) if spec is not None else None,
        compensate_retry=retry_policies(
            definition.compensate_retry if definition is not None else None
        ),
        failure_error=_failure_error(definition) if definition is not None else None,
        callback=definition is not None and definition.callback,
        wait=definition.wait if definition is not None else None,
    )


def _failure_error(definition: Any) -> dict[str, str] | None:
    """A failure terminal's ``error`` and ``cause`` as an error record, if it names either."""
    if definition.error is None and definition.cause is None:
        return None
    return {"type": definition.error or "Failed", "message": definition.cause or ""}


def _spec(chart: Chart, path: str) -> dict[str, Any]:
    """transitions' nested-state spec of ``path`` (a state or a region), with its callbacks."""
    state = chart[path]
    spec: dict[str, Any] = {
        "name": state.name,
        "on_enter": [_entered(path)],
        "on_exit": [_exited(path)],
    }
    children = [_spec(chart, child) for child in state.children]
    if state.kind == "parallel":
        spec["parallel"] = children
    elif state.kind in ("compound", "region"):
        assert state.initial is not None
        spec["children"], spec["initial"] = children, chart[state.initial].name
    return spec


def compile_procedure(
    procedure: Procedure,
    actions: ActionRegistry,
    guards: GuardRegistry,
    chart: Chart | None = None,
    clock: Clock = SYSTEM,
) -> CompiledProcedure:
    """Build the machine and the state plans for a validated ``procedure`` (whose chart,
    when validation built it already, is ``chart``; whose executions run on ``clock``).

    Flat definitions (only leaves) get the flat AsyncMachine; definitions with compound or
    parallel states get the hierarchical one, which costs ~1.7-2x per transition.
    """
    definition = procedure.definition
    chart = chart if chart is not None else build_chart(procedure)
    flat = definition.is_flat
    common: dict[str, Any] = {
        "model": None,
        "initial": definition.initial_state,
        "auto_transitions": False,  # the default adds a transition between every pair of states
        "send_event": True,
        "model_attribute": MODEL_ATTRIBUTE,
        "before_state_change": [_before],
        "name": f"{procedure.name}@{procedure.version}",
    }
    machine: SequentialAsyncMachine | SequentialHierarchicalMachine
    if flat:
        states = [
            SequentialState(path, on_enter=[_entered(path)], on_exit=[_exited(path)])
            for path in chart.top_level
        ]
        machine = SequentialAsyncMachine(states=states, **common)
    else:
        # An event no active state handles must not raise: procstore checks acceptance itself.
        machine = SequentialHierarchicalMachine(
            states=[_spec(chart, path) for path in chart.top_level],
            ignore_invalid_triggers=True,
            **common,
        )
    for transition in chart.transitions():
        assert transition.target is not None  # validated
        conditions, unless = compile_guards(transition.spec, transition.source, guards)
        scope = [] if flat else [_in_scope(transition.source)]
        if transition.spec.errors is not None:  # before the guards: they see a caught error
            scope.append(_catches(transition.spec.errors))
        assign = _compile_assign(transition.spec, transition.source)
        machine.add_transition(
            transition.event,
            source=transition.source,
            dest=transition.target,
            conditions=scope + [_condition(g) for g in conditions],
            unless=cast(Any, [_condition(g) for g in unless] + _assign_checks(assign)),
            before=[_assign] if assign else None,
        )
    return CompiledProcedure(
        procedure=procedure,
        machine=machine,
        states={
            path: _plan(state, actions, clock, procedure.name)
            for path, state in chart.states.items()
        },
        flat=flat,
        entries={path: chart.entry(path) for path in chart.states},
        order={path: i for i, path in enumerate(chart.states)},
        top_level=chart.top_level,
        clock=clock,
    )
