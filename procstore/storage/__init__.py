"""Storage for procedures and executions.

``Backend`` is the interface a store writes through; ``SQLiteBackend`` is the embedded,
persistent implementation (one database file, WAL mode, one writer connection) and
``MemoryBackend`` the one of a store without a URL. ``PostgresBackend`` (one PostgreSQL
database) is in ``procstore.storage.postgres``, not imported here: it needs the optional
driver (``procstore[postgres]``).
"""

from __future__ import annotations

from procstore.storage.base import (
    QUARANTINED,
    RUNNING,
    Backend,
    Command,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
from procstore.storage.memory import MemoryBackend
from procstore.storage.sqlite import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteBackend,
    WriteStats,
)

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "QUARANTINED",
    "RUNNING",
    "SCHEMA_VERSION",
    "Backend",
    "Command",
    "ExecutionSummary",
    "MemoryBackend",
    "SQLiteBackend",
    "StoredExecution",
    "StoredProcedure",
    "WriteStats",
]
