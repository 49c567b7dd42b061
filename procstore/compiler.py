"""Compile a validated procedure into one ``transitions`` AsyncMachine.

This happens once per procedure version. Executions never build a machine: each execution is
a *model* that the shared machine moves between states (``Event.trigger(model)``), without
``add_model`` — its bookkeeping list (``Machine.models``) grows with every live execution and
makes attaching and detaching O(live executions). transitions still owns the states, the
transitions and the callbacks; procstore owns what the callbacks do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from transitions.extensions.asyncio import AsyncEventData, AsyncMachine, AsyncState

from procstore.actions import ActionRegistry, Invoker, make_invoker
from procstore.definition import Action, LogAction, Procedure

#: The attribute of a model that holds its current state's name. Not ``state``: that name is
#: the execution's public snapshot.
MODEL_ATTRIBUTE = "fsm_state"


class MachineModel(Protocol):
    """What the runtime provides to be moved by a compiled machine."""

    fsm_state: str

    def on_state_entered(self, state: str, event: str, source: str) -> None:
        """Called by the machine once the model has entered ``state`` through ``event``."""


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """An action ready to run: what to await, where its result goes."""

    spec: Action
    invoke: Invoker
    result_key: str | None
    log_message: str | None


@dataclass(frozen=True, slots=True)
class StatePlan:
    """What entering a state means to the runtime."""

    name: str
    action: CompiledAction | None
    terminal: bool
    failure: bool
    events: frozenset[str]


class SequentialAsyncMachine(AsyncMachine):
    """AsyncMachine that awaits callbacks and conditions one after another.

    transitions runs every callback list through ``asyncio.gather``, which wraps each callback
    in a task: ~10 gathers per transition dominate its cost. procstore's callbacks are short and
    ordered by design, so awaiting them in sequence keeps the documented order and is ~2.6x
    cheaper.
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


def compile_procedure(procedure: Procedure, registry: ActionRegistry) -> CompiledProcedure:
    """Build the machine and the state plans for a validated ``procedure``."""
    definition = procedure.definition
    plans: dict[str, StatePlan] = {}
    states: list[AsyncState] = []
    for name, state in definition.states.items():
        action = None
        if state.action is not None:
            action = CompiledAction(
                spec=state.action,
                invoke=make_invoker(state.action, registry),
                result_key=state.action.result,
                log_message=state.action.message if isinstance(state.action, LogAction) else None,
            )
        plans[name] = StatePlan(
            name=name,
            action=action,
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
            machine.add_transition(transition.event, source=name, dest=transition.target)
    return CompiledProcedure(procedure=procedure, machine=machine, states=plans)
