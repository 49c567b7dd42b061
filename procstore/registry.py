"""A store's registry: the procedure versions it knows, compiled, and the stored ones it cannot
load (quarantined), with the rules that keep one version under one spelling and one content.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

from procstore.actions import ActionRegistry
from procstore.clock import Clock
from procstore.compiler import CompiledProcedure, compile_procedure
from procstore.definition import Procedure
from procstore.errors import ProcedureNotFound, ProcedureWarning, VersionConflict
from procstore.guards import GuardRegistry
from procstore.jsondata import require_json
from procstore.reasons import one_line
from procstore.storage import Backend, StoredProcedure
from procstore.validation import Document, LoadedDocument, load_document

__all__ = ["ProcedureRegistry"]

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
        # Stored procedure versions that cannot be loaded, by (name, version as stored): why.
        self._quarantined: dict[tuple[str, str], str] = {}

    def load(self, stored: Iterable[StoredProcedure]) -> None:
        """Compile the stored procedure versions; quarantine (and log) each that cannot be
        loaded, so that one damaged document leaves the others usable."""
        for row in stored:
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

    def load_new(self, stored: Iterable[StoredProcedure]) -> None:
        """``load`` the stored procedure versions this registry does not have yet (registered
        by another process since this one loaded them)."""
        self.load(row for row in stored if not self._knows(row.name, row.version))

    def _knows(self, name: str, version: str) -> bool:
        """Whether the version stored as ``version`` is registered or quarantined here."""
        if (name, version) in self._quarantined:
            return True
        try:
            return (name, Version(version)) in self._procedures
        except InvalidVersion:
            return False

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

    async def register(self, doc: Document, backend: Backend) -> Procedure:
        """``ProcedureStore.register``: prepare ``doc`` in a worker thread, then (unless the
        same version is registered) warn, store it in ``backend`` when persistent, and add it.
        """
        loaded, compiled = await asyncio.to_thread(self.prepare, doc)
        procedure = loaded.procedure
        # Checked again on the event loop: another call may have registered it meanwhile.
        registered = self.registered(procedure)
        if registered is not None:
            return registered
        assert compiled is not None
        if loaded.warnings:  # before anything is stored: a filter may make it an error
            label = f"{procedure.name} {procedure.version}"
            # stacklevel: the caller of ProcedureStore.register.
            warnings.warn(ProcedureWarning(label, loaded.warnings, loaded.source), stacklevel=3)
        if backend.persistent:  # otherwise the registry is the only record (see Backend)
            document = require_json(dict(loaded.data), "the procedure document")
            await backend.save_procedure(procedure.name, procedure.version, document)
        self.add(compiled)
        return procedure

    def add(self, compiled: CompiledProcedure) -> None:
        """Register a compiled procedure version (``registered`` has found no conflict)."""
        procedure = compiled.procedure
        self._procedures[(procedure.name, procedure.parsed_version)] = compiled

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
        return Version(stored) == version
    except InvalidVersion:
        return False
