"""The embedded SQLite backend: one database file, WAL mode, one writer connection.

``SQLiteBackend`` (``backend``) assembles it from one module per concern:

* ``schema``: the tables (its docstring describes the file), the migrations that create and
  upgrade them, the application id, and the inspection that recognises a procstore database,
  and refuses anything else unchanged, before SQLite writes a byte to it;
* ``connections``: how each connection is opened (on a daemon thread), and read-only;
* ``threaded``: the writer connection, called with whole functions (a transaction is one
  round trip to its thread);
* ``writer``: the group-commit writer, which every write goes through;
* ``reads``: the read-only connection and the decoding of what is stored;
* ``lock``: the runner lock (one process runs a database's executions), an ``flock`` on the
  database file, and the per-process registry of open files it needs.
"""

from __future__ import annotations

from procstore.storage.sqlite.backend import SQLiteBackend
from procstore.storage.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from procstore.storage.sqlite.writer import MAX_BATCH, WriteStats
from procstore.storage.values import canonical_version

__all__ = [
    "APPLICATION_ID",
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteBackend",
    "WriteStats",
    "canonical_version",
]
