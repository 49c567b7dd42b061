"""How the PostgreSQL backend hears what other processes commit, for
``Backend.wait_for_change``: ``LISTEN`` on ``CHANGE_CHANNEL``, on a connection of its own.

The writes others may wait for notify the channel in their own transaction (see
``procstore.storage.postgres.writes``); the server delivers each notification when that
transaction commits. The listening connection is opened by the first wait, so a store that
never waits holds no extra connection; a change is counted for every notification (a
``ChangeSignal``). When the connection is lost, notifications sent meanwhile are lost with it:
the loss counts as a change (waiters wake and read again), and the next wait connects anew.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from procstore.errors import StoreError
from procstore.storage.changes import ChangeSignal
from procstore.storage.postgres.connections import DRIVER_ERRORS, connect
from procstore.storage.postgres.schema import CHANGE_CHANNEL

__all__ = ["Listener"]


class Listener:
    """``wait_for_change`` of one PostgreSQL backend."""

    def __init__(self, url: str, where: str) -> None:
        self._url = url
        self._where = where
        self._signal = ChangeSignal()
        self._connection: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()

    async def wait(self, timeout: float, since: int | None) -> int:
        """``Backend.wait_for_change``.

        Raises:
            StoreError: The server cannot be reached to listen.
        """
        await self._listening()
        if since is None:
            since = self._signal.marker
        await self._signal.wait(timeout, since)
        return self._signal.marker

    async def close(self) -> None:
        """Stop listening and wake the waiters (they find the backend closed)."""
        connection, self._connection = self._connection, None
        self._signal.wake()
        if connection is not None:
            connection.remove_termination_listener(self._lost)
            with contextlib.suppress(*DRIVER_ERRORS):
                await connection.close()

    async def _listening(self) -> None:
        """Connect and ``LISTEN``, unless that is done. Changes committed before the first
        ``LISTEN`` (or while the connection was lost) were not heard: connecting counts as a
        change, so a waiter whose marker is older reads again at once."""
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return
            connection = await connect(self._url, self._where)
            try:
                await connection.add_listener(CHANGE_CHANNEL, self._heard)
            except BaseException as exc:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await connection.close()
                if isinstance(exc, DRIVER_ERRORS):
                    raise StoreError(f"cannot listen on {self._where}: {exc}") from exc
                raise
            connection.add_termination_listener(self._lost)
            self._connection = connection
            self._signal.changed()

    def _heard(self, connection: object, pid: int, channel: str, payload: object) -> None:
        self._signal.changed()

    def _lost(self, connection: object) -> None:
        self._connection = None
        self._signal.changed()
