"""The procedure store: a registry of versioned procedures and the executions started from it,
kept through a storage ``Backend``: in memory, or persisted (``sqlite:///path``, or
``postgresql://user@host/dbname``).

The store holds a backend whatever the URL and talks to it only through ``Backend``. It
writes only to a ``persistent`` one: with the in-memory backend, its registry keeps the
procedures and the handles (``procstore.handles``) the executions, which get no journal.
"""

from __future__ import annotations

import builtins
import functools
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from procstore.actions import ActionCallable, ActionRegistry
from procstore.clock import SYSTEM, Clock
from procstore.compiler import CompiledProcedure
from procstore.definition import Procedure
from procstore.errors import ExecutionDamaged, ExecutionNotFound, StoreError
from procstore.guards import GuardCallable, GuardRegistry
from procstore.handles import Handles, journal_for
from procstore.jsondata import require_json
from procstore.registry import ProcedureRegistry
from procstore.running import Runner
from procstore.runtime import Execution, start_execution
from procstore.snapshot import ExecutionSummary, Status
from procstore.storage import Backend, MemoryBackend, SQLiteBackend
from procstore.storage.base import DEFAULT_LEASE_SECONDS
from procstore.storage.urls import describe_postgres, is_postgres_url
from procstore.validation import Document
from procstore.worker import DEFAULT_CONCURRENCY, check_settings

