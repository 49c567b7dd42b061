"""The procedure store: a registry of versioned procedures and the executions started from it,
in memory or persisted (``sqlite:///path``)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from procstore.actions import ActionCallable, ActionRegistry
from procstore.compiler import CompiledProcedure
from procstore.definition import Procedure
from procstore.errors import ExecutionDamaged, ExecutionNotFound, ProcedureWarning, StoreError
from procstore.guards import GuardCallable, GuardRegistry
from procstore.jsondata import require_json
from procstore.reasons import one_line
from procstore.registry import ProcedureRegistry
from procstore.runtime import Execution, restore_execution, start_execution
from procstore.snapshot import ExecutionSummary, Status
from procstore.storage import Backend, SQLiteBackend, StoredExecution
from procstore.validation import Document

F = TypeVar("F", bound=ActionCallable)
G = TypeVar("G", bound=GuardCallable)

SQLITE_PREFIX = "sqlite:///"

logger = logging.getLogger("procstore")


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///`` URL, as SQLAlchemy reads them:
    ``sqlite:///procstore.db`` is relative to the working directory, ``sqlite:////var/x.db``
    absolute."""
    if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX:
        raise StoreError(
            f"unsupported store URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db (or no URL for an in-memory store)"
        )
    return Path(url[len(SQLITE_PREFIX) :])


