"""A clock for timing tests: time moves only when the test moves it.

Give it to a store (``ProcedureStore(clock=ManualClock())``) and the store's executions see
only this time: history timestamps, retry delays, state and action timeouts, ``sleep`` actions.
``await clock.advance(0.02)`` moves time on by 20 ms, firing what fell due in order and
letting the event loop run what that caused. So a test asserts *when* something happens, in
virtual time and exactly, instead of a wall-clock window that a loaded machine breaks.

Virtual time is kept in whole microseconds (the resolution of a history record's ``at``), so
that sums of delays do not drift by float rounding: after ``advance(0.099)`` and
``advance(0.001)``, ``clock.elapsed == 0.1`` exactly, and ``clock.instant(record.at)`` gives the
moment a record was stamped, to compare with ``==``.

A timer set for a moment already passed (a deadline that ran out while a store was closed) fires
soon without an advance, as on the event loop.

``await clock.instantly(ex.cancel())`` says that something takes no time at all: it must be done
once the loop has settled, with no timer fired. A wait for a deadline (or for an action that is
still sleeping in virtual time) fails it at once, where a wall-clock test would assert
"under 100 ms".
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

#: How many times `ManualClock.settle` lets the event loop go round: enough for what a timer
#: causes (a step, a commit, a transition) to run to its next wait.
SETTLE_ROUNDS = 50

#: Microseconds in a second: the clock's unit of time.
_US = 1_000_000


def _micros(seconds: float) -> int:
    return round(seconds * _US)


class _Timer:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: int, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A `procstore.clock.Clock` whose time the test advances (see the module's docstring)."""

    def __init__(self, epoch: float = 1_800_000_000.0) -> None:
        self._epoch = epoch
        self._now = 0  # microseconds since the clock was made
        self._timers: list[tuple[int, int, _Timer]] = []
        self._seq = itertools.count()

    @property
    def elapsed(self) -> float:
        """Seconds advanced since the clock was made."""
        return self._now / _US

    def instant(self, at: datetime) -> float:
        """The moment `at` (a history record's timestamp) on this clock: seconds since the
        clock was made, exact to the microsecond (so ``clock.instant(r.at) == 0.1`` holds)."""
        return _micros(at.timestamp() - self._epoch) / _US

    def time(self) -> float:
        return self._epoch + self._now / _US

    def monotonic(self) -> float:
        return self._now / _US

    def call_later(self, seconds: float, callback: Callable[..., None], *args: Any) -> _Timer:
        timer = _Timer(self._now + max(0, _micros(seconds)), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        if timer.when <= self._now:
            # Already due (a deadline that passed while a store was closed, say): like the
            # event loop's call_later, it runs soon, without waiting for an advance.
            asyncio.get_running_loop().call_soon(self._fire_due)
        return timer

    def _fire_due(self) -> None:
        """Fire the timers due by now that an advance has not fired yet."""
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback(*timer.args)

    async def sleep(self, seconds: float) -> None:
        if _micros(seconds) <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, _wake, woken)
        try:
            await woken
        finally:
            timer.cancel()

    def timeout(self, seconds: float) -> _Timeout:
        return _Timeout(self, seconds)

    def pending(self) -> list[float]:
        """When the timers not yet fired are due (seconds on this clock), soonest first."""
        return sorted(when / _US for when, _, timer in self._timers if not timer.cancelled)

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`: fire every timer due by then, in order, each at its own
        instant, letting the loop run what it causes before the next."""
        await self.settle()
        target = self._now + _micros(seconds)
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.callback(*timer.args)
            await self.settle()
        self._now = target
        await self.settle()

    async def instantly(self, awaitable: Awaitable[T]) -> T:
        """The result of `awaitable`, which must finish with no time passing on this clock.

        Raises:
            AssertionError: it is still waiting once the loop has settled (it waits for a
                timer, or for something that never comes); it is cancelled.
        """
        task = asyncio.ensure_future(awaitable)
        await self.settle()
        if not task.done():
            task.cancel()
            await self.settle()
            raise AssertionError(
                f"still waiting at {self.elapsed}s with no time passing "
                f"(timers due at {self.pending()})"
            )
        return task.result()

    @staticmethod
    async def settle() -> None:
        """Let the event loop run what is ready (a few rounds)."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Timeout:
    """`asyncio.timeout` on a `ManualClock`: cancel the block when the clock passes the
    deadline, and raise `TimeoutError` for that cancellation (and only that one)."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self._clock, self._seconds = clock, seconds
        self._expired = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: _Timer | None = None
        self._cancelling = 0

    def expired(self) -> bool:
        return self._expired

    def _expire(self) -> None:
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    async def __aenter__(self) -> _Timeout:
        self._task = asyncio.current_task()
        assert self._task is not None
        self._cancelling = self._task.cancelling()
        self._timer = self._clock.call_later(self._seconds, self._expire)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._timer is not None and self._task is not None
        self._timer.cancel()
        if (
            self._expired
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() <= self._cancelling
        ):
            raise TimeoutError from exc
