"""The PostgreSQL backend's writes: each one statement, so each is one transaction, and one round
trip to the server whatever the number of records.

A commit updates its execution's row and appends its records in one statement: the records are
numbered from the row's ``journal_length`` under the row lock the update takes, so commits to one
execution from several connections are serialised by the server and never number two records
alike. Nothing is batched across writes (SQLite's writer does that to share one fsync); the
server's own group commit does it for concurrent transactions.

The writes others may wait for (``Backend.wait_for_change``) call ``pg_notify`` on
``CHANGE_CHANNEL`` in the same statement: a command posted, an execution created, a commit of a
final status, a quarantine. PostgreSQL delivers a notification when its transaction commits,
and never one of a transaction rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime
from typing import Final, TypeVar

import asyncpg

from procstore.errors import ExecutionNotFound, StoreError, VersionConflict
from procstore.storage.base import RUNNING
from procstore.storage.postgres.connections import DRIVER_ERRORS
from procstore.storage.postgres.schema import CHANGE_CHANNEL
from procstore.storage.values import json_object

__all__ = ["Writer"]

T = TypeVar("T")

_SAVE_PROCEDURE: Final = """
    INSERT INTO procedures (name, version, canonical_version, document, saved_at)
    VALUES ($1, $2, $3, $4::json, $5)
    ON CONFLICT (name, canonical_version) DO NOTHING
    RETURNING seq
"""
_STORED_VERSION: Final = """
    SELECT version, document::text FROM procedures WHERE name = $1 AND canonical_version = $2
"""
# The row, then its records numbered 1..n and (announced, $8) its start command: nothing when
# the id is taken.
_CREATE_EXECUTION: Final = f"""
    WITH created AS (
        INSERT INTO executions (id, procedure, version, status, snapshot, journal_length,
                                created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5::json, cardinality($6::text[]), $7, $7)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ), appended AS (
        INSERT INTO journal (execution_id, seq, record)
        SELECT created.id, r.seq, r.record::json
          FROM created, unnest($6::text[]) WITH ORDINALITY AS r(record, seq)
    ), announced AS (
        INSERT INTO inbox (execution_id, kind, payload, posted_at)
        SELECT created.id, 'start', '{{}}', $7 FROM created WHERE $8
    )
    SELECT count(*) FROM (SELECT pg_notify('{CHANGE_CHANNEL}', id) FROM created) AS notified
"""
# The row, then its new records numbered after the last one: nothing for an unknown id. A final
# status is notified.
_COMMIT: Final = f"""
    WITH updated AS (
        UPDATE executions
           SET status = $2, snapshot = $3::json, updated_at = $4,
               journal_length = journal_length + cardinality($5::text[])
         WHERE id = $1
        RETURNING id, journal_length - cardinality($5::text[]) AS last
    ), appended AS (
        INSERT INTO journal (execution_id, seq, record)
        SELECT updated.id, updated.last + r.seq, r.record::json
          FROM updated, unnest($5::text[]) WITH ORDINALITY AS r(record, seq)
    )
    SELECT count(*)
      FROM (SELECT CASE WHEN $2 <> '{RUNNING}' THEN pg_notify('{CHANGE_CHANNEL}', id) END
              FROM updated) AS notified
"""
_QUARANTINE: Final = f"""
    WITH updated AS (
        UPDATE executions SET status = $2, quarantine_reason = $3, updated_at = $4
         WHERE id = $1
        RETURNING id
    )
    SELECT count(*) FROM (SELECT pg_notify('{CHANGE_CHANNEL}', id) FROM updated) AS notified
"""
# Under a lock of the execution's row, so that the commands of one execution commit in id order
# (NO KEY UPDATE: it does not block the journal's foreign key checks): nothing for an unknown id.
_POST_COMMAND: Final = f"""
    WITH target AS (
        SELECT id FROM executions WHERE id = $1 FOR NO KEY UPDATE
    ), posted AS (
        INSERT INTO inbox (execution_id, kind, payload, posted_at)
        SELECT target.id, $2, $3::json, $4 FROM target
        RETURNING id, execution_id
    )
    SELECT id, pg_notify('{CHANGE_CHANNEL}', execution_id) FROM posted
