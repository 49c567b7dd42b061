"""``procstore list``, ``show`` and ``history``: reading the store, never changing it.

Each opens the store read-only, so it works beside a process that runs executions, and never
creates a database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Annotated

import typer

from procstore import (
    ExecutionNotFound,
    ExecutionSummary,
    Procedure,
    ProcedureNotFound,
    Status,
    paths,
)
from procstore.chart import ChartState, build_chart
from procstore.cli.db import db_missing, db_name, open_store
from procstore.cli.exits import CommandError, ExitCode, execute
from procstore.cli.options import DEFAULT_DB, AsJson, Db, Full
from procstore.cli.output import (
    context_line,
    echo,
    echo_json,
    error_line,
    format_record,
    status_text,
    time_text,
)
from procstore.definition import StateDef, TransitionDef
from procstore.describe import describe_action, describe_retry, describe_wait


def list_(
    db: Db = DEFAULT_DB,
    status: Annotated[
        Status | None,
        typer.Option("--status", "-s", help="Only executions with this status."),
    ] = None,
    procedure: Annotated[
        str | None,
        typer.Option(
            "--procedure", "-P", metavar="NAME", help="Only this procedure and its executions."
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            "-n",
            min=0,
            metavar="N",
            help="Show the N most recent executions (0: all).",
        ),
    ] = 20,
    as_json: AsJson = False,
) -> None:
    """List the registered procedures (name, versions) and the executions (id,
    procedure@version, status, last update), oldest first; a quarantined execution also
    shows why (REASON).

    The store is opened read-only, so this works beside a process that runs executions.
    """
    execute(lambda: asyncio.run(_list(db, status, procedure, limit, as_json)))


async def _list(
    db: str,
    status: Status | None,
    procedure_name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Print the procedures and the (last ``limit``) executions, as text or JSON."""
    if db_missing(db):
        procedures: list[Procedure] = []
        executions: list[ExecutionSummary] = []
        if not as_json:
            echo(f"no database at {db_name(db)} yet: nothing registered, nothing run")
            return
    else:
        async with open_store(db, read_only=True) as store:
            procedures = await store.list()
            executions = await store.executions(status=status, procedure=procedure_name)
    if procedure_name is not None:
        procedures = [p for p in procedures if p.name == procedure_name]
    versions: dict[str, list[str]] = {}
    for procedure in procedures:  # sorted by name, then version
        versions.setdefault(procedure.name, []).append(procedure.version)
    hidden = 0
    if limit > 0 and len(executions) > limit:
        hidden = len(executions) - limit
        executions = executions[-limit:]

    if as_json:
        document = {
            "procedures": [{"name": n, "versions": v} for n, v in versions.items()],
            "executions": [s.model_dump(mode="json") for s in executions],
            "more_executions": hidden,
        }
        echo_json(document)
        return

    if versions:
        width = max(len("PROCEDURE"), *(len(name) for name in versions))
        echo(f"{'PROCEDURE':<{width}}  VERSIONS")
        for name, names in versions.items():
            echo(f"{name:<{width}}  {', '.join(names)}")
    else:
        echo("no procedures")
    echo("")
    _echo_executions(executions, hidden)


def _echo_executions(executions: Sequence[ExecutionSummary], hidden: int) -> None:
    """Print ``executions`` as a table (with a REASON column when one is quarantined), and
    how many older ones the limit left out."""
    if not executions:
        echo("no executions")
        return
    rows: list[tuple[str, ...]] = [
        (s.id, f"{s.procedure}@{s.version}", status_text(s.status), time_text(s.updated_at))
        for s in executions
    ]
    headers: tuple[str, ...] = ("EXECUTION", "PROCEDURE", "STATUS", "UPDATED")
    if any(s.reason for s in executions):  # quarantined ones: say why
        rows = [(*row, s.reason or "") for row, s in zip(rows, executions, strict=True)]
        headers = (*headers, "REASON")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        echo("  ".join(cells).rstrip())
    if hidden:
        echo(f"... and {hidden} older (--limit 0 lists them all)")


def show(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME[@VERSION]",
            help="The procedure, and optionally its version (default: the latest).",
        ),
    ],
    db: Db = DEFAULT_DB,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stored JSON document instead.")
    ] = False,
) -> None:
    """Show a registered procedure: its states (with actions, retry, timeouts, compensation)
    and transitions (with guards), or with --json its document.
    """
    execute(lambda: asyncio.run(_show(name, db, as_json)))


async def _show(spec: str, db: str, as_json: bool) -> None:
    """Print the stored procedure ``spec`` (``NAME[@VERSION]``), or its document as JSON."""
    name, version = _split_name(spec)
    async with open_store(db, read_only=True, missing=f"no procedure {spec!r}") as store:
        try:
            procedure = await store.get(name, version)
        except ProcedureNotFound as exc:
            raise CommandError(ExitCode.NOT_FOUND, f"error: {exc} in {db_name(db)}") from None
        versions = [p.version for p in await store.list() if p.name == name]
    if as_json:
        echo_json(json.loads(procedure.model_dump_json(exclude_unset=True)))
        return
    for line in _summary_lines(procedure, versions):
        echo(line)


