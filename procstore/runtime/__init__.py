"""The runtime: executions of compiled procedures (see `procstore.runtime.run` for how its
parts fit together)."""

from procstore.runtime.execution import (
    Execution,
    awaken,
    drop,
    hibernate,
    is_busy,
    is_parked,
    restore_execution,
    start_execution,
    wind_down,
)
from procstore.runtime.journal import Journal

__all__ = [
    "Execution",
    "Journal",
    "awaken",
    "drop",
    "hibernate",
    "is_busy",
    "is_parked",
    "restore_execution",
    "start_execution",
    "wind_down",
]
