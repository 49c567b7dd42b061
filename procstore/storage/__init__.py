"""Persistent storage for procedures and executions.

``Backend`` is the interface the runtime writes through; ``SQLiteBackend`` is the
embedded implementation (one database file, WAL mode, one writer connection).
"""

from __future__ import annotations

from procstore.storage.base import (
    QUARANTINED,
    RUNNING,
    Backend,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)
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
    "ExecutionSummary",
    "SQLiteBackend",
    "StoredExecution",
    "StoredProcedure",
    "WriteStats",
]
