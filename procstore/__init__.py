"""procstore: declarative, versioned workflow procedures run on transitions' AsyncMachine.

The public API is what this module exports; everything else is an implementation detail.
"""

from procstore.definition import Procedure
from procstore.errors import (
    ActionFailed,
    ExecutionDamaged,
    ExecutionNotFound,
    InvalidEvent,
    InvalidProcedure,
    LeaseLost,
    Problem,
    ProcedureNotFound,
    ProcedureWarning,
    ProcstoreError,
    StoreError,
    Timeout,
    VersionConflict,
)
from procstore.outcome import ActionInfo, Event
from procstore.remote import RemoteExecution
from procstore.runtime import Execution
from procstore.snapshot import (
    ErrorInfo,
    ExecutionState,
    ExecutionSummary,
    HistoryRecord,
    RecordKind,
    Status,
)
from procstore.store import ProcedureStore

__all__ = [
    "ActionFailed",
    "ActionInfo",
    "ErrorInfo",
    "Event",
    "Execution",
    "ExecutionDamaged",
    "ExecutionNotFound",
    "ExecutionState",
    "ExecutionSummary",
    "HistoryRecord",
    "InvalidEvent",
    "InvalidProcedure",
    "LeaseLost",
    "Problem",
    "Procedure",
    "ProcedureNotFound",
    "ProcedureStore",
    "ProcedureWarning",
    "ProcstoreError",
    "RecordKind",
    "RemoteExecution",
    "Status",
    "StoreError",
    "Timeout",
    "VersionConflict",
]
__version__ = "0.1.0"
