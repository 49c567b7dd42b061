"""The resources a client can attach as context: the definition format's JSON Schema, each
stored procedure document and each execution's snapshot; and the ``author_procedure`` prompt.

Procedures and executions are resource templates (``procstore://procedures/{name}/{version}``,
``procstore://executions/{execution_id}``); the server's resources/list also lists them
one by one (`listed_resources`; the executions: the newest `MAX_LISTED_RESOURCES`), so a
client can offer them.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import Resource as MCPResource

from procstore.definition_schema import procedure_schema
from procstore.errors import ExecutionNotFound, ProcedureNotFound
from procstore.mcp.example import EXAMPLE_FILE, WORKED_EXAMPLE
from procstore.mcp.models import ExecutionView
from procstore.mcp.tools import allowed_actions
from procstore.store import ProcedureStore

__all__ = [
    "EXECUTION_URI",
    "MAX_LISTED_RESOURCES",
    "PROCEDURE_URI",
    "SCHEMA_URI",
    "add_resources",
    "author_procedure_text",
    "listed_resources",
]

#: The definition format's JSON Schema.
SCHEMA_URI = "procstore://schema"
#: A stored procedure version's document.
PROCEDURE_URI = "procstore://procedures/{name}/{version}"
#: An execution's snapshot (with its whole history).
EXECUTION_URI = "procstore://executions/{execution_id}"
#: resources/list: the most executions listed one by one (the newest); the others are read
#: through the template all the same.
MAX_LISTED_RESOURCES = 100

_JSON = "application/json"


async def listed_resources(store: ProcedureStore[Any]) -> list[MCPResource]:
    """One resource per stored procedure version, then per execution (the newest
    `MAX_LISTED_RESOURCES`), for resources/list."""
    listed = [
        MCPResource(
            uri=f"procstore://procedures/{procedure.name}/{procedure.version}",
            name=f"{procedure.name} {procedure.version}",
            description=procedure.description,
            mime_type=_JSON,
        )
        for procedure in await store.list()
    ]
    for summary in (await store.executions())[-MAX_LISTED_RESOURCES:]:
        listed.append(
            MCPResource(
                uri=f"procstore://executions/{summary.id}",
                name=f"execution {summary.id}",
                description=f"{summary.procedure} {summary.version}: {summary.status}",
                mime_type=_JSON,
            )
        )
    return listed


def author_procedure_text(store: ProcedureStore[Any], goal: str = "") -> str:
    """The ``author_procedure`` prompt: how to write, check and run a procedure here, what
    actions may be named, a worked example and the definition format's JSON Schema."""
    task = f"Write a procstore procedure that does this: {goal}\n\n" if goal else ""
    return (
        f"{task}A procstore procedure is a JSON document: a name, a version and a definition "
        "(a state machine: an initial state, states with an optional action and transitions "
        "on events; an action's outcome fires `success` or `error`; a state with no "
        "transitions is terminal, `outcome: failure` makes it a failed end). Guards are "
        "safe expressions over the context (e.g. `amount < 100`), never code.\n\n"
        f"Allowed actions: {allowed_actions(store)} Any other module is refused.\n\n"
        "How to work: call validate_procedure and fix every problem at its JSON path until "
        "it is valid; register_procedure; start_execution (auto runs it); poll get_execution "
        "and send_event where a state waits for an event; diagram draws it.\n\n"
        f"A worked example ({EXAMPLE_FILE}; its module deploy_actions is allowed only if "
        f"listed above):\n{json.dumps(WORKED_EXAMPLE, indent=2)}\n\n"
        f"The JSON Schema of the format ({SCHEMA_URI}):\n{json.dumps(procedure_schema())}"
    )


def add_resources(server: MCPServer[Any], store: ProcedureStore[Any]) -> None:
    """Register the resources and the prompt with ``server``."""

    @server.resource(
        SCHEMA_URI,
        name="procedure schema",
        description="The JSON Schema of procstore procedure documents.",
        mime_type="application/schema+json",
    )
    def schema() -> str:
        return json.dumps(procedure_schema(), indent=2)

    @server.resource(
        PROCEDURE_URI,
        name="procedure",
        description="A stored procedure version's document.",
        mime_type=_JSON,
    )
    async def procedure(name: str, version: str) -> str:
        try:
            found = await store.get(name, version)
        except ProcedureNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return json.dumps(found.model_dump(mode="json", by_alias=True, exclude_unset=True))

    @server.resource(
        EXECUTION_URI,
        name="execution",
        description="An execution's snapshot: status, states, context, error, whole history.",
        mime_type=_JSON,
    )
    async def execution(execution_id: str) -> str:
        try:
            handle = await store.get_execution(execution_id)
        except ExecutionNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from None
        state = handle.state
        return ExecutionView.of(state, history=len(state.history)).model_dump_json()

    @server.prompt(
        name="author_procedure",
        description=(
            "Write a procstore procedure for a goal: the format's schema, the actions this "
            "server allows and a worked example."
        ),
    )
    def author_procedure(goal: str = "") -> str:
        return author_procedure_text(store, goal)
