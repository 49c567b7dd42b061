"""How the PostgreSQL backend connects: the connection pool, the runner lock's own connection,
and a failure to connect as one ``StoreError`` line that says where (as
``procstore.storage.urls.describe_postgres`` names it) and why.
"""

from __future__ import annotations

import socket
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from procstore.errors import StoreError

__all__ = [
    "CLOSE_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "DRIVER_ERRORS",
    "POOL_SIZE",
    "Connection",
    "connect",
    "failure",
    "open_pool",
]

POOL_SIZE: Final = 10
"""Most connections one backend opens for its reads and writes (its runner lock holds one more).
The pool starts with one and grows as commits overlap: ten let the commits of many executions
proceed at once, and leave room for a few dozen processes in PostgreSQL's default
``max_connections`` (100)."""

CONNECT_TIMEOUT_S: Final = 10.0
"""How long connecting (to a server that does not answer) may take before opening fails."""

CLOSE_TIMEOUT_S: Final = 10.0
"""How long closing waits for queries in flight to finish before it cuts their connections."""

DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What asyncpg raises when the server refuses something or cannot be reached (its
``InternalClientError``: a query on a connection the server cut in the middle of another)."""

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one of the pool's: both answer the same queries."""


def failure(where: str, exc: BaseException) -> StoreError:
    """The ``StoreError`` for ``exc``, raised while connecting to ``where``: one line that
    names the database and the cause."""
    if isinstance(exc, ConnectionRefusedError):
        cause = "connection refused: is the server running and listening there?"
    elif isinstance(exc, socket.gaierror):
        cause = f"the host name cannot be resolved ({exc.strerror})"
    elif isinstance(exc, TimeoutError):
        cause = f"no answer within {CONNECT_TIMEOUT_S:g} s"
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        cause = f"{exc} (create it, e.g. with createdb, or name another one)"
    else:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(f"cannot connect to {where}: {cause}")


async def connect(
    url: str, where: str, *, server_settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    """A connection of its own to ``url`` (the runner lock's)."""
    try:
        return await asyncpg.connect(
            url, timeout=CONNECT_TIMEOUT_S, server_settings=server_settings
        )
    except (*DRIVER_ERRORS, ValueError) as exc:  # ValueError: a URL asyncpg cannot parse
        raise failure(where, exc) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, beyond rolling back a transaction left
    open: nothing. asyncpg's default sends ``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL`` and
    unlocks advisory locks, one more round trip per statement (a fifth of a worker's
    throughput); procstore's statements leave no session state behind (its ``LISTEN`` has a
    connection of its own, and its only advisory lock is a transaction's)."""


async def open_pool(url: str, where: str, *, read_only: bool) -> asyncpg.Pool:
    """The pool of a backend's reads and writes; a read-only one's transactions are read-only
    on the server too (``default_transaction_read_only``)."""
    settings = {"default_transaction_read_only": "on"} if read_only else {}
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            timeout=CONNECT_TIMEOUT_S,
            server_settings=settings,
            reset=_keep_session,
        )
    except (*DRIVER_ERRORS, ValueError) as exc:
        raise failure(where, exc) from exc
    assert pool is not None  # create_pool returns None only when it is not awaited
    return pool
