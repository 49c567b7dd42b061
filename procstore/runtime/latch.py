"""A latch: what `asyncio.Event` offers an execution, at a fraction of its memory.

An execution holds one for its end (`Run.finished`: set when it finishes, cleared by a reset,
awaited by `run_to_completion`) for its whole life, and most executions are never awaited.
`asyncio.Event` allocates a deque for its waiters up front (~760 bytes, more than a bare
``transitions`` model); a `Latch` has a list only while someone waits.
"""

from __future__ import annotations

import asyncio

__all__ = ["Latch"]


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
