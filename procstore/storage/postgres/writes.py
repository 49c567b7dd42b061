"""The PostgreSQL backend's writes: each one statement, so each is one transaction, and one round
trip to the server whatever the number of records.

A commit updates its execution's row and appends its records in one statement: the records are
numbered from the row's ``journal_length`` under the row lock the update takes, so commits to one
execution from several connections are serialised by the server and never number two records
alike. Nothing is batched across writes (SQLite's writer does that to share one fsync); the
server's own group commit does it for concurrent transactions.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime
from typing import Final, TypeVar

import asyncpg

from procstore.errors import ExecutionNotFound, StoreError, VersionConflict
from procstore.storage.postgres.connections import DRIVER_ERRORS
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
# The row, then its records numbered 1..n: nothing when the id is taken.
_CREATE_EXECUTION: Final = """
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
    )
    SELECT count(*) FROM created
"""
# The row, then its new records numbered after the last one: nothing for an unknown id.
_COMMIT: Final = """
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
    SELECT count(*) FROM updated
"""
_QUARANTINE: Final = """
    UPDATE executions SET status = $2, quarantine_reason = $3, updated_at = $4 WHERE id = $1
"""


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
    ) -> None:
        """Insert an execution (``(id, procedure, version, status, snapshot)``) with its first
        ``records``; ``StoreError`` if the id is taken."""
        if not await self._run(self._pool.fetchval(_CREATE_EXECUTION, *row, records, created_at)):
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
        result = await self._run(self._pool.execute(_QUARANTINE, *parameters))
        if result == "UPDATE 0":
            raise ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")
