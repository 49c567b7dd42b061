"""How the SQLite backend notices what other connections commit, for
``Backend.wait_for_change``: ``PRAGMA data_version``.

SQLite has no notification between processes. ``PRAGMA data_version`` is the cheap question
it offers instead: a number that changes whenever *another* connection commits. It is asked
on the backend's writer connection, so that the backend's own commits do not count (a runner
committing its steps does not wake its own inbox reader), or on the read connection of a
read-only backend (which has no writer). While a task waits, the watcher asks every
``CHANGE_POLL_S`` seconds (one query of a few microseconds, on that connection's thread), or
every ``QUIET_POLL_S`` once nothing has changed for ``QUIET_AFTER_S``, and counts each change
it sees in a ``ChangeSignal``; when nobody waits it asks nothing. On a small virtual machine
each wake-up of the event loop costs more than the query: an idle runner spends about 2% of a
core asking (perf/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Final

import aiosqlite

from procstore.errors import StoreError
from procstore.storage.changes import ChangeSignal
from procstore.storage.sqlite.threaded import ThreadedConnection

__all__ = ["CHANGE_POLL_S", "QUIET_AFTER_S", "QUIET_POLL_S", "ChangeWatcher"]

CHANGE_POLL_S: Final = 0.01
"""How often, in seconds, a waiting backend asks SQLite whether another connection committed,
while changes come: a command another process posts is noticed within this."""

QUIET_POLL_S: Final = 0.025
"""How often it asks once nothing has changed for ``QUIET_AFTER_S``: the first command after a
quiet spell is noticed within this (the issue asks for 50 ms, reading and applying included)."""

QUIET_AFTER_S: Final = 1.0
"""How long without a change before the watcher asks at the quiet pace."""


class ChangeWatcher:
    """``wait_for_change`` of one SQLite backend, asking ``db`` (see the module's docstring).

    Args:
        path: The database file, for messages.
        db: The connection to ask.
    """

    def __init__(self, path: str, db: aiosqlite.Connection | ThreadedConnection) -> None:
        self._path = path
        self._db = db
        self._signal = ChangeSignal()
        self._version: int | None = None  # data_version when last looked at
        self._looking = asyncio.Lock()  # one look at a time, so versions are compared in order
        self._poller: asyncio.Task[None] | None = None
        self._changed_at = 0.0  # the event loop's time of the last change seen

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
                self._changed_at = asyncio.get_running_loop().time()
                self._signal.changed()
            self._version = version

    def _start_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """Look every ``CHANGE_POLL_S`` (``QUIET_POLL_S`` when quiet) while someone waits."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(StoreError):  # closed, or unreadable: the waiters find out
            while self._signal.waiting:
                quiet = loop.time() - self._changed_at > QUIET_AFTER_S
                await asyncio.sleep(QUIET_POLL_S if quiet else CHANGE_POLL_S)
                await self._look()
