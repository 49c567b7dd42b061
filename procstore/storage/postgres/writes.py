"""The PostgreSQL backend's writes: each one statement, so each is one transaction, and one round
trip to the server whatever the number of records.

A commit updates its execution's row and appends its records in one statement: the records are
numbered from the row's ``journal_length`` under the row lock the update takes, so commits to one
execution from several connections are serialised by the server and never number two records
alike. A worker's commit is also conditional on its fencing token (``Fence``, see
``procstore.storage.postgres.leases``): the same row lock orders it against a claim by another
worker, so once that claim is committed no commit under the old token changes anything.
Nothing is batched across writes (SQLite's writer does that to share one fsync); the server's
own group commit does it for concurrent transactions.

The writes others may wait for (``Backend.wait_for_change``) call ``pg_notify`` on
``CHANGE_CHANNEL`` in the same statement: a command posted, an execution created, a commit of a
final status, a quarantine. PostgreSQL delivers a notification when its transaction commits,
and never one of a transaction rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime
from typing import Final, NamedTuple, TypeVar

import asyncpg

from procstore.errors import ExecutionNotFound, StoreError, VersionConflict
from procstore.storage.base import RUNNING
from procstore.storage.postgres.connections import DRIVER_ERRORS
from procstore.storage.postgres.schema import CHANGE_CHANNEL
from procstore.storage.values import json_object

__all__ = ["Fence", "Lease", "Writer"]

T = TypeVar("T")


class Lease(NamedTuple):
    """A new execution's lease: the worker it is leased to, for how many seconds."""

    owner: str
    seconds: float


class Fence(NamedTuple):
    """What a write to a leased execution is conditional on: its stored token and owner."""

    token: int
    owner: str


_SAVE_PROCEDURE: Final = """
    INSERT INTO procedures (name, version, canonical_version, document, saved_at)
    VALUES ($1, $2, $3, $4::json, $5)
    ON CONFLICT (name, canonical_version) DO NOTHING
    RETURNING seq
"""
_STORED_VERSION: Final = """
    SELECT version, document::text FROM procedures WHERE name = $1 AND canonical_version = $2
"""
# The row (leased to $9 with token 1 for $10 seconds, when $9 is a worker), then its records
# numbered 1..n, the lease history's first row and (announced, $8) its start command: nothing
# when the id is taken.
_CREATE_EXECUTION: Final = f"""
    WITH created AS (
        INSERT INTO executions (id, procedure, version, status, snapshot, journal_length,
                                created_at, updated_at, lease_owner, lease_expires_at, fence)
        VALUES ($1, $2, $3, $4, $5::json, cardinality($6::text[]), $7, $7, $9::text,
                CASE WHEN $9::text IS NOT NULL
                     THEN clock_timestamp() + make_interval(secs => $10::float8) END,
                CASE WHEN $9::text IS NOT NULL THEN 1 ELSE 0 END)
        ON CONFLICT (id) DO NOTHING
        RETURNING id, fence
    ), appended AS (
        INSERT INTO journal (execution_id, seq, record)
        SELECT created.id, r.seq, r.record::json
          FROM created, unnest($6::text[]) WITH ORDINALITY AS r(record, seq)
    ), history AS (
        INSERT INTO claims (execution_id, fence, owner, previous_owner, claimed_at)
        SELECT id, fence, $9, NULL, clock_timestamp() FROM created WHERE $9::text IS NOT NULL
    ), announced AS (
        INSERT INTO inbox (execution_id, kind, payload, posted_at)
        SELECT created.id, 'start', '{{}}', $7 FROM created WHERE $8
    )
    SELECT count(*) FROM (SELECT pg_notify('{CHANGE_CHANNEL}', id) FROM created) AS notified
"""
# The row, then its new records numbered after the last one: nothing for an unknown id, or
# (fenced: $6 the token, $7 the owner) for a lease that is no longer the committer's, or ($9)
# when only a finished row may be written, for a row that is running or whose inbox cursor
# (the snapshot's ``inbox``, the last command applied) the write does not move forward: each
# worker may record the refusal of a command that came after the end, and one does. A final
# status ends the lease in the same statement, and is notified.
_COMMIT: Final = f"""
    WITH updated AS (
        UPDATE executions
           SET status = $2, snapshot = $3::json, updated_at = $4,
               journal_length = journal_length + cardinality($5::text[]),
               lease_owner = CASE WHEN $2 = $8 THEN lease_owner END,
               lease_expires_at = CASE WHEN $2 = $8 THEN lease_expires_at END
         WHERE id = $1 AND ($6::bigint IS NULL OR (fence = $6 AND lease_owner = $7))
           AND (NOT $9::bool OR (status <> $8 AND
                ($3::json->>'inbox')::bigint > COALESCE((snapshot->>'inbox')::bigint, 0)))
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
# A finished execution back to running (``reset()``): under a new lease of the committer ($6,
# for $7 seconds), with the next token and its history row; nothing if the row is running (then
# a worker holds it, or held it) or held.
_REVIVE: Final = """
    WITH updated AS (
        UPDATE executions
           SET status = $2, snapshot = $3::json, updated_at = $4,
               journal_length = journal_length + cardinality($5::text[]),
               lease_owner = $6,
               lease_expires_at = clock_timestamp() + make_interval(secs => $7::float8),
               fence = fence + 1
         WHERE id = $1 AND status <> $8 AND lease_owner IS NULL
        RETURNING id, fence, journal_length - cardinality($5::text[]) AS last
    ), appended AS (
        INSERT INTO journal (execution_id, seq, record)
        SELECT updated.id, updated.last + r.seq, r.record::json
          FROM updated, unnest($5::text[]) WITH ORDINALITY AS r(record, seq)
    ), history AS (
        INSERT INTO claims (execution_id, fence, owner, previous_owner, claimed_at)
        SELECT id, fence, $6, NULL, clock_timestamp() FROM updated
    )
    SELECT fence FROM updated
