"""The runtime: executions of compiled procedures (see `procstore.runtime.run` for how its
parts fit together)."""

from procstore.runtime.execution import Execution, restore_execution, start_execution
from procstore.runtime.journal import Journal

__all__ = ["Execution", "Journal", "restore_execution", "start_execution"]
