"""The PostgreSQL backend's schema: its migrations, and the inspection that recognises a
procstore database (and refuses anybody else's, unchanged) before anything is written to it.

Layout (schema version 3; see ``MIGRATIONS``), in the connection's current schema (the first
of its ``search_path`` that exists, ``public`` by default):

* ``meta(key, value)``: ``application`` is ``procstore`` (``APPLICATION``: what marks the
  database as procstore's, as SQLite's ``application_id`` does a file); ``schema_version`` the
  last migration applied.
* ``procedures(seq, name, version, canonical_version, document, saved_at)``: the registry, in
  insertion order, one row per ``(name, canonical_version)``.
* ``executions(seq, id, procedure, version, status, snapshot, journal_length, created_at,
  updated_at, quarantine_reason)``: one row per execution; ``snapshot`` is replaced on every
  commit; ``journal_length`` is the seq of its last journal record, so that a commit numbers
  the records it appends under the lock of the row it updates.
* ``journal(execution_id, seq, record)``: the append-only history, seq 1, 2, ... per execution.
* ``inbox(id, execution_id, kind, payload, posted_at)``: the commands clients post for whoever
  runs the executions (``procstore.storage.base.Command``). ``id`` is an identity, never reused;
  a command is inserted under a lock of its execution's row, so the commands of one execution
  get ids in the order they commit (concurrent transactions may commit the commands of
  *different* executions out of id order).

Every change others may wait for (a command posted, an execution created, a commit of a final
status, a quarantine) sends a ``NOTIFY`` on ``CHANGE_CHANNEL`` with the execution's id, in the
transaction that makes it (see ``procstore.storage.postgres.changes``).

Documents, snapshots and records are ``json`` columns, not ``jsonb``: ``json`` keeps the text it
is given, and procstore stores any Python string (a NUL character, a lone surrogate, which
``jsonb`` refuses) and gets its objects back with their keys in the order they were written
(``jsonb`` sorts them). PostgreSQL still checks that every value is JSON.

Schema 3 (the "leases" migration) lets several workers share the executions
(``procstore.storage.postgres.leases`` uses it):

* ``executions.lease_owner``, ``lease_expires_at``: the worker that holds the execution and
  until when (the server's clock); both ``NULL`` when nobody does. ``executions.fence``: the
  fencing token, one more on every claim; a commit is applied only with the token of the
  claim it was made under.
* ``claims(execution_id, fence, owner, previous_owner, claimed_at)``: the lease history, one
  row per claim (``previous_owner`` is set when the claim took the execution over from a worker
  whose lease had expired).
* The trigger ``executions_runnable`` sends a notification on ``RUNNABLE_CHANNEL`` whenever a
  row is running and held by nobody (created by a client, or released by a worker that
  stopped), so that idle workers claim it at once.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from procstore.errors import StoreError
from procstore.storage.base import RUNNING
from procstore.storage.postgres.connections import DRIVER_ERRORS, Connection

__all__ = [
    "APPLICATION",
    "CHANGE_CHANNEL",
    "LOCK_NAMESPACE",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "RUNNABLE_CHANNEL",
    "SCHEMA_VERSION",
    "check_readable",
    "inspect",
    "migrate",
    "not_procstore",
]

APPLICATION: Final = "procstore"
"""The value of the ``application`` row of ``meta`` in every procstore database."""

LOCK_NAMESPACE: Final = 0x50535452
"""The first key of procstore's advisory locks (``PSTR``, SQLite's ``APPLICATION_ID``)."""

CHANGE_CHANNEL: Final = "procstore_change"
"""The ``LISTEN``/``NOTIFY`` channel of a procstore database (channels are per database)."""

MIGRATION_LOCK: Final = 0
"""Second key of the transaction lock that serialises creating and migrating the schema."""

RUNNABLE_CHANNEL: Final = "procstore_runnable"
"""The ``LISTEN``/``NOTIFY`` channel on which the database says that an execution is running and
held by no worker (the trigger of migration 3 sends it); idle workers listen to it."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the registry, executions and their journal.
    """
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );

    CREATE TABLE procedures (
        seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name              text NOT NULL,
        version           text NOT NULL,
        canonical_version text NOT NULL,
        document          json NOT NULL,
        saved_at          timestamptz NOT NULL,
        UNIQUE (name, canonical_version)
    );

    CREATE TABLE executions (
        seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id                text NOT NULL UNIQUE,
        procedure         text NOT NULL,
        version           text NOT NULL,
        status            text NOT NULL,
        snapshot          json NOT NULL,
        journal_length    integer NOT NULL CHECK (journal_length >= 0),
        created_at        timestamptz NOT NULL,
        updated_at        timestamptz NOT NULL,
        quarantine_reason text
    );
    CREATE INDEX executions_by_status ON executions (status, seq);
    CREATE INDEX executions_by_procedure ON executions (procedure, seq);

    CREATE TABLE journal (
        execution_id text NOT NULL REFERENCES executions (id),
        seq          integer NOT NULL CHECK (seq >= 1),
        record       json NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    """,
    # 2: the inbox of commands that clients post for whoever runs the executions.
    """
    CREATE TABLE inbox (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        execution_id text NOT NULL REFERENCES executions (id),
        kind         text NOT NULL,
        payload      json NOT NULL,
        posted_at    timestamptz NOT NULL
    );
    CREATE INDEX inbox_by_execution ON inbox (execution_id, id);
    """,
    # 3 (issue 12, "leases": workers sharing executions): lease columns, the fencing token,
    # the lease history and the notification of runnable executions. It depends on nothing
    # of migration 2 (the inbox).
    f"""
    ALTER TABLE executions
        ADD COLUMN lease_owner      text,
        ADD COLUMN lease_expires_at timestamptz,
        ADD COLUMN fence            bigint NOT NULL DEFAULT 0 CHECK (fence >= 0),
        ADD CONSTRAINT executions_lease_whole
            CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL));

    CREATE TABLE claims (
        execution_id   text NOT NULL REFERENCES executions (id),
        fence          bigint NOT NULL,
        owner          text NOT NULL,
        previous_owner text,
        claimed_at     timestamptz NOT NULL,
        PRIMARY KEY (execution_id, fence)
    );

    CREATE FUNCTION procstore_notify_runnable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{RUNNABLE_CHANNEL}', '');
        RETURN NULL;
    END
    $$;

    CREATE TRIGGER executions_runnable
        AFTER INSERT OR UPDATE OF lease_owner ON executions
        FOR EACH ROW WHEN (NEW.status = '{RUNNING}' AND NEW.lease_owner IS NULL)
        EXECUTE FUNCTION procstore_notify_runnable();
    """,
)
"""Schema migrations: ``MIGRATIONS[n - 1]`` turns schema ``n - 1`` into schema ``n``.

Append new scripts; never edit a released one. Each is applied inside the transaction that
also records the new schema version, so a failed migration leaves the database as it was.
"""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this procstore writes (the number of migrations)."""

# The tables, views, sequences... of the current schema, but those an extension installed and
# the sequences of identity columns (which belong to their table).
_RELATIONS: Final = """
    SELECT c.relname FROM pg_catalog.pg_class c
     WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace
                              WHERE nspname = current_schema())
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_depend d
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
               AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
     ORDER BY c.relname
