"""The store a command uses (``--db URL``): its file, and opening and closing it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from procstore import ProcedureStore
from procstore.cli.exits import CommandError, ExitCode
from procstore.cli.hostcode import HostCode
from procstore.store import sqlite_path


def db_file(db: str) -> Path:
    """The database file of ``--db URL``: how every message names the store (the library's
    errors name it so too); a suggested command repeats the URL instead."""
    return sqlite_path(db)


@asynccontextmanager
async def open_store(
    db: str,
    *,
    code: HostCode | None = None,
    read_only: bool = False,
    missing: str | None = None,
) -> AsyncIterator[ProcedureStore]:
    """Open the store at ``db`` and close it afterwards (running executions detach and stay
    ``running`` in the database).

    Args:
        code: The host code its actions may use (``run``, ``resume``); none without it.
        missing: For read-only use: when the database file does not exist, end the command
            with exit 4 and this message instead of an error about the file.
    """
    if read_only and missing is not None and not db_file(db).exists():
        raise CommandError(ExitCode.NOT_FOUND, f"error: {missing}: no database at {db_file(db)}")
    store = code.store(db) if code is not None else ProcedureStore(db, read_only=read_only)
    try:
        await store.open()
        yield store
    finally:
        await store.close()