"""
_DELETE_COMMANDS: Final = "DELETE FROM inbox WHERE id = ANY($1::bigint[])"


class Writer:
    """Every write of a ``PostgresBackend``, through its pool. Values arrive encoded (JSON text)
    and checked (``procstore.storage.values``)."""

    def __init__(self, where: str, pool: asyncpg.Pool) -> None:
        self._where = where
        self._pool = pool

    async def _run(self, query: Awaitable[T]) -> T:
        """The result of ``query`` (a call on the pool); a failure is a ``StoreError``."""
        try:
            return await query
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot write to {self._where}: {exc}") from exc

    async def save_procedure(
        self, name: str, version: str, canonical: str, document: str, saved_at: datetime
    ) -> None:
        """Insert a procedure version unless it is stored: a no-op when it is stored with the
        same spelling and document, ``VersionConflict`` otherwise."""
        parameters = (name, version, canonical, document, saved_at)
        if await self._run(self._pool.fetchval(_SAVE_PROCEDURE, *parameters)) is not None:
            return
        stored = await self._run(self._pool.fetchrow(_STORED_VERSION, name, canonical))
        if stored is None:  # deleted by hand since: nothing sensible to do but say so
            raise StoreError(f"cannot save procedure {name!r} version {version!r} in {self._where}")
        spelling, text = stored
        if spelling != version:
            raise VersionConflict(
                f"procedure {name!r} version {version!r} is the same version as {spelling!r}, "
                f"already stored in {self._where}: register it as {spelling!r}, or under a "
                "new version"
            )
        problems: list[str] = []
        if json_object(text, "", problems) != json.loads(document) or problems:
            raise VersionConflict(
                f"procedure {name!r} version {version!r} is already stored in {self._where} "
                "with different content"
            )

    async def create_execution(
        self,
        row: tuple[str, str, str, str, str],
        records: list[str],
        created_at: datetime,
        announce: bool,
    ) -> None:
        """Insert an execution (``(id, procedure, version, status, snapshot)``) with its first
        ``records`` and, with ``announce``, its start command; ``StoreError`` if the id is
        taken."""
        query = self._pool.fetchval(_CREATE_EXECUTION, *row, records, created_at, announce)
        if not await self._run(query):
            raise StoreError(f"execution {row[0]!r} already exists in {self._where}")

    async def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: str,
        records: list[str],
        updated_at: datetime,
    ) -> None:
        """Replace an execution's status and snapshot and append ``records``, in one statement;
        ``ExecutionNotFound`` for an unknown id."""
        parameters = (execution_id, status, snapshot, updated_at, records)
        if not await self._run(self._pool.fetchval(_COMMIT, *parameters)):
            raise ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")

    async def quarantine(
        self, execution_id: str, status: str, reason: str, updated_at: datetime
    ) -> None:
        """Set an execution's status and quarantine reason; ``ExecutionNotFound`` for an
        unknown id."""
        parameters = (execution_id, status, reason, updated_at)
        if not await self._run(self._pool.fetchval(_QUARANTINE, *parameters)):
            raise ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")

    async def post_command(
        self, execution_id: str, kind: str, payload: str, posted_at: datetime
    ) -> int:
        """Insert a command for an execution and return its id; ``ExecutionNotFound`` for an
        unknown execution."""
        query = self._pool.fetchval(_POST_COMMAND, execution_id, kind, payload, posted_at)
        command_id = await self._run(query)
        if command_id is None:
            raise ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")
        return int(command_id)

    async def delete_commands(self, ids: list[int]) -> None:
        """Delete the commands ``ids`` (those that are gone already are ignored)."""
        await self._run(self._pool.execute(_DELETE_COMMANDS, ids))
