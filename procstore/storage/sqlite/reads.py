"""The SQLite backend's reads: a second, read-only connection, so reads see only committed data
and never wait for the writer; and the decoding of what is stored, where one value that cannot
be decoded becomes its row's ``reason`` instead of an exception.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import aiosqlite

from procstore.errors import StoreError
from procstore.storage.base import (
    RUNNING,
    Command,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
from procstore.storage.values import (
    canonical_version,
    decode_execution,
    json_object,
    paused_collector,
    stored_procedure,
)

__all__ = ["Reader"]

# The execution's row (seq 0) then its records (seq >= 1), in one statement: one consistent
# read without an explicit transaction.
_LOAD_EXECUTION: Final = """
    SELECT 0, snapshot, procedure, version, status, created_at, updated_at, quarantine_reason
      FROM executions WHERE id = ?1
    UNION ALL
    SELECT seq, record, NULL, NULL, NULL, NULL, NULL, NULL FROM journal WHERE execution_id = ?1
    ORDER BY 1
"""


_LOAD_UNFINISHED: Final = """
    SELECT e.seq, 0, e.id, e.snapshot, e.procedure, e.version, e.status, e.created_at,
           e.updated_at, e.quarantine_reason
      FROM executions e WHERE e.status = ?1
    UNION ALL
    SELECT e.seq, j.seq, e.id, j.record, NULL, NULL, NULL, NULL, NULL, NULL
      FROM journal j JOIN executions e ON e.id = j.execution_id WHERE e.status = ?1
    ORDER BY 1, 2
"""


class Reader:
    """The read connection of a ``SQLiteBackend`` and every read it answers."""

    def __init__(self, path: str, db: aiosqlite.Connection) -> None:
        self._path = path
        self._db = db

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def query(self, sql: str, parameters: Iterable[Any]) -> list[Any]:
        """The rows of ``sql``; a failure is a ``StoreError``."""
        try:
            return list(await self._db.execute_fetchall(sql, tuple(parameters)))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self._path}: {exc}") from exc

    async def commands_after(
        self, after_id: int, limit: int, execution_id: str | None
    ) -> list[Command]:
        """``Backend.commands_after``."""
        condition = "" if execution_id is None else " AND execution_id = ?3"
        rows = await self.query(
            "SELECT id, execution_id, kind, payload, posted_at FROM inbox"
            f" WHERE id > ?1{condition} ORDER BY id LIMIT ?2",
            (after_id, limit) if execution_id is None else (after_id, limit, execution_id),
        )
        commands = []
        for command_id, target, kind, payload, posted in rows:
            problems: list[str] = []
            decoded = json_object(payload, "its stored payload", problems)
            at = _timestamp(posted, "posted_at", problems)
            reason = problems[0] if problems else None
            commands.append(Command(command_id, target, kind, decoded, at, reason))
        return commands

    async def runner_pid(self) -> str:
        """The pid the runner lock's holder wrote, or ``(unknown pid)``."""
        with contextlib.suppress(StoreError):
            rows = await self.query("SELECT value FROM meta WHERE key = 'runner_pid'", ())
            if rows and str(rows[0][0]).isdigit():
                return str(rows[0][0])
        return "(unknown pid)"

    async def load_procedures(self) -> list[StoredProcedure]:
        """``Backend.load_procedures``, in ``seq`` order; a row schema 1 let in as an alias of an
        earlier spelling comes with a ``reason`` (it is never loaded)."""
        rows = await self.query(
            "SELECT name, version, document, canonical_version FROM procedures ORDER BY seq", ()
        )
        spellings = {(name, canonical): version for name, version, _, canonical in rows}
        procedures = []
        for name, version, text, canonical in rows:
            problems: list[str] = []
            if canonical is None:  # an alias that schema 1 let in after the first spelling
                first = spellings.get((name, canonical_version(version)), "?")
                problems.append(
                    f"it is an alias of version {first!r}, stored before it (they are one version)"
                )
            procedures.append(stored_procedure(name, version, text, problems))
        return procedures

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """``Backend.load_execution``: the row and its journal in one statement
        (``_LOAD_EXECUTION``), so the read is consistent without an explicit transaction."""
        rows = await self.query(_LOAD_EXECUTION, (execution_id,))
        if not rows:
            return None
        _, snapshot, procedure, version, status, created, updated, reason = rows[0]
        return _stored_execution(
            (execution_id, procedure, version, status, created, updated, reason),
            snapshot,
            [row[1] for row in rows[1:]],
        )

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        """``Backend.list_executions``, in ``seq`` order."""
        conditions: list[str] = []
        parameters: list[str] = []
        if status is not None:
            conditions.append("status = ?")
            parameters.append(status)
        if procedure is not None:
            conditions.append("procedure = ?")
            parameters.append(procedure)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self.query(
            "SELECT id, procedure, version, status, created_at, updated_at, quarantine_reason"
            f" FROM executions{where} ORDER BY seq",
            parameters,
        )
        return [
            ExecutionSummary(
                id=row[0],
                procedure=row[1],
                version=row[2],
                status=row[3],
                created_at=_timestamp(row[4], "created_at", []),
                updated_at=_timestamp(row[5], "updated_at", []),
                reason=row[6],
            )
            for row in rows
        ]

    async def due_executions(self, before: float) -> list[tuple[str, float]]:
        """``Backend.due_executions``: a scan of the running rows (the status index), reading
        ``due`` out of each snapshot with SQLite's JSON functions."""
        rows = await self.query(_DUE, (RUNNING, before))
        return [(row[0], float(row[1])) for row in rows]

    async def unfinished_execution_ids(self) -> list[str]:
        """``Backend.unfinished_execution_ids``, in ``seq`` order."""
        rows = await self.query(
            "SELECT id FROM executions WHERE status = ? ORDER BY seq", (RUNNING,)
        )
        return [row[0] for row in rows]

    async def load_unfinished(self) -> list[StoredExecution]:
        """``Backend.load_unfinished``, read in one statement (recovering 10,000 executions one
        read at a time would cost a thread round trip each), and decoded with the garbage
        collector paused (see ``paused_collector``)."""
        rows: list[tuple[tuple[Any, ...], str, list[str]]] = []  # (columns, snapshot, records)
        fetched = await self.query(_LOAD_UNFINISHED, (RUNNING,))
        with paused_collector():
            for row in fetched:
                _, seq, execution_id, payload, procedure, version, status, *rest = row
                if seq == 0:
                    rows.append(((execution_id, procedure, version, status, *rest), payload, []))
                else:
                    rows[-1][2].append(payload)
            return [_stored_execution(*row) for row in rows]


