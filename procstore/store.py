"""The procedure store: a registry of versioned procedures and the executions started from it,
kept through a storage ``Backend``: in memory, or persisted (``sqlite:///path``, or
``postgresql://user@host/dbname``).

The store holds a backend whatever the URL and talks to it only through ``Backend``. It
writes only to a ``persistent`` one: with the in-memory backend, its registry keeps the
procedures and the handles (``procstore.handles``) the executions, which get no journal.

A store is a *worker* (the default: it runs executions, once it holds the runner lock, and
applies what clients queue in the inbox, ``procstore.inbox``) or a *client* (``worker=False``:
it runs nothing, and drives executions through the inbox, ``procstore.remote``).
"""

from __future__ import annotations

import builtins
import functools
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypedDict, cast, overload

from typing_extensions import TypeVar, Unpack

from procstore.actions import ActionRegistry
from procstore.children import StoreSpawner
from procstore.clock import SYSTEM, Clock
from procstore.errors import ExecutionDamaged, ExecutionNotFound, StoreError
from procstore.eventdata import event_data
from procstore.guards import GuardRegistry
from procstore.handles import Handles, journal_for
from procstore.hibernator import DEFAULT_HIBERNATE_AFTER, Hibernator, check_hibernate_after
from procstore.hostcode import HostCode
from procstore.jsondata import require_json
from procstore.registering import Registering
from procstore.registry import ProcedureRegistry
from procstore.remote import Client, RemoteExecution
from procstore.running import Runner
from procstore.runtime import Execution, callbacks, start_execution
from procstore.snapshot import ExecutionSummary, Status
from procstore.storage import Backend, MemoryBackend, SQLiteBackend
from procstore.storage.leasing import DEFAULT_LEASE_SECONDS
from procstore.storage.urls import describe_postgres, is_postgres_url
from procstore.worker import DEFAULT_CONCURRENCY, check_settings

#: What a store's ``start`` and ``get_execution`` return: an ``Execution`` it runs (a worker's),
#: or a ``RemoteExecution`` another process runs (a client's, ``worker=False``).
H = TypeVar("H", bound=Execution | RemoteExecution, default=Execution)


class StoreOptions(TypedDict, total=False):
    """The keyword arguments of ``ProcedureStore`` besides ``worker`` (see its docstring)."""

    allowed_modules: Iterable[str]
    allowed_module_files: Iterable[str | os.PathLike[str]]
    synchronous: Literal["NORMAL", "FULL"]
    read_only: bool
    clock: Clock
    concurrency: int
    lease_seconds: float
    hibernate_after: float | None


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


