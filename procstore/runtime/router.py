"""The model transitions moves: which states are active, which events reach which states, and
what completes when a terminal state is reached.

transitions owns the states, transitions, guards and callbacks; the `Router` is the *model* its
machine moves (``Event.trigger(model)``), so it receives the machine's callbacks
(`on_transition`, `on_state_entered`, `on_state_exited`, `in_scope`, `check_guard`) and holds
the machine's ``fsm_state``. Around transitions it adds what a statechart needs:

- **routing**: an event an action produces may only be handled by that state or its ancestors
  (`in_scope`), never by a sibling region; ``done`` only by its own compound state; an event a
  host sends only by the states that accept it from a host;
- **choices**: a choice state entered queues its routing like a completion: its rules are
  tried, in order, once the transition that entered it is over;
- **completion**: a terminal leaf reached queues an internal event, processed before the
  trigger that caused it returns (like SCXML's internal queue): its container completes, and a
  parallel state completes when every region has;
- **errors**: ``error`` and ``timeout`` go to the innermost handler; with none the execution
  fails.
"""

from __future__ import annotations

import copy
import inspect
from collections import ChainMap
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import procstore.runtime.callbacks as callbacks
import procstore.runtime.items as items
import procstore.runtime.saga as saga
import procstore.runtime.steps as steps
import procstore.runtime.timers as timers
import procstore.runtime.waits as waits
from procstore import datapaths, paths
from procstore.chart import CHOICE_EVENT
from procstore.compiler import Assign, Guard
from procstore.definition import matches_error
from procstore.runtime.events import DONE, ERROR
from procstore.runtime.facts import facts
from procstore.runtime.history import error_fields
from procstore.runtime.state import LeafState
from procstore.snapshot import RecordKind, Status

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["Router"]


