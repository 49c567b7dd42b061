"""The facts of an execution: what a definition's ``$$`` paths read (see `procstore.datapaths`).

``$$.execution.id``, ``$$.procedure.name``, ``$$.procedure.version`` and ``$$.state`` (the
path of the state the action runs in). Built when a path needs them, as plain data, so a path
can read nothing else about the execution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["facts"]


def facts(run: Run, state: str) -> dict[str, Any]:
    """The facts of ``run`` as seen from the state ``state`` (a dotted path)."""
    procedure = run.compiled.procedure
    return {
        "execution": {"id": run.id},
        "procedure": {"name": procedure.name, "version": procedure.version},
        "state": state,
    }
