"""A PostgreSQL store as a worker: it claims executions that no live worker holds, runs up to
``concurrency`` of them at once, renews its leases, and lets go of those it lost.

The store creates a `Worker` when it first runs executions (``start()``, ``recover()``,
``work()``, or ``get_execution()`` resuming one) on a backend that implements
``procstore.storage.Leasing``; SQLite keeps its single runner and has none. Two background
tasks do the work:

* the **claim loop** (only with ``concurrency`` > 0): while places are free, it claims up to
  ``CLAIM_BATCH`` executions at a time and resumes each exactly as ``recover()`` does (an
  interrupted attempt runs again with its number, stored deadlines fire at their instant or
  at once, a compensation in progress carries on); then it waits for the database's
  notification of a new or released execution, a place freed here, or
  ``lease_seconds * POLL_FRACTION`` (an expired lease sends no notification);
* the **renewal loop**: every ``lease_seconds * RENEW_FRACTION`` it extends every held lease.
  An execution whose lease another worker took is dropped at once (its handle detached, a
  warning logged); when renewals fail for so long that the leases may have expired, every
  execution is dropped, since another worker may be running them. (An execution a failed
  write stopped is released by the backend at the next renewal, so that a worker resumes it
  from its last commit.)

Each claim is one log line on the ``procstore`` logger (INFO): ``claimed`` for an execution
nobody held, ``took over ... from WORKER`` for one whose worker's lease had expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final, Protocol

from procstore.errors import ExecutionDamaged, ExecutionNotFound, LeaseLost, StoreError
from procstore.handles import Handles
from procstore.registry import ProcedureRegistry
from procstore.runtime import Execution, drop
from procstore.storage import RUNNING, Backend
from procstore.storage.leasing import MIN_LEASE_SECONDS, Claim, Leasing

__all__ = [
    "CLAIM_BATCH",
    "DEFAULT_CONCURRENCY",
    "POLL_FRACTION",
    "RENEW_FRACTION",
    "LeasingBackend",
    "Worker",
    "check_settings",
]

logger = logging.getLogger("procstore")

DEFAULT_CONCURRENCY: Final = 100
"""How many executions a worker runs at once, unless the store says otherwise
(``ProcedureStore(url, concurrency=...)``). Executions are mostly waiting (for actions' I/O,
retry delays, events): a hundred cost little memory and CPU, and one connection pool of
``POOL_SIZE`` serves their commits."""

CLAIM_BATCH: Final = 10
"""Most executions one claim takes: a burst of new executions is spread over the idle workers
instead of filling the first one to wake up; a worker claims again at once after a full
batch."""

RENEW_FRACTION: Final = 1 / 3
"""A worker renews its leases every ``lease_seconds * RENEW_FRACTION``: two renewals in a row
may fail (a slow server, a network blip) before a lease is at risk."""

POLL_FRACTION: Final = 1 / 4
"""An idle worker looks for expired leases every ``lease_seconds * POLL_FRACTION`` (new and
released executions wake it at once): a dead worker's executions are taken over within
``lease_seconds * (1 + POLL_FRACTION)`` of its last renewal."""

STOP_CLAIM_TIMEOUT_S: Final = 10.0
"""How long a stopping worker waits for a claim under way to complete (a claim is one
statement: it takes milliseconds unless the server hangs)."""

CLAIM_LOOP: Final = "procstore claims"  # the claim loop task's name

RETRY_AFTER_FAILURE_S: Final = 1.0
"""How long the claim loop waits after a claim failed (the server unreachable) before trying
again."""


class LeasingBackend(Backend, Leasing, Protocol):
    """A backend that is also ``Leasing`` (PostgreSQL)."""


def check_settings(concurrency: int, lease_seconds: float) -> None:
    """Refuse what ``ProcedureStore(concurrency=..., lease_seconds=...)`` cannot use.

    Raises:
        ValueError: ``concurrency`` is not an integer of 0 or more, or ``lease_seconds`` is
            less than ``MIN_LEASE_SECONDS``.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0:
        raise ValueError(f"concurrency must be an integer of 0 or more, not {concurrency!r}")
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int | float):
        raise ValueError(f"lease_seconds must be a number of seconds, not {lease_seconds!r}")
    if not lease_seconds >= MIN_LEASE_SECONDS:  # NaN too
        raise ValueError(
            f"lease_seconds must be at least {MIN_LEASE_SECONDS:g}, not {lease_seconds!r}"
        )


