"""procstore's errors as MCP tool errors: one paragraph an agent can act on.

Every tool runs inside `tool_errors`: what procstore raises on purpose (an invalid document,
an unknown procedure or execution, an event the current state does not take) becomes a
`ToolError`, which the SDK returns as a result with ``isError`` set and this text, and the
server goes on. The text is procstore's own message (the JSON path of each problem, the events
the state accepts) followed by what to do next. Anything else is a bug: the agent is told that
much (the exception's type and message, never a traceback) and the traceback is logged on the
server's stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from procstore.errors import (
    ExecutionNotFound,
    InvalidEvent,
    InvalidProcedure,
    ProcedureNotFound,
    ProcedureWarning,
    ProcstoreError,
    VersionConflict,
)

__all__ = ["arguments_message", "invalid_message", "problems_text", "tool_errors"]

_log = logging.getLogger("procstore.mcp")


def problems_text(exc: InvalidProcedure) -> str:
    """Every problem of ``exc`` as ``$.json.path: message``, separated by ``; ``."""
    return "; ".join(str(problem) for problem in exc.errors)


def invalid_message(exc: InvalidProcedure, allowed: str) -> str:
    """The paragraph for an invalid document; ``allowed`` says what function actions may name
    on this server (said only when a problem is about an action's module or function)."""
    count = len(exc.errors)
    text = (
        f"The procedure document is invalid ({count} problem{'s' if count != 1 else ''}): "
        f"{problems_text(exc)}. Fix each value at its JSON path ($ is the document) and call "
        "validate_procedure again; the format is the JSON Schema at procstore://schema."
    )
    if any(p.path.endswith((".module", ".function")) for p in exc.errors):
        text += f" {allowed}"
    return text


def _message(exc: Exception, allowed: str) -> str:
    """The paragraph for an error procstore raised on purpose (or a bad argument value)."""
    if isinstance(exc, InvalidProcedure):
        return invalid_message(exc, allowed)
    if isinstance(exc, VersionConflict):
        return f'{exc} (bump its "version"): a stored version never changes.'
    if isinstance(exc, ProcedureNotFound):
        return f"{exc}. list_procedures lists the registered procedures and their versions."
    if isinstance(exc, ExecutionNotFound):
        return f"{exc}. list_executions lists the stored executions and their ids."
    if isinstance(exc, InvalidEvent):
        return f"{exc}. get_execution shows where the execution is and its status."
    return str(exc)


def arguments_message(tool: str, exc: ValidationError) -> str:
    """The paragraph for arguments that fail ``tool``'s input schema: each argument with what
    it must be and what was given."""
    said: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = error["loc"]
        argument = str(loc[0]) if loc else "arguments"
        given = "" if error["type"] == "missing" else f" (got {error['input']!r:.80})"
        message = f"{error['msg']}{given}"
        if message not in said.setdefault(argument, []):
            said[argument].append(message)
    listing = "; ".join(f"{arg}: {' or '.join(messages)}" for arg, messages in said.items())
    return (
        f"Invalid arguments for {tool}: {listing}. Call it again with arguments that match its "
        "input schema (tools/list shows it)."
    )


@contextmanager
def tool_errors(tool: str, allowed: str) -> Iterator[None]:
    """Run a tool's body, turning any exception into a `ToolError` whose message says what
    went wrong and what to do; ``allowed`` is what function actions may name here."""
    try:
        yield
    except ToolError:
        raise
    except (ProcstoreError, ValueError, TypeError) as exc:
        raise ToolError(_message(exc, allowed)) from None
    except ProcedureWarning as exc:  # the host made the static checks' warnings errors
        raise ToolError(
            f"Refused: this server treats the static checks' warnings as errors: {exc}. Fix "
            "each one at its JSON path (validate_procedure lists them as warnings)."
        ) from None
    except Exception as exc:
        _log.exception("tool %s failed", tool)
        raise ToolError(
            f"{tool} failed inside the server: {type(exc).__name__}: {exc}. This is a bug in "
            "the server, not in your call; the server goes on, and other calls work."
        ) from None
