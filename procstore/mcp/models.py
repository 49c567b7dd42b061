"""What the tools return: pydantic models, so that each tool publishes an output schema and
its result arrives as structured content (with the same JSON as text, for clients that read
only text)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from procstore.errors import Problem
from procstore.snapshot import ExecutionState, ExecutionSummary

__all__ = [
    "DiagramText",
    "ExecutionList",
    "ExecutionView",
    "ProblemView",
    "ProcedureInfo",
    "ProcedureList",
    "Registered",
    "Validation",
]


class ProblemView(BaseModel):
    """One problem (or warning) of a document."""

    path: str = Field(description="JSON path of the offending value ($ is the document).")
    message: str = Field(description="What is wrong there.")

    @classmethod
    def of(cls, problem: Problem) -> ProblemView:
        """The view of a procstore `Problem`."""
        return cls(path=problem.path, message=problem.message)


class ProcedureInfo(BaseModel):
    """A registered procedure: its name, its versions and what it does."""

    name: str
    versions: list[str] = Field(description="Every registered version, oldest first.")
    description: str | None = Field(description="The latest version's description.")


class ProcedureList(BaseModel):
    """Every registered procedure."""

    procedures: list[ProcedureInfo]


class Validation(BaseModel):
    """Whether a document would be registered, and every problem if not."""

    valid: bool
    name: str | None = Field(default=None, description="The procedure's name, when valid.")
    version: str | None = Field(default=None, description="Its version, when valid.")
    problems: list[ProblemView] = Field(
        default=[], description="Every problem (registering it would fail); empty when valid."
    )
    warnings: list[ProblemView] = Field(
        default=[], description="What is probably unmeant (it would be registered all the same)."
    )


class Registered(BaseModel):
    """A procedure version now in the store."""

    name: str
    version: str
    warnings: list[ProblemView] = Field(
        default=[], description="What the static checks found probably unmeant."
    )


class ExecutionView(BaseModel):
    """An execution as it stands."""

    execution_id: str
    procedure: str
    version: str
    status: str = Field(description="running, completed, failed, cancelled or rolled_back.")
    current: str = Field(description="The state it is in (dotted path).")
    active: list[str] = Field(description="Every active leaf state (parallel regions).")
    context: dict[str, Any] = Field(description="The data its actions read and write.")
    error: dict[str, Any] | None = Field(default=None, description="Why it failed, if it did.")
    fired: bool | None = Field(
        default=None,
        description="send_event: whether a transition fired (false: every guard blocked it).",
    )
    history: list[dict[str, Any]] = Field(
        default=[], description="The last history records asked for, oldest first."
    )
    history_total: int = Field(description="How many history records it has in all.")

    @classmethod
    def of(
        cls, state: ExecutionState, history: int = 0, fired: bool | None = None
    ) -> ExecutionView:
        """The view of a snapshot, with its last ``history`` records."""
        tail = state.history[-history:] if history > 0 else ()
        return cls(
            execution_id=state.id,
            procedure=state.procedure,
            version=state.version,
            status=str(state.status),
            current=state.current,
            active=list(state.active),
            context=state.context,
            error=state.error.model_dump(mode="json") if state.error is not None else None,
            fired=fired,
            history=[r.model_dump(mode="json", exclude_none=True) for r in tail],
            history_total=len(state.history),
        )


class ExecutionList(BaseModel):
    """Summaries of executions, newest last."""

    executions: list[ExecutionSummary]
    total: int = Field(description="How many matched (more than listed when over the limit).")


class DiagramText(BaseModel):
    """A procedure's state diagram."""

    format: str
    text: str = Field(description="Mermaid source, or an SVG document.")