class ProcedureStore(HostCode, Registering, Generic[H]):
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
        worker: Whether this store runs executions (the default): once it starts or resumes
            one it holds the database's runner lock, and applies the events and cancels that
            clients queue. ``False`` opens it as a *client*, which never takes the lock (any
            number of them beside the runner, in other processes): its ``start`` stores a new
            execution for the runner and returns a
            [`RemoteExecution`][procstore.RemoteExecution], as does its ``get_execution``; it
            runs nothing (``recover`` raises ``StoreError``).
        concurrency: PostgreSQL: how many executions this store, as a worker, claims and
            runs at once (those it starts itself count too); 0 claims none (it runs only what
            it starts or resumes itself). See docs/scaling.md.
        lease_seconds: PostgreSQL: how long this worker's lease on an execution lasts
            without a renewal (it renews every third of it): after a crash, how long its
            executions wait before another worker takes them over. At least
            ``MIN_LEASE_SECONDS`` (0.5).
        hibernate_after: SQLite: seconds (on the store's clock) after which an execution
            that only waits — for an event, a callback, a retry delay, a wait state's end, a
            state timeout — leaves memory; it is rebuilt from the database when an event, a
            timer or ``get_execution`` needs it, and a handle held meanwhile keeps working.
            0 lets go of it as soon as it waits; ``None`` keeps every execution in memory.
            See [Hibernation](persistence.md#hibernation).

    Raises:
        ValueError: an ``allowed_module_files`` entry is not a ``.py`` file named like a public
            module (an identifier without a leading ``_``), or two entries name one module;
            ``worker=False`` without a URL (nothing else can reach an in-memory store);
            ``concurrency`` is negative, ``lease_seconds`` too short, or ``hibernate_after``
            negative.

    A persisted store opens on first use or with ``async with ProcedureStore(url) as store``;
    close it with [`close`][procstore.ProcedureStore.close]. Stored procedures are trusted when
    it opens: the application may register its actions and guards afterwards.
    """

    @overload
    def __init__(
        self: ProcedureStore[Execution],
        url: str | None = None,
        *,
        worker: Literal[True] = True,
        **options: Unpack[StoreOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ProcedureStore[RemoteExecution],
        url: str | None = None,
        *,
        worker: Literal[False],
        **options: Unpack[StoreOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ProcedureStore[Execution | RemoteExecution],
        url: str | None = None,
        *,
        worker: bool,
        **options: Unpack[StoreOptions],
    ) -> None: ...
    def __init__(
        self,
        url: str | None = None,
        *,
        allowed_modules: Iterable[str] = (),
        allowed_module_files: Iterable[str | os.PathLike[str]] = (),
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        read_only: bool = False,
        clock: Clock = SYSTEM,
        worker: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        hibernate_after: float | None = DEFAULT_HIBERNATE_AFTER,
    ) -> None:
        if url is None and not worker:
            raise ValueError("worker=False needs a URL: nothing else can run an in-memory store")
        check_settings(concurrency, lease_seconds)
        check_hibernate_after(hibernate_after)
        # How to open its backend, and how messages name where it keeps things.
        self._open_backend, self._where, self._where_suffix = _storage(
            url, synchronous, read_only, lease_seconds
        )
        self._backend: Backend | None = None  # until opened, and once closed
        self._worker = worker
        self._clock = clock
        self._actions = ActionRegistry(allowed_modules, allowed_module_files)
        self._guards = GuardRegistry()
        self._registry = ProcedureRegistry(self._actions, self._guards, self._where, clock)
        self._executions = Handles(self._registry, self._where)
        self._spawner = StoreSpawner(self)  # map states' items: child executions of this store
        self._executions.spawner = self._spawner
        self._hibernator = Hibernator(self._executions, clock, hibernate_after)
        self._executions.sleeper = self._hibernator
        self._runner = Runner(
            self._executions, self._registry, self._where, concurrency, clock, self._hibernator
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> ProcedureStore[H]:
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
        PostgreSQL worker) and close the database. Commands queued by clients and not applied
        yet stay queued for the next runner.

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

    async def __aenter__(self) -> ProcedureStore[H]:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run_here(self) -> Backend:
        """The open backend, once this process may run its executions and applies the
        commands of the inbox (see ``Runner.join``)."""
        backend = await self._opened()
        if not self._worker:
            raise StoreError(
                f"{self._where} is open as a client (worker=False): it runs no execution "
                "(a store opened as a worker runs them)"
            )
        await self._runner.join(backend)
        return backend

    async def work(self) -> None:
        """Start running the database's executions now rather than at the first ``start()``:
        a PostgreSQL store becomes a worker, which claims, in the background until
        [`close`][procstore.ProcedureStore.close], the running executions no live worker holds
        (up to ``concurrency`` at once; see docs/scaling.md) and applies the commands clients
        queue for them; an SQLite store takes its runner lock and resumes its unfinished
        executions that have work to do now (with hibernation, those that only wait stay on
        disk until they are due or sent something; without it, every one, as ``recover()``
        does).

        Raises:
            StoreError: the store is a client (``worker=False``) or read-only, or (SQLite)
                another process runs its executions.
        """
        await self._runner.work(await self._run_here())

    def _client(self, backend: Backend) -> Client:
        return Client(backend, self._registry, self._clock, self._where_suffix)

    async def has_runner(self) -> bool:
        """Whether a process runs this store's executions now (SQLite: it holds the runner
        lock; PostgreSQL: a worker is connected, or a live worker lease holds one of them):
        whether what a client queues is applied now, or waits for one (``procstore resume``,
        ``procstore worker``, [`recover`][procstore.ProcedureStore.recover]). Asking takes
        nothing."""
        return await (await self._opened()).has_runner()

    # -- executions ---------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        version: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        auto: bool = False,
    ) -> H:
        """Start an execution; it returns once the initial state is entered (and, when
        persisted, stored). A client's (``worker=False``) runs nothing of it: the runner (in
        another process) resumes it from there, and the handle is a
        [`RemoteExecution`][procstore.RemoteExecution].

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
        if not self._worker:
            compiled = await self._looked_up(name, version)
            start_context = require_json(dict(context or {}), "the start context")
            client = self._client(await self._opened())
            return cast(H, await client.start(compiled, start_context, auto))
        backend = await self._run_here()
        compiled = await self._looked_up(name, version)
        start_context = require_json(dict(context or {}), "the start context")
        execution_id = uuid.uuid4().hex
        journal = journal_for(backend, execution_id, compiled.procedure)
        running = self._executions.running
        execution = await start_execution(
            compiled,
            execution_id,
            start_context,
            auto=auto,
            journal=journal,
            running=running,
            spawner=self._spawner,
            sleeper=self._hibernator,
        )
        self._executions.track(execution)
        return cast(H, execution)

    async def get_execution(self, execution_id: str) -> H:
        """A handle on a stored execution, finished or not. An unfinished one that no handle in
        this process runs resumes here (unless the store is read-only). A client's
        (``worker=False``) is a [`RemoteExecution`][procstore.RemoteExecution] on what is
        committed: nothing resumes.

        Raises:
            ExecutionNotFound: no execution has that id.
        """
        backend = await self._opened()
        if not self._worker:
            return cast(H, await self._client(backend).get(execution_id))
        live = self._executions.live(execution_id)
        if live is not None:
            return cast(H, live)
        stored = await backend.load_execution(execution_id)
        if stored is None:
            raise ExecutionNotFound(f"no execution {execution_id!r}{self._where_suffix}")
        if stored.status == Status.QUARANTINED:
            reason = stored.reason or "no reason was stored"
            raise ExecutionDamaged(execution_id, reason, quarantined=True)
        if stored.status == Status.RUNNING and not backend.read_only:
            await self._run_here()
            return cast(H, await self._runner.resume(backend, stored))
        return cast(H, await self._executions.restore(backend, stored, resume=False))

    async def complete_callback(self, token: str, data: Any = None) -> None:
        """Report that the outside work a callback ``token`` stands for succeeded, with
        ``data`` (JSON data, as for ``send``): its state fires ``success`` carrying ``data``
        (Step Functions' ``SendTaskSuccess``). See [Callbacks](semantics.md#callbacks-with-a-token).

        A store that runs executions applies it here (after the state's running action, as
        ``send`` waits); a client's (``worker=False``) queues it in the inbox for the runner,
        which applies it once (refused there, in a ``received`` record, if no state waits for
        the token by then).

        Raises:
            InvalidEvent: ``token`` is not a callback token, no active state waits for it (it
                was completed already, or its state was left), the execution has finished, or
                ``data`` is not JSON data or is too large.
            ExecutionNotFound: no execution has the id the token names.
        """
        data = event_data(data, "success")
        if not self._worker:
            await self._client(await self._opened()).callback(
                token, {"event": "success", "data": data}
            )
            return
        execution = await self.get_execution(callbacks.execution_of(token))
        await callbacks.settle(cast(Execution, execution)._run, token, data=data)

    async def fail_callback(self, token: str, error: str, cause: str = "") -> None:
        """Report that the outside work a callback ``token`` stands for failed with error
        name ``error`` and ``cause``: its state fires ``error``, as a failed action does (its
        guards see ``error['type'] == error``), Step Functions' ``SendTaskFailure``. Applied
        or queued as `complete_callback` is.

        Raises:
            InvalidEvent: as for `complete_callback`; or ``error`` is empty or longer than
                ``MAX_ERROR_NAME_CHARS``, ``cause`` longer than ``MAX_CAUSE_CHARS``.
            ExecutionNotFound: no execution has the id the token names.
        """
        callbacks.check_failure(error, cause)
        if not self._worker:
            payload = {"event": "error", "error": error, "cause": cause}
            await self._client(await self._opened()).callback(token, payload)
            return
        execution = await self.get_execution(callbacks.execution_of(token))
        await callbacks.settle(cast(Execution, execution)._run, token, failure=(error, cause))

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

        Commands that clients queued meanwhile (events, cancels) are applied to them after
        that, in the order they were committed; as long as the store is open, those queued
        later are too.

        Returns:
            Handles on the resumed executions.

        Raises:
            StoreError: the store is a client (``worker=False``) or read-only, or another
                process runs its executions.
        """
        return await self._runner.recover(await self._run_here())
