"""The facts of an execution: what a definition's ``$$`` paths read (see `procstore.datapaths`).

``$$.execution.id``, ``$$.procedure.name``, ``$$.procedure.version``, ``$$.state`` (the
path of the state the path is read in), ``$$.token`` (that state's callback token, or
``None``), ``$$.error`` (the last error of that state's action, ``{"type": ..., "message": ...}``,
or ``None``: what an ``error`` transition's ``assign`` keeps, as Step Functions' ``Catch``
with a ``ResultPath`` does) and, while an event is handled, ``$$.event`` (its ``name`` and
``data``). Built when
a path needs them, as plain data, so a path can read nothing else about the execution. Action
arguments and selectors (``procstore.runtime.steps``) and transitions' ``assign``
(``procstore.runtime.router``) read the same facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["facts"]


def facts(
    run: Run,
    state: str,
    event: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The facts of ``run`` as seen from the state ``state`` (a dotted path), while ``event``
    (``{"name": ..., "data": ...}``) is handled, if one is, and ``error`` is raised (the
    error of a child of ``state``, for a compound or parallel one), if one is."""
    procedure = run.compiled.procedure
    leaf = run.state.leaves.get(state)
    known: dict[str, Any] = {
        "execution": {"id": run.id},
        "procedure": {"name": procedure.name, "version": procedure.version},
        "state": state,
        "token": leaf.token if leaf is not None else None,  # a callback's (runtime.callbacks)
        "error": error if error is not None else leaf.error if leaf is not None else None,
    }
    if event is not None:
        known["event"] = event
    return known
