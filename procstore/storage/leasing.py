"""Leases: what a backend provides, on top of ``Backend``, for several worker processes to
share its executions (PostgreSQL). Each worker claims executions, holds each under a lease it
renews, and commits under a fencing token that grows on every claim, so that a worker that
lost its lease commits nothing more. SQLite and memory have one runner per database and do not
implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_LEASE_SECONDS", "MIN_LEASE_SECONDS", "Claim", "Leasing"]

DEFAULT_LEASE_SECONDS = 30.0
"""How long a worker's lease on an execution lasts without a renewal (``Leasing``), unless the
store says otherwise (``ProcedureStore(url, lease_seconds=...)``): how long a dead worker's
executions wait before another worker takes them over."""

MIN_LEASE_SECONDS = 0.5
"""The shortest lease a store accepts: a worker renews its leases every third of it, and a
shorter one would spend the worker on renewals and hand executions over on every pause of a
busy machine."""


@dataclass(frozen=True, slots=True)
class Claim:
    """An execution a worker claimed (``Leasing.claim``).

    Attributes:
        execution_id: The execution.
        fence: Its fencing token under this claim: every commit this worker makes to it is
            applied only while the stored token is still this one.
        previous_owner: The worker whose expired lease this claim took over; ``None`` when
            nobody held it (a new execution, or one a stopping worker released).
    """

    execution_id: str
    fence: int
    previous_owner: str | None


@runtime_checkable
class Leasing(Protocol):
    """What a backend provides on top of ``Backend`` for several worker processes to share its
    executions: a lease per execution (an owner, an expiry on the database's clock, a fencing
    token that grows on every claim).

    Once ``Backend.acquire_runner_lock`` has made the backend a worker (it takes no exclusive
    lock then), the executions it creates are leased to it, and every ``commit`` and
    ``quarantine_execution`` of an execution is applied only under the lease it holds: one it
    does not hold (any more) raises ``procstore.errors.LeaseLost`` and changes nothing.
    """

    @property
    def worker_id(self) -> str:
        """This worker's name in the database (``lease_owner``): host, process id and a
        random suffix, unique among the workers of all times."""
        ...

    @property
    def lease_seconds(self) -> float:
        """How long a claim or a renewal holds an execution without another renewal."""
        ...

    def held(self) -> dict[str, int]:
        """The executions this worker holds now, with their fencing tokens (a copy)."""
        ...

    async def claim(self, limit: int, execution_id: str | None = None) -> list[Claim]:
        """Take up to ``limit`` running executions that no live lease holds (never one this
        worker holds), oldest first, skipping those another worker is claiming at the same
        instant; with ``execution_id``, only that one.

        Raises:
            StoreError: The claim failed (nothing was claimed).
        """
        ...

    async def renew(self) -> list[str]:
        """Extend the lease of every held execution by ``lease_seconds`` from now; return the
        ids of those whose lease was lost (claimed by another worker), which are no longer
        held.

        Raises:
            StoreError: The renewal failed: the leases stand as they were.
        """
        ...

    def forget(self, execution_id: str) -> None:
        """Stop holding ``execution_id`` here without writing anything (its lease was lost or
        is given up; it expires by itself)."""
        ...

    async def release(self, execution_ids: list[str] | None = None) -> None:
        """Give up the leases of ``execution_ids`` (every held one by default), so that another
        worker may claim them at once; those this worker no longer holds are left alone.

        Raises:
            StoreError: The release failed: the leases expire by themselves.
        """
        ...

    async def decline(self, execution_id: str) -> None:
        """Release the lease of ``execution_id`` and never claim it again (this worker lacks
        the host code its procedure needs: a worker that has it takes it).

        Raises:
            StoreError: The release failed: the lease expires by itself.
        """
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when an execution may have become claimable (the database notified one
        created, released or finished), or after ``timeout`` seconds."""
        ...