class Router:
    """The machine's model for one execution (see the module's docstring)."""

    __slots__ = (
        "_assigned",
        "_data",
        "_entries",
        "_host_event",
        "_origin",
        "_origin_exact",
        "_output",
        "_raised",
        "_raised_error",
        "compiled",
        "fsm_state",
        "plans",
        "run",
        "transitions",
        "visits",
    )

    fsm_state: Any  # set by the machine (see procstore.compiler.MODEL_ATTRIBUTE)

    def __init__(self, run: Run) -> None:
        self.run = run
        self.compiled = run.compiled
        self.plans = run.plans
        self.transitions = 0  # transitions fired so far
        self._entries = 0
        self.visits: dict[str, int] = {}  # a token per entry of a timed state (stale timers)
        self._origin: str | None = None  # the state an event being fired comes from
        self._origin_exact = False  # only that state may handle it (``done``)
        self._host_event: str | None = None  # the event a host's send() is firing
        self._raised: tuple[str, ...] = ()  # the types of the error being raised
        self._raised_error: dict[str, str] | None = None  # and its type and message
        self._data: Any = None  # the data of the event being fired (JSON data, or None)
        self._assigned: dict[str, Any] | None = None  # what a passing transition assigns
        self._output: dict[str, Any] | None = None  # and what becomes the context, if anything

    # -- where the execution is -----------------------------------------------------------------

    @property
    def current(self) -> str:
        """The active leaf's path or, while parallel regions are active, the outermost active
        parallel state's path."""
        if self.compiled.flat:
            return str(self.fsm_state)
        active = self.run.state.active
        for top in self.compiled.top_level:
            if top in active:
                path = top
                while (plan := self.plans[path]).kind == "compound":
                    path = next(c for c in plan.children if c in active)
                return path
        raise AssertionError("an execution is always in some state")

    def active_leaves(self) -> list[str]:
        if self.compiled.flat:
            return [self.fsm_state]
        return [p for p in self.run.state.active if self.plans[p].works]

    def handled_within(self, path: str, event: str) -> bool:
        """Whether ``path`` or one of its ancestors has a transition on ``event``."""
        node: str | None = path
        while node is not None:
            if self.compiled.accepts(node, event):
                return True
            node = None if self.compiled.flat else paths.parent_of(node)
        return False

    def set_configuration(self, leaves: list[str]) -> None:
        """Tell transitions which leaves are active: one path, or a list of them (parallel)."""
        self.fsm_state = leaves[0] if len(leaves) == 1 else leaves

    def enter_initial(self) -> None:
        """Enter the initial configuration (``add_model`` would not run its ``on_enter``)."""
        entry = self.compiled.initial_entry
        timeout_s = self.compiled.timeout_s
        if timeout_s is not None:  # the whole execution's bound, from its (re)start
            self.run.state.deadline = self.run.clock.time() + timeout_s
            timers.arm_execution(self.run)
        self.set_configuration([p for p in entry if self.plans[p].works])
        for path in entry:
            self.on_state_entered(path, None)

    # -- the machine's callbacks ----------------------------------------------------------------

    def on_transition(self, source: str, target: str, event: str) -> None:
        self.transitions += 1
        history = self.run.history
        if self._data is None:
            history.log(RecordKind.TRANSITION, event=event, state=source, target=target)
        else:
            history.log(
                RecordKind.TRANSITION, event=event, state=source, target=target, data=self._data
            )

    def on_state_entered(self, path: str, event: str | None) -> None:
        run, state = self.run, self.run.state
        state.active.add(path)
        plan = self.plans[path]
        if plan.kind == "region":
            return
        self._entries += 1
        run.history.log(RecordKind.ENTERED, state=path, event=event)
        if plan.timeout_s is not None:
            self.visits[path] = self._entries  # only a timer reads it: untimed states need none
            state.deadlines[path] = run.clock.time() + plan.timeout_s
            timers.arm(run, path)
        if plan.works:
            # A new visit knows nothing of the last one; its record is made when needed.
            state.leaves.pop(path, None)
            if plan.callback:
                state.leaves[path] = LeafState(token=callbacks.new_token(run.id))
            if plan.action is not None:
                steps.start(run, path, steps.run_step, run, plan)
            elif plan.map is not None:
                steps.start(run, path, items.run_map, run, plan)
            elif plan.wait is not None:
                waits.begin(run, plan)
            elif plan.kind == "choice":  # routed by drain(), once this transition is over
                state.internal += ((path, False),)
            elif plan.terminal:
                state.internal += ((path, plan.failure),)

    def on_state_exited(self, path: str) -> None:
        run, state = self.run, self.run.state
        state.active.discard(path)
        if run.timers:
            timers.cancel(run, path)
        if self.plans[path].map is not None:
            items.left(run, path)
        if run.tasks:
            steps.leave(run, path)  # leaving a state cancels what runs in it
        state.leaves.pop(path, None)
        state.deadlines.pop(path, None)

    def in_scope(self, source: str) -> bool:
        if source not in self.run.state.active:
            return False  # an earlier transition of the same event already left it
        if self._host_event is not None:
            return self.compiled.accepts_from_host(source, self._host_event)
        origin = self._origin
        if origin is None:
            return True
        if self._origin_exact:
            return source == origin
        return paths.is_within(origin, source)

    def check_guard(self, guard: Guard, event: str) -> bool | Awaitable[bool]:
        state = self.run.state
        if guard.uses_context:
            argument: Any = state.context
        else:
            source = guard.source if self.plans[guard.source].works else self._origin
            leaf = state.leaves.get(source) if source is not None else None
            names = {
                "result": leaf.result if leaf is not None else None,
                "error": leaf.error if leaf is not None else None,
            }
            # ``event`` and ``context`` (the whole context: `"a" in context`) come after the
            # context: a context key of either name, which guards read before these names
            # existed, keeps meaning what it meant.
            argument = ChainMap(
                names, state.context, {"event": self._event(event), "context": state.context}
            )
        try:
            value = guard.check(argument)
        except Exception as exc:  # a guard that raises blocks its transition
            return self._guard_failed(guard, event, exc)
        if inspect.isawaitable(value):
            return self._await_guard(guard, event, value)
        return bool(value)

    def catches(self, errors: tuple[str, ...]) -> bool:
        return matches_error(errors, self._raised)

    def _guard_failed(self, guard: Guard, event: str, exc: Exception) -> bool:
        self.run.log(
            RecordKind.GUARD_ERROR,
            state=guard.source,
            event=event,
            message=guard.label,
            error=error_fields(exc),
        )
        return guard.blocks_on_error

    def _event(self, event: str) -> dict[str, Any]:
        """The event being handled, as guards and ``assign`` see it."""
        return {"name": event, "data": self._data}

    def prepare_assign(self, assign: Assign, event: str) -> bool:
        """Render ``assign`` (of a transition on ``event`` whose guards passed) for
        `apply_assign`, and read its ``output`` from the context as it will be then; when a
        path names nothing (or the output is no object), record a ``guard_error`` and block
        the transition (returns False), as a guard that raises does."""
        state = self.run.state
        facts = self.facts(assign.source, event)
        self._assigned = self._output = None
        try:
            assigned = datapaths.render(assign.template, state.context, facts)
            if assign.output is not None:
                output = assign.output.get({**state.context, **assigned})
                if not isinstance(output, dict):
                    kind = type(output).__name__
                    raise datapaths.PathNotFound(
                        f"{assign.output.text}: the output must be an object, not {kind}"
                    )
                self._output = copy.deepcopy(output)
        except datapaths.PathNotFound as exc:
            return self._guard_failed(assign.guard, event, exc)
        self._assigned = assigned
        return True

    def apply_assign(self) -> None:
        """The transition `prepare_assign` passed fires: store what it rendered, then make its
        output the whole context."""
        assigned, self._assigned = self._assigned, None
        output, self._output = self._output, None
        if assigned:
            self.run.state.context.update(assigned)
        if output is not None:
            datapaths.parse_path("$").put(self.run.state.context, output)

    def facts(self, path: str, event: str) -> dict[str, Any]:
        """``$$`` for a path evaluated in state ``path`` while ``event`` is handled."""
        return facts(self.run, path, self._event(event), self._raised_error)

    async def _await_guard(self, guard: Guard, event: str, pending: Awaitable[Any]) -> bool:
        try:
            return bool(await pending)
        except Exception as exc:
            return self._guard_failed(guard, event, exc)

    # -- firing ---------------------------------------------------------------------------------

    async def trigger(
        self,
        event: str,
        origin: str | None,
        exact: bool = False,
        external: bool = False,
        data: Any = None,
    ) -> bool:
        """Trigger ``event`` (the fire lock is held), routed to ``origin`` and its ancestors
        (or ``origin`` alone when ``exact``); from a host (``external``), only to the states
        that accept it from a host. ``data`` is what the event carries (JSON data)."""
        self._origin, self._origin_exact = origin, exact
        self._host_event = event if external else None
        self._data = data
        before = self.transitions
        try:
            await self.compiled.fire(self, event)
        finally:
            self._origin, self._origin_exact, self._host_event = None, False, None
            self._data, self._assigned = None, None
        # Counted rather than taken from the trigger's return value: with parallel regions,
        # transitions returns the result of the *last* region tried, not whether any fired.
        fired = self.transitions > before
        if fired and not self.compiled.flat:
            self._fill_regions()
        if not fired:
            extra = {"data": data} if data is not None else {}
            self.run.log(RecordKind.BLOCKED, state=origin or self.current, event=event, **extra)
        return fired

    def _fill_regions(self) -> None:
        """Enter the initial states of regions a transition left out.

        A transition into one region of a parallel state (``checks.fraud.end``) enters only
        that region in transitions' HierarchicalMachine; in a statechart the parallel state is
        in every region at once, so the others start at their initial states.
        """
        active = self.run.state.active
        missing = [
            region
            for parallel in active
            if self.plans[parallel].kind == "parallel"
            for region in self.plans[parallel].children
            if region not in active
        ]
        if not missing:
            return
        order = self.compiled.order
        for region in sorted(missing, key=order.__getitem__):
            for path in self.compiled.entries[region]:
                self.on_state_entered(path, None)
        self.set_configuration(sorted(self.active_leaves(), key=order.__getitem__))

    async def raise_event(
        self,
        event: str,
        origin: str,
        types: tuple[str, ...] | list[str] = (),
        error: dict[str, str] | None = None,
        data: Any = None,
    ) -> None:
        """Fire ``error``/``timeout`` (carrying ``data``) from ``origin``, innermost handler
        first, for an error of ``types`` (its class's and bases' names: what transitions'
        ``errors`` match); with no handler anywhere (or every one blocked), the execution
        fails with ``error``."""
        self._raised, self._raised_error = tuple(types), error
        try:
            for candidate in (event, ERROR) if event != ERROR else (ERROR,):
                if self.handled_within(origin, candidate) and await self.trigger(
                    candidate, origin, data=data
                ):
                    return
        finally:
            self._raised, self._raised_error = (), None
        saga.fail(self.run, error)

    async def route(self, path: str) -> None:
        """Route choice state ``path``, active after a restart (it is routed at once when it
        is entered, so only a checkpoint taken in between leaves one active)."""
        async with self.run.fire_lock:
            self.run.state.internal += ((path, False),)
            await self.drain()

    async def drain(self) -> None:
        """Process completions (terminal leaves reached) and choice states' routing until
        none is left."""
        state = self.run.state
        while state.internal:
            (leaf, failed), state.internal = state.internal[0], state.internal[1:]
            if leaf not in state.active or not state.running:
                continue
            plan = self.plans[leaf]
            if plan.kind == "choice":
                # Its rules, then its default (which always passes), in order.
                await self.trigger(CHOICE_EVENT, leaf, exact=True)
                continue
            container = plan.container
            if failed:
                types, error = self._failure_of(leaf)
                if container is None:
                    saga.fail(self.run, error)
                else:
                    await self.raise_event(ERROR, container, types, error)
                continue
            state.leaves.setdefault(leaf, LeafState()).done = True
            await self._complete(leaf)

    def _failure_of(self, path: str) -> tuple[tuple[str, ...], dict[str, str] | None]:
        """The error types and error of terminal leaf ``path`` ending in failure: its action's
        error when that failed for good, else its own ``error`` and ``cause``."""
        leaf = self.run.state.leaves.get(path)
        if leaf is not None and leaf.error is not None and not leaf.acted:
            return tuple(leaf.error_types or ()), leaf.error
        error = self.plans[path].failure_error
        return ((error["type"],) if error is not None else ()), error

    async def _complete(self, path: str) -> None:
        """``path`` (terminal) completed: complete its container, up as far as it goes."""
        while True:
            container = self.plans[path].container
            if container is None:
                self.run.finish(Status.COMPLETED)
                return
            plan = self.plans[container]
            if plan.kind == "parallel" and not all(self._is_complete(r) for r in plan.children):
                return
            if not plan.terminal:
                if DONE in plan.events:
                    await self.trigger(DONE, container, exact=True)
                else:
                    self.run.log(RecordKind.IGNORED, state=container, event=DONE)
                return
            path = container  # terminal in its own container: that completes too

    def _is_complete(self, path: str) -> bool:
        plan = self.plans[path]
        state = self.run.state
        if plan.works:
            leaf = state.leaves.get(path)
            return leaf is not None and leaf.done
        if plan.kind == "parallel":
            return plan.terminal and all(self._is_complete(r) for r in plan.children)
        if plan.kind == "compound" and not plan.terminal:
            return False
        child = next((c for c in plan.children if c in state.active), None)
        return child is not None and self._is_complete(child)