"""
_QUARANTINE: Final = f"""
    WITH updated AS (
        UPDATE executions
           SET status = $2, quarantine_reason = $3, updated_at = $4,
               lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND ($5::bigint IS NULL OR (fence = $5 AND lease_owner = $6))
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
        lease: Lease | None = None,
    ) -> None:
        """Insert an execution (``(id, procedure, version, status, snapshot)``) with its first
        ``records``, leased to ``lease``'s worker when given, and, with ``announce``, its start
        command; ``StoreError`` if the id is taken."""
        owner, seconds = (lease.owner, lease.seconds) if lease is not None else (None, None)
        parameters = (*row, records, created_at, announce, owner, seconds)
        if not await self._run(self._pool.fetchval(_CREATE_EXECUTION, *parameters)):
            raise StoreError(f"execution {row[0]!r} already exists in {self._where}")

    async def commit(
        self,
        execution_id: str,
        status: str,
        snapshot: str,
        records: list[str],
        updated_at: datetime,
        fence: Fence | None = None,
        finished_only: bool = False,
    ) -> bool:
        """Replace an execution's status and snapshot and append ``records``, in one statement,
        only under ``fence`` when given, and with ``finished_only`` only to a row that is not
        running, moving its inbox cursor forward; whether it was applied (not: an unknown id, a
        fence that is not the stored one, a running row, a command recorded already)."""
        token, owner = (fence.token, fence.owner) if fence is not None else (None, None)
        fenced = (token, owner, RUNNING, finished_only)
        parameters = (execution_id, status, snapshot, updated_at, records, *fenced)
        return bool(await self._run(self._pool.fetchval(_COMMIT, *parameters)))

    async def revive(
        self,
        execution_id: str,
        status: str,
        snapshot: str,
        records: list[str],
        updated_at: datetime,
        lease: Lease,
    ) -> int | None:
        """``commit`` a finished execution back to running under a new ``lease``; its new
        fencing token, or ``None`` when the row is running or held (nothing changed)."""
        parameters = (execution_id, status, snapshot, updated_at, records, *lease, RUNNING)
        fence: int | None = await self._run(self._pool.fetchval(_REVIVE, *parameters))
        return fence

    async def quarantine(
        self,
        execution_id: str,
        status: str,
        reason: str,
        updated_at: datetime,
        fence: Fence | None = None,
    ) -> bool:
        """Set an execution's status and quarantine reason (ending its lease), only under
        ``fence`` when given; whether it was applied."""
        token, owner = (fence.token, fence.owner) if fence is not None else (None, None)
        parameters = (execution_id, status, reason, updated_at, token, owner)
        return bool(await self._run(self._pool.fetchval(_QUARANTINE, *parameters)))

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
