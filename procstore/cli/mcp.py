"""``procstore mcp``: serve the store to AI agents as a Model Context Protocol server.

The tools, resources and prompt are the library's (`procstore.mcp`); this command only reads
the options, builds the store with the allowlist (``--allow-module``, nothing else: no module
beside a file is trusted here) and serves it. Needs the ``procstore[mcp]`` extra.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated

import typer

from procstore.cli.exits import CommandError, ExitCode, execute
from procstore.cli.hostcode import HostCode
from procstore.cli.options import DEFAULT_DB, Db, McpAllowModule

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "TOKEN_ENVVAR", "Transport", "mcp"]

#: Where the HTTP transport listens by default (this machine only).
DEFAULT_HOST = "127.0.0.1"
#: The HTTP transport's default port.
DEFAULT_PORT = 8000
#: The environment variable that gives --token. These three are procstore.mcp's own, repeated
#: so that `procstore mcp --help` works without the extra installed (a test compares them).
TOKEN_ENVVAR = "PROCSTORE_MCP_TOKEN"


class Transport(enum.StrEnum):
    """How clients reach the server."""

    stdio = "stdio"
    http = "http"


def mcp(
    db: Db = DEFAULT_DB,
    allow_module: McpAllowModule = None,
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            help="stdio (the client starts this command) or http (streamable HTTP at /mcp).",
        ),
    ] = Transport.stdio,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="http: the address to listen on; any but a loopback one needs --token.",
        ),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="http: the port.")] = (
        DEFAULT_PORT
    ),
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENVVAR,
            show_envvar=True,
            help="http: the bearer token every request must carry (Authorization: Bearer T).",
        ),
    ] = None,
) -> None:
    """Serve the store to AI agents over the Model Context Protocol (MCP).

    Agents get tools to write, validate and register procedures, start and follow executions,
    send events and draw diagrams, plus the definition's JSON Schema as a resource and an
    author_procedure prompt. Executions run in this process and stay in the store when it
    stops; the next server on the same --db carries them on. Stdio by default: put
    `procstore mcp --db URL` in the MCP client's configuration. --transport http listens on
    127.0.0.1:8000 (/mcp); listening on another address needs --token.
    """
    execute(lambda: _serve(db, allow_module or [], transport, host, port, token))


def _serve(
    db: str, allowed: list[str], transport: Transport, host: str, port: int, token: str | None
) -> None:
    """Check the options, then serve until the client goes (stdio) or the process is stopped."""
    try:
        from procstore.mcp import NotLocal, serve
    except ImportError as exc:
        raise CommandError(
            ExitCode.USAGE,
            f"error: procstore mcp needs the MCP SDK ({exc}): pip install 'procstore[mcp]'",
        ) from None
    store = HostCode(tuple(allowed), (), local=False).store(db)
    try:
        asyncio.run(serve(store, transport=transport.value, host=host, port=port, token=token))
    except NotLocal as exc:
        raise CommandError(ExitCode.USAGE, f"error: {exc}") from None
    except KeyboardInterrupt:  # Ctrl-C: the store was closed on the way out
        pass
