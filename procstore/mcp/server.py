"""Building the MCP server over a store, and serving it over stdio or streamable HTTP."""

from __future__ import annotations

import logging
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult
from mcp_types import Resource as MCPResource
from pydantic import ValidationError

from procstore.errors import StoreError
from procstore.mcp.errors import arguments_message
from procstore.mcp.http import BearerToken, check_binding, rebinding_protection
from procstore.mcp.resources import add_resources, listed_resources
from procstore.mcp.tools import StoreTools
from procstore.store import ProcedureStore

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ProcstoreServer", "build_server", "serve"]

#: Where the HTTP transport listens unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
#: The HTTP transport's port unless told otherwise.
DEFAULT_PORT = 8000

_INSTRUCTIONS = (
    "procstore stores validated, versioned procedures (state machines written as JSON) and "
    "runs them durably. To carry out a multi-step job: get the author_procedure prompt (or "
    "read procstore://schema), write the procedure, validate_procedure until it is valid, "
    "register_procedure, start_execution, then follow it with get_execution and move it with "
    "send_event. Executions outlive this session."
)

_log = logging.getLogger("procstore.mcp")


class ProcstoreServer(MCPServer[Any]):
    """The SDK's `MCPServer`, with the store's procedures and executions in its resource
    listing and arguments that fail a tool's input schema told in one paragraph."""

    def __init__(self, store: ProcedureStore[Any], **options: Any) -> None:
        super().__init__(**options)
        self.store = store

    async def list_resources(self) -> list[MCPResource]:
        """The static resources, then one per stored procedure version and execution."""
        return [*await super().list_resources(), *await listed_resources(self.store)]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call tool ``name``; arguments its input schema refuses are a tool error naming each
        argument and what it must be (not pydantic's report); an unknown tool names the
        tools there are."""
        tools = [tool.name for tool in await self.list_tools()]
        if name not in tools:
            raise ToolError(f"There is no tool {name!r}; the tools are: {', '.join(tools)}.")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            # (An UnexpectedToolError is a result that failed its output schema: a bug here.)
            if isinstance(cause, ValidationError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(arguments_message(name, cause)) from cause
            raise


def build_server(store: ProcedureStore[Any]) -> ProcstoreServer:
    """The MCP server over ``store``: its tools, resources and prompt. A host program may add
    its own tools to it before serving it; the actions procedures may name are the store's
    (``allowed_modules``, and those registered with ``store.action``)."""
    server = ProcstoreServer(
        store, name="procstore", instructions=_INSTRUCTIONS, log_level="WARNING"
    )
    StoreTools(store).add_to(server)
    add_resources(server, store)
    return server


async def serve(
    store: ProcedureStore[Any],
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    server: ProcstoreServer | None = None,
) -> None:
    """Serve ``store`` to MCP clients until the client goes (stdio) or the process is stopped
    (HTTP), then close the store (running executions stay ``running`` in the database and carry
    on when a store on it runs again).

    A host program embeds it so: register its actions on the store, then serve.

    ```python
    store = ProcedureStore("sqlite:///app.db")
    store.register_action("notify", notify)
    await procstore.mcp.serve(store)
    ```

    Args:
        transport: ``stdio`` (the client starts this process) or ``http`` (streamable HTTP at
            ``http://HOST:PORT/mcp``).
        host: The HTTP address to listen on; anything but a loopback address needs ``token``.
        token: HTTP: the bearer token every request must carry (checked on every address).
        server: The server to serve, from `build_server(store)` with the host's own tools
            added; by default `build_server(store)` as it is.

    Raises:
        procstore.mcp.http.NotLocal: ``host`` is not a loopback address and no token is given.
        StoreError: the store cannot be opened.
    """
    if transport not in ("stdio", "http"):
        raise ValueError(f"unknown transport {transport!r}: expected stdio or http")
    if transport == "http":
        check_binding(host, token)
    server = server or build_server(store)
    await store.open()
    try:
        await _run_here(store)
        if transport == "stdio":
            await server.run_stdio_async()
        else:
            await _serve_http(server, host, port, token)
    finally:
        await store.close()


async def _run_here(store: ProcedureStore[Any]) -> None:
    """Resume the store's unfinished executions in this process, so that what agents started
    in earlier sessions carries on. When another process runs them already (SQLite allows
    one), this server still reads and lists; starting an execution is then refused with that
    reason."""
    try:
        await store.work()
    except StoreError as exc:
        _log.warning("procstore mcp: executions run elsewhere: %s", exc)


async def _serve_http(server: ProcstoreServer, host: str, port: int, token: str | None) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until the process is stopped."""
    import uvicorn

    app: Any = server.streamable_http_app(host=host, transport_security=rebinding_protection(host))
    if token:
        app = BearerToken(app, token)
    # An IPv6 address may be given as in a URL ([::1]); the socket wants it bare.
    bind = host.strip("[]")
    config = uvicorn.Config(app, host=bind, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
