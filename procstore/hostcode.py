"""``HostCode``: how a store's application registers the host code its definitions may call
(actions and guard predicates by name), and reads its allowlist of modules. A part of
``procstore.ProcedureStore``, kept apart so that the store's module holds its executions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from procstore.actions import ActionCallable, ActionRegistry
from procstore.guards import GuardCallable, GuardRegistry

__all__ = ["HostCode"]

F = TypeVar("F", bound=ActionCallable)
G = TypeVar("G", bound=GuardCallable)


class HostCode:
    """The host code of a store: its actions and guards registered by name, and its allowlist."""

    _actions: ActionRegistry
    _guards: GuardRegistry

    @property
    def allowed_modules(self) -> frozenset[str]:
        """The modules whose public functions definitions may call."""
        return self._actions.allowed_modules

    @property
    def registered_actions(self) -> list[str]:
        """The names of the actions registered with `action` or `register_action`, sorted."""
        return self._actions.names

    def action(self, name: str) -> Callable[[F], F]:
        """Decorator: register a sync or async ``callable(context, **args) -> value`` as action
        ``name`` (``args``: the action's rendered `args`, none if it has none).

        A callable whose second positional parameter has no default (and is not one of the
        args) also receives an [`ActionInfo`][procstore.ActionInfo] (execution id, state,
        attempt).
        """

        def decorate(fn: F) -> F:
            self._actions.register(name, fn)
            return fn

        return decorate

    def register_action(self, name: str, fn: ActionCallable) -> None:
        """Register ``fn`` as action ``name`` (the non-decorator form of ``action``)."""
        self._actions.register(name, fn)

    def guard(self, name: str) -> Callable[[G], G]:
        """Decorator: register a sync or async predicate ``callable(context) -> bool`` that
        transitions may name in ``conditions`` (must be true) or ``unless`` (must be false)."""

        def decorate(fn: G) -> G:
            self._guards.register(name, fn)
            return fn

        return decorate

    def register_guard(self, name: str, fn: GuardCallable) -> None:
        """Register ``fn`` as guard ``name`` (the non-decorator form of ``guard``)."""
        self._guards.register(name, fn)
