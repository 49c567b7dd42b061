"""A latch and a mutex: what `asyncio.Event` and `asyncio.Lock` offer an execution, at a
fraction of their memory.

An execution holds one latch (`Run.finished`: set when it finishes, cleared by a reset,
awaited by `run_to_completion`) and two locks (`Run.send_lock`, `Run.fire_lock`) for its whole
life, and a store may hold executions by the hundred thousand, most of them waiting.
`asyncio.Event` allocates a deque for its waiters up front (~760 bytes, more than a bare
``transitions`` model); `asyncio.Lock` allocates one on its first contention and keeps it for
good, and each has an instance dict. `Latch` and `Mutex` have ``__slots__`` and a list of
waiters only while someone waits.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Latch", "Mutex"]


class Latch:
    """`set`, `clear`, `is_set` and `wait`, as `asyncio.Event` has them."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set it and wake every waiter."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Return once it is set (at once if it is)."""
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None


class Mutex:
    """`asyncio.Lock`'s semantics (Python 3.11): FIFO among waiters, a cancelled waiter passes
    its turn on; ``async with``, `acquire`, `release` and `locked`."""

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def locked(self) -> bool:
        return self._locked

    async def acquire(self) -> bool:
        """Wait until it is free, then take it."""
        waiters = self._waiters
        if not self._locked and (waiters is None or all(w.cancelled() for w in waiters)):
            self._locked = True
            return True
        if waiters is None:
            waiters = self._waiters = []
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            try:
                await waiter
            finally:
                waiters.remove(waiter)
                if not waiters and self._waiters is waiters:
                    self._waiters = None
        except asyncio.CancelledError:
            if not self._locked:
                self._wake_up_first()
            raise
        self._locked = True
        return True

    def release(self) -> None:
        """Free it, letting the first waiter take it.

        Raises:
            RuntimeError: it is not taken.
        """
        if not self._locked:
            raise RuntimeError("Lock is not acquired.")
        self._locked = False
        self._wake_up_first()

    def _wake_up_first(self) -> None:
        if self._waiters:
            first = self._waiters[0]
            if not first.done():
                first.set_result(None)

    async def __aenter__(self) -> None:
        if not self._locked and self._waiters is None:  # the usual case: no coroutine more
            self._locked = True
            return
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
