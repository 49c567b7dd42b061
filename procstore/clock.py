"""Time, as the runtime sees it: one small interface, so that tests can replace it.

Everything an execution does in time goes through a `Clock`: the timestamps of its history
records and its stored deadlines (`time`, wall-clock seconds), how long an attempt took
(`monotonic`), retry delays (`sleep`), state timeouts (`call_later`), action timeouts, the grace
a cancelled action gets for its cleanup and `run_to_completion`'s ``timeout`` (`timeout`).
`SYSTEM` is the real one; a test may give the store a clock it advances by hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

__all__ = ["SYSTEM", "Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """What `Clock.call_later` returns."""

    def cancel(self) -> None:
        """Do not call the callback (a no-op once it ran)."""


class Clock(Protocol):
    """The runtime's source of time."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (history timestamps, stored deadlines)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations)."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (0 or less: yield once)."""

    def call_later(self, seconds: float, callback: Callable[..., None], *args: Any) -> TimerHandle:
        """Call `callback(*args)` on the event loop after `seconds`."""

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[Any]:
        """Like `asyncio.timeout`: cancel the block after `seconds` and raise `TimeoutError`;
        the object it yields has `expired()`."""


class SystemClock:
    """The real clock: `time.time`, `time.monotonic` and the running event loop."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, seconds: float, callback: Callable[..., None], *args: Any) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback, *args)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[Any]:
        return asyncio.timeout(seconds)


#: The clock every store uses unless it is given another.
SYSTEM: Clock = SystemClock()
