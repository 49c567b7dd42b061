"""The store a command uses (``--db URL``): its file (none for a PostgreSQL database), how
messages name it, and opening and closing it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from procstore import ProcedureStore
from procstore.cli.exits import CommandError, ExitCode
from procstore.cli.hostcode import HostCode
from procstore.storage.urls import describe_postgres, is_postgres_url
from procstore.store import sqlite_path


def db_name(db: str) -> str:
    """How every message names the store of ``--db URL`` (the library's errors name it so too):
    its file, or ``postgresql://host:port/dbname``; a suggested command repeats the URL
    instead."""
    return describe_postgres(db) if is_postgres_url(db) else str(sqlite_path(db))


def db_missing(db: str) -> bool:
    """Whether ``--db URL`` names an SQLite file that does not exist yet (nothing stored, and
    a read-only command must not create it). A PostgreSQL database is never missing here:
    opening it says whether it exists."""
    return not is_postgres_url(db) and not sqlite_path(db).exists()


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
    if read_only and missing is not None and db_missing(db):
        raise CommandError(ExitCode.NOT_FOUND, f"error: {missing}: no database at {db_name(db)}")
    # run and resume run the executions they start or resume, and claim nothing else: on
    # PostgreSQL that is `procstore worker`'s job.
    store = (
        code.store(db, concurrency=0)
        if code is not None
        else ProcedureStore(db, read_only=read_only)
    )
    try:
        await store.open()
        yield store
    finally:
        await store.close()
