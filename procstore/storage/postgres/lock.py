"""The PostgreSQL backend's runner lock: one backend at a time, in any process on any machine,
runs a database's executions.

The lock is a PostgreSQL *session* advisory lock (``LOCK_NAMESPACE``, ``RUNNER_LOCK``), taken on
a connection of its own that the backend keeps open for as long as it holds the lock: the
server releases it when that connection ends, however it ends (``close``, the process killed,
the machine gone and its TCP connection timed out). The connection's ``application_name`` says
which process holds it (``procstore runner: process PID on HOST``), which the error of a backend
refused reads back from ``pg_stat_activity``.

Issue 12 replaces this single runner with workers that share a database's executions through
per-execution leases; until then, as on SQLite, one process runs them and any number read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Final

import asyncpg

from procstore.errors import StoreError
from procstore.storage.postgres.connections import DRIVER_ERRORS, Connection, connect
from procstore.storage.postgres.schema import LOCK_NAMESPACE, RUNNER_LOCK

__all__ = ["RunnerLock", "runner_held"]

_log = logging.getLogger("procstore")

_HOLDER_PREFIX: Final = "procstore runner: "
_NAME_BYTES: Final = 63  # PostgreSQL keeps the first 63 bytes of an application_name

# The application_name of the session that holds the lock in this database.
_HOLDER: Final = """
    SELECT a.application_name
      FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.database = (SELECT oid FROM pg_catalog.pg_database
                          WHERE datname = current_database())
       AND l.classid = $1::int::oid AND l.objid = $2::int::oid
"""


# Whether a session holds the lock in this database.
_HELD: Final = """
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
           AND l.database = (SELECT oid FROM pg_catalog.pg_database
                              WHERE datname = current_database())
           AND l.classid = $1::int::oid AND l.objid = $2::int::oid)
"""


class RunnerLock:
    """The runner lock of one database, held on its own connection until ``release``."""

    def __init__(self, where: str, connection: asyncpg.Connection) -> None:
        self._where = where
        self._connection = connection
        self._releasing = False
        connection.add_termination_listener(self._lost)

    @classmethod
    async def take(cls, url: str, where: str) -> RunnerLock:
        """Take the runner lock of the database at ``url``.

        Raises:
            StoreError: Another backend (of this process or another) holds it (the message
                names its process and host), or the server cannot be reached.
        """
        holder = f"process {os.getpid()} on {socket.gethostname()}"
        name = (_HOLDER_PREFIX + holder).encode()[:_NAME_BYTES].decode(errors="ignore")
        connection = await connect(url, where, server_settings={"application_name": name})
        try:
            taken = await connection.fetchval(
                "SELECT pg_try_advisory_lock($1::int, $2::int)", LOCK_NAMESPACE, RUNNER_LOCK
            )
            if not taken:
                other = await connection.fetchval(_HOLDER, LOCK_NAMESPACE, RUNNER_LOCK)
                raise StoreError(f"{where} is already used by {_process(other)} to run executions")
        except BaseException as exc:
            with contextlib.suppress(*DRIVER_ERRORS):
                await connection.close()
            if isinstance(exc, DRIVER_ERRORS):
                raise StoreError(f"cannot lock {where}: {exc}") from exc
            raise
        return cls(where, connection)

    async def release(self) -> None:
        """Release the lock (by closing its connection)."""
        self._releasing = True
        self._connection.remove_termination_listener(self._lost)
        with contextlib.suppress(*DRIVER_ERRORS):
            await self._connection.close()

    def _lost(self, connection: object) -> None:
        """The lock's connection ended without ``release``: the server released the lock."""
        if not self._releasing:
            _log.warning(
                "procstore lost the runner lock of %s (its connection ended): another process "
                "may start running the same executions",
                self._where,
            )


async def runner_held(connection: Connection) -> bool:
    """Whether a session holds the runner lock of the database ``connection`` is on (read from
    ``pg_locks``: nothing is taken)."""
    return bool(await connection.fetchval(_HELD, LOCK_NAMESPACE, RUNNER_LOCK))


def _process(application_name: object) -> str:
    """Who holds the lock, from its session's ``application_name``."""
    if isinstance(application_name, str) and application_name.startswith(_HOLDER_PREFIX):
        return application_name[len(_HOLDER_PREFIX) :]
    return "process (unknown pid)"
