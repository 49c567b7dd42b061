"""The PostgreSQL backend's reads, each one statement (one consistent snapshot of the database
without an explicit transaction), and the decoding of what is stored, where one value that
cannot be decoded becomes its row's ``reason`` instead of an exception.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from procstore.errors import StoreError
from procstore.storage.base import (
    RUNNING,
    Command,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
from procstore.storage.postgres.connections import DRIVER_ERRORS
from procstore.storage.values import decode_execution, json_object, stored_procedure

__all__ = ["Reader"]

# An execution's row with its journal records in seq order, as one array: the row and its
# records are read in one statement, so they are consistent.
_EXECUTIONS: Final = """
    SELECT e.id, e.procedure, e.version, e.status, e.created_at, e.updated_at,
           e.quarantine_reason, e.snapshot::text,
           ARRAY(SELECT j.record::text FROM journal j
                  WHERE j.execution_id = e.id ORDER BY j.seq) AS records
      FROM executions e
"""


class Reader:
    """Every read of a ``PostgresBackend``, through its pool."""

    def __init__(self, where: str, pool: asyncpg.Pool) -> None:
        self._where = where
        self._pool = pool

    async def query(self, sql: str, *parameters: Any) -> list[asyncpg.Record]:
        """The rows of ``sql``; a failure is a ``StoreError``."""
        try:
            return await self._pool.fetch(sql, *parameters)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot read {self._where}: {exc}") from exc

    async def load_procedures(self) -> list[StoredProcedure]:
        """``Backend.load_procedures``, in ``seq`` order."""
        rows = await self.query("SELECT name, version, document::text FROM procedures ORDER BY seq")
        return [stored_procedure(name, version, text) for name, version, text in rows]

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """``Backend.load_execution``."""
        rows = await self.query(f"{_EXECUTIONS} WHERE e.id = $1", execution_id)
        return _stored_execution(rows[0]) if rows else None

    async def load_unfinished(self) -> list[StoredExecution]:
        """``Backend.load_unfinished``, in ``seq`` order, in one statement."""
        rows = await self.query(f"{_EXECUTIONS} WHERE e.status = $1 ORDER BY e.seq", RUNNING)
        return [_stored_execution(row) for row in rows]

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        """``Backend.list_executions``, in ``seq`` order (a filter that is ``None`` matches
        every row)."""
        rows = await self.query(
            "SELECT id, procedure, version, status, created_at, updated_at, quarantine_reason"
            "  FROM executions"
            " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR procedure = $2)"
            " ORDER BY seq",
            status,
            procedure,
        )
        return [ExecutionSummary(*row) for row in rows]

    async def commands_after(
        self, after_id: int, limit: int, execution_id: str | None
    ) -> list[Command]:
        """``Backend.commands_after`` (a filter that is ``None`` matches every row)."""
        rows = await self.query(
            "SELECT id, execution_id, kind, payload::text, posted_at FROM inbox"
            " WHERE id > $1 AND ($3::text IS NULL OR execution_id = $3) ORDER BY id LIMIT $2",
            after_id,
            limit,
            execution_id,
        )
        commands = []
        for command_id, target, kind, payload, posted_at in rows:
            problems: list[str] = []
            decoded = json_object(payload, "its stored payload", problems)
            reason = problems[0] if problems else None
            commands.append(Command(command_id, target, kind, decoded, posted_at, reason))
        return commands

    async def worker_alive(self, application: str) -> bool:
        """Whether a worker's lease that has not expired (on the server's clock) holds any
        execution, or a session of this database whose ``application_name`` is ``LIKE``
        ``application`` (a worker's ``LISTEN`` connection) is connected."""
        rows = await self.query(
            "SELECT EXISTS (SELECT 1 FROM executions"
            "  WHERE lease_owner IS NOT NULL AND lease_expires_at > clock_timestamp())"
            " OR EXISTS (SELECT 1 FROM pg_stat_activity"
            "  WHERE datname = current_database() AND application_name LIKE $1)",
            application,
        )
        return bool(rows[0][0])

    async def due_executions(self, before: float) -> list[tuple[str, float]]:
        """``Backend.due_executions``: a scan of the running rows (the status index), reading
        ``due`` out of each snapshot."""
        rows = await self.query(_DUE, RUNNING, before)
        return [(row[0], float(row[1])) for row in rows]

    async def unfinished_execution_ids(self) -> list[str]:
        """``Backend.unfinished_execution_ids``, in ``seq`` order."""
        rows = await self.query("SELECT id FROM executions WHERE status = $1 ORDER BY seq", RUNNING)
        return [row[0] for row in rows]


_DUE: Final = """
    SELECT id, due FROM (
        SELECT id, seq, CASE json_typeof(snapshot -> 'due') WHEN 'number'
            THEN (snapshot ->> 'due')::float8 ELSE 0 END AS due
        FROM executions WHERE status = $1
    ) AS running WHERE due < $2 ORDER BY due, seq
"""


def _stored_execution(row: asyncpg.Record) -> StoredExecution:
    """A ``StoredExecution`` from a row of ``_EXECUTIONS``.

    A snapshot or record that is not a JSON object (PostgreSQL guarantees JSON, not its shape)
    does not raise: it becomes the execution's ``reason``, so that one damaged row leaves every
    other one readable.
    """
    execution_id, procedure, version, status, created, updated, reason, snapshot, records = row
    problems: list[str] = []
    decoded, journal = decode_execution(snapshot, records, problems)
    return StoredExecution(
        id=execution_id,
        procedure=procedure,
        version=version,
        status=status,
        snapshot=decoded,
        records=journal,
        created_at=created,
        updated_at=updated,
        reason=reason if reason is not None else (problems[0] if problems else None),
    )
