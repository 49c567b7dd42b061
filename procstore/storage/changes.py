"""``ChangeSignal``: how a backend answers ``Backend.wait_for_change``, whatever tells it that the
database changed (a write in memory, SQLite's ``PRAGMA data_version``, a PostgreSQL ``NOTIFY``).

It counts the changes noticed (the count is the *marker* callers get back) and wakes whoever
waits for the next one. Waiting compares markers, not moments: a change noticed between a
caller's two waits makes its second wait return at once (see ``Backend.wait_for_change``).
"""

from __future__ import annotations

import asyncio

__all__ = ["ChangeSignal"]


class ChangeSignal:
    """The changes one backend has noticed, and the tasks waiting for the next one.

    Attributes:
        marker: How many changes have been noticed so far.
    """

    def __init__(self) -> None:
        self.marker = 0
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def waiting(self) -> int:
        """How many tasks wait for a change now."""
        return len(self._waiters)

    def changed(self) -> None:
        """A change was noticed: count it and wake every waiter."""
        self.marker += 1
        self.wake()

    def wake(self) -> None:
        """Wake every waiter without counting a change (the backend is closing)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float, since: int) -> None:
        """Return once the marker differs from ``since`` (at once if it does), after ``wake``,
        or after ``timeout`` seconds."""
        if self.marker != since or timeout <= 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait([waiter], timeout=timeout)
        finally:
            self._waiters.discard(waiter)
            if not waiter.done():
                waiter.cancel()
