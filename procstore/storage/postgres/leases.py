"""The PostgreSQL backend's leases: how several worker processes, on any number of machines,
share one database's executions without ever running one twice at the same time.

A worker holds a lease on each execution it runs: ``executions.lease_owner`` (its
``worker_id``), ``lease_expires_at`` (on the server's clock, so that the workers' clocks do not
matter) and ``fence``, a fencing token that grows by one on every claim. ``Leases`` keeps the
tokens of the executions this worker holds; ``writes`` applies a commit only while the stored
token is still the one this worker claimed with, so a worker that was paused past its lease
(a long GC, a network cut) and taken over can never commit on top of the worker that took it.

Claiming is one statement, as procrastinate and Oban fetch jobs: ``SELECT ... ORDER BY seq
LIMIT n FOR UPDATE SKIP LOCKED`` picks running rows whose lease is free or expired, skipping
those another worker is claiming at the same instant, and the ``UPDATE`` in the same statement
takes them (owner, expiry, token + 1) and writes the lease history (``claims``). Idle workers
``LISTEN`` on ``RUNNABLE_CHANNEL``, which the schema's trigger notifies when an execution is
created or released without an owner, and claim within milliseconds; an expired lease sends
nothing, so they also look again every so often (``procstore.worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Final

import asyncpg

from procstore.errors import ExecutionNotFound, LeaseLost, ProcstoreError, StoreError
from procstore.storage.base import RUNNING
from procstore.storage.leasing import Claim
from procstore.storage.postgres.connections import DRIVER_ERRORS, connect
from procstore.storage.postgres.schema import RUNNABLE_CHANNEL

__all__ = ["LISTEN_BACKOFF_S", "WORKER_APPLICATION", "Leases", "new_worker_id"]

_log = logging.getLogger("procstore")

LISTEN_BACKOFF_S: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
"""How long a worker waits before each new attempt to reconnect its ``LISTEN`` connection
after losing it (the last value repeats): quick after a blip, gentle on a server that is down.
Claims go on meanwhile, found by the periodic look."""

_NAME_BYTES: Final = 63  # PostgreSQL keeps the first 63 bytes of an application_name

WORKER_APPLICATION: Final = "procstore worker "
"""How the ``application_name`` of a worker's ``LISTEN`` connection begins (its worker id
follows): ``pg_stat_activity`` shows which workers are alive (``Backend.has_runner``)."""

# Running rows that no live lease holds, oldest first, skipping the rows other workers are
# claiming now; taken in the same statement, with their history row. Never one this worker
# holds: neither those it lists ($6: held or declined) nor, whatever the list says, one whose
# expired lease is its own unless it let go of it ($7). (The list is read when the statement is
# sent: an execution this worker creates or revives meanwhile is not on it, and its lease may
# have expired by the time the statement runs.)
_CLAIM: Final = """
    WITH candidates AS (
        SELECT seq, lease_owner AS previous FROM executions
         WHERE status = $1
           AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
           AND ($5::text IS NULL OR id = $5)
           AND NOT (id = ANY($6::text[]))
           AND (lease_owner IS DISTINCT FROM $3 OR id = ANY($7::text[]))
         ORDER BY seq
         LIMIT $2
         FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE executions e
           SET lease_owner = $3,
               lease_expires_at = clock_timestamp() + make_interval(secs => $4::float8),
               fence = e.fence + 1
          FROM candidates c
         WHERE e.seq = c.seq
        RETURNING e.id, e.fence, c.previous, e.seq
    ), history AS (
        INSERT INTO claims (execution_id, fence, owner, previous_owner, claimed_at)
        SELECT id, fence, $3, previous, clock_timestamp() FROM claimed
    )
    SELECT id, fence, previous FROM claimed ORDER BY seq
"""
# The leases still ours (same token, same owner), a lease later from now.
_RENEW: Final = """
    UPDATE executions e
       SET lease_expires_at = clock_timestamp() + make_interval(secs => $4::float8)
      FROM unnest($1::text[], $2::bigint[]) AS h(id, fence)
     WHERE e.id = h.id AND e.fence = h.fence AND e.lease_owner = $3
    RETURNING e.id
"""
# Given up: free for anyone at once (the trigger notifies the idle workers).
_RELEASE: Final = """
    UPDATE executions e
       SET lease_owner = NULL, lease_expires_at = NULL
      FROM unnest($1::text[], $2::bigint[]) AS h(id, fence)
     WHERE e.id = h.id AND e.fence = h.fence AND e.lease_owner = $3