class Worker:
    """The claim and renewal loops of one store (see the module's docstring).

    Args:
        backend: The store's open backend, a worker already (``acquire_runner_lock``).
        handles: The store's executions in this process.
        registry: The store's procedures, reloaded from the database when a claimed execution
            runs a version registered since the store opened.
        concurrency: How many executions to hold at once through the claim loop (0: none;
            the store still runs those it starts or resumes itself).
    """

    def __init__(
        self,
        backend: LeasingBackend,
        handles: Handles,
        registry: ProcedureRegistry,
        concurrency: int,
    ) -> None:
        self._backend = backend
        self._handles = handles
        self._registry = registry
        self._concurrency = concurrency
        self._restoring: dict[str, asyncio.Event] = {}  # claimed, resuming; set once done
        # One claim statement at a time: when a claim returns nothing, any claim of this
        # worker that took the execution meanwhile has registered it in `_restoring`.
        self._claim_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming = concurrency > 0
        self._idle: asyncio.Future[None] | None = None  # the claim loop's wait for work

    @property
    def worker_id(self) -> str:
        """This worker's name in the database."""
        return self._backend.worker_id

    def start(self) -> None:
        """Start the renewal loop and, with ``concurrency`` > 0, the claim loop."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._renew_loop(), name="procstore renewals"))
        if self._claiming:
            self._tasks.append(loop.create_task(self._claim_loop(), name=CLAIM_LOOP))

    def stop_claiming(self) -> None:
        """Claim nothing more (the store is stopping); renewals go on. A claim under way
        completes (cutting it short could leave a lease taken that nobody runs)."""
        self._claiming = False
        if self._idle is not None:
            self._idle.cancel()

    async def stop(self) -> None:
        """Stop both loops (the store closes: its backend releases the leases). A claim under
        way gets ``STOP_CLAIM_TIMEOUT_S`` to complete: cut short, the executions it took would
        wait for their leases to expire."""
        self.stop_claiming()
        tasks, self._tasks = self._tasks, []
        claiming = [task for task in tasks if task.get_name() == CLAIM_LOOP]
        if claiming:
            await asyncio.wait(claiming, timeout=STOP_CLAIM_TIMEOUT_S)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- claiming ---------------------------------------------------------------------------

    async def recover(self) -> list[Execution]:
        """``ProcedureStore.recover`` on a worker: claim every running execution no live
        worker holds, whatever ``concurrency`` says (it was asked for), resume each; return
        those this process ran already and those resumed (some may have finished since)."""
        executions = list(self._handles.running.values())
        while True:
            claimed, resumed = await self._claim(CLAIM_BATCH)
            executions += resumed
            if claimed < CLAIM_BATCH:
                return executions

    async def take(self, execution_id: str) -> Execution:
        """A handle on a running execution for ``get_execution``: resumed here if this
        worker could claim it, otherwise (another worker runs it) a handle that reads it.

        Raises:
            ExecutionNotFound: it is gone; ExecutionDamaged: it cannot be restored.
        """
        _, resumed = await self._claim(1, execution_id)
        if resumed:
            return resumed[0]
        live = await self._claimed_here(execution_id)
        if live is not None:
            return live
        stored = await self._backend.load_execution(execution_id)
        if stored is None:  # deleted meanwhile
            raise ExecutionNotFound(f"no execution {execution_id!r}")
        if stored.status != RUNNING:  # it ended meanwhile
            return await self._handles.restore(self._backend, stored, resume=False)
        elsewhere = "read-only here: another worker runs it"
        return await self._handles.restore(self._backend, stored, resume=False, frozen=elsewhere)

    async def _claimed_here(self, execution_id: str) -> Execution | None:
        """The live handle of ``execution_id`` if a claim of this worker took it (the claim
        loop, or another call), once it has resumed; ``None`` if none did."""
        restoring = self._restoring.get(execution_id)
        if restoring is not None:  # claimed, resuming now
            await restoring.wait()
        return self._handles.live(execution_id)

    async def adopt(self, execution_id: str) -> Execution | None:
        """``procstore.inbox.Adopt`` on a worker: the handle to apply ``execution_id``'s
        queued commands to. One this worker holds is its live handle; a running one that no
        live lease holds is claimed now (while it claims, and has a place free); one another
        worker holds is left, commands and all, to that worker (``None``). A finished one is
        restored to record what it refuses, as a single runner does.

        Raises:
            ExecutionNotFound: it is gone; ExecutionDamaged: it is quarantined, or cannot be
                restored.
        """
        if execution_id in self._backend.held():
            return await self._claimed_here(execution_id)
        stored = await self._backend.load_execution(execution_id)
        if stored is None or stored.status != RUNNING:
            return await self._handles.adopt(self._backend, execution_id)
        if not self._claiming or len(self._backend.held()) >= self._concurrency:
            return None
        _, resumed = await self._claim(1, execution_id)
        return resumed[0] if resumed else await self._claimed_here(execution_id)

    async def _claim(
        self, limit: int, execution_id: str | None = None
    ) -> tuple[int, list[Execution]]:
        """Claim up to ``limit`` executions (or ``execution_id``) and resume each; how many
        were claimed, and the handles of those resumed (not those quarantined)."""
        async with self._claim_lock:
            claims = await self._backend.claim(limit, execution_id)
            for claim in claims:
                self._restoring[claim.execution_id] = asyncio.Event()
        resumed, done = [], 0
        try:
            for claim in claims:
                execution = await self._resume(claim)
                self._restoring.pop(claim.execution_id).set()
                done += 1
                if execution is not None:
                    resumed.append(execution)
        finally:  # cancelled, or a failure: the claims not resumed are given back
            left = [claim.execution_id for claim in claims[done:]]
            for execution_id in left:
                self._restoring.pop(execution_id).set()
            if left:
                with contextlib.suppress(StoreError):
                    await self._backend.release(left)
        return len(claims), resumed

    async def _resume(self, claim: Claim) -> Execution | None:
        """Resume a claimed execution from its last commit, as ``recover()`` does; ``None``
        if it cannot be (quarantined, or it ended meanwhile: its lease is gone then)."""
        backend = self._backend
        stored = await backend.load_execution(claim.execution_id)
        if stored is None or stored.status != RUNNING:  # deleted, or ended by hand meanwhile
            backend.forget(claim.execution_id)
            return None
        registry = self._registry
        if registry.cannot_run(stored.procedure, stored.version) is not None:
            # Registered since this store opened (by a client, say)? Load what is stored now.
            registry.load(await backend.load_procedures())
        runnable = registry.cannot_run(stored.procedure, stored.version) is None
        missing = registry.missing_host_code(stored.procedure, stored.version) if runnable else None
        if missing is not None:
            # Run here, its next step would fail for good: leave it to a worker that has it.
            logger.warning(
                "procstore worker %s: execution %s is not run here: its procedure needs host "
                "code this store does not have (%s); it waits for a worker that has it",
                backend.worker_id,
                claim.execution_id,
                missing,
            )
            await backend.decline(claim.execution_id)
            return None
        try:
            execution = await self._handles.restore(backend, stored, resume=True)
        except ExecutionDamaged:
            return None  # quarantined under this lease, which ended; the store logged why
        _log_claim(claim, backend.worker_id)
        return execution

    async def _claim_loop(self) -> None:
        backend = self._backend
        poll = backend.lease_seconds * POLL_FRACTION
        while self._claiming:
            try:
                free = self._concurrency - len(backend.held())
                wanted = min(free, CLAIM_BATCH)
                if wanted > 0 and (await self._claim(wanted))[0] == wanted:
                    continue  # a full batch: more may be waiting
                self._idle = asyncio.ensure_future(backend.wait_for_work(poll))
                try:
                    await self._idle
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # this loop is cancelled, not just its wait
                finally:
                    self._idle = None
            except StoreError as exc:
                logger.warning("procstore worker %s: %s", backend.worker_id, exc)
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
            except Exception:  # a defect: say so, and keep claiming
                logger.exception("procstore worker %s: claiming failed", backend.worker_id)
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)

    # -- renewing ---------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        backend = self._backend
        interval = backend.lease_seconds * RENEW_FRACTION
        confirmed_until = time.monotonic() + backend.lease_seconds
        while True:
            await asyncio.sleep(interval)
            began = time.monotonic()
            try:
                async with asyncio.timeout(interval):
                    lost = await backend.renew()
            except Exception as exc:  # StoreError, TimeoutError; a defect is logged the same
                if time.monotonic() + interval >= confirmed_until:
                    # The next renewal would come after the leases may have expired: another
                    # worker may claim them, so nothing of them may run here any more.
                    self._drop_all(f"its leases could not be renewed ({exc or 'timed out'})")
                else:
                    logger.warning("procstore worker %s: %s", backend.worker_id, exc)
                continue
            confirmed_until = began + backend.lease_seconds
            for execution_id in lost:
                self._drop(execution_id, "another worker took it over")

    def _drop(self, execution_id: str, detail: str) -> None:
        self._backend.forget(execution_id)
        execution = self._handles.running.get(execution_id)
        if execution is not None:
            drop(execution, LeaseLost(execution_id, detail))

    def _drop_all(self, detail: str) -> None:
        for execution_id in self._backend.held():
            self._drop(execution_id, detail)


def _log_claim(claim: Claim, worker_id: str) -> None:
    """One line per claim (see the module's docstring)."""
    extra = {"procstore_claim": claim}  # what `procstore worker` counts on a terminal
    if claim.previous_owner is None:
        logger.info(
            "worker %s claimed execution %s (fence %d)",
            worker_id,
            claim.execution_id,
            claim.fence,
            extra=extra,
        )
    else:
        logger.info(
            "worker %s took over execution %s from %s, whose lease expired (fence %d)",
            worker_id,
            claim.execution_id,
            claim.previous_owner,
            claim.fence,
            extra=extra,
        )
