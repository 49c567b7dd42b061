"""Hibernation, the store's side: which executions to let go of, and when to bring each back.

A persisted store's executions mostly wait. The `Hibernator` lets go of one that has only
waited (`procstore.runtime.hibernation.parkable`) for ``hibernate_after`` seconds: it parks
it, so that nothing of it stays in memory unless a caller holds its handle, and keeps its due
time (its earliest timer: a state timeout, a retry delay, a wait's end) in one index, a heap
of ``(due, id)``: one scheduler for every parked execution, not a task or a timer each. An
execution that only an event moves on costs no entry at all. When a due time comes, the
execution is restored from the database (or woken in place, when its handle is still held)
and its timer fires as it would have; an event, a callback or ``get_execution`` brings one
back the same way (``Handles.live``, ``Handles.adopt``).

When the store starts running a database's executions (``work()``), the index is filled from
the checkpoints' due times (``Backend.due_executions``): the executions with work to do now
are resumed, the others stay on disk until they are due or sent something.

It runs on the store's clock and serves SQLite stores; a PostgreSQL worker holds at most
``concurrency`` executions and keeps them in memory (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
from typing import TYPE_CHECKING, Final

from procstore.clock import Clock
from procstore.errors import ExecutionDamaged, ProcstoreError
from procstore.runtime import hibernate
from procstore.runtime.hibernation import NEVER
from procstore.storage import Backend

if TYPE_CHECKING:
    from procstore.handles import Handles
    from procstore.runtime.run import Run

__all__ = [
    "DEFAULT_HIBERNATE_AFTER",
    "STALE_DUE_ENTRIES",
    "Hibernator",
    "check_hibernate_after",
]

logger = logging.getLogger("procstore")

DEFAULT_HIBERNATE_AFTER: Final = 30.0
"""Seconds an execution of a persisted store waits, doing nothing, before it leaves memory
(``ProcedureStore(hibernate_after=...)``): long enough that a conversation of events a few
seconds apart keeps it warm, short enough that a day of approvals does not fill the memory."""

WAKE_BATCH: Final = 256
"""Most due executions the scheduler brings back at once (concurrently) before it looks at
its index again."""


STALE_DUE_ENTRIES: Final = 256
"""Entries of the due index that no longer count (their execution was woken, and maybe
parked again with an entry of its own) that it keeps before it is rebuilt, at least; more
once there are more parked executions (never more stale entries than live ones). A woken
entry is otherwise only dropped when its instant comes, so an execution woken again and again
before a far timer would grow the index with every wake."""


WAKE_RETRY_SECONDS: Final = 1.0
"""How long the scheduler waits before trying again to bring back a due execution whose
database read failed (a locked or unreadable file): its timer fires late, never not at all."""


def check_hibernate_after(seconds: float | None) -> None:
    """Refuse a ``hibernate_after`` that is not ``None`` or a number of seconds of 0 or more.

    Raises:
        ValueError: it is negative, NaN, infinite, or not a number.
    """
    if seconds is None:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"hibernate_after must be a number of seconds or None, not {seconds!r}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"hibernate_after must be 0 or more seconds, not {seconds!r}")


class Hibernator:
    """Parks a store's idle executions and wakes them when due (see the module's docstring).

    Args:
        handles: The store's executions in this process.
        clock: The store's clock: idle intervals and due times are on it.
        after: Seconds of idleness before an execution is parked (0: as soon as it only
            waits); ``None`` parks nothing.
    """

    def __init__(self, handles: Handles, clock: Clock, after: float | None) -> None:
        self._handles = handles
        self._clock = clock
        self._after = after
        self._backend: Backend | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: list[tuple[float, str]] = []  # (when to look, id) of executions in memory
        self._touched: dict[str, float] = {}  # id -> when it last did something (in _idle)
        self._due: list[tuple[float, str]] = []  # (due, id) of parked executions with a timer
        self._parked: dict[str, float] = {}  # id -> its due time, while parked
        self._changed = asyncio.Event()  # an entry sooner than the loop's next look
        self._next = math.inf  # when the loop looks next

    @property
    def running(self) -> bool:
        """Whether it parks and wakes executions now."""
        return self._task is not None

    def parked(self) -> int:
        """How many parked executions wait for a timer (those only an event moves on are not
        counted: nothing of them is kept)."""
        return len(self._parked)

    def start(self, backend: Backend) -> None:
        """Start parking ``backend``'s idle executions (a no-op with ``after=None``)."""
        if self._after is None or self._task is not None:
            return
        self._backend = backend
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="procstore sleeps")

    async def stop(self) -> None:
        """Park nothing more and forget the index: the database keeps every due time, for
        the next process that runs its executions."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._idle.clear()
        self._touched.clear()
        self._due.clear()
        self._parked.clear()
        self._backend = None

    async def index(self, backend: Backend) -> None:
        """Fill the index from the database (``work()``): resume the unfinished executions
        that have work to do now, remember when the others with a timer are due, and leave
        those only an event moves on where they are."""
        now = self._clock.time()
        for execution_id, due in await backend.due_executions(before=NEVER):
            tracked = self._handles.tracked(execution_id)
            if tracked is not None and not tracked.detached:
                continue  # in memory already (its own timers run), or parked and indexed
            # A detached handle (its store was closed since, or a write failed) runs nothing:
            # the execution is brought back anew, as recover() does.
            if due <= now:
                await self._bring_back(backend, execution_id)
            else:
                self._remember(execution_id, due)

    # -- what the runtime tells it ------------------------------------------------------------

    def touched(self, run: Run) -> None:
        """``procstore.runtime.hibernation.Sleeper``: ``run`` is awake and did something."""
        if self._task is None:
            return
        self._parked.pop(run.id, None)  # woken: its entry in the due index is stale now
        now = self._clock.time()
        queued = run.id in self._touched
        self._touched[run.id] = now
        if not queued:
            assert self._after is not None
            self._push(self._idle, now + self._after, run.id)

    # -- the loop -----------------------------------------------------------------------------

    def _push(self, heap: list[tuple[float, str]], when: float, execution_id: str) -> None:
        heapq.heappush(heap, (when, execution_id))
        if when < self._next:
            self._changed.set()

    def _remember(self, execution_id: str, due: float) -> None:
        self._parked[execution_id] = due
        self._push(self._due, due, execution_id)
        if len(self._due) - len(self._parked) > max(len(self._parked), STALE_DUE_ENTRIES):
            # In place: the loop may be walking this very list (`_wake_due`).
            self._due[:] = [(at, parked) for parked, at in self._parked.items()]
            heapq.heapify(self._due)

    async def _loop(self) -> None:
        waited = -math.inf  # the instant the last wait was for
        while True:
            # A wait for an instant ends at it, even on a clock that rounds it a little early.
            now = max(self._clock.time(), waited)
            try:
                self._park_idle(now)
                await self._wake_due(now)
            except Exception:  # a defect must not stop every parked execution's timers
                logger.exception("procstore: hibernation failed; it carries on")
            heads = [heap[0][0] for heap in (self._idle, self._due) if heap]
            self._next = min(heads, default=math.inf)
            self._changed.clear()
            if self._next <= self._clock.time():
                await asyncio.sleep(0)
                continue
            if self._next == math.inf:
                await self._changed.wait()
                continue
            try:
                async with self._clock.timeout(self._next - self._clock.time()):
                    await self._changed.wait()
            except TimeoutError:
                waited = self._next

    def _park_idle(self, now: float) -> None:
        """Park every execution that has done nothing for ``after`` seconds and only waits."""
        assert self._after is not None
        idle = self._idle
        while idle and idle[0][0] <= now:
            _, execution_id = heapq.heappop(idle)
            last = self._touched.get(execution_id)
            if last is None:
                continue
            if last + self._after > now:  # it did something since: look again later
                heapq.heappush(idle, (last + self._after, execution_id))
                continue
            del self._touched[execution_id]
            execution = self._handles.tracked(execution_id)
            if execution is None:
                continue
            # Not parkable (busy, driven): whatever it does ends in a touch, which looks again.
            due = hibernate(execution)
            if due is not None and due < NEVER:
                self._remember(execution_id, due)

    async def _wake_due(self, now: float) -> None:
        """Bring back every parked execution whose due time has come."""
        backend = self._backend
        assert backend is not None
        due, batch = self._due, []
        while due and due[0][0] <= now:
            at, execution_id = heapq.heappop(due)
            if self._parked.get(execution_id) != at:
                continue  # woken since (and maybe parked again, with another due time)
            del self._parked[execution_id]
            if self._handles.live(execution_id) is not None:
                continue  # its handle is still held: woken in place, at once
            batch.append(execution_id)
            if len(batch) == WAKE_BATCH:
                await asyncio.gather(*(self._bring_back(backend, i) for i in batch))
                batch = []
        if batch:
            await asyncio.gather(*(self._bring_back(backend, i) for i in batch))

    async def _bring_back(self, backend: Backend, execution_id: str) -> None:
        """Wake ``execution_id`` in place, or restore it from the database as ``recover``
        does: its timers fire from their stored deadlines, at once for those past."""
        try:
            await self._handles.bring_back(backend, execution_id)
        except ExecutionDamaged:
            pass  # quarantined, and logged, by the restore
        except ProcstoreError as exc:  # the database could not be read: try again soon
            logger.warning(
                "procstore: execution %s could not be woken (%s); trying again in %g s",
                execution_id,
                exc,
                WAKE_RETRY_SECONDS,
            )
            self._remember(execution_id, self._clock.time() + WAKE_RETRY_SECONDS)
