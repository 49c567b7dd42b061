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
* ``lock``: the runner lock (one process runs a database's executions), a session advisory lock.

It runs one process's executions as the SQLite backend does; issue 12 adds workers that share
them (leases and fencing on the ``executions`` rows) and clients that drive them from outside.
Importing this package needs asyncpg; ``procstore.store`` imports it only for a
``postgresql://`` URL.
"""

from __future__ import annotations

from procstore.storage.postgres.backend import PostgresBackend
from procstore.storage.postgres.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresBackend"]