"""
_HOLDER: Final = "SELECT lease_owner, fence FROM executions WHERE id = $1"


def new_worker_id() -> str:
    """A worker's name in the database: ``host:pid:suffix``, the random suffix keeping it
    unique when a process id comes back (another boot, another container)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """The leases one worker (one ``PostgresBackend``) holds, and its ``LISTEN`` connection.

    Args:
        url: The database's URL, for the ``LISTEN`` connection.
        where: How messages name the database.
        pool: The backend's connection pool, for claims, renewals and releases.
        worker_id: This worker's name in the database (``new_worker_id``).
        lease_seconds: How long a claim or renewal holds an execution.
    """

    def __init__(
        self, url: str, where: str, pool: asyncpg.Pool, worker_id: str, lease_seconds: float
    ) -> None:
        self._url = url
        self._where = where
        self._pool = pool
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._held: dict[str, int] = {}  # execution id -> fencing token
        self._broken: dict[str, int] = {}  # stopped by a failed write: to release
        # Held here once and let go of otherwise than by ending them (lost, released,
        # stopped): a handle of this process on one of them must never write again.
        self._let_go: set[str] = set()
        self._declined: set[str] = set()  # never to be claimed by this worker again
        self._wake = asyncio.Event()  # something may have become claimable
        self._listener: asyncpg.Connection | None = None
        self._failures = 0  # LISTEN connections lost in a row
        self._opening = asyncio.Lock()  # one LISTEN connection opened at a time
        self._closed = False

    # -- what is held ---------------------------------------------------------------------------

    def held(self) -> dict[str, int]:
        """``Leasing.held``."""
        return dict(self._held)

    def created(self, execution_id: str) -> None:
        """This worker created ``execution_id`` leased to itself, with token 1."""
        self._held[execution_id] = 1

    def holds(self, execution_id: str) -> bool:
        """Whether this worker holds ``execution_id``."""
        return execution_id in self._held

    def revived(self, execution_id: str, fence: int) -> None:
        """This worker runs the finished ``execution_id`` again, under token ``fence``."""
        self._held[execution_id] = fence

    def may_write_finished(self, execution_id: str) -> bool:
        """Whether this worker may write to ``execution_id`` unfenced while it is finished (to
        record a refused command): it does not hold it, and never let go of a lease on it
        (a handle from that lease may be stale)."""
        return execution_id not in self._held and execution_id not in self._let_go

    def fence_of(self, execution_id: str) -> int:
        """The token a commit to ``execution_id`` is made under.

        Raises:
            LeaseLost: This worker does not hold it (any more).
        """
        fence = self._held.get(execution_id)
        if fence is None:
            raise LeaseLost(execution_id, "this worker holds no lease on it")
        return fence

    def ended(self, execution_id: str) -> None:
        """Its final commit released the lease (the execution finished or was quarantined):
        a place is free, which may let the worker claim another."""
        if self._held.pop(execution_id, None) is not None:
            self._wake.set()

    def forget(self, execution_id: str) -> None:
        """``Leasing.forget``."""
        if self._held.pop(execution_id, None) is not None:
            self._let_go.add(execution_id)

    def broken(self, execution_id: str) -> None:
        """A write to ``execution_id`` failed, so the execution stopped here (see
        ``procstore.runtime.journal.Writer``): hold it no more, and release its lease at the
        next renewal, so that a worker resumes it from its last commit."""
        fence = self._held.pop(execution_id, None)
        if fence is not None:
            self._broken[execution_id] = fence
            self._let_go.add(execution_id)

    async def refused(self, execution_id: str, fence: int) -> ProcstoreError:
        """The error for a write under ``fence`` that changed nothing: ``LeaseLost`` (the
        execution is no longer held here), or ``ExecutionNotFound`` for an id the database
        does not have."""
        try:
            row = await self._pool.fetchrow(_HOLDER, execution_id)
        except DRIVER_ERRORS as exc:
            return StoreError(f"cannot write to {self._where}: {exc}")
        if row is None:
            return ExecutionNotFound(f"no execution {execution_id!r} in {self._where}")
        self.forget(execution_id)
        owner, stored = row
        holder = f"held by {owner}" if owner is not None else "released"
        return LeaseLost(execution_id, f"fence {fence} < {stored}: it is {holder}")

    # -- claiming, renewing, releasing ---------------------------------------------------------

    async def claim(self, limit: int, execution_id: str | None = None) -> list[Claim]:
        """``Leasing.claim``."""
        if limit <= 0:
            return []
        try:
            rows = await self._pool.fetch(
                _CLAIM,
                RUNNING,
                limit,
                self.worker_id,
                self.lease_seconds,
                execution_id,
                [*self._held, *self._declined],
                list(self._let_go),
            )
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot claim executions in {self._where}: {exc}") from exc
        claims = [Claim(row["id"], row["fence"], row["previous"]) for row in rows]
        for claim in claims:
            self._held[claim.execution_id] = claim.fence
        return claims

    async def renew(self) -> list[str]:
        """``Leasing.renew``; the leases of executions stopped by a failed write are released
        first (they stay to release if that fails too)."""
        if self._broken:
            broken, self._broken = self._broken, {}
            try:
                await self._release(broken)
            except StoreError:
                self._broken.update(broken)
                raise
        sent = dict(self._held)
        if not sent:
            return []
        try:
            rows = await self._pool.fetch(
                _RENEW, list(sent), list(sent.values()), self.worker_id, self.lease_seconds
            )
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot renew the leases in {self._where}: {exc}") from exc
        renewed = {row[0] for row in rows}
        # Not renewed, and still held under the token sent: taken over. (Those that ended or
        # were forgotten meanwhile are no longer held: nothing to say about them.)
        lost = [i for i, fence in sent.items() if i not in renewed and self._held.get(i) == fence]
        for execution_id in lost:
            self.forget(execution_id)
        return lost

    async def release(self, execution_ids: list[str] | None = None) -> None:
        """``Leasing.release``."""
        ids = list(self._held) if execution_ids is None else execution_ids
        given = {i: self._held.pop(i) for i in ids if i in self._held}
        self._let_go.update(given)
        if execution_ids is None:  # everything: the stopped ones too
            given.update(self._broken)
            self._broken.clear()
        await self._release(given)

    async def decline(self, execution_id: str) -> None:
        """``Leasing.decline``."""
        self._declined.add(execution_id)
        await self.release([execution_id])

    async def _release(self, given: dict[str, int]) -> None:
        """Release the leases ``given`` (id: fencing token)."""
        if not given:
            return
        try:
            await self._pool.execute(_RELEASE, list(given), list(given.values()), self.worker_id)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"cannot release the leases in {self._where}: {exc}") from exc

    # -- waiting for work -----------------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> None:
        """``Leasing.wait_for_work``: a notification, a freed place, or ``timeout``."""
        if self._listener is None or self._listener.is_closed():
            if not await self._listen(timeout):
                return  # the backoff took the time: look again
            # Listening anew: what was notified while nobody listened may be waiting.
            self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()

    async def listen(self) -> None:
        """Open the ``LISTEN`` connection now, when the backend becomes a worker: its
        ``application_name`` says that this worker is alive, claiming or not. A failure is a
        warning; ``wait_for_work`` tries again."""
        async with self._opening:
            if self._listener is None and await self._listen(0):
                self._wake.set()  # what was notified before: look

    async def _listen(self, timeout: float) -> bool:
        """Open the ``LISTEN`` connection (after a backoff if the last one was lost); whether
        it is open. A failure is a warning: the worker still claims on its periodic look."""
        if self._failures:
            index = min(self._failures, len(LISTEN_BACKOFF_S)) - 1
            delay = LISTEN_BACKOFF_S[index]
            await asyncio.sleep(min(delay, timeout))
            if delay > timeout:
                return False
        name = f"{WORKER_APPLICATION}{self.worker_id}".encode()[:_NAME_BYTES].decode(
            errors="ignore"
        )
        try:
            listener = await connect(
                self._url, self._where, server_settings={"application_name": name}
            )
            await listener.add_listener(RUNNABLE_CHANNEL, self._notified)
        except (StoreError, *DRIVER_ERRORS) as exc:
            self._failures += 1
            _log.warning(
                "procstore worker %s cannot listen on %s: %s", self.worker_id, self._where, exc
            )
            return False
        if self._closed:
            await listener.close()
            return False
        listener.add_termination_listener(self._lost)
        self._listener, self._failures = listener, 0
        return True

    def _notified(self, *_: object) -> None:
        self._wake.set()

    def _lost(self, connection: object) -> None:
        """The ``LISTEN`` connection ended (a server restart, a network cut)."""
        if not self._closed:
            self._failures += 1
            _log.warning(
                "procstore worker %s lost its LISTEN connection to %s; reconnecting",
                self.worker_id,
                self._where,
            )
            self._wake.set()  # the waiter reconnects

    async def close(self) -> None:
        """Release every held lease (best effort: otherwise they expire) and stop listening."""
        self._closed = True
        try:
            with contextlib.suppress(StoreError):
                await self.release()
        finally:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.remove_termination_listener(self._lost)
                with contextlib.suppress(*DRIVER_ERRORS):
                    await listener.close()
