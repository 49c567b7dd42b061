"""An agent's side of the MCP server: the real ``procstore mcp`` process, driven by the SDK's
own client (`ClientSession` over `stdio_client`, or streamable HTTP)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

ROOT = Path(__file__).resolve().parents[2]

#: The longest a test waits for an execution to get somewhere (only to detect a hang).
WAIT_S = 15.0


#: The server: ``procstore mcp`` (``python -m procstore mcp``).
COMMAND = ("-m", "procstore", "mcp", "--db")


@asynccontextmanager
async def mcp_session(
    db: str, *options: str, command: tuple[str, ...] = COMMAND
) -> AsyncIterator[ClientSession]:
    """A session with a fresh ``procstore mcp --db DB OPTIONS`` (or ``python COMMAND DB
    OPTIONS``) over stdio, run from the repository so that ``tests....`` modules import;
    initialised."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*command, db, *options],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call ``tool``, which must succeed; its structured content."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert not result.is_error, error_text(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """Call ``tool``, which must fail as a tool error; its message."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error, result
    return error_text(result)


def error_text(result: CallToolResult) -> str:
    """The text of a tool result."""
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def poll_execution(
    session: ClientSession, execution_id: str, **wanted: Any
) -> dict[str, Any]:
    """get_execution until its fields have the ``wanted`` values (fails after `WAIT_S`)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        seen = await call(session, "get_execution", execution_id=execution_id)
        if all(seen[key] == value for key, value in wanted.items()):
            return seen
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"execution never had {wanted}: {seen}")
        await asyncio.sleep(0.02)


def approval_doc(version: str = "1.0") -> dict[str, Any]:
    """A procedure an agent might write: log that it starts, wait for approve or reject."""
    return {
        "name": "release",
        "version": version,
        "description": "Prepare a release, then wait for a human's approve or reject.",
        "definition": {
            "initial_state": "prepare",
            "states": {
                "prepare": {
                    "action": {"type": "log", "message": "preparing"},
                    "transitions": [{"event": "success", "target": "awaiting_approval"}],
                },
                "awaiting_approval": {
                    "transitions": [
                        {"event": "approve", "target": "released"},
                        {"event": "reject", "target": "abandoned"},
                    ]
                },
                "released": {},
                "abandoned": {"outcome": "failure"},
            },
        },
    }
