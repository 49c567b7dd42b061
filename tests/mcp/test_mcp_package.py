"""What the MCP server is built from, checked in this process: the prompt's worked example is
the repository's example, and the command line's defaults are the library's."""

from __future__ import annotations

import json

from procstore.cli import mcp as command
from procstore.mcp import http, server
from procstore.mcp.example import EXAMPLE_FILE, WORKED_EXAMPLE
from tests.mcp.agent import ROOT


def test_the_worked_example_is_the_repository_example() -> None:
    assert json.loads((ROOT / EXAMPLE_FILE).read_text(encoding="utf-8")) == WORKED_EXAMPLE


def test_the_command_line_defaults_are_the_librarys() -> None:
    assert (command.DEFAULT_HOST, command.DEFAULT_PORT) == (
        server.DEFAULT_HOST,
        server.DEFAULT_PORT,
    )
    assert command.TOKEN_ENVVAR == http.TOKEN_ENVVAR


def test_only_loopback_addresses_are_local() -> None:
    assert [http.is_local(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost")] == [True] * 4
    assert [http.is_local(h) for h in ("0.0.0.0", "10.0.0.5", "example.com")] == [False] * 3
