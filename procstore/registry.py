"""A store's registry: the procedure versions it knows, compiled, and the stored ones it cannot
load (quarantined), with the rules that keep one version under one spelling and one content.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Final

from packaging.version import InvalidVersion, Version

from procstore.actions import ActionNotAllowed, ActionRegistry
from procstore.chart import build_chart
from procstore.clock import Clock
from procstore.compiler import (
    ITEM_SEPARATOR,
    CompiledProcedure,
    compile_procedure,
    item_procedures,
)
from procstore.definition import FunctionAction, Procedure
from procstore.errors import ProcedureNotFound, VersionConflict
from procstore.guards import GuardRegistry
from procstore.reasons import one_line
from procstore.storage import StoredProcedure
from procstore.validation import Document, LoadedDocument, load_document

__all__ = ["VERSION_CACHE_SIZE", "ProcedureRegistry", "parsed_version"]


VERSION_CACHE_SIZE: Final = 1024
"""How many version strings ``parsed_version`` keeps parsed."""


@functools.lru_cache(maxsize=VERSION_CACHE_SIZE)
def parsed_version(text: str) -> Version:
    """``Version(text)``, parsed once: ``recover()`` looks up each execution's procedure
    version three times, and parsing it each time cost about a sixth of restoring an
    execution (``Version`` is immutable, so one parse serves every lookup).

    Raises:
        InvalidVersion: ``text`` is not a PEP 440 version.
    """
    return Version(text)


logger = logging.getLogger("procstore")


class ProcedureRegistry:
    """The procedure versions of one store, by name and version (``1.0`` is ``1.0.0``).

    Args:
        actions: The store's actions, which compiling checks documents against.
        guards: The store's guards, likewise.
        where: What messages call the store's storage (its database file).
        clock: The clock the executions of its procedures run on.
    """

    def __init__(
        self, actions: ActionRegistry, guards: GuardRegistry, where: str, clock: Clock
    ) -> None:
        self._actions = actions
        self._guards = guards
        self._where = where
        self._clock = clock
        self._procedures: dict[tuple[str, Version], CompiledProcedure] = {}
        # The procedures the map states of those run per item (named parent#state), derived
        # from their documents: never listed nor stored of their own.
        self._items: dict[tuple[str, Version], CompiledProcedure] = {}
        # Stored procedure versions that cannot be loaded, by (name, version as stored): why.
        self._quarantined: dict[tuple[str, str], str] = {}
        # Versions whose host code was all found (see missing_host_code).
        self._complete: set[tuple[str, str]] = set()

    def load(self, stored: Iterable[StoredProcedure]) -> None:
        """Compile the stored procedure versions; quarantine (and log) each that cannot be
        loaded, so that one damaged document leaves the others usable. Versions known already
        (loaded, registered or quarantined) are skipped: loading again after other processes
        registered procedures adds theirs."""
        for row in stored:
            if self._known(row.name, row.version):
                continue
            try:
                compiled = self._load_procedure(row)
            except Exception as exc:  # one damaged document must not close the store
                reason = one_line(str(exc))
                self._quarantined[(row.name, row.version)] = reason
                logger.warning(
                    "%s: procedure %r version %r is quarantined: %s",
                    self._where,
                    row.name,
                    row.version,
                    reason,
                )
                continue
            self.add(compiled)

    def _known(self, name: str, version: str) -> bool:
        if (name, version) in self._quarantined:
            return True
        try:
            compiled = self._procedures.get((name, parsed_version(version)))
        except InvalidVersion:
            return False
        return compiled is not None and compiled.procedure.version == version

    def missing_host_code(self, name: str, version: str) -> str | None:
        """What a registered procedure version's actions or guards name that this store cannot
        provide now (an action or guard predicate nobody registered, a module that is not
        allowed or not found), checked without running any host code; ``None`` when nothing
        is missing. An execution resumed without it would fail its next step for good.

        A version found complete is remembered: host code is only ever added to a store,
        so it stays complete (this is asked for every execution a store brings back)."""
        if (name, version) in self._complete:
            return None
        missing = self._missing_host_code(name, version)
        if missing is None:
            self._complete.add((name, version))
        return missing

    def _missing_host_code(self, name: str, version: str) -> str | None:
        procedure = self.compiled(name, version).procedure
        charts = [build_chart(item) for item in (procedure, *item_procedures(procedure))]
        for node in (node for chart in charts for node in chart):
            state = node.state
            if state is None:
                continue
            for action in (state.action, state.compensate):
                if isinstance(action, FunctionAction):
                    try:
                        self._actions.check(action)
                    except ActionNotAllowed as exc:
                        return f"state {node.path}: {exc.message}"
            for transition in state.transitions:
                for predicate in (*transition.conditions, *transition.unless):
                    if predicate not in self._guards:
                        return f"state {node.path}: no guard named {predicate!r} is registered"
        return None

    def _load_procedure(self, row: StoredProcedure) -> CompiledProcedure:
        """Compile a stored procedure version; raise, saying why, if it cannot be loaded."""
        if row.document is None:
            raise ValueError(row.reason or "its stored document cannot be read")
        try:
            procedure = Procedure.model_validate(row.document)  # trusted: stored by us
        except ValueError as exc:
            raise ValueError(f"its stored document is not a valid procedure: {exc}") from exc
        if (procedure.name, procedure.version) != (row.name, row.version):
            raise ValueError(
                f"its stored document is for procedure {procedure.name!r} version "
                f"{procedure.version!r}"
            )
        return compile_procedure(procedure, self._actions, self._guards, clock=self._clock)

    def prepare(self, doc: Document) -> tuple[LoadedDocument, CompiledProcedure | None]:
        """Read, validate and (unless already registered) compile ``doc``: the CPU-bound part of
        registering, which the store runs in a worker thread."""
        loaded = load_document(doc, self._actions, self._guards)
        if self.registered(loaded.procedure) is not None:
            return loaded, None
        compiled = compile_procedure(
            loaded.procedure, self._actions, self._guards, loaded.chart, self._clock
        )
        return loaded, compiled

    def add(self, compiled: CompiledProcedure) -> None:
        """Register a compiled procedure version (``registered`` has found no conflict)."""
        procedure = compiled.procedure
        self._procedures[(procedure.name, procedure.parsed_version)] = compiled
        for item in item_procedures(procedure):
            self._items[(item.name, item.parsed_version)] = compile_procedure(
                item, self._actions, self._guards, clock=self._clock
            )

    def registered(self, procedure: Procedure) -> Procedure | None:
        """The registered procedure of the same name and version, if its content is the same.

        Raises:
            VersionConflict: the name and version exist with different content, under another
                spelling of the version, or stored but quarantined.
        """
        existing = self._procedures.get((procedure.name, procedure.parsed_version))
        if existing is not None:
            if existing.procedure == procedure:
                return existing.procedure
            registered = existing.procedure.version
            if registered != procedure.version:  # 1.0 and 1.0.0 are one version
                raise VersionConflict(
                    f"{procedure.name} version {procedure.version!r} is the same version as "
                    f"the registered {registered!r}: register it as {registered!r}, or under "
                    "a new version"
                )
            raise VersionConflict(
                f"{procedure.name} version {registered} is already registered "
                "with different content; register it under a new version"
            )
        for (name, version), reason in self._quarantined.items():
            if name == procedure.name and _same_version(version, procedure.parsed_version):
                raise VersionConflict(
                    f"{procedure.name} version {version} is stored in {self._where} but cannot "
                    f"be loaded ({reason}); register it under a new version"
                )
        return None

    def procedures(self) -> list[Procedure]:
        """Every registered procedure version, by name then version."""
        return [self._procedures[key].procedure for key in sorted(self._procedures)]

    def compiled(self, name: str, version: str | None) -> CompiledProcedure:
        """A procedure version, or the latest one (compared as versions: 10.0 > 2.0).

        Raises:
            ProcedureNotFound: no such name or version (saying so if it is quarantined).
        """
        if ITEM_SEPARATOR in name and version is not None:
            item = self._items.get((name, parsed_version(version)))
            if item is None:
                raise ProcedureNotFound(f"no item procedure {name!r} version {version!r}")
            return item
        if version is None:
            versions = [v for (n, v) in self._procedures if n == name]
            if not versions:
                raise ProcedureNotFound(f"no procedure named {name!r}")
            return self._procedures[(name, max(versions))]
        try:
            compiled = self._procedures.get((name, parsed_version(version)))
        except InvalidVersion:
            compiled = None
        if compiled is None:
            reason = self._quarantined.get((name, version))
            if reason is not None:
                raise ProcedureNotFound(
                    f"procedure {name!r} version {version!r} is quarantined: {reason}"
                )
            raise ProcedureNotFound(f"no procedure {name!r} version {version!r}")
        return compiled

    def cannot_run(self, name: str, version: str) -> str | None:
        """Why an execution stored as started on ``version`` of ``name`` cannot run on this
        registry; ``None`` when exactly that version (that spelling) is registered."""
        if (name, version) in self._quarantined:
            return (
                f"its procedure {name!r} version {version!r} cannot be loaded: "
                f"{self._quarantined[(name, version)]}"
            )
        try:
            compiled = self.compiled(name, version)
        except ProcedureNotFound:
            compiled = None
        # Exactly the version it started on: another spelling of it may hold other states.
        if compiled is None or compiled.procedure.version != version:
            return f"its procedure {name!r} version {version!r} is not in the store"
        return None


def _same_version(stored: str, version: Version) -> bool:
    try:
        return parsed_version(stored) == version
    except InvalidVersion:
        return False
