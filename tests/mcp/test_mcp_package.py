"""What the MCP server is built from, checked in this process: the prompt's worked example is
the repository's example, the command line's defaults are the library's, what counts as a
local address, and how a document given as text is read."""

from __future__ import annotations

import json

import pytest

from procstore import InvalidProcedure
from procstore.cli import mcp as command
from procstore.documents import MAX_DOCUMENT_BYTES
from procstore.mcp import http, server
from procstore.mcp.documents import document_data
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


def test_document_text_over_the_size_limit_is_refused() -> None:
    with pytest.raises(InvalidProcedure, match="MAX_DOCUMENT_BYTES"):
        document_data('{"name": "' + "x" * MAX_DOCUMENT_BYTES + '"}')


def test_document_text_that_is_not_json_is_parsed_as_yaml() -> None:
    assert document_data("name: hello\nversion: '1'") == {"name": "hello", "version": "1"}
