"""The MCP server over stdio, as an agent uses it: a real ``procstore mcp`` process driven by
the SDK's client. Each test starts its own server on its own database."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from mcp import MCPError
from mcp_types import TextResourceContents

from tests.mcp.agent import (
    approval_doc,
    call,
    call_error,
    mcp_session,
    poll_execution,
)

TOOLS = {
    "list_procedures",
    "get_procedure",
    "validate_procedure",
    "register_procedure",
    "start_execution",
    "send_event",
    "get_execution",
    "list_executions",
    "cancel_execution",
    "diagram",
}


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/agents.db"


async def test_the_server_lists_every_tool_with_a_description_and_schemas(
    tmp_path: Path,
) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        tools = (await session.list_tools()).tools
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None, tool.name


async def test_an_agent_authors_registers_runs_and_draws_a_procedure(tmp_path: Path) -> None:
    draft = approval_doc()
    draft["definition"]["states"]["prepare"]["transitions"][0]["target"] = "awaiting_aproval"
    async with mcp_session(sqlite(tmp_path)) as session:
        checked = await call(session, "validate_procedure", document=draft)
        assert checked["valid"] is False
        paths = [problem["path"] for problem in checked["problems"]]
        assert "$.definition.states.prepare.transitions[0].target" in paths

        assert (await call(session, "validate_procedure", document=approval_doc()))["valid"]
        registered = await call(session, "register_procedure", document=approval_doc())
        assert (registered["name"], registered["version"]) == ("release", "1.0")

        started = await call(session, "start_execution", name="release", context={"tag": "v2"})
        execution_id = started["execution_id"]
        assert started["status"] == "running"
        await poll_execution(session, execution_id, current="awaiting_approval")

        after = await call(session, "send_event", execution_id=execution_id, event="approve")
        assert (after["fired"], after["status"], after["current"]) == (
            True,
            "completed",
            "released",
        )
        listed = await call(session, "list_executions", status="completed")
        assert [e["id"] for e in listed["executions"]] == [execution_id]

        drawn = await call(session, "diagram", name="release", execution_id=execution_id)
    assert "stateDiagram-v2" in drawn["text"]
    assert "awaiting_approval" in drawn["text"]


async def test_registered_documents_are_listed_and_given_back_as_written(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc("1.0"))
        await call(session, "register_procedure", document=approval_doc("1.1"))
        listed = await call(session, "list_procedures")
        latest = await call(session, "get_procedure", name="release")
        first = await call(session, "get_procedure", name="release", version="1.0")
    assert [(p["name"], p["versions"]) for p in listed["procedures"]] == [
        ("release", ["1.0", "1.1"])
    ]
    assert (latest, first) == (approval_doc("1.1"), approval_doc("1.0"))


async def test_validate_reports_each_problem_with_its_json_path(tmp_path: Path) -> None:
    draft = approval_doc()
    draft["definition"]["initial_state"] = "nowhere"
    draft["definition"]["states"]["awaiting_approval"]["transitions"][0]["guard"] = (
        "__import__('os')"
    )
    async with mcp_session(sqlite(tmp_path)) as session:
        checked = await call(session, "validate_procedure", document=draft)
        listed = await call(session, "list_procedures")
    paths = {problem["path"] for problem in checked["problems"]}
    assert {
        "$.definition.initial_state",
        "$.definition.states.awaiting_approval.transitions[0].guard",
    } <= paths
    assert listed["procedures"] == []


async def test_a_yaml_document_is_accepted_as_text(tmp_path: Path) -> None:
    text = (
        "name: hello\nversion: '1'\ndefinition:\n  initial_state: greet\n  states:\n"
        "    greet:\n      action: {type: log, message: hello}\n"
        "      transitions: [{event: success, target: done}]\n    done: {}\n"
    )
    async with mcp_session(sqlite(tmp_path)) as session:
        registered = await call(session, "register_procedure", document=text)
        started = await call(session, "start_execution", name="hello")
        await poll_execution(session, started["execution_id"], status="completed")
    assert registered["name"] == "hello"


async def test_a_module_outside_the_allowlist_is_refused_with_what_is_allowed(
    tmp_path: Path,
) -> None:
    hostile = approval_doc()
    hostile["definition"]["states"]["prepare"]["action"] = {
        "type": "function",
        "module": "os",
        "function": "system",
        "args": {"command": "touch pwned"},
    }
    async with mcp_session(sqlite(tmp_path), "--allow-module", "tests.worker_actions") as session:
        message = await call_error(session, "register_procedure", document=hostile)
        listed = await call(session, "list_procedures")
    assert "$.definition.states.prepare.action" in message
    assert "'os'" in message
    assert "tests.worker_actions" in message
    assert listed["procedures"] == []


async def test_a_document_over_the_state_limit_is_refused(tmp_path: Path) -> None:
    states = {
        f"s{i}": {"transitions": [{"event": "go", "target": f"s{i + 1}"}]} for i in range(10_001)
    }
    states["s10001"] = {}
    huge = {"name": "huge", "version": "1", "definition": {"initial_state": "s0", "states": states}}
    async with mcp_session(sqlite(tmp_path)) as session:
        message = await call_error(session, "register_procedure", document=huge)
        listed = await call(session, "list_procedures")
    assert "MAX_STATES" in message
    assert listed["procedures"] == []


async def test_a_string_document_is_never_read_as_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(approval_doc()), encoding="utf-8")
    async with mcp_session(sqlite(tmp_path)) as session:
        checked = await call(session, "validate_procedure", document=str(secret))
    assert checked["valid"] is False
    assert [p["path"] for p in checked["problems"]] == ["$"]
    assert "expected a procedure object" in checked["problems"][0]["message"]


async def test_the_server_survives_every_bad_call(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        started = await call(session, "start_execution", name="release")
        execution_id = started["execution_id"]
        await poll_execution(session, execution_id, current="awaiting_approval")
        changed = copy.deepcopy(approval_doc())
        changed["description"] = "changed without a new version"
        bad_calls: list[tuple[str, dict[str, object], str]] = [
            ("get_procedure", {"name": "nope"}, "list_procedures"),
            ("start_execution", {"name": "release", "version": "9"}, "list_procedures"),
            ("get_execution", {"execution_id": "nope"}, "list_executions"),
            ("send_event", {"execution_id": execution_id, "event": "deploy"}, "approve, reject"),
            ("send_event", {"execution_id": execution_id}, "event"),
            ("get_execution", {"execution_id": execution_id, "history": "all"}, "history"),
            ("list_executions", {"status": "sleeping"}, "status"),
            ("start_execution", {"name": "release", "context": [1, 2]}, "context"),
            ("register_procedure", {"document": changed}, "new version"),
            ("register_procedure", {"document": "{not json"}, "$"),
            ("register_procedure", {"document": "[1, 2]"}, "expected a procedure object"),
            ("register_procedure", {"document": [1, 2]}, "a JSON object, or its JSON or YAML"),
            ("diagram", {"name": "release", "execution_id": "nope"}, "nope"),
            ("no_such_tool", {}, "no_such_tool"),
        ]
        for tool, arguments, named in bad_calls:
            message = await call_error(session, tool, **arguments)
            assert named in message, (tool, arguments, message)
            assert "Traceback" not in message
            still = await call(session, "get_execution", execution_id=execution_id)
            assert still["current"] == "awaiting_approval", (tool, arguments)
        with pytest.raises(MCPError, match="nope"):
            await session.read_resource("procstore://executions/nope")
        still = await call(session, "get_execution", execution_id=execution_id)
        assert still["current"] == "awaiting_approval"


async def test_a_second_server_sees_and_carries_on_the_executions(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as first:
        await call(first, "register_procedure", document=approval_doc())
        started = await call(first, "start_execution", name="release")
        execution_id = started["execution_id"]
        await poll_execution(first, execution_id, current="awaiting_approval")
    async with mcp_session(sqlite(tmp_path)) as second:
        listed = await call(second, "list_executions", status="running")
        after = await call(second, "send_event", execution_id=execution_id, event="reject")
    assert [e["id"] for e in listed["executions"]] == [execution_id]
    assert (after["status"], after["current"]) == ("failed", "abandoned")


async def test_cancel_execution_ends_it(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        started = await call(session, "start_execution", name="release")
        execution_id = started["execution_id"]
        await poll_execution(session, execution_id, current="awaiting_approval")
        final = await call(session, "cancel_execution", execution_id=execution_id)
    assert final["status"] == "cancelled"


async def test_an_svg_diagram_is_drawn_with_graphviz(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        drawn = await call(session, "diagram", name="release", format="svg")
    assert drawn["format"] == "svg"
    assert "<svg" in drawn["text"]


async def test_resources_serve_the_schema_procedures_and_executions(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as session:
        await call(session, "register_procedure", document=approval_doc())
        started = await call(session, "start_execution", name="release")
        uris = {str(r.uri) for r in (await session.list_resources()).resources}
        schema = await session.read_resource("procstore://schema")
        execution = await session.read_resource(f"procstore://executions/{started['execution_id']}")
    assert {
        "procstore://schema",
        "procstore://procedures/release/1.0",
        f"procstore://executions/{started['execution_id']}",
    } <= uris
    (content,) = schema.contents
    assert isinstance(content, TextResourceContents)
    assert '"definition"' in content.text
    (snapshot,) = execution.contents
    assert isinstance(snapshot, TextResourceContents)
    assert started["execution_id"] in snapshot.text


async def test_the_author_prompt_gives_the_schema_the_allowlist_and_an_example(
    tmp_path: Path,
) -> None:
    async with mcp_session(sqlite(tmp_path), "--allow-module", "tests.worker_actions") as session:
        prompt = await session.get_prompt("author_procedure", {"goal": "rotate the logs"})
    text = " ".join(getattr(m.content, "text", "") for m in prompt.messages)
    assert "rotate the logs" in text
    assert "tests.worker_actions" in text
    assert "deploy_workflow" in text
    assert '"initial_state"' in text


async def test_a_server_beside_a_running_one_reads_but_refuses_to_start(tmp_path: Path) -> None:
    async with mcp_session(sqlite(tmp_path)) as first:
        await call(first, "register_procedure", document=approval_doc())
        started = await call(first, "start_execution", name="release")
        async with mcp_session(sqlite(tmp_path)) as second:
            seen = await call(second, "list_executions")
            message = await call_error(second, "start_execution", name="release")
    assert [e["id"] for e in seen["executions"]] == [started["execution_id"]]
    assert "already used by process" in message
