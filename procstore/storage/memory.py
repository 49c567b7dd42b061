"""The in-memory backend: the ``Backend`` of a store without a URL, kept in the process.

It honours the whole contract (tests/storage/test_backend_contract.py runs on it as on
SQLite): values are stored as the same JSON text SQLite stores (``procstore.storage.values``), so
they are refused alike and come back as copies; versions are compared in their canonical form
(``1.0`` and ``1.0.0`` are one version, kept under its first spelling); a duplicate execution
id is refused and a commit to an unknown one raises ``ExecutionNotFound``.

What a store keeps in it: nothing. The backend is not ``persistent``, and a store writes only
to a persistent backend (see ``Backend.persistent``), so a store without a URL opens one,
reads from it as from any backend (finding no procedure and no execution), and keeps its
procedures in its registry and its executions in their handles, as an in-memory store always
has: an execution gets no journal and commits nothing per step, a finished one nobody
references is collected, and registering copies no document. perf/leak_check.py and the
in-memory rows of perf/bench_procstore.py hold it to that (saving each document here would
cost about 13 µs a registration, a few per cent of the "procedure load" row). The backend's
other users, the contract suite first, get everything the contract promises.

The runner lock is the backend's own: a ``MemoryBackend`` belongs to the one store that opened
it, so no one else can run its executions. Its inbox is there for the contract: every write
counts as a change for ``wait_for_change``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from procstore.errors import ExecutionNotFound, StoreError, VersionConflict
from procstore.storage.base import (
    COMMANDS_PAGE,
    QUARANTINED,
    RUNNING,
    START,
    Command,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
from procstore.storage.changes import ChangeSignal
from procstore.storage.values import (
    canonical_version,
    check_strings,
    encode_command,
    encode_json,
)

__all__ = ["MemoryBackend"]

_WHERE = "memory"  # how messages name the place things are stored, as SQLite names its file


@dataclass(slots=True)
class _Procedure:
    name: str
    version: str  # the spelling it was first saved with
    document: str  # JSON


@dataclass(slots=True)
class _Execution:
    procedure: str
    version: str
    status: str
    snapshot: str  # JSON
    created_at: datetime
    updated_at: datetime
    records: list[str] = field(default_factory=list)  # JSON, in seq order
    reason: str | None = None

    def summary(self, execution_id: str) -> ExecutionSummary:
        return ExecutionSummary(
            id=execution_id,
            procedure=self.procedure,
            version=self.version,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            reason=self.reason,
        )

    def stored(self, execution_id: str) -> StoredExecution:
        return StoredExecution(
            id=execution_id,
            procedure=self.procedure,
            version=self.version,
            status=self.status,
            snapshot=json.loads(self.snapshot),
            records=[json.loads(record) for record in self.records],
            created_at=self.created_at,
            updated_at=self.updated_at,
            reason=self.reason,
        )


class MemoryBackend:
    """A ``Backend`` in this process's memory (see the module's docstring). Create it with
    ``open``; use it from one event loop."""

    def __init__(self) -> None:
        # (name, canonical version) -> the procedure; dicts keep the order of first saving.
        self._procedures: dict[tuple[str, str], _Procedure] = {}
        self._executions: dict[str, _Execution] = {}
        # The inbox: id -> (execution id, kind, payload JSON, posted_at), in id order.
        self._inbox: dict[int, tuple[str, str, str, datetime]] = {}
        self._last_command = 0  # ids are never reused, even once deleted
        self._changes = ChangeSignal()
        self._runner = False
        self._closed = False

    @classmethod
    async def open(cls) -> MemoryBackend:
        """A new, empty backend."""
        return cls()

    @property
    def read_only(self) -> bool:
        """Never: an in-memory backend is written by the store that opened it."""
        return False

    @property
    def persistent(self) -> bool:
        """Never: nothing of it outlives the process."""
        return False

    async def close(self) -> None:
        """Forget everything; every other method raises ``StoreError`` afterwards."""
        self._closed = True
        self._procedures.clear()
        self._executions.clear()
        self._inbox.clear()
        self._changes.wake()

    async def acquire_runner_lock(self) -> None:
        """Always granted while open: nobody else can reach this backend."""
        self._check_open()
        self._runner = True

    async def has_runner(self) -> bool:
        """Whether ``acquire_runner_lock`` was called."""
        self._check_open()
        return self._runner

    # -- registry ----------------------------------------------------------------------------

    async def save_procedure(self, name: str, version: str, document: dict[str, Any]) -> None:
        self._check_open()
        check_strings(name=name, version=version)
        text = encode_json(document)
        key = (name, canonical_version(version))
        stored = self._procedures.get(key)
        if stored is None:
            self._procedures[key] = _Procedure(name, version, text)
            self._changes.changed()
            return
        if stored.version != version:
            raise VersionConflict(
                f"procedure {name!r} version {version!r} is the same version as "
                f"{stored.version!r}, already stored in {_WHERE}: register it as "
                f"{stored.version!r}, or under a new version"
            )
        if json.loads(stored.document) != json.loads(text):
            raise VersionConflict(
                f"procedure {name!r} version {version!r} is already stored in {_WHERE} "
                "with different content"
            )

    async def load_procedures(self) -> list[StoredProcedure]:
        self._check_open()
        return [
            StoredProcedure(p.name, p.version, json.loads(p.document))
            for p in self._procedures.values()
        ]

    # -- executions --------------------------------------------------------------------------

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
        self._check_open()
        check_strings(
            execution_id=execution_id, procedure=procedure, version=version, status=status
        )
        text, journal = encode_json(snapshot), [encode_json(r) for r in records]
        if execution_id in self._executions:
            raise StoreError(f"execution {execution_id!r} already exists in {_WHERE}")
        now = datetime.now(UTC)
        self._executions[execution_id] = _Execution(
            procedure, version, status, text, now, now, journal
        )
        if announce:
            self._append_command(execution_id, START, "{}", now)
        self._changes.changed()

    async def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> None:
        self._check_open()
        check_strings(execution_id=execution_id, status=status)
        text, journal = encode_json(snapshot), [encode_json(r) for r in records]
        execution = self._execution(execution_id)
        execution.status, execution.snapshot = status, text
        execution.records += journal
        execution.updated_at = datetime.now(UTC)
        self._changes.changed()

    async def quarantine_execution(self, execution_id: str, reason: str) -> None:
        self._check_open()
        check_strings(execution_id=execution_id, reason=reason)
        execution = self._execution(execution_id)
        execution.status, execution.reason = QUARANTINED, reason
        execution.updated_at = datetime.now(UTC)
        self._changes.changed()

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        self._check_open()
        execution = self._executions.get(execution_id)
        return None if execution is None else execution.stored(execution_id)

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        self._check_open()
        return [
            execution.summary(execution_id)
            for execution_id, execution in self._executions.items()
            if (status is None or execution.status == status)
            and (procedure is None or execution.procedure == procedure)
        ]

    async def load_unfinished(self) -> list[StoredExecution]:
        self._check_open()
        return [
            execution.stored(execution_id)
            for execution_id, execution in self._executions.items()
            if execution.status == RUNNING
        ]

    async def due_executions(self, before: float) -> list[tuple[str, float]]:
        self._check_open()
        due = []
        for order, (execution_id, execution) in enumerate(self._executions.items()):
            if execution.status == RUNNING:
                at = json.loads(execution.snapshot).get("due")
                at = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0
                if at < before:
                    due.append((at, order, execution_id))
        return [(execution_id, at) for at, _, execution_id in sorted(due)]

    async def unfinished_execution_ids(self) -> list[str]:
        self._check_open()
        return [i for i, execution in self._executions.items() if execution.status == RUNNING]

    # -- the inbox -----------------------------------------------------------------------------

    async def post_command(self, execution_id: str, kind: str, payload: dict[str, Any]) -> int:
        self._check_open()
        text = encode_command(execution_id, kind, payload)
        self._execution(execution_id)
        command_id = self._append_command(execution_id, kind, text, datetime.now(UTC))
        self._changes.changed()
        return command_id

    def _append_command(self, execution_id: str, kind: str, payload: str, at: datetime) -> int:
        self._last_command += 1
        self._inbox[self._last_command] = (execution_id, kind, payload, at)
        return self._last_command

    async def commands_after(
        self, after_id: int, limit: int = COMMANDS_PAGE, execution_id: str | None = None
    ) -> list[Command]:
        self._check_open()
        found: list[Command] = []
        for command_id, (target, kind, payload, at) in self._inbox.items():
            if len(found) >= limit:
                break
            if command_id > after_id and execution_id in (None, target):
                found.append(Command(command_id, target, kind, json.loads(payload), at))
        return found

    async def delete_commands(self, ids: Sequence[int]) -> None:
        self._check_open()
        for command_id in ids:
            self._inbox.pop(command_id, None)

    async def wait_for_change(self, timeout: float, since: int | None = None) -> int:
        self._check_open()
        await self._changes.wait(timeout, self._changes.marker if since is None else since)
        self._check_open()
        return self._changes.marker

    # -- plumbing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the in-memory store is closed")

    def _execution(self, execution_id: str) -> _Execution:
        execution = self._executions.get(execution_id)
        if execution is None:
            raise ExecutionNotFound(f"no execution {execution_id!r} in {_WHERE}")
        return execution