_DUE: Final = """
    SELECT id, due FROM (
        SELECT id, seq, CASE WHEN json_type(snapshot, '$.due') IN ('real', 'integer')
            THEN json_extract(snapshot, '$.due') ELSE 0 END AS due
        FROM executions WHERE status = ?
    ) WHERE due < ? ORDER BY due, seq
"""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # stands for a timestamp that cannot be read


def _timestamp(text: Any, what: str, problems: list[str]) -> datetime:
    """Parse the stored ISO timestamp ``text``; on failure add why to ``problems``."""
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        problems.append(f"its {what} {text!r} is not a timestamp")
        return _EPOCH


def _stored_execution(
    columns: tuple[Any, ...], snapshot: str, records: list[str]
) -> StoredExecution:
    """A ``StoredExecution`` from its row's ``(id, procedure, version, status, created_at,
    updated_at, quarantine_reason)``, its snapshot and its journal records (all as stored).

    A value that cannot be decoded does not raise: it becomes the execution's ``reason``, so
    that one damaged row leaves every other one readable.
    """
    execution_id, procedure, version, status, created, updated, reason = columns
    problems: list[str] = []
    decoded, journal = decode_execution(snapshot, records, problems)
    created_at = _timestamp(created, "created_at", problems)
    updated_at = _timestamp(updated, "updated_at", problems)
    return StoredExecution(
        id=execution_id,
        procedure=procedure,
        version=version,
        status=status,
        snapshot=decoded,
        records=journal,
        created_at=created_at,
        updated_at=updated_at,
        reason=reason if reason is not None else (problems[0] if problems else None),
    )
