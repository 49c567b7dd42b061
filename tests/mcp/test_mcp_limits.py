"""The document limits hold for what an agent sends the MCP server, whatever form it takes: a
start context and a procedure document given as JSON objects are held to the same bounds as
the files the CLI reads (`MAX_DOCUMENT_BYTES`, `MAX_DOCUMENT_DEPTH`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from procstore.documents import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH
from procstore.mcp.tools import MAX_ARGUMENT_CHARS
from tests.mcp.agent import approval_doc, call, call_error, mcp_session


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/limits.db"


def nested(levels: int) -> dict[str, Any]:
    """An object nested ``levels`` levels deep."""
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


async def test_a_start_context_nested_too_deep_is_refused(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        context = {"deep": nested(MAX_DOCUMENT_DEPTH + 20)}
        message = await call_error(session, "start_execution", name="release", context=context)
        listed = await call(session, "list_executions")
    assert f"nested more than {MAX_DOCUMENT_DEPTH} levels" in message
    assert "context" in message
    assert listed["executions"] == []


async def test_a_start_context_larger_than_a_document_may_be_is_refused(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        context = {"blob": "x" * (MAX_DOCUMENT_BYTES + 1)}
        message = await call_error(session, "start_execution", name="release", context=context)
        listed = await call(session, "list_executions")
    assert "MAX_DOCUMENT_BYTES" in message
    assert "context" in message
    assert listed["executions"] == []


def oversized_doc() -> dict[str, Any]:
    """A procedure document over `MAX_DOCUMENT_BYTES`, all of it in its description."""
    doc = approval_doc()
    doc["description"] = "x" * (MAX_DOCUMENT_BYTES + 1)
    return doc


async def test_a_document_object_larger_than_a_document_may_be_is_refused(
    tmp_path: Path,
) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        message = await call_error(session, "register_procedure", document=oversized_doc())
        listed = await call(session, "list_procedures")
    assert "MAX_DOCUMENT_BYTES" in message
    assert listed["procedures"] == []


async def test_a_document_as_json_text_larger_than_a_document_may_be_is_refused(
    tmp_path: Path,
) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        checked = await call(session, "validate_procedure", document=json.dumps(oversized_doc()))
    assert checked["valid"] is False
    assert "MAX_DOCUMENT_BYTES" in checked["problems"][0]["message"]


async def test_a_document_as_json_text_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    text = '{"version": "9", ' + json.dumps(approval_doc())[1:]
    async with mcp_session(sqlite(tmp_path)) as session:
        checked = await call(session, "validate_procedure", document=text)
        message = await call_error(session, "register_procedure", document=text)
    assert checked["valid"] is False
    assert [p["path"] for p in checked["problems"]] == ["$.version"]
    assert "duplicate key 'version'" in message


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get_procedure", {"name": "n" * 100_000}),
        ("get_procedure", {"name": "release", "version": "9" * 100_000}),
        ("send_event", {"execution_id": "i" * 100_000, "event": "approve"}),
        ("diagram", {"name": "release", "execution_id": "i" * 100_000}),
    ],
)
async def test_an_error_about_an_overlong_argument_stays_a_paragraph(
    tmp_path: Path, tool: str, arguments: dict[str, Any]
) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        message = await call_error(session, tool, **arguments)
    assert len(message) < 1000
    assert f"at most {MAX_ARGUMENT_CHARS} characters" in message