F = TypeVar("F", bound=ActionCallable)
G = TypeVar("G", bound=GuardCallable)

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///`` URL, as SQLAlchemy reads them:
    ``sqlite:///procstore.db`` is relative to the working directory, ``sqlite:////var/x.db``
    absolute."""
    if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX:
        raise StoreError(
            f"unsupported store URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db, postgresql://user:password@host:port/dbname (or "
            "no URL for an in-memory store)"
        )
    return Path(url[len(SQLITE_PREFIX) :])


def _storage(
    url: str | None, synchronous: Literal["NORMAL", "FULL"], read_only: bool, lease_seconds: float
) -> tuple[Callable[[], Awaitable[Backend]], str, str]:
    """How a store opens the backend ``url`` names, what messages call it, and the suffix
    that says where an execution was not found (none in memory)."""
    if url is None:
        return MemoryBackend.open, "memory", ""
    if is_postgres_url(url):
        return _postgres(url, read_only, lease_seconds)
    path = sqlite_path(url)
    opener = functools.partial(
        SQLiteBackend.open, path, synchronous=synchronous, read_only=read_only
    )
    return opener, str(path), f" in {path}"


def _postgres(
    url: str, read_only: bool, lease_seconds: float
) -> tuple[Callable[[], Awaitable[Backend]], str, str]:
    """``_storage`` of a ``postgresql://`` URL: its backend needs the optional driver, imported
    only now, so that a store of any other kind works without it."""
    where = describe_postgres(url)
    try:
        from procstore.storage.postgres import PostgresBackend
    except ImportError as exc:
        raise StoreError(
            f"cannot use {where}: the PostgreSQL store needs the asyncpg driver "
            f"(pip install 'procstore[postgres]'): {exc}"
        ) from exc
    opener = functools.partial(
        PostgresBackend.open, url, read_only=read_only, lease_seconds=lease_seconds
    )
    return opener, where, f" in {where}"


class ProcedureStore:
    """Registers procedures and starts executions of them.

    Args:
        url: Where to persist: ``sqlite:///path/to/procstore.db`` (the embedded default),
            ``postgresql://user:password@host:port/dbname`` (or ``postgres://``: a PostgreSQL
            database, with the ``procstore[postgres]`` extra), or ``None`` to keep everything
            in memory.
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
            last commits, never corrupt) or ``FULL`` (fsync on every commit). PostgreSQL's is
            the server's (``synchronous_commit``).
        read_only: Open a persisted store for reading (listing, history) beside the process
            that runs its executions.
        clock: The time its executions run on (history timestamps, retry delays, timeouts,
            ``sleep`` actions): the system's by default; a test may pass one it advances by
            hand (see ``procstore.clock.Clock``).
        concurrency: PostgreSQL: how many executions this store, as a worker, claims and
            runs at once (those it starts itself count too); 0 claims none (it runs only what
            it starts or resumes itself). See docs/scaling.md.
        lease_seconds: PostgreSQL: how long this worker's lease on an execution lasts
            without a renewal (it renews every third of it): after a crash, how long its
            executions wait before another worker takes them over. At least
            ``MIN_LEASE_SECONDS`` (0.5).

    Raises:
        ValueError: an ``allowed_module_files`` entry is not a ``.py`` file named like a public
            module (an identifier without a leading ``_``), or two entries name one module;
            ``concurrency`` is negative or ``lease_seconds`` too short.

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
        clock: Clock = SYSTEM,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        check_settings(concurrency, lease_seconds)
        # How to open its backend, and how messages name where it keeps things.
        self._open_backend, self._where, self._where_suffix = _storage(
            url, synchronous, read_only, lease_seconds
        )
        self._backend: Backend | None = None  # until opened, and once closed
        self._actions = ActionRegistry(allowed_modules, allowed_module_files)
        self._guards = GuardRegistry()
        self._registry = ProcedureRegistry(self._actions, self._guards, self._where, clock)
        self._executions = Handles(self._registry, self._where)
        self._runner = Runner(self._executions, self._registry, self._where, concurrency, clock)

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
                newer procstore; or the PostgreSQL server cannot be reached or refuses the
                connection (the message names ``host:port/dbname`` and why).
        """
        await self._opened()
        return self

    async def _opened(self) -> Backend:
        """The open backend, opened (with the procedures it stores loaded) on first use."""
        backend = self._backend
        if backend is None:
            backend = await self._open_backend()
            try:
                stored = await backend.load_procedures()
            except Exception:
                await backend.close()
                raise
            self._registry.load(stored)
            self._backend = backend
        return backend

    async def close(self, *, grace: float = 0.0) -> None:
        """Stop running executions in this process (a persisted one stays ``running`` in the
        database and resumes with [`recover`][procstore.ProcedureStore.recover], or in another
        PostgreSQL worker) and close the database.

        Args:
            grace: Seconds (on the store's clock) to let the actions under way finish first,
                starting no new one; what they lead to is committed. An action still running
                after that is cut off and runs again, with its attempt number, wherever the
                execution resumes. A PostgreSQL worker claims nothing more meanwhile, and
                releases its leases last, so that other workers take them at once.
        """
        try:
            await self._runner.stop(grace)
        finally:
            backend, self._backend = self._backend, None
            if backend is not None:  # it was opened
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

    async def _run_here(self) -> Backend:
        """The open backend, once this process may run its executions (see ``Runner.join``)."""
        backend = await self._opened()
        await self._runner.join(backend)
        return backend

    async def work(self) -> None:
        """Start running the database's executions now rather than at the first ``start()``:
        a PostgreSQL store becomes a worker, which claims, in the background until
        [`close`][procstore.ProcedureStore.close], the running executions no live worker holds
        (up to ``concurrency`` at once; see docs/scaling.md); an SQLite store takes its runner
        lock and resumes its unfinished executions, as ``recover()`` does.

        Raises:
            StoreError: the store is read-only, or (SQLite) another process runs its
                executions.
        """
        await self._runner.work(await self._opened())

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
        return await self._registry.register(doc, await self._opened())

    async def get(self, name: str, version: str | None = None) -> Procedure:
        """Return a procedure version, or the latest one (compared as versions: 10.0 > 2.0).

        Raises:
            ProcedureNotFound: no such name or version.
        """
        await self._opened()
        return self._compiled(name, version).procedure

    async def list(self) -> list[Procedure]:
        """Every registered procedure version, by name then version."""
        await self._opened()
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
        backend = await self._run_here()
        compiled = self._registry.compiled(name, version)
        start_context = require_json(dict(context or {}), "the start context")
        execution_id = uuid.uuid4().hex
        journal = journal_for(backend, execution_id, compiled.procedure)
        running = self._executions.running
        execution = await start_execution(
            compiled, execution_id, start_context, auto=auto, journal=journal, running=running
        )
        self._executions.track(execution)
        return execution

    async def get_execution(self, execution_id: str) -> Execution:
        """A handle on a stored execution, finished or not. An unfinished one that no handle in
        this process runs resumes here (unless the store is read-only).

        Raises:
            ExecutionNotFound: no execution has that id.
        """
        backend = await self._opened()
        live = self._executions.live(execution_id)
        if live is not None:
            return live
        stored = await backend.load_execution(execution_id)
        if stored is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}{self._where_suffix}")
        if stored.status == Status.QUARANTINED:
            reason = stored.reason or "no reason was stored"
            raise ExecutionDamaged(execution_id, reason, quarantined=True)
        if stored.status == Status.RUNNING and not backend.read_only:
            return await self._runner.resume(backend, stored)
        return await self._executions.restore(backend, stored, resume=False)

    async def executions(
        self, status: Status | str | None = None, procedure: str | None = None
    ) -> builtins.list[ExecutionSummary]:
        """Summaries of the executions (stored ones, or this process's for an in-memory store),
        filtered by status and procedure name, oldest first."""
        backend = await self._opened()
        wanted = Status(status).value if status is not None else None
        return await self._executions.listing(backend, wanted, procedure)

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
        return await self._runner.recover(await self._opened())