def _summary_lines(procedure: Procedure, versions: Sequence[str]) -> list[str]:
    """What ``show`` prints: the procedure's header lines, then each state (indented by its
    depth) with its action, retry policy, timeouts, compensation and transitions as written."""
    definition = procedure.definition
    chart = build_chart(procedure)
    states = [s for s in chart if s.kind != "region"]
    transitions = sum(len(s.transitions) for s in states)
    lines = [f"procedure    {procedure.name} {procedure.version}"]
    if procedure.description:
        lines.append(f"description  {procedure.description}")
    lines.append(f"versions     {', '.join(versions)}")
    lines.append(f"initial      {definition.initial_state}")
    lines.append(f"states       {len(states)}")
    lines.append(f"transitions  {transitions}")
    lines.append("")
    for node in states:
        state = node.state
        assert state is not None  # not a region
        indent = "  " * (paths.depth(node.path) - 1)
        kind = _kind_text(node, state)
        head = f"{indent}{node.name}" + (f"  ({kind})" if kind else "")
        lines.append(head)
        lines += [f"{indent}    {detail}" for detail in _detail_lines(state)]
    return lines


def _kind_text(node: ChartState, state: StateDef) -> str:
    """What ``show`` says after a state's name: compound (with its initial state), parallel
    (with its regions), terminal (and whether a failure), or nothing for a plain state."""
    if node.kind == "compound":
        return f"compound, initial {state.initial_state}"
    if node.kind == "parallel":
        return f"parallel: {', '.join(state.parallel or ())}"
    if node.kind == "choice":
        return "choice"
    if node.terminal:
        failure = ", failure" if state.outcome == "failure" else ""
        if state.error is not None or state.cause is not None:
            failure += f" {state.error or 'Failed'}" + (f": {state.cause}" if state.cause else "")
        return "terminal" + failure
    return ""


def _detail_lines(state: StateDef) -> list[str]:
    """A state's action, wait or choice rules, retry policy, timeout, compensation and
    transitions (with their guards), one line each, as written."""
    details = _kind_lines(state)
    if state.retry is not None:
        details.append(describe_retry(state.retry))
    if state.timeout_ms is not None:
        details.append(f"timeout {state.timeout_ms:g}ms")
    if state.compensate is not None:
        details.append(f"compensate {describe_action(state.compensate)}")
    if state.compensate_retry is not None:
        details.append("compensate " + describe_retry(state.compensate_retry))
    details += [_transition_line(transition) for transition in state.transitions]
    return details


def _kind_lines(state: StateDef) -> list[str]:
    """What the state does: its action, its wait, or its choice rules in order."""
    details = []
    if state.action is not None:
        timeout = state.action.timeout_ms
        limit = f" (timeout {timeout:g}ms)" if timeout is not None else ""
        details.append(f"action {describe_action(state.action)}{limit}")
    if state.wait is not None:
        details.append(describe_wait(state.wait))
    for n, rule in enumerate(state.choice or (), start=1):
        details.append(f"({n}) [{rule.guard}] -> {rule.target}")
    if state.default is not None:
        details.append(f"default -> {state.default}")
    return details


def _transition_line(transition: TransitionDef) -> str:
    """``on EVENT (ERRORS) [GUARDS] -> TARGET``."""
    guards = []
    if transition.guard:
        guards.append(f"[{transition.guard}]")
    guards += [f"[{name}]" for name in transition.conditions]
    guards += [f"[!{name}]" for name in transition.unless]
    guard = f" {' '.join(guards)}" if guards else ""
    caught = f" ({', '.join(transition.errors)})" if transition.errors is not None else ""
    return f"on {transition.event}{caught}{guard} -> {transition.target}"


def _split_name(spec: str) -> tuple[str, str | None]:
    """``NAME[@VERSION]``."""
    name, sep, version = spec.rpartition("@")
    if not sep:
        return spec, None
    if not name or not version:
        raise typer.BadParameter(
            f"{spec!r} is not NAME or NAME@VERSION", param_hint="NAME[@VERSION]"
        )
    return name, version


def history(
    execution_id: Annotated[str, typer.Argument(metavar="EXECUTION_ID")],
    db: Db = DEFAULT_DB,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the execution's snapshot (with its history) as JSON."),
    ] = False,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-T", help="Start each record with its time.")
    ] = False,
    full: Full = False,
) -> None:
    """Print an execution's stored history, one line per record (as `run` prints them), then
    its context and status.

    The store is opened read-only: an unfinished execution is shown, not resumed.
    """
    execute(lambda: asyncio.run(_history(execution_id, db, as_json, timestamps, full)))


async def _history(
    execution_id: str, db: str, as_json: bool, timestamps: bool, full: bool = False
) -> None:
    """Print the stored execution's records, context and status, or its snapshot as JSON."""
    missing = f"no execution {execution_id!r}"
    async with open_store(db, read_only=True, missing=missing) as store:
        try:
            execution = await store.get_execution(execution_id)
        except ExecutionNotFound as exc:
            raise CommandError(ExitCode.NOT_FOUND, f"error: {exc}") from None
        state = execution.state
    if as_json:
        echo_json(state.model_dump(mode="json"))
        return
    echo(f"procedure   {state.procedure} {state.version}")
    echo(f"execution   {state.id}")
    for record in state.history:
        line = format_record(record, full)
        echo(
            f"{record.at.astimezone().isoformat(timespec='milliseconds')}  {line}"
            if timestamps
            else line
        )
    echo(context_line(state.context, full))
    echo(f"status      {status_text(state.status)} (state: {state.current})")
    if state.error is not None:
        echo(error_line(state.error))
