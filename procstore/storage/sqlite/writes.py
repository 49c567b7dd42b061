"""The writes of the SQLite backend: one request type per kind of write, and how each is
applied inside the writer's open transaction (``procstore.storage.sqlite.writer``).

A write is applied alone (`apply_alone`: it succeeds, or is rejected before it changed
anything: an unknown execution, a taken id, a conflicting procedure version), or with the rest
of its batch, one statement per kind of row (`apply_together`: the fast path, which gives up
when the batch's order or contents do not allow it). ``where`` names the database in messages.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from procstore.errors import ExecutionNotFound, ProcstoreError, StoreError, VersionConflict
from procstore.storage.values import json_object

__all__ = [
    "Commit",
    "CreateExecution",
    "DeleteCommands",
    "PostCommand",
    "Quarantine",
    "SaveProcedure",
    "SetMeta",
    "Write",
    "apply_alone",
    "apply_together",
]

_INSERT_EXECUTION: Final = """
    INSERT INTO executions (id, procedure, version, status, snapshot, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO NOTHING
    RETURNING seq
"""
_INSERT_EXECUTION_STRICT: Final = """
    INSERT INTO executions (id, procedure, version, status, snapshot, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_UPDATE_EXECUTION_MANY: Final = (
    "UPDATE executions SET status = ?, snapshot = ?, updated_at = ? WHERE id = ?"
)
_UPDATE_EXECUTION: Final = """
    UPDATE executions SET status = ?, snapshot = ?, updated_at = ? WHERE id = ? RETURNING seq
"""
_INSERT_FIRST_RECORDS: Final = "INSERT INTO journal (execution_id, seq, record) VALUES (?, ?, ?)"
_APPEND_RECORD: Final = """
    INSERT INTO journal (execution_id, seq, record)
    VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM journal WHERE execution_id = ?1), ?2)
"""
_INSERT_PROCEDURE: Final = """
    INSERT INTO procedures (name, version, document, saved_at, canonical_version)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
    RETURNING seq
"""
_STORED_VERSION: Final = """
    SELECT version, document FROM procedures WHERE name = ? AND canonical_version = ?
"""
_SET_META: Final = """
    INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""
# A command for an execution that exists: no row (rejected) otherwise.
_POST_COMMAND: Final = """
    INSERT INTO inbox (execution_id, kind, payload, posted_at)
    SELECT id, ?2, ?3, ?4 FROM executions WHERE id = ?1
    RETURNING id
"""
_ANNOUNCE: Final = """
    INSERT INTO inbox (execution_id, kind, payload, posted_at) VALUES (?, 'start', '{}', ?)
"""
_DELETE_COMMAND: Final = "DELETE FROM inbox WHERE id = ?"
_QUARANTINE: Final = """
    UPDATE executions SET status = ?, quarantine_reason = ?, updated_at = ? WHERE id = ?
    RETURNING seq
"""


class _Rejected(Exception):
    """Raised while applying one write, before it changed anything, to fail only that write."""

    def __init__(self, error: ProcstoreError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class SaveProcedure:
    name: str
    version: str
    canonical: str  # canonical_version(version)
    document: str  # JSON
    saved_at: str
    future: asyncio.Future[None]


@dataclass(slots=True)
class CreateExecution:
    row: tuple[str, str, str, str, str, str, str]  # the columns of _INSERT_EXECUTION
    journal: list[tuple[str, int, str]]  # (execution_id, seq, record JSON)
    future: asyncio.Future[None]
    announce: bool = False  # post a start command for it too (Backend.create_execution)

    @property
    def execution_id(self) -> str:
        return self.row[0]


@dataclass(slots=True)
class Commit:
    row: tuple[str, str, str, str]  # (status, snapshot JSON, updated_at, execution_id)
    journal: list[tuple[str, str]]  # (execution_id, record JSON)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[3]


@dataclass(slots=True)
class SetMeta:
    key: str
    value: str
    future: asyncio.Future[None]


@dataclass(slots=True)
class Quarantine:
    row: tuple[str, str, str, str]  # (status, reason, updated_at, execution_id)
    future: asyncio.Future[None]

    @property
    def execution_id(self) -> str:
        return self.row[3]


@dataclass(slots=True)
class PostCommand:
    row: tuple[str, str, str, str]  # (execution_id, kind, payload JSON, posted_at)
    future: asyncio.Future[None]
    id: int = 0  # the command's id, once committed

    @property
    def execution_id(self) -> str:
        return self.row[0]


@dataclass(slots=True)
class DeleteCommands:
    ids: list[int]
    future: asyncio.Future[None]


Write = (
    SaveProcedure | CreateExecution | Commit | SetMeta | Quarantine | PostCommand | DeleteCommands
)


def apply_together(
    db: sqlite3.Connection, batch: list[Write], where: str
) -> list[ProcstoreError | None] | None:
    """Apply a batch with one statement per kind of row (the fast path).

    Creations are applied before commits, so this is only right when no commit in the batch
    precedes the creation of its execution, and it trusts that every commit's execution
    exists and no creation's id is taken. When that does not hold it returns ``None`` (the
    caller rolls back and applies the writes one by one); otherwise one outcome per write.
    """
    if not _creations_first(batch):
        return None
    outcomes = [
        apply_alone(db, w, where) if isinstance(w, SaveProcedure | SetMeta | Quarantine) else None
        for w in batch
    ]
    creates = [w for w in batch if isinstance(w, CreateExecution)]
    commits = [w for w in batch if isinstance(w, Commit)]
    if not _create_together(db, creates) or not _commit_together(db, commits):
        return None
    # Last: a command may be for an execution this batch creates.
    for i, write in enumerate(batch):
        if isinstance(write, PostCommand | DeleteCommands):
            outcomes[i] = apply_alone(db, write, where)
    return outcomes


def _save_procedure(db: sqlite3.Connection, write: SaveProcedure, where: str) -> None:
    """Insert a procedure version, unless it is stored (a no-op when it is stored with the
    same spelling and document); raise ``_Rejected`` otherwise."""
    name, version = write.name, write.version
    stored = list(db.execute(_STORED_VERSION, (name, write.canonical)).fetchall())
    if stored:
        spelling, document = stored[0]
        if spelling != version:
            raise _Rejected(
                VersionConflict(
                    f"procedure {name!r} version {version!r} is the same version as "
                    f"{spelling!r}, already stored in {where}: register it as "
                    f"{spelling!r}, or under a new version"
                )
            )
        problems: list[str] = []
        if json_object(document, "", problems) != json.loads(write.document) or problems:
            raise _Rejected(
                VersionConflict(
                    f"procedure {name!r} version {version!r} is already stored in "
                    f"{where} with different content"
                )
            )
        return
    parameters = (name, version, write.document, write.saved_at, write.canonical)
    if not db.execute(_INSERT_PROCEDURE, parameters).fetchall():
        # Only a row schema 1 let in holds this spelling: an alias that is never loaded.
        raise _Rejected(
            VersionConflict(
                f"procedure {name!r} version {version!r} is already stored in {where}"
                " as an alias of another spelling, and cannot be loaded: register it under"
                " a new version"
            )
        )


def apply_alone(db: sqlite3.Connection, write: Write, where: str) -> ProcstoreError | None:
    """Apply one write inside the open transaction; return why it was rejected, if it was."""
    try:
        _apply_alone_or_reject(db, write, where)
    except _Rejected as rejected:
        return rejected.error
    return None


def _apply_alone_or_reject(db: sqlite3.Connection, write: Write, where: str) -> None:
    """Apply one write, or raise ``_Rejected`` before changing anything."""
    if isinstance(write, SaveProcedure):
        _save_procedure(db, write, where)
    elif isinstance(write, SetMeta):
        db.execute(_SET_META, (write.key, write.value))
    elif isinstance(write, DeleteCommands):
        db.executemany(_DELETE_COMMAND, [(i,) for i in write.ids])
    elif isinstance(write, CreateExecution):
        _create(db, write, where)
    elif isinstance(write, PostCommand):
        rows = list(db.execute(_POST_COMMAND, write.row).fetchall())
        _found(rows, write.execution_id, where)
        write.id = int(rows[0][0])
    elif isinstance(write, Quarantine):
        _found(db.execute(_QUARANTINE, write.row).fetchall(), write.execution_id, where)
    else:
        _found(db.execute(_UPDATE_EXECUTION, write.row).fetchall(), write.execution_id, where)
        if write.journal:
            db.executemany(_APPEND_RECORD, write.journal)


def _create(db: sqlite3.Connection, write: CreateExecution, where: str) -> None:
    """Insert a new execution, its first records and (announced) its start command."""
    if not db.execute(_INSERT_EXECUTION, write.row).fetchall():
        raise _Rejected(StoreError(f"execution {write.execution_id!r} already exists in {where}"))
    if write.journal:
        db.executemany(_INSERT_FIRST_RECORDS, write.journal)
    if write.announce:
        db.execute(_ANNOUNCE, (write.execution_id, write.row[5]))


def _found(rows: Iterable[Any], execution_id: str, where: str) -> None:
    """Reject the write whose statement returned no ``rows``: its execution is unknown."""
    if not list(rows):
        raise _Rejected(ExecutionNotFound(f"no execution {execution_id!r} in {where}"))


def _create_together(db: sqlite3.Connection, creates: list[CreateExecution]) -> bool:
    """Insert the executions of ``creates`` with one statement per kind of row; ``False``
    when an id is taken (or a value is invalid): the batch is then applied write by write."""
    if not creates:
        return True
    try:
        db.executemany(_INSERT_EXECUTION_STRICT, [w.row for w in creates])
        first_records = [r for w in creates for r in w.journal]
        if first_records:
            db.executemany(_INSERT_FIRST_RECORDS, first_records)
        announced = [(w.execution_id, w.row[5]) for w in creates if w.announce]
        if announced:
            db.executemany(_ANNOUNCE, announced)
    except sqlite3.IntegrityError:
        return False
    return True


def _commit_together(db: sqlite3.Connection, commits: list[Commit]) -> bool:
    """Apply ``commits`` with one statement per kind of row; ``False`` when some execution does
    not exist: the batch is then applied write by write."""
    if not commits:
        return True
    cursor = db.executemany(_UPDATE_EXECUTION_MANY, [w.row for w in commits])
    if cursor.rowcount != len(commits):
        return False
    appended = [r for w in commits for r in w.journal]
    if appended:
        db.executemany(_APPEND_RECORD, appended)
    return True


def _creations_first(batch: list[Write]) -> bool:
    """Whether ``batch`` creates each execution at most once, and before any commit of it or
    command for it: then applying all its creations before all its commits and commands keeps
    their order."""
    created: set[str] = set()
    creating = {w.execution_id for w in batch if isinstance(w, CreateExecution)}
    for write in batch:
        if isinstance(write, CreateExecution):
            if write.execution_id in created:
                return False
            created.add(write.execution_id)
        elif (
            isinstance(write, Commit | PostCommand)
            and write.execution_id in creating
            and write.execution_id not in created
        ):
            return False
    return True
