"""The PostgreSQL backend: one database on a server, through asyncpg (``procstore[postgres]``).

``PostgresBackend`` (``backend``) assembles it from one module per concern:

* ``connections``: the connection pool, and a failure to connect as one ``StoreError`` line
  (naming the database as ``procstore.storage.urls.describe_postgres`` does: never with its
  password);
* ``schema``: the tables (its docstring describes them), the migrations that create and upgrade
  them, and the inspection that recognises a procstore database, and refuses anything else
  unchanged, before anything is written to it;
* ``writes``: every write, each one statement and so one transaction;
* ``reads``: every read, each one statement, and the decoding of what is stored;
* ``leases``: the leases of a worker (claiming with ``FOR UPDATE SKIP LOCKED``, renewing,
  releasing, fencing tokens) and its ``LISTEN`` connection, through which it hears of new
  executions.

Any number of processes, on any number of machines, are workers of one database: each runs the
executions it holds a lease on (``procstore.worker`` runs the claim loop). Importing this package
needs asyncpg; ``procstore.store`` imports it only for a ``postgresql://`` URL.
"""

from __future__ import annotations

from procstore.storage.postgres.backend import PostgresBackend
from procstore.storage.postgres.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresBackend"]
