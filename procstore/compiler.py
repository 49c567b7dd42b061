"""Compile a validated procedure into one ``transitions`` AsyncMachine.

This happens once per procedure version. Executions never build a machine: each execution is
a *model* that the shared machine moves between states (``Event.trigger(model)``), without
``add_model`` — its bookkeeping list (``Machine.models``) grows with every live execution and
makes attaching and detaching O(live executions). transitions still owns the states, the
transitions, the guards (its ``conditions``/``unless``) and the callbacks; procstore owns what
the callbacks do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from transitions.extensions.asyncio import AsyncEventData, AsyncMachine, AsyncState

from procstore.actions import ActionRegistry, Invoker, make_invoker
from procstore.definition import Action, LogAction, Procedure, RetryPolicy, TransitionDef
from procstore.guards import GuardCallable, GuardExpression, GuardRegistry

#: The attribute of a model that holds its current state's name. Not ``state``: that name is
#: the execution's public snapshot.
MODEL_ATTRIBUTE = "fsm_state"

#: What a guard check is: a function of the execution's guard names (context + ``result``).
GuardCheck = Callable[[Mapping[str, Any]], Any]


class MachineModel(Protocol):
    """What the runtime provides to be moved by a compiled machine."""

    fsm_state: str

    def on_state_entered(self, state: str, event: str, source: str) -> None:
        """Called by the machine once the model has entered ``state`` through ``event``."""

    def check_guard(self, check: Guard, event: str) -> Any:
        """Evaluate ``check`` for a transition on ``event``: a bool or an awaitable of one."""


@dataclass(frozen=True, slots=True)
class Guard:
    """One compiled guard of a transition.

    Attributes:
        label: How the guard reads in the history (the expression, or the predicate's name).
        check: Evaluates it (sync or async) given the execution's names or context.
        uses_context: ``check`` takes the context (a predicate) rather than the names.
        blocks_on_error: What the check reports when it raises, so that a failing guard always
            blocks its transition: False for ``conditions``, True for ``unless``.
    """

    label: str
    check: GuardCheck
    uses_context: bool
    blocks_on_error: bool


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """An action ready to run: what to await, its per-attempt bound, where its result goes."""

    spec: Action
    invoke: Invoker
    timeout_s: float | None
    result_key: str | None
    log_message: str | None


@dataclass(frozen=True, slots=True)
class StatePlan:
    """What entering a state means to the runtime."""

    name: str
    action: CompiledAction | None
    retry: RetryPolicy | None
    timeout_s: float | None
    compensate: CompiledAction | None
    terminal: bool
    failure: bool
    events: frozenset[str]


class SequentialAsyncMachine(AsyncMachine):
    """AsyncMachine that awaits callbacks and conditions one after another.

    transitions runs every callback list through ``asyncio.gather``, which wraps each callback
    in a task: ~10 gathers per transition dominate its cost. procstore's callbacks are short and
    ordered by design, so awaiting them in sequence keeps the documented order and is ~2.6x
    cheaper. Conditions are awaited in order too, and all of them are evaluated (transitions'
    own semantics), so every failing guard is recorded.
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
        return super().__getattr__(name)

    async def callbacks(self, funcs: Any, event_data: Any) -> None:  # type: ignore[override]
        for func in funcs:
            await self.callback(func, event_data)

    @staticmethod
    async def await_all(callables: list[Callable[[], Any]]) -> list[Any]:
        return [await func() for func in callables]


@dataclass(frozen=True, slots=True)
class CompiledProcedure:
    """A procedure version compiled once: its machine and a plan per state."""

    procedure: Procedure
    machine: SequentialAsyncMachine
    states: dict[str, StatePlan]

    @property
    def initial_state(self) -> str:
        return self.procedure.definition.initial_state

    def accepts(self, state: str, event: str) -> bool:
        """Whether ``state`` has a transition on ``event``."""
        return event in self.states[state].events

    async def fire(self, model: MachineModel, event: str) -> bool:
        """Trigger ``event`` on ``model``; True when a transition fired."""
        return bool(await self.machine.events[event].trigger(model))


async def _entered(event_data: AsyncEventData) -> None:
    model = cast(MachineModel, event_data.model)
    transition = cast(Any, event_data.transition)
    model.on_state_entered(transition.dest, cast(Any, event_data.event).name, transition.source)


def _condition(guard: Guard) -> Callable[[AsyncEventData], Any]:
    def condition(event_data: AsyncEventData) -> Any:
        model = cast(MachineModel, event_data.model)
        return model.check_guard(guard, cast(Any, event_data.event).name)

    return condition


def _predicate_check(registry: GuardRegistry, name: str) -> GuardCheck:
    # Resolved at each evaluation, so the host may (re-)register predicates at any time.
    def check(context: Mapping[str, Any]) -> Any:
        predicate: GuardCallable = registry.resolve(name)
        return predicate(cast(dict[str, Any], context))

    return check


def compile_guards(transition: TransitionDef, registry: GuardRegistry) -> tuple[list[Guard], ...]:
    """The ``conditions`` and ``unless`` guards of ``transition``, in evaluation order."""
    conditions: list[Guard] = []
    if transition.guard is not None:
        expression = GuardExpression(transition.guard)
        conditions.append(Guard(transition.guard, expression, False, False))
    conditions += [
        Guard(name, _predicate_check(registry, name), True, False) for name in transition.conditions
    ]
    unless = [
        Guard(name, _predicate_check(registry, name), True, True) for name in transition.unless
    ]
    return conditions, unless


def _compile_action(spec: Action | None, registry: ActionRegistry) -> CompiledAction | None:
    if spec is None:
        return None
    return CompiledAction(
        spec=spec,
        invoke=make_invoker(spec, registry),
        timeout_s=spec.timeout_ms / 1000 if spec.timeout_ms is not None else None,
        result_key=spec.result,
        log_message=spec.message if isinstance(spec, LogAction) else None,
    )


def compile_procedure(
    procedure: Procedure, actions: ActionRegistry, guards: GuardRegistry
) -> CompiledProcedure:
    """Build the machine and the state plans for a validated ``procedure``."""
    definition = procedure.definition
    plans: dict[str, StatePlan] = {}
    states: list[AsyncState] = []
    for name, state in definition.states.items():
        plans[name] = StatePlan(
            name=name,
            action=_compile_action(state.action, actions),
            retry=state.retry,
            timeout_s=state.timeout_ms / 1000 if state.timeout_ms is not None else None,
            compensate=_compile_action(state.compensate, actions),
            terminal=state.is_terminal,
            failure=state.outcome == "failure",
            events=frozenset(t.event for t in state.transitions),
        )
        states.append(AsyncState(name, on_enter=[cast(Any, _entered)]))
    machine = SequentialAsyncMachine(
        model=None,
        states=states,
        initial=definition.initial_state,
        auto_transitions=False,  # the default adds a transition between every pair of states
        send_event=True,
        model_attribute=MODEL_ATTRIBUTE,
        name=f"{procedure.name}@{procedure.version}",
    )
    for name, state in definition.states.items():
        for transition in state.transitions:
            conditions, unless = compile_guards(transition, guards)
            machine.add_transition(
                transition.event,
                source=name,
                dest=transition.target,
                conditions=[_condition(g) for g in conditions],
                unless=[_condition(g) for g in unless],
            )
    return CompiledProcedure(procedure=procedure, machine=machine, states=plans)
