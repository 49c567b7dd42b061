"""A host program embedding the server (``procstore.mcp.serve``): the actions it registers are
the ones agents' procedures may name, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mcp.agent import call, call_error, mcp_session, poll_execution

HOST = ("-m", "tests.mcp.embedding_host")


def calling(function: str) -> dict[str, Any]:
    action = {"type": "function", "function": function, "args": {"by": "agent"}, "result": "out"}
    states = {"work": {"action": action, "transitions": [{"event": "success", "target": "done"}]}}
    return {
        "name": "stamping",
        "version": "1",
        "definition": {"initial_state": "work", "states": {**states, "done": {}}},
    }


async def test_an_agent_runs_an_action_the_host_registered(tmp_path: Path) -> None:
    async with mcp_session(f"sqlite:///{tmp_path}/host.db", command=HOST) as session:
        await call(session, "register_procedure", document=calling("stamp"))
        started = await call(session, "start_execution", name="stamping")
        done = await poll_execution(session, started["execution_id"], status="completed")
    assert done["context"]["out"] == {"stamped": True, "by": "agent"}


async def test_an_action_the_host_did_not_register_is_refused_naming_those_it_did(
    tmp_path: Path,
) -> None:
    async with mcp_session(f"sqlite:///{tmp_path}/host.db", command=HOST) as session:
        message = await call_error(session, "register_procedure", document=calling("rm_rf"))
    assert "$.definition.states.work.action.function" in message
    assert "rm_rf" in message
    assert "stamp" in message
