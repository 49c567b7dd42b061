"""How the SQLite backend notices what other connections commit, for
``Backend.wait_for_change``: ``PRAGMA data_version``.

SQLite has no notification between processes. ``PRAGMA data_version`` is the cheap question
it offers instead: a number that changes whenever *another* connection commits. It is asked
on the backend's writer connection, so that the backend's own commits do not count (a runner
committing its steps does not wake its own inbox reader), or on the read connection of a
read-only backend (which has no writer). While a task waits, the watcher asks every
``CHANGE_POLL_S`` seconds (one query of a few microseconds, on that connection's thread) and
counts each change it sees in a ``ChangeSignal``; when nobody waits it asks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Final

import aiosqlite

from procstore.errors import StoreError
from procstore.storage.changes import ChangeSignal

__all__ = ["CHANGE_POLL_S", "ChangeWatcher"]

CHANGE_POLL_S: Final = 0.01
"""How often, in seconds, a waiting backend asks SQLite whether another connection committed:
the pickup delay of a command another process posts is at most this, plus the time to read it
(``procstore send`` to the runner: a few milliseconds on average)."""


class ChangeWatcher:
    """``wait_for_change`` of one SQLite backend, asking ``db`` (see the module's docstring).

    Args:
        path: The database file, for messages.
        db: The connection to ask.
    """

    def __init__(self, path: str, db: aiosqlite.Connection) -> None:
        self._path = path
        self._db = db
        self._signal = ChangeSignal()
        self._version: int | None = None  # data_version when last looked at
        self._looking = asyncio.Lock()  # one look at a time, so versions are compared in order
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, timeout: float, since: int | None) -> int:
        """``Backend.wait_for_change``: look once (a change since the last look counts at
        once), then wait for the poller to see one."""
        await self._look()
        if since is None:
            since = self._signal.marker
        if self._signal.marker == since and timeout > 0:
            self._start_polling()
            await self._signal.wait(timeout, since)
        return self._signal.marker

    def close(self) -> None:
        """Stop polling and wake the waiters (they find the backend closed)."""
        if self._poller is not None:
            self._poller.cancel()
        self._signal.wake()

    async def _look(self) -> None:
        async with self._looking:
            try:
                rows = list(await self._db.execute_fetchall("PRAGMA data_version"))
            except (sqlite3.Error, ValueError) as exc:  # ValueError: the connection is closed
                raise StoreError(f"cannot read {self._path}: {exc}") from exc
            version = int(rows[0][0])
            if self._version is not None and version != self._version:
                self._signal.changed()
            self._version = version

    def _start_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """Look every ``CHANGE_POLL_S`` while someone waits."""
        with contextlib.suppress(StoreError):  # closed, or unreadable: the waiters find out
            while self._signal.waiting:
                await asyncio.sleep(CHANGE_POLL_S)
                await self._look()
