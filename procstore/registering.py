"""``Registering``: how a store registers procedure documents (validated, compiled, stored) and
looks them up. A part of ``procstore.ProcedureStore``, kept apart so that the store's module
holds its executions."""

from __future__ import annotations

import asyncio
import warnings

from procstore.compiler import CompiledProcedure
from procstore.definition import Procedure
from procstore.errors import Problem, ProcedureNotFound, ProcedureWarning
from procstore.jsondata import require_json
from procstore.registry import ProcedureRegistry
from procstore.storage import Backend
from procstore.validation import Document

__all__ = ["Registering"]


class Registering:
    """The registry of a store: its procedure versions, registered or loaded from its database."""

    _registry: ProcedureRegistry

    async def _opened(self) -> Backend:
        """The open backend (the store opens it on first use)."""
        raise NotImplementedError

    async def register(self, doc: Document) -> Procedure:
        """Validate, compile and register a procedure document (and store it, when persisted).

        ``doc`` is a dict, a JSON string, or a path to a ``.json``/``.yaml`` file. Registering
        the same name and version again is a no-op when the content is identical. Versions
        are equal as versions (``1.0`` is ``1.0.0``): a version keeps the spelling it was
        first registered with.

        Reading, validating and compiling run in a worker thread: a document of thousands of
        states takes a fraction of a second, during which the executions running in this
        event loop go on.

        Warns:
            ProcedureWarning: the static checks found something probably unmeant (a transition
                that can never fire, a guard that is always false); the procedure is registered
                unless warnings are errors (``warnings.simplefilter("error", ProcedureWarning)``).

        Raises:
            InvalidProcedure: listing every problem with its JSON path; nothing is registered.
            VersionConflict: the name and version exist with different content, or the version
                is registered (or stored, by another store on the same database) under another
                spelling, which the message names.
        """
        backend = await self._opened()
        loaded, compiled = await asyncio.to_thread(self._registry.prepare, doc)
        procedure = loaded.procedure
        # Checked again on the event loop: another call may have registered it meanwhile.
        registered = self._registry.registered(procedure)
        if registered is not None:
            return registered
        assert compiled is not None
        if loaded.warnings:  # before anything is stored: a filter may make it an error
            label = f"{procedure.name} {procedure.version}"
            warnings.warn(ProcedureWarning(label, loaded.warnings, loaded.source), stacklevel=2)
        if backend.persistent:  # otherwise the registry is the only record (see Backend)
            document = require_json(dict(loaded.data), "the procedure document")
            await backend.save_procedure(procedure.name, procedure.version, document)
        self._registry.add(compiled)
        return procedure

    async def validate(self, doc: Document) -> list[Problem]:
        """Check ``doc`` exactly as `register` would, registering and storing nothing: for a
        caller that must say whether a document is acceptable before anyone commits to it
        (an agent drafting a procedure, say). The store's own allowlist and registered actions
        and guards are what function actions and guard predicates are checked against.

        Returns:
            The static checks' warnings (what `register` would warn about), possibly none.

        Raises:
            InvalidProcedure: listing every problem with its JSON path.
            VersionConflict: the name and version exist with different content (registering it
                would be refused).
        """
        await self._opened()
        loaded, _ = await asyncio.to_thread(self._registry.prepare, doc)
        return list(loaded.warnings)

    async def get(self, name: str, version: str | None = None) -> Procedure:
        """Return a procedure version, or the latest one (compared as versions: 10.0 > 2.0).
        A name or version this store does not know is looked for in the database too: another
        process (a client, say) may have registered it since the store opened.

        Raises:
            ProcedureNotFound: no such name or version.
        """
        return (await self._looked_up(name, version)).procedure

    async def list(self) -> list[Procedure]:
        """Every registered procedure version, by name then version."""
        await self._opened()
        return self._registry.procedures()

    def _compiled(self, name: str, version: str | None) -> CompiledProcedure:
        """The registered procedure version (or latest), as this store knows it."""
        return self._registry.compiled(name, version)

    async def _looked_up(self, name: str, version: str | None) -> CompiledProcedure:
        """The procedure version (or latest), loading those other processes registered since
        the store opened when it is not known here."""
        backend = await self._opened()
        try:
            return self._registry.compiled(name, version)
        except ProcedureNotFound:
            if not backend.persistent:
                raise
        self._registry.load(await backend.load_procedures())
        return self._registry.compiled(name, version)
