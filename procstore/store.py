"""The procedure store: a registry of versioned procedures and the executions started from it."""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from packaging.version import InvalidVersion, Version

from procstore.actions import ActionCallable, ActionRegistry
from procstore.compiler import CompiledProcedure, compile_procedure
from procstore.definition import Procedure
from procstore.errors import ProcedureNotFound, VersionConflict
from procstore.execution import Execution, json_compatible, start_execution
from procstore.guards import GuardCallable, GuardRegistry
from procstore.validation import Document, load_procedure

F = TypeVar("F", bound=ActionCallable)
G = TypeVar("G", bound=GuardCallable)


class ProcedureStore:
    """Registers procedures and starts executions of them.

    Args:
        url: Where to persist; ``None`` keeps everything in memory.
        allowed_modules: Modules (and their submodules) whose public functions ``function``
            actions may name with ``module`` + ``function``. Nothing else is importable from a
            definition.
    """

    def __init__(self, url: str | None = None, *, allowed_modules: Iterable[str] = ()) -> None:
        if url is not None:
            raise NotImplementedError("persistent stores are not available yet; use url=None")
        self._actions = ActionRegistry(allowed_modules)
        self._guards = GuardRegistry()
        self._procedures: dict[tuple[str, Version], CompiledProcedure] = {}
        # Executions are owned by whoever holds their handle: the store only tracks them
        # while they are referenced, so finished executions never accumulate here.
        self._executions: weakref.WeakValueDictionary[str, Execution] = (
            weakref.WeakValueDictionary()
        )

    @property
    def allowed_modules(self) -> frozenset[str]:
        return self._actions.allowed_modules

    # -- host code -------------------------------------------------------------------------

    def action(self, name: str) -> Callable[[F], F]:
        """Decorator: register a sync or async ``callable(context) -> value`` as action ``name``."""

        def decorate(fn: F) -> F:
            self._actions.register(name, fn)
            return fn

        return decorate

    def register_action(self, name: str, fn: ActionCallable) -> None:
        """Register ``fn`` as action ``name`` (the non-decorator form of :meth:`action`)."""
        self._actions.register(name, fn)

    def guard(self, name: str) -> Callable[[G], G]:
        """Decorator: register a sync or async predicate ``callable(context) -> bool`` that
        transitions may name in ``conditions`` (must be true) or ``unless`` (must be false)."""

        def decorate(fn: G) -> G:
            self._guards.register(name, fn)
            return fn

        return decorate

    def register_guard(self, name: str, fn: GuardCallable) -> None:
        """Register ``fn`` as guard ``name`` (the non-decorator form of :meth:`guard`)."""
        self._guards.register(name, fn)

    # -- registry -----------------------------------------------------------------------------

    async def register(self, doc: Document) -> Procedure:
        """Validate, compile and register a procedure document.

        ``doc`` is a dict, a JSON string, or a path to a ``.json``/``.yaml`` file. Registering
        the same name and version again is a no-op when the content is identical.

        Raises:
            InvalidProcedure: listing every problem with its JSON path; nothing is registered.
            VersionConflict: the name and version exist with different content.
        """
        procedure = load_procedure(doc, self._actions, self._guards)
        key = (procedure.name, procedure.parsed_version)
        existing = self._procedures.get(key)
        if existing is not None:
            if existing.procedure == procedure:
                return existing.procedure
            raise VersionConflict(
                f"{procedure.name} version {existing.procedure.version} is already registered "
                "with different content; register it under a new version"
            )
        self._procedures[key] = compile_procedure(procedure, self._actions, self._guards)
        return procedure

    async def get(self, name: str, version: str | None = None) -> Procedure:
        """Return a procedure version, or the latest one (compared as versions: 10.0 > 2.0)."""
        return self._compiled(name, version).procedure

    async def list(self) -> list[Procedure]:
        """Every registered procedure version, by name then version."""
        return [self._procedures[key].procedure for key in sorted(self._procedures)]

    def _compiled(self, name: str, version: str | None) -> CompiledProcedure:
        if version is None:
            versions = [v for (n, v) in self._procedures if n == name]
            if not versions:
                raise ProcedureNotFound(f"no procedure named {name!r}")
            return self._procedures[(name, max(versions))]
        try:
            compiled = self._procedures.get((name, Version(version)))
        except InvalidVersion:
            compiled = None
        if compiled is None:
            raise ProcedureNotFound(f"no procedure {name!r} version {version!r}")
        return compiled

    # -- executions ---------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        version: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        auto: bool = False,
    ) -> Execution:
        """Start an execution; it returns once the initial state is entered.

        Args:
            name: The procedure's name.
            version: Its version; ``None`` starts the latest.
            context: The execution's starting data (JSON-compatible); the execution gets its own
                copy.
            auto: Drive the execution by itself: every outcome event fires without ``send()``.

        Raises:
            ProcedureNotFound: no such procedure or version.
            TypeError: the context is not JSON-compatible data.
        """
        compiled = self._compiled(name, version)
        start_context = json_compatible(dict(context or {}), "the start context")
        execution = await start_execution(compiled, uuid.uuid4().hex, start_context, auto=auto)
        self._executions[execution.id] = execution
        return execution
