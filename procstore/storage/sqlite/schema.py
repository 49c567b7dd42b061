"""The SQLite backend's schema: its migrations, its application id, and the inspection that
recognises a procstore database before anything is written to it.

Layout of the file (schema version 4; see ``MIGRATIONS``):

* ``meta(key, value)``: ``schema_version`` is the last migration applied; ``runner_pid`` the
  pid of the last process that took the runner lock (for error messages). The file header's
  ``PRAGMA application_id`` is ``APPLICATION_ID``, so a procstore database is recognised
  (and anybody else's rejected) before anything in it is read or written.
* ``procedures(seq, name, version, document, saved_at, canonical_version)``: the registry, in
  insertion order. ``canonical_version`` is the version in canonical form
  (``canonical_version``: ``1.0`` and ``1.0.0`` are both ``1``), unique per name, so that one
  version is stored under one spelling; it is ``NULL`` only for an alias that schema 1 let in
  after the first spelling (kept for inspection, never loaded).
* ``executions(seq, id, procedure, version, status, snapshot, created_at, updated_at,
  quarantine_reason)``: one row per execution; ``snapshot`` is replaced on every commit;
  ``quarantine_reason`` says why an execution that cannot be restored has the status
  ``quarantined`` (``NULL`` for every other).
* ``journal(execution_id, seq, record)``: the append-only history, seq 1, 2, ... per execution.
* ``inbox(id, execution_id, kind, payload, posted_at)``: the commands clients post for the runner
  (``procstore.storage.base.Command``). ``id`` is ``AUTOINCREMENT``: never reused, even after the
  newest command is deleted, so an applied id never comes back as a new command's. SQLite
  commits one write transaction at a time, so ids follow the commit order of every command.

Opening checks the file before SQLite writes anything to it (``inspect``): the header is read
through the process's descriptor of the file (see ``lock.OpenFile``), then the schema and the
integrity of every page (``PRAGMA quick_check``) with a read-only (and, when no ``-wal`` file
exists, ``immutable``) connection, so a file that is not a procstore database, or a damaged
one, is left byte-for-byte unchanged and gets no ``-wal``/``-shm`` side files.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Final

import aiosqlite

from procstore.errors import StoreError
from procstore.storage.sqlite.connections import open_connection, wal_path
from procstore.storage.sqlite.threaded import ThreadedConnection
from procstore.storage.values import canonical_version

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "check_readable",
    "configure_writer",
    "inspect",
    "migrate",
    "not_procstore",
    "statements",
]

APPLICATION_ID: Final = 0x50535452
"""``PRAGMA application_id`` of every procstore database (the ASCII bytes ``PSTR``)."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the registry, executions and their journal.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE procedures (
        seq      INTEGER PRIMARY KEY,
        name     TEXT NOT NULL,
        version  TEXT NOT NULL,
        document TEXT NOT NULL,
        saved_at TEXT NOT NULL,
        UNIQUE (name, version)
    );

    CREATE TABLE executions (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        procedure  TEXT NOT NULL,
        version    TEXT NOT NULL,
        status     TEXT NOT NULL,
        snapshot   TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX executions_by_status ON executions (status, seq);
    CREATE INDEX executions_by_procedure ON executions (procedure, seq);

    CREATE TABLE journal (
        execution_id TEXT NOT NULL REFERENCES executions (id),
        seq          INTEGER NOT NULL CHECK (seq >= 1),
        record       TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    """,
    # 2: why a quarantined execution (status 'quarantined') could not be restored.
    """
    ALTER TABLE executions ADD COLUMN quarantine_reason TEXT;
    """,
    # 3: one spelling per version (1.0 and 1.0.0 are one version). Of the spellings schema 1
    # let in, the first saved keeps the version; later ones keep a NULL canonical_version.
    """
    ALTER TABLE procedures ADD COLUMN canonical_version TEXT;

    UPDATE procedures SET canonical_version = procstore_canonical_version(version)
     WHERE seq = (
        SELECT min(first.seq) FROM procedures AS first
         WHERE first.name = procedures.name
           AND procstore_canonical_version(first.version)
               = procstore_canonical_version(procedures.version)
     );

    CREATE UNIQUE INDEX procedures_by_canonical_version
        ON procedures (name, canonical_version);
    """,
    # 4: the inbox of commands that clients post for the process that runs the executions.
    """
    CREATE TABLE inbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id TEXT NOT NULL REFERENCES executions (id),
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        posted_at    TEXT NOT NULL
    );
    CREATE INDEX inbox_by_execution ON inbox (execution_id, id);
    """,
)
"""Schema migrations: ``MIGRATIONS[n - 1]`` turns schema ``n - 1`` into schema ``n``.

Append new scripts; never edit a released one. Each is applied inside the transaction that
also records the new schema version, so a failed migration leaves the file as it was.
"""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this procstore writes (the number of migrations)."""

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100
_PAGE_SIZES: Final = frozenset({1, *(2**n for n in range(9, 16))})  # 1 stands for 65536


def check_readable(path: str, version: int | None) -> None:
    """Refuse to open read-only a database (of schema ``version``, from ``inspect``) that a
    read-only connection cannot use as it is: an empty one, or one that needs migrating."""
    if version is None:
        raise StoreError(f"{path} is not a procstore database yet: nothing to read")
    if version < len(MIGRATIONS):
        raise StoreError(
            f"{path} has schema {version} and needs migrating to schema "
            f"{len(MIGRATIONS)}: open it once without read_only"
        )


def not_procstore(path: str, reason: str) -> StoreError:
    """The error that refuses a file that is not a procstore database, saying why."""
    return StoreError(f"{path} is not a procstore database ({reason})")


async def inspect(path: str, fd: int) -> int | None:
    """Return the schema version of the procstore database at ``path`` without changing it.

    The header is read from ``fd`` (the process's descriptor of the file, see ``lock.OpenFile``);
    then a read-only connection (``immutable`` when no ``-wal`` exists, so SQLite takes no lock
    and creates no side file) reads the schema and, for a procstore database, runs ``PRAGMA
    quick_check`` over every page, so that a damaged file is refused here, before anything is
    written beside it, rather than by the first read that meets the damage.

    Returns:
        ``None`` for an empty (0-byte) file, or an SQLite database with nothing in it (both are
        initialised); otherwise the stored schema version.

    Raises:
        StoreError: The file is not a procstore database, was written by a newer procstore, or
            is damaged.
    """
    try:
        header = os.pread(fd, _HEADER_SIZE, 0)  # never open and close the file: see lock.OpenFile
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if not header:
        return None
    if len(header) < _HEADER_SIZE or not header.startswith(_SQLITE_MAGIC):
        raise not_procstore(path, "not an SQLite database file")
    page_size = int.from_bytes(header[16:18], "big")
    if page_size not in _PAGE_SIZES or header[21:24] != b"\x40\x20\x20":
        raise not_procstore(path, "corrupt: the SQLite file header is invalid")
    application_id = int.from_bytes(header[68:72], "big", signed=True)
    if application_id not in (0, APPLICATION_ID):
        raise not_procstore(path, f"another application's SQLite database: {application_id:#x}")
    # Without a -wal file the main file is the whole database: read it as immutable. With one,
    # committed data may still be in it, and the side files exist already.
    wal = wal_path(path)
    immutable = not os.path.exists(wal)
    try:
        return await _examine(path, immutable=immutable)
    except (sqlite3.Error, _Damaged) as exc:
        if not (immutable and os.path.exists(wal)):
            raise _inspection_error(path, exc) from exc
    # A process opened it and wrote meanwhile (an immutable read may then see a torn file):
    # read it again the ordinary way.
    try:
        return await _examine(path, immutable=False)
    except (sqlite3.Error, _Damaged) as exc:
        raise _inspection_error(path, exc) from exc


class _Damaged(Exception):
    """``PRAGMA quick_check`` found a problem (its first one is the message)."""


def _inspection_error(path: str, exc: Exception) -> StoreError:
    if isinstance(exc, _Damaged):
        return StoreError(
            f"{path} is damaged (PRAGMA quick_check: {exc}); it was left unchanged: restore it "
            "from a backup, or recover what is readable with the sqlite3 shell's .recover"
        )
    return not_procstore(path, f"unreadable: {exc}")


async def _examine(path: str, *, immutable: bool) -> int | None:
    """``_check_state`` of the file through a read-only connection, then its integrity."""
    parameters = {"mode": "ro", "immutable": "1"} if immutable else {"mode": "ro"}
    db = await open_connection(path, **parameters)
    try:
        version = _check_state(path, *await _read_state(db))
        if version is not None:
            # quick_check(1) stops at the first problem: one is enough to refuse the file.
            rows = list(await db.execute_fetchall("PRAGMA quick_check(1)"))
            if [tuple(row) for row in rows] != [("ok",)]:
                raise _Damaged(str(rows[0][0]) if rows else "no answer")
        return version
    finally:
        await db.close()


async def _read_state(db: aiosqlite.Connection | ThreadedConnection) -> tuple[int, int, str | None]:
    """Return ``(application_id, number of schema objects, stored schema_version)``."""
    (application_id,) = next(iter(await db.execute_fetchall("PRAGMA application_id")))
    (objects,) = next(iter(await db.execute_fetchall("SELECT count(*) FROM sqlite_schema")))
    version: str | None = None
    if await db.execute_fetchall(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'"
    ):
        rows = list(
            await db.execute_fetchall("SELECT value FROM meta WHERE key = 'schema_version'")
        )
        version = str(rows[0][0]) if rows else None
    return int(application_id), int(objects), version


def _check_state(path: str, application_id: int, objects: int, version: str | None) -> int | None:
    """Classify a database from ``_read_state``: ``None`` if empty, else its schema."""
    if application_id == 0 and objects == 0:
        return None
    if application_id != APPLICATION_ID:
        if application_id == 0:
            raise not_procstore(path, "an SQLite database with other tables")
        raise not_procstore(path, f"another application's SQLite database: {application_id:#x}")
    if version is None or not version.isdigit() or int(version) < 1:
        raise not_procstore(path, f"no valid schema version in its meta table: {version!r}")
    known = len(MIGRATIONS)
    if int(version) > known:
        raise StoreError(
            f"{path} was written by a newer procstore (schema {int(version)}); "
            f"this one knows up to {known}"
        )
    return int(version)


async def configure_writer(db: ThreadedConnection, path: str, synchronous: str) -> None:
    try:
        rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
        if str(rows[0][0]).lower() != "wal":
            raise StoreError(f"cannot use WAL mode on {path} (journal mode {rows[0][0]!r})")
        await db.execute(f"PRAGMA synchronous = {synchronous}")
        await db.execute("PRAGMA foreign_keys = ON")
        # For migration 3, which fills procedures.canonical_version.
        await db.create_function(
            "procstore_canonical_version", 1, canonical_version, deterministic=True
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc


def statements(script: str) -> list[str]:
    """Split an SQL script into statements (``executescript`` would commit the transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()!r}")
    return statements


async def migrate(db: ThreadedConnection, path: str) -> None:
    """Bring the database up to the latest schema in one transaction (initialise if empty)."""
    target = len(MIGRATIONS)
    current: int | None = None
    try:
        await db.execute("BEGIN IMMEDIATE")
        # Checked again under the write lock: another process may have initialised it since.
        current = _check_state(path, *await _read_state(db)) or 0
        for version in range(current + 1, target + 1):
            for statement in statements(MIGRATIONS[version - 1]):
                await db.execute(statement)
        if current < target:
            await db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(target),),
            )
        await db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            if current is None:
                raise StoreError(f"cannot open {path}: {exc}") from exc
            raise StoreError(
                f"cannot migrate {path} from schema {current} to {target}: {exc}"
            ) from exc
        raise