"""

_SHOWN_TABLES: Final = 5  # how many of a foreign database's tables the error names


def not_procstore(where: str, reason: str) -> StoreError:
    """The error that refuses a database that is not procstore's, saying why."""
    return StoreError(f"{where} is not a procstore database ({reason})")


def check_readable(where: str, version: int | None) -> None:
    """Refuse to open read-only a database (of schema ``version``, from ``inspect``) that a
    read-only backend cannot use as it is: an empty one, or one that needs migrating."""
    if version is None:
        raise StoreError(f"{where} is not a procstore database yet: nothing to read")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"{where} has schema {version} and needs migrating to schema "
            f"{SCHEMA_VERSION}: open it once without read_only"
        )


async def inspect(db: Connection, where: str) -> int | None:
    """Return the schema version of the procstore database ``db`` is connected to, reading only.

    Returns:
        ``None`` when its current schema holds nothing (it is initialised); otherwise the
        stored schema version.

    Raises:
        StoreError: The database is not procstore's (other tables, or a ``meta`` table that is
            not procstore's), was written by a newer procstore, has no schema to use, or
            cannot be read.
    """
    try:
        schema = await db.fetchval("SELECT current_schema()")
        if schema is None:
            raise StoreError(
                f"{where} has no schema for procstore's tables: no schema of its search_path "
                "exists (create one, or set search_path to an existing one)"
            )
        names = [row[0] for row in await db.fetch(_RELATIONS)]
        if not names:
            return None
        if "meta" not in names:
            raise _foreign(where, names)
        try:
            # A savepoint: inside migrate's transaction, a failure must not abort it.
            async with db.transaction():
                rows = await db.fetch(
                    "SELECT key, value FROM meta WHERE key IN ('application', 'schema_version')"
                )
        except asyncpg.PostgresError:  # a meta table with other columns
            raise _foreign(where, names) from None
    except DRIVER_ERRORS as exc:
        raise StoreError(f"cannot read {where}: {exc}") from exc
    meta = {str(key): str(value) for key, value in rows}
    if meta.get("application") != APPLICATION:
        raise _foreign(where, names)
    version = meta.get("schema_version")
    if version is None or not version.isdigit() or int(version) < 1:
        raise not_procstore(where, f"no valid schema version in its meta table: {version!r}")
    if int(version) > SCHEMA_VERSION:
        raise StoreError(
            f"{where} was written by a newer procstore (schema {int(version)}); "
            f"this one knows up to {SCHEMA_VERSION}"
        )
    return int(version)


def _foreign(where: str, names: list[str]) -> StoreError:
    shown = ", ".join(names[:_SHOWN_TABLES]) + (", ..." if len(names) > _SHOWN_TABLES else "")
    return not_procstore(where, f"a PostgreSQL database with other tables: {shown}")


async def migrate(db: Connection, where: str) -> None:
    """Bring the database up to the latest schema in one transaction (initialise it if empty).

    The transaction holds an advisory lock (``MIGRATION_LOCK``), so that processes opening the
    same database at once migrate it once; each checks the database again under it.

    Raises:
        StoreError: The database is not procstore's, is newer, or the migration failed (e.g.
            the user may not create tables); it is left as it was.
    """
    current: int | None = None
    try:
        async with db.transaction():
            await db.execute(
                "SELECT pg_advisory_xact_lock($1::int, $2::int)", LOCK_NAMESPACE, MIGRATION_LOCK
            )
            current = await inspect(db, where) or 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                await db.execute(MIGRATIONS[version - 1])
            if current < SCHEMA_VERSION:
                await db.executemany(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION))],
                )
    except DRIVER_ERRORS as exc:
        if current is None:
            raise StoreError(f"cannot open {where}: {exc}") from exc
        if current == 0:
            raise StoreError(f"cannot create procstore's tables in {where}: {exc}") from exc
        raise StoreError(
            f"cannot migrate {where} from schema {current} to {SCHEMA_VERSION}: {exc}"
        ) from exc
