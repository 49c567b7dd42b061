"""The SQLite backend's connections: how each is opened (on a daemon thread, with a busy
timeout), the writer (a ``ThreadedConnection``), the read-only one that works without write
access, and where the write-ahead log is.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from typing import Final

import aiosqlite

from procstore.errors import StoreError
from procstore.storage.sqlite.threaded import ThreadedConnection

__all__ = [
    "BUSY_TIMEOUT_MS",
    "connect",
    "connect_read_only",
    "connect_writer",
    "open_connection",
    "wal_path",
]

BUSY_TIMEOUT_MS: Final = 5_000
"""How long a connection waits for another process's lock on the file before failing."""


def _uri(path: str, **parameters: str) -> str:
    quoted = urllib.parse.quote(os.path.abspath(path))
    return f"file:{quoted}?{urllib.parse.urlencode(parameters)}"


async def open_connection(path: str, **parameters: str) -> aiosqlite.Connection:
    """``aiosqlite.connect`` to ``path`` with URI ``parameters``, on a daemon thread.

    aiosqlite (since 0.22) runs each connection on a non-daemon thread that ends only when the
    connection is closed, so a program that dies with a store open (an exception outside
    ``async with``) would never exit and never be restarted by its supervisor. A daemon thread
    lets the interpreter exit; for the database that is the same as the process being killed,
    which the write-ahead journal and SQLite's atomic commit are built for (a transaction in
    flight is rolled back). aiosqlite has no option for it (upstream declined one, issue #299),
    so the thread is marked before ``await`` starts it;
    tests/storage/test_crash_recovery.py::test_a_program_that_raises_with_its_store_open_exits
    notices if a new aiosqlite stops honouring it.
    """
    connection = aiosqlite.connect(_uri(path, **parameters), uri=True, isolation_level=None)
    thread = getattr(connection, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True
    return await connection


async def connect(path: str, **parameters: str) -> aiosqlite.Connection:
    """``open_connection``, with the busy timeout set and its failure as ``StoreError``."""
    try:
        db = await open_connection(path, **parameters)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        await db.close()
        raise
    return db


async def connect_writer(path: str) -> ThreadedConnection:
    """The writer connection (``mode=rwc``): a ``ThreadedConnection``, so that a transaction is
    one round trip to its thread; with the busy timeout, and its failure as ``StoreError``."""
    try:
        return await ThreadedConnection.open(_uri(path, mode="rwc"), timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc


async def connect_read_only(path: str) -> aiosqlite.Connection:
    """The connection of a read-only backend: ``mode=ro``, or ``immutable`` where that fails.

    SQLite reads a WAL database through its ``-shm`` file, which it creates beside the
    database. On a read-only file system, or in a directory this process cannot write, it
    cannot, and every read fails. If there is no ``-wal`` either, no process has the database
    open, and the file alone is the whole database: it is read as ``immutable`` (no lock, no
    side file), as it is when opened; a process that starts writing it later is not seen.
    """
    db = await connect(path, mode="ro")
    try:
        await db.execute_fetchall("SELECT count(*) FROM sqlite_schema")
        return db
    except sqlite3.Error as exc:
        await db.close()
        if os.path.exists(wal_path(path)):
            raise StoreError(f"cannot read {path}: {exc}") from exc
    return await connect(path, mode="ro", immutable="1")


def wal_path(path: str) -> str:
    """Where SQLite keeps the database's write-ahead log: beside the file a symlink leads to."""
    return f"{os.path.realpath(path)}-wal"