class _Journal:
    """An execution's place in the backend (see ``procstore.runtime.Journal``)."""

    def __init__(self, backend: Backend, execution_id: str, procedure: str, version: str) -> None:
        self._backend = backend
        self._id = execution_id
        self._procedure = procedure
        self._version = version
        self._discarded = False

    def discard(self) -> None:
        """Write nothing more: the execution this journal was given to failed to restore."""
        self._discarded = True

    async def create(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        await self._backend.create_execution(
            self._id, self._procedure, self._version, status, snapshot, records
        )

    async def commit(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        if not self._discarded:
            await self._backend.commit(self._id, status, snapshot, records)


class ProcedureStore:
    """Registers procedures and starts executions of them.

    Args:
        url: Where to persist: ``sqlite:///path/to/procstore.db`` (the embedded default), or
            ``None`` to keep everything in memory.
        allowed_modules: Modules (and their submodules) whose public functions ``function``
            actions may name with ``module`` + ``function``. Nothing else is importable from a
            definition. Registering a procedure checks its actions by reading the modules'
            source, without importing (running) them; a module is imported when an action
            that names it runs.
        allowed_module_files: ``.py`` files whose module (named by the file's stem) function
            actions may name, **only as that file**: when the name imports another module (an
            empty ``subprocess.py`` would otherwise allow the standard library's
            ``subprocess``), actions naming it are refused, at registration and when they run.
            The file's directory must be on ``sys.path`` for it to import; append it
            (``sys.path.append``) rather than prepend it, so that it never shadows another
            module. A name also in ``allowed_modules`` is allowed by name.
        synchronous: SQLite's durability setting: ``NORMAL`` (WAL: a power cut may lose the
            last commits, never corrupt) or ``FULL`` (fsync on every commit).
        read_only: Open a persisted store for reading (listing, history) beside the process
            that runs its executions.

    Raises:
        ValueError: an ``allowed_module_files`` entry is not a ``.py`` file named like a public
            module (an identifier without a leading ``_``), or two entries name one module.

    A persisted store opens on first use or with ``async with ProcedureStore(url) as store``;
    close it with [`close`][procstore.ProcedureStore.close]. Stored procedures are trusted when
    it opens: the application may register its actions and guards afterwards.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        allowed_modules: Iterable[str] = (),
        allowed_module_files: Iterable[str | os.PathLike[str]] = (),
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        read_only: bool = False,
    ) -> None:
        self._path = sqlite_path(url) if url is not None else None
        self._synchronous = synchronous
        self._read_only = read_only
        self._backend: SQLiteBackend | None = None
        self._runner = False  # this process holds the store's runner lock
        self._actions = ActionRegistry(allowed_modules, allowed_module_files)
        self._guards = GuardRegistry()
        self._registry = ProcedureRegistry(self._actions, self._guards, str(self._path))
        # Unfinished executions are kept alive here; finished ones belong to whoever holds
        # their handle and are only tracked while referenced.
        self._running: dict[str, Execution] = {}
        self._executions: weakref.WeakValueDictionary[str, Execution] = (
            weakref.WeakValueDictionary()
        )

    @property
    def allowed_modules(self) -> frozenset[str]:
        """The modules whose public functions definitions may call."""
        return self._actions.allowed_modules

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> ProcedureStore:
        """Open the database (creating or migrating it) and load its procedures. Called by
        every other method when needed; a no-op for an in-memory store.

        Raises:
            StoreError: the file is not a procstore database, is corrupt, or was written by a
                newer procstore.
        """
        if self._path is None or self._backend is not None:
            return self
        backend = await SQLiteBackend.open(
            self._path, synchronous=self._synchronous, read_only=self._read_only
        )
        try:
            stored = await backend.load_procedures()
        except Exception:
            await backend.close()
            raise
        self._registry.load(stored)
        self._backend = backend
        return self

    async def close(self) -> None:
        """Stop running executions in this process (a persisted one stays ``running`` in the
        database and resumes with [`recover`][procstore.ProcedureStore.recover]) and close the
        database."""
        for execution in list(self._running.values()):
            await execution.detach()
        self._running.clear()
        if self._backend is not None:
            backend, self._backend = self._backend, None
            self._runner = False
            await backend.close()

    async def __aenter__(self) -> ProcedureStore:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run_here(self) -> None:
        """Make sure this process may run executions of a persisted store."""
        await self.open()
        if self._backend is None or self._runner:
            return
        if self._read_only:
            raise StoreError(f"{self._path} is open read-only: it cannot run executions")
        await self._backend.acquire_runner_lock()
        self._runner = True

    # -- host code -------------------------------------------------------------------------

    def action(self, name: str) -> Callable[[F], F]:
        """Decorator: register a sync or async ``callable(context) -> value`` as action ``name``.

        A callable whose second positional parameter has no default also receives an
        [`ActionInfo`][procstore.ActionInfo] (execution id, state, attempt).
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

    # -- registry -----------------------------------------------------------------------------

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
        await self.open()
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
        if self._backend is not None:
            document = require_json(dict(loaded.data), "the procedure document")
            await self._backend.save_procedure(procedure.name, procedure.version, document)
        self._registry.add(compiled)
        return procedure

    async def get(self, name: str, version: str | None = None) -> Procedure:
        """Return a procedure version, or the latest one (compared as versions: 10.0 > 2.0).

        Raises:
            ProcedureNotFound: no such name or version.
        """
        await self.open()
        return self._compiled(name, version).procedure

    async def list(self) -> list[Procedure]:
        """Every registered procedure version, by name then version."""
        await self.open()
        return self._registry.procedures()

    def _compiled(self, name: str, version: str | None) -> CompiledProcedure:
        return self._registry.compiled(name, version)

    # -- executions ---------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        version: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        auto: bool = False,
    ) -> Execution:
        """Start an execution; it returns once the initial state is entered (and, when
        persisted, stored).

        Args:
            name: The procedure's name.
            version: Its version; ``None`` starts the latest.
            context: The execution's starting data (JSON-compatible); the execution gets its own
                copy.
            auto: Drive the execution by itself: every outcome event fires without ``send()``.
                Stored with the execution, so it holds after recovery.

        Raises:
            ProcedureNotFound: no such procedure or version.
            TypeError: the context is not JSON-compatible data.
            StoreError: another process runs this store's executions.
        """
        await self._run_here()
        compiled = self._compiled(name, version)
        start_context = require_json(dict(context or {}), "the start context")
        execution_id = uuid.uuid4().hex
        journal = None
        if self._backend is not None:
            journal = _Journal(
                self._backend, execution_id, compiled.procedure.name, compiled.procedure.version
            )
        execution = await start_execution(
            compiled, execution_id, start_context, auto=auto, journal=journal, running=self._running
        )
        self._executions[execution.id] = execution
        return execution

    async def get_execution(self, execution_id: str) -> Execution:
        """A handle on a stored execution, finished or not. An unfinished one that no handle in
        this process runs resumes here (unless the store is read-only).

        Raises:
            ExecutionNotFound: no execution has that id.
        """
        await self.open()
        live = self._live(execution_id)
        if live is not None:
            return live
        if self._backend is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}")
        stored = await self._backend.load_execution(execution_id)
        if stored is None:
            raise ExecutionNotFound(f"no execution {execution_id!r} in {self._path}")
        if stored.status == Status.QUARANTINED:
            reason = stored.reason or "no reason was stored"
            raise ExecutionDamaged(execution_id, reason, quarantined=True)
        resume = stored.status == Status.RUNNING and not self._read_only
        if resume:
            await self._run_here()
            live = self._live(execution_id)  # resumed meanwhile by another call
            if live is not None:
                return live
        try:
            return await self._restore(stored, resume=resume)
        except ExecutionDamaged as damaged:
            if resume:  # an unfinished one: keep recover() from meeting it again
                await self._quarantine(damaged)
            raise

    async def executions(
        self, status: Status | str | None = None, procedure: str | None = None
    ) -> builtins.list[ExecutionSummary]:
        """Summaries of the executions (stored ones, or this process's for an in-memory store),
        filtered by status and procedure name, oldest first."""
        await self.open()
        wanted = Status(status).value if status is not None else None
        if self._backend is not None:
            # A status this procstore does not know is listed as quarantined: ask for all of
            # them when quarantined ones are wanted.
            asked = None if wanted == Status.QUARANTINED else wanted
            rows = await self._backend.list_executions(status=asked, procedure=procedure)
            summaries = []
            for r in rows:
                known = r.status in _STATUSES
                summary = ExecutionSummary(
                    id=r.id,
                    procedure=r.procedure,
                    version=r.version,
                    status=Status(r.status) if known else Status.QUARANTINED,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                    reason=r.reason if known else _unknown_status(r.status),
                )
                if wanted is None or summary.status == wanted:
                    summaries.append(summary)
            return summaries
        summaries = []
        for execution in list(self._executions.values()):
            history = execution.history
            if (wanted is None or execution.status.value == wanted) and (
                procedure is None or execution.procedure == procedure
            ):
                summaries.append(
                    ExecutionSummary(
                        id=execution.id,
                        procedure=execution.procedure,
                        version=execution.version,
                        status=execution.status,
                        created_at=history[0].at if history else datetime.now(UTC),
                        updated_at=history[-1].at if history else datetime.now(UTC),
                    )
                )
        return sorted(summaries, key=lambda s: s.created_at)

    async def recover(self) -> builtins.list[Execution]:
        """Resume every unfinished stored execution: running actions restart (an interrupted
        attempt runs again with its number), retry delays and state timeouts continue from
        their stored deadlines, compensation in progress carries on.

        An execution that cannot be restored (a damaged snapshot or journal record, a procedure
        version that is gone or cannot be loaded) does not stop the others: it is
        *quarantined* (status ``quarantined``, with the reason, in the database), a warning
        names it and the reason on the ``procstore`` logger, and every other one resumes.
        [`executions`][procstore.ProcedureStore.executions] lists quarantined executions with
        their ``reason``.

        Returns:
            Handles on the resumed executions.
        """
        await self._run_here()
        if self._backend is None:
            return []
        resumed = []
        for stored in await self._backend.load_unfinished():
            live = self._live(stored.id)
            if live is None:
                try:
                    live = await self._restore(stored, resume=True)
                except ExecutionDamaged as damaged:
                    await self._quarantine(damaged)
                    continue
            resumed.append(live)
        return resumed

    def _live(self, execution_id: str) -> Execution | None:
        """This process's handle on an execution, unless it is detached (a failed write stopped
        it, say): then the stored execution is loaded anew."""
        live = self._executions.get(execution_id)
        return None if live is None or live.detached else live

    async def _restore(self, stored: StoredExecution, *, resume: bool) -> Execution:
        """A handle on a stored execution (with ``resume``, an unfinished one carries on here).

        Raises:
            ExecutionDamaged: it cannot be restored; nothing of it runs or is written.
        """
        assert self._backend is not None
        reason = stored.reason or self._cannot_restore(stored)
        if reason is None:
            journal = _Journal(self._backend, stored.id, stored.procedure, stored.version)
            try:
                execution = restore_execution(
                    self._compiled(stored.procedure, stored.version),
                    stored.id,
                    stored.snapshot,
                    stored.records,
                    journal=journal,
                    resume=resume,
                    running=self._running,
                )
            except Exception as exc:  # whatever a damaged snapshot makes restoring raise
                reason = f"its stored state cannot be restored ({type(exc).__name__}: {exc})"
                # The half-restored execution may have registered itself and scheduled its
                # first steps: stop it before they run, and let nothing of it be written.
                journal.discard()
                half = self._running.pop(stored.id, None)
                if half is not None:
                    await half.detach()
            else:
                self._executions[execution.id] = execution
                return execution
        raise ExecutionDamaged(stored.id, one_line(reason))

    def _cannot_restore(self, stored: StoredExecution) -> str | None:
        """Why ``stored`` cannot be restored, found before trying; ``None`` if nothing is."""
        if stored.status not in _STATUSES:
            return _unknown_status(stored.status)
        return self._registry.cannot_run(stored.procedure, stored.version)

    async def _quarantine(self, damaged: ExecutionDamaged) -> None:
        """Mark an unfinished execution that cannot be restored as quarantined, and say so."""
        assert self._backend is not None
        await self._backend.quarantine_execution(damaged.execution_id, damaged.reason)
        logger.warning(
            "%s: execution %s is quarantined: %s", self._path, damaged.execution_id, damaged.reason
        )


_STATUSES = frozenset(status.value for status in Status)


def _unknown_status(status: str) -> str:
    return f"its stored status {status!r} is unknown to this procstore"
