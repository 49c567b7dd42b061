"""The storage interface that ``procstore.ProcedureStore`` persists through.

A backend stores two things:

* the **registry**: every procedure document, once per ``(name, version)``, in the order they
  were first saved;
* **executions**: for each one a *snapshot* (a JSON-compatible dict chosen by the runtime that
  is replaced on every commit) and an append-only *journal* of history records, numbered
  ``seq`` = 1, 2, 3, ... per execution. Beside the snapshot the backend keeps the columns it
  needs for listing and filtering: id, procedure, version, status, created_at, updated_at;
* the **inbox**: commands for executions (``Command``: start, event, cancel) that processes
  which do not run them (*clients*) post, for the process that runs them to apply. Each gets
  an id that grows in the order the commands of one execution are committed; whoever applies
  one records that in the execution's own snapshot (the runtime's cursor), so the inbox only
  has to keep a command until it is applied, and ``delete_commands`` then removes it.

Every write is one transaction: ``Backend.commit`` appends the records *and* replaces the
snapshot and status, or does neither. When it returns, the write is committed (durable as far
as the backend's synchronous setting promises).

A backend whose executions several worker processes share (PostgreSQL) also implements
``Leasing`` (``procstore.storage.leasing``): per-execution leases with fencing tokens, claimed
and renewed by each worker. The others (SQLite, memory) have one runner per database and do not.

The implementations sit beside this module: ``procstore.storage.sqlite`` (one database file),
``procstore.storage.postgres`` (one PostgreSQL database) and ``procstore.storage.memory`` (the
process's memory, for a store without a URL). Every one of them passes the same contract
suite, tests/storage/test_backend_contract.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "CANCEL",
    "COMMANDS_PAGE",
    "COMMAND_KINDS",
    "EVENT",
    "QUARANTINED",
    "RUNNING",
    "START",
    "Backend",
    "Command",
    "ExecutionSummary",
    "StoredExecution",
    "StoredProcedure",
]

RUNNING = "running"
"""The status of an unfinished execution: ``Backend.unfinished_execution_ids`` lists them."""

QUARANTINED = "quarantined"
"""The status ``Backend.quarantine_execution`` gives an execution that cannot be restored."""


START: Final = "start"
"""A client created the execution: whoever runs the store's executions should run it too."""

EVENT: Final = "event"
"""Send the event ``payload["event"]`` to the execution, carrying ``payload["data"]`` (JSON
data; absent or ``None``: none). With ``payload["token"]``, it completes that callback
instead (``success`` with ``data``, or ``error`` with ``payload["error"]`` and ``["cause"]``;
see ``procstore.runtime.callbacks``)."""

CANCEL: Final = "cancel"
"""Cancel the execution, compensating what it did when ``payload["rollback"]`` is true."""

COMMAND_KINDS: Final = frozenset({START, EVENT, CANCEL})
"""The kinds of command the inbox holds; ``Backend.post_command`` refuses any other."""

COMMANDS_PAGE: Final = 256
"""How many commands ``Backend.commands_after`` returns at most unless asked otherwise."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command of the inbox, as ``Backend.commands_after`` returns it.

    Attributes:
        id: Its id: greater than the id of every command of the same execution committed
            before it (and, on SQLite, of every command committed before it).
        execution_id: The execution it is for.
        kind: ``"start"``, ``"event"`` or ``"cancel"`` (see ``COMMAND_KINDS``).
        payload: Its arguments: ``{"event": "approve"}``, ``{"rollback": True}``, ``{}``.
        posted_at: When it was committed (UTC, timezone-aware).
        reason: Why its stored payload cannot be read (it is then ``{}``); ``None`` when it
            can.
    """

    id: int
    execution_id: str
    kind: str
    payload: dict[str, Any]
    posted_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """One row of ``Backend.list_executions``.

    Attributes:
        id: The execution's id.
        procedure: Name of the procedure it runs.
        version: Version of that procedure.
        status: Its status as last committed (``"running"`` while unfinished).
        created_at: When it was created (UTC, timezone-aware).
        updated_at: When it was last committed (UTC, timezone-aware).
        reason: Why it was quarantined (status ``"quarantined"``); ``None`` otherwise.
    """

    id: str
    procedure: str
    version: str
    status: str
    created_at: datetime
    updated_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StoredExecution:
    """Everything stored about one execution, as ``Backend.load_execution`` returns it.

    Attributes:
        snapshot: The snapshot last committed.
        records: The journal, in ``seq`` order (the first record has seq 1).
        reason: Why it was quarantined (status ``"quarantined"``), or why the backend could
            not read what is stored (e.g. its snapshot is not valid JSON: ``snapshot`` and
            ``records`` then hold what could be read); ``None`` for a healthy execution.

    The other attributes are those of its ``ExecutionSummary``.
    """

    id: str
    procedure: str
    version: str
    status: str
    snapshot: dict[str, Any]
    records: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StoredProcedure:
    """One procedure version of the registry, as ``Backend.load_procedures`` returns it.

    Attributes:
        name: The procedure's name.
        version: Its version, as it was saved.
        document: The stored document, or ``None`` when it cannot be read.
        reason: Why the document cannot be read (e.g. it is not valid JSON); ``None`` when it
            can.
    """

    name: str
    version: str
    document: dict[str, Any] | None
    reason: str | None = None


