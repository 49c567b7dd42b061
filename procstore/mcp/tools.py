"""The tools: what an agent can do with the store. Each is a method of `StoreTools`, its
docstring the description the agent reads, its annotated parameters the input schema, its
return model the output schema (structured content)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import BeforeValidator, Field, WithJsonSchema

from procstore.errors import InvalidProcedure, Problem, VersionConflict
from procstore.mcp.documents import context_data, document_data
from procstore.mcp.errors import tool_errors
from procstore.mcp.models import (
    DiagramText,
    ExecutionList,
    ExecutionView,
    ProblemView,
    ProcedureInfo,
    ProcedureList,
    Registered,
    Validation,
)
from procstore.store import ProcedureStore

__all__ = [
    "DEFAULT_HISTORY_RECORDS",
    "DEFAULT_LISTED_EXECUTIONS",
    "MAX_ARGUMENT_CHARS",
    "MAX_HISTORY_RECORDS",
    "MAX_LISTED_EXECUTIONS",
    "StoreTools",
    "allowed_actions",
]

#: get_execution: the history records returned unless the agent asks for another number.
DEFAULT_HISTORY_RECORDS = 10
#: get_execution: the most history records one call returns (a long execution has thousands;
#: an agent's context window is the scarce resource).
MAX_HISTORY_RECORDS = 500
#: list_executions: the summaries returned unless the agent asks for another number.
DEFAULT_LISTED_EXECUTIONS = 50
#: list_executions: the most summaries one call returns.
MAX_LISTED_EXECUTIONS = 1000

#: The longest name, version, execution id or event a tool takes: longer than any the store
#: holds (procedure names and events have at most 200 characters, ids 32), short enough that
#: an error naming the one not found stays a paragraph, not the agent's whole context window.
MAX_ARGUMENT_CHARS = 1000

#: The action types any procedure may use: they run no host code.
BUILTIN_ACTIONS = ("noop", "log", "sleep", "fail")

_DOCUMENT_DESCRIPTION = (
    "The procedure document: a JSON object (preferred), or its JSON or YAML text. "
    "Its format is the JSON Schema at resource procstore://schema."
)


def _document_text(value: Any) -> Any:
    """A document sent as an object, as its JSON text: every document is then read by the one
    strict parser (`document_data`). Declared as text, a document string also stays as the
    agent wrote it: the SDK pre-parses JSON text given for any other type with `json.loads`,
    which keeps the last of a repeated key silently."""
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        raise ValueError("expected the procedure document: a JSON object, or its JSON or YAML text")
    return value


Document = Annotated[
    str,
    BeforeValidator(_document_text),
    WithJsonSchema(
        {"anyOf": [{"type": "object"}, {"type": "string"}], "description": _DOCUMENT_DESCRIPTION}
    ),
    Field(description=_DOCUMENT_DESCRIPTION),
]
Name = Annotated[str, Field(max_length=MAX_ARGUMENT_CHARS, description="The procedure's name.")]
Version = Annotated[
    str | None,
    Field(
        max_length=MAX_ARGUMENT_CHARS,
        description="Its version; omitted: the latest registered version.",
    ),
]
ExecutionId = Annotated[
    str,
    Field(max_length=MAX_ARGUMENT_CHARS, description="The execution's id (from start_execution)."),
]
StatusFilter = Literal["running", "completed", "failed", "cancelled", "rolled_back", "quarantined"]

_READ = ToolAnnotations(read_only_hint=True)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False)


def allowed_actions(store: ProcedureStore[Any]) -> str:
    """What function actions may name on this server, in one sentence for an agent."""
    modules = ", ".join(sorted(store.allowed_modules)) or "none"
    named = ", ".join(store.registered_actions) or "none"
    return (
        f"On this server a function action may name a module the host allows ({modules}), "
        'with "module" and "function", or an action the host registered, with "function" '
        f"alone ({named}); the action types {', '.join(BUILTIN_ACTIONS)} need no allowlist."
    )


class StoreTools:
    """The tools over one store."""

    def __init__(self, store: ProcedureStore[Any]) -> None:
        self.store = store

    def add_to(self, server: MCPServer[Any]) -> None:
        """Register every tool with ``server``."""
        for method, hints in (
            (self.list_procedures, _READ),
            (self.get_procedure, _READ),
            (self.validate_procedure, _READ),
            (self.register_procedure, ToolAnnotations(read_only_hint=False, idempotent_hint=True)),
            (self.start_execution, _WRITE),
            (self.send_event, _WRITE),
            (self.get_execution, _READ),
            (self.list_executions, _READ),
            (self.cancel_execution, ToolAnnotations(read_only_hint=False, destructive_hint=True)),
            (self.diagram, _READ),
        ):
            server.add_tool(method, annotations=hints, structured_output=True)

    def _errors(self, tool: str) -> Any:
        return tool_errors(tool, allowed_actions(self.store))

    async def list_procedures(self) -> ProcedureList:
        """List the registered procedures: each name with its versions (oldest first) and
        the latest version's description. Start one with start_execution."""
        with self._errors("list_procedures"):
            found: dict[str, ProcedureInfo] = {}
            for procedure in await self.store.list():
                info = found.setdefault(
                    procedure.name,
                    ProcedureInfo(name=procedure.name, versions=[], description=None),
                )
                info.versions.append(procedure.version)
                info.description = procedure.description
            return ProcedureList(procedures=list(found.values()))

    async def get_procedure(self, name: Name, version: Version = None) -> dict[str, Any]:
        """Return a registered procedure's document (the latest version unless `version` is
        given), e.g. to change it and register it under a new version."""
        with self._errors("get_procedure"):
            procedure = await self.store.get(name, version)
            return procedure.model_dump(mode="json", by_alias=True, exclude_unset=True)

    async def validate_procedure(self, document: Document) -> Validation:
        """Check a procedure document exactly as register_procedure would, registering
        nothing. Returns `valid` and every problem with its JSON path (e.g.
        `$.definition.states.build.transitions[0].target: ...`) and the warnings; fix them
        all and validate again before registering."""
        with self._errors("validate_procedure"):
            try:
                data = document_data(document)
                found = await self.store.validate(data)
            except InvalidProcedure as exc:
                return Validation(valid=False, problems=[ProblemView.of(p) for p in exc.errors])
            except VersionConflict as exc:
                problem = Problem("$.version", f"{exc}: give the changed document a new version")
                return Validation(valid=False, problems=[ProblemView.of(problem)])
            return Validation(
                valid=True,
                name=str(data.get("name")),
                version=str(data.get("version")),
                warnings=[ProblemView.of(p) for p in found],
            )

    async def register_procedure(self, document: Document) -> Registered:
        """Validate and store a procedure document under its name and version, so that
        start_execution can run it. Registering the same document again changes nothing; a
        changed document needs a new version. An invalid document is refused with every
        problem and its JSON path."""
        with self._errors("register_procedure"):
            data = document_data(document)
            # The findings are returned to the agent; register also warns them, as it does
            # for any caller (on stderr, or refused where the host made them errors).
            found = await self.store.validate(data)
            procedure = await self.store.register(data)
            return Registered(
                name=procedure.name,
                version=procedure.version,
                warnings=[ProblemView.of(p) for p in found],
            )

    async def start_execution(
        self,
        name: Name,
        version: Version = None,
        context: Annotated[
            dict[str, Any] | None,
            Field(description="The execution's starting data (a JSON object)."),
        ] = None,
        auto: Annotated[
            bool,
            Field(
                description=(
                    "true (default): each action's outcome (success, error) moves the "
                    "execution on by itself, and it stops only where a state waits for an "
                    "event you send. false: you send every event, the outcomes too."
                )
            ),
        ] = True,
    ) -> ExecutionView:
        """Start an execution of a registered procedure (the latest version unless `version`
        is given). Returns its id, status and state; it runs on in the server (and survives
        this session: the store is durable). Follow it with get_execution, move it with
        send_event."""
        with self._errors("start_execution"):
            execution = await self.store.start(name, version, context_data(context), auto=auto)
            return ExecutionView.of(execution.state)

    async def send_event(
        self,
        execution_id: ExecutionId,
        event: Annotated[
            str, Field(max_length=MAX_ARGUMENT_CHARS, description="The event, e.g. approve.")
        ],
        data: Annotated[
            Any,
            Field(description="What the event carries (JSON); guards read it as event['data']."),
        ] = None,
    ) -> ExecutionView:
        """Send an event to a running execution and return its snapshot once the event is
        handled. An event its current state has no transition for is refused with the events
        it accepts."""
        with self._errors("send_event"):
            execution = await self.store.get_execution(execution_id)
            fired = await execution.send(event, data)
            return ExecutionView.of(execution.state, fired=fired)

    async def get_execution(
        self,
        execution_id: ExecutionId,
        history: Annotated[
            int,
            Field(
                ge=0,
                le=MAX_HISTORY_RECORDS,
                description="How many of the latest history records to include.",
            ),
        ] = DEFAULT_HISTORY_RECORDS,
    ) -> ExecutionView:
        """Return an execution's status (running, completed, failed, cancelled, rolled_back),
        current and active states, context, error and its latest history records. Poll it to
        wait for a running execution."""
        with self._errors("get_execution"):
            execution = await self.store.get_execution(execution_id)
            return ExecutionView.of(execution.state, history)

    async def list_executions(
        self,
        status: Annotated[StatusFilter | None, Field(description="Only those with it.")] = None,
        procedure: Annotated[
            str | None, Field(max_length=MAX_ARGUMENT_CHARS, description="Only those of it.")
        ] = None,
        limit: Annotated[
            int,
            Field(ge=1, le=MAX_LISTED_EXECUTIONS, description="At most this many, the newest."),
        ] = DEFAULT_LISTED_EXECUTIONS,
    ) -> ExecutionList:
        """List the stored executions (id, procedure, version, status, times), newest last,
        optionally only those with a status or of a procedure."""
        with self._errors("list_executions"):
            found = await self.store.executions(status, procedure)
            return ExecutionList(executions=found[-limit:], total=len(found))

    async def cancel_execution(
        self,
        execution_id: ExecutionId,
        rollback: Annotated[
            bool,
            Field(
                description="Also undo its completed actions (their compensations), newest first."
            ),
        ] = False,
    ) -> ExecutionView:
        """Cancel a running execution (and with rollback, compensate what it did); returns
        its final snapshot. Cancelling a finished execution changes nothing."""
        with self._errors("cancel_execution"):
            execution = await self.store.get_execution(execution_id)
            return ExecutionView.of(await execution.cancel(rollback=rollback))

    async def diagram(
        self,
        name: Name,
        version: Version = None,
        format: Annotated[
            Literal["mermaid", "svg"], Field(description="mermaid (text) or svg.")
        ] = "mermaid",
        execution_id: Annotated[
            str | None,
            Field(
                max_length=MAX_ARGUMENT_CHARS,
                description="Draw this execution over it: where it is, the path it took.",
            ),
        ] = None,
    ) -> DiagramText:
        """Draw a procedure's state diagram (Mermaid source by default, or SVG), optionally
        with an execution of it drawn over it."""
        with self._errors("diagram"):
            snapshot = None
            if execution_id is not None:
                snapshot = (await self.store.get_execution(execution_id)).state
                if name != snapshot.procedure or version not in (None, snapshot.version):
                    raise ValueError(
                        f"execution {execution_id} runs {snapshot.procedure} "
                        f"{snapshot.version}, not {name} {version or ''}: give name "
                        f"{snapshot.procedure!r} (and no version) to draw it"
                    )
                version = snapshot.version
            procedure = await self.store.get(name, version)
            text = await asyncio.to_thread(_render, procedure, format, snapshot)
            return DiagramText(format=format, text=text)


def _render(procedure: Any, fmt: str, snapshot: Any) -> str:
    """The diagram as text (run in a thread: svg runs Graphviz's dot)."""
    import graphviz

    from procstore import diagrams
    from procstore.diagrams.dot import DiagramTimeout

    try:
        data = diagrams.render(procedure, fmt, snapshot)
    except graphviz.ExecutableNotFound:
        raise ValueError(
            "svg needs Graphviz's dot program, which is not installed on the server; "
            "format mermaid needs nothing"
        ) from None
    except DiagramTimeout as exc:
        raise ValueError(f"{exc}; format mermaid gives the chart's text at once") from None
    return data.decode("utf-8") if isinstance(data, bytes) else data