@runtime_checkable
class Backend(Protocol):
    """What a storage backend provides. Every method is a coroutine.

    How a backend is opened is backend-specific (e.g. ``SQLiteBackend.open
    <procstore.storage.sqlite.SQLiteBackend.open>``); once open it is used only through these
    methods. Documents, snapshots and records must be JSON-compatible (dicts, lists, strings,
    finite numbers, booleans, ``None``): every write refuses, before changing anything, a value
    JSON cannot hold (``TypeError``) or NaN and infinity (``ValueError``), and one whose ids,
    names, versions or status are not strings (``TypeError``).
    """

    @property
    def read_only(self) -> bool:
        """Whether the backend was opened read-only (every write raises ``StoreError``)."""
        ...

    @property
    def persistent(self) -> bool:
        """Whether what is written outlives the process.

        A store writes only to a persistent backend; it reads from any. Without one, the
        store's own registry and its handles on executions are the only record there is:
        writing them to memory as well would cost a copy of every document, a snapshot per
        step of every execution, and memory for every finished execution, for nothing that
        could outlive the process anyway.
        """
        ...

    async def close(self) -> None:
        """Finish pending writes, release the runner lock and close the database.

        Closing twice is harmless. Every other method raises ``StoreError`` afterwards.
        """
        ...

    async def acquire_runner_lock(self) -> None:
        """Claim the right to run executions from this database, for as long as it is open.

        Only one backend at a time, in any process, holds it; it is released by ``close``
        or when the holding process dies. Acquiring it again on the same backend is a no-op.
        A ``Leasing`` backend takes no exclusive lock: this makes it a worker, which runs the
        executions it holds leases on (see ``Leasing``).

        Raises:
            StoreError: Another backend (in this or another process) holds it, or the backend
                is read-only.
        """
        ...

    async def has_runner(self) -> bool:
        """Whether a backend (this one, or another in any process) holds the runner lock now:
        whether commands posted to the inbox are being applied. Asking takes nothing: a
        runner starting at the same moment is not refused because of it. A ``Leasing``
        backend answers whether it is a worker itself, a worker is connected, or a live
        worker lease holds any execution.

        Raises:
            StoreError: The backend is closed, or the database cannot be asked.
        """
        ...

    async def save_procedure(self, name: str, version: str, document: dict[str, Any]) -> None:
        """Store a procedure document; saving the same ``(name, version)`` again is a no-op.

        Versions are compared as PEP 440 versions: ``1.0`` and ``1.0.0`` are one version, which
        is stored once, under the spelling it was first saved with.

        Args:
            name: The procedure's name.
            version: Its version.
            document: The procedure document (JSON-compatible).

        Raises:
            VersionConflict: ``(name, version)`` is stored with a different document, or under
                another spelling (the message names it).
            StoreError: The backend is read-only or closed, or the write failed.
        """
        ...

    async def load_procedures(self) -> list[StoredProcedure]:
        """Return every stored procedure version, in the order they were first saved.

        A document that cannot be read is returned with its ``reason``, not raised: one
        damaged row must not make the others unreachable.

        Returns:
            The procedure versions.
        """
        ...

    async def create_execution(
        self,
        execution_id: str,
        procedure: str,
        version: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
        *,
        announce: bool = False,
    ) -> None:
        """Store a new execution with its first snapshot and journal records (seq 1..n).

        Args:
            execution_id: A new, unique id.
            procedure: Name of the procedure it runs.
            version: Version of that procedure.
            status: Its initial status.
            snapshot: Its initial snapshot.
            records: Its first journal records (may be empty).
            announce: Also post a ``"start"`` command for it, in the same transaction: a
                client creates an execution so, for the process that runs the store's
                executions to find it (see ``post_command``).

        Raises:
            StoreError: The id is already stored, the backend is read-only or closed, or the
                write failed.
        """
        ...

    def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> Awaitable[None]:
        """In one transaction, append ``records`` to the journal and replace snapshot and status.

        Awaitable rather than a coroutine: a backend may queue the commit when called and
        return the future its writer settles (SQLite's does: a persisted execution commits
        twice per step, and a task per commit costs about as much as SQLite's commit).
        Whoever must not withdraw a commit by being cancelled waits through ``asyncio.shield``.

        Args:
            execution_id: The execution.
            status: Its new status.
            snapshot: Its new snapshot.
            records: Records to append; their seq numbers continue the journal.

        Raises:
            ExecutionNotFound: No execution with that id is stored.
            StoreError: The backend is read-only or closed, or the write failed.
        """
        ...

    async def quarantine_execution(self, execution_id: str, reason: str) -> None:
        """Set an execution's status to ``"quarantined"`` and store ``reason``, leaving its
        snapshot and journal as they are (for whoever repairs it).

        Args:
            execution_id: The execution.
            reason: Why it cannot be restored.

        Raises:
            ExecutionNotFound: No execution with that id is stored.
            StoreError: The backend is read-only or closed, or the write failed.
        """
        ...

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """Return everything stored about one execution (one whose row cannot be read
        entirely comes with a ``reason``).

        Args:
            execution_id: The execution.

        Returns:
            The execution, or ``None`` when no execution with that id is stored.
        """
        ...

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        """List stored executions in creation order, optionally filtered.

        Args:
            status: Only executions with this status.
            procedure: Only executions of the procedure with this name.

        Returns:
            One summary per matching execution.
        """
        ...

    async def load_unfinished(self) -> list[StoredExecution]:
        """Return everything stored about every unfinished execution, in creation order (one
        whose row cannot be read entirely comes with a ``reason``)."""
        ...

    async def due_executions(self, before: float) -> list[tuple[str, float]]:
        """Return ``(id, due)`` of every unfinished execution whose snapshot's ``due`` (the
        instant it next has work of its own, see ``procstore.runtime.hibernation``) is before
        ``before``, soonest first. A snapshot without a numeric ``due`` (written before
        hibernation existed) counts as due at 0: now.

        This is how a store that hibernates executions finds, without restoring them, which
        ones need to be in memory and when."""
        ...

    async def unfinished_execution_ids(self) -> list[str]:
        """Return the ids of the executions whose status is ``"running"``, in creation order.

        Returns:
            The ids.
        """
        ...

    # -- the inbox ---------------------------------------------------------------------------

    async def post_command(self, execution_id: str, kind: str, payload: dict[str, Any]) -> int:
        """Append a command for an execution to the inbox, in a transaction of its own, and
        wake those waiting in ``wait_for_change`` (in any process).

        It needs no runner lock: clients post. The commands of one execution get ids in the
        order they are committed (posting to one execution is serialised), so that whoever
        applies them in id order applies them in commit order.

        Args:
            execution_id: The execution the command is for.
            kind: One of ``COMMAND_KINDS``.
            payload: Its arguments (a JSON-compatible dict).

        Returns:
            The command's id.

        Raises:
            ExecutionNotFound: No execution with that id is stored.
            ValueError: ``kind`` is not one of ``COMMAND_KINDS``.
            StoreError: The backend is read-only or closed, or the write failed.
        """
        ...

    async def commands_after(
        self, after_id: int, limit: int = COMMANDS_PAGE, execution_id: str | None = None
    ) -> list[Command]:
        """The commands of the inbox whose id is greater than ``after_id``, in id order.

        Args:
            after_id: Return only commands after this id (0: from the first).
            limit: Return at most this many.
            execution_id: Only the commands of this execution.

        Returns:
            The commands (a payload that cannot be read comes with its ``reason``).
        """
        ...

    async def delete_commands(self, ids: Sequence[int]) -> None:
        """Remove commands from the inbox once they have been applied (ids that are not in it
        are ignored).

        Raises:
            StoreError: The backend is read-only or closed, or the write failed.
        """
        ...

    async def wait_for_change(self, timeout: float, since: int | None = None) -> int:
        """Wait until another connection or process commits, or ``timeout`` seconds pass.

        The backend counts the changes it has noticed; the count is the *marker* this returns.
        A caller that reads the database after one call and then waits again passes the marker
        it got as ``since``: a change committed in between (which that read may not have seen)
        makes the wait return at once, so none is missed. It may return early (a change that
        concerned nobody, a lost connection): callers read again and wait again.

        What counts as a change: on SQLite every commit of another connection (PRAGMA
        data_version, checked every few milliseconds while someone waits); on PostgreSQL a
        command posted, an execution created, or an execution's commit of a final status
        (``NOTIFY``); in memory every write.

        Args:
            timeout: Return after this many seconds at the latest (0: at once).
            since: A marker an earlier call returned; ``None`` waits for a change after this
                call starts.

        Returns:
            The marker now.

        Raises:
            StoreError: The backend is closed (also when it is closed while waiting).
        """
        ...
