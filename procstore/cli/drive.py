"""Driving executions to their end: what ``run`` and ``resume`` share.

`drive_command` runs a command's work with the output and logging it asked for and turns
Ctrl-C into exit 130 with the command that resumes; `drive` runs executions to completion while
their records are printed; `final_lines` and `exit_code_of` say how they ended.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import typer

from procstore import Execution, ExecutionState, ProcedureStore, Status
from procstore.cli.exits import ExitCode, execute
from procstore.cli.options import DEFAULT_DB
from procstore.cli.output import configure_logging, context_line, echo, error_line, status_text
from procstore.cli.progress import Follower, LiveOutput, Output, Tracker, make_output


def drive_command(
    verbose: bool, db: str, work: Callable[[Output, Session], Any], full: bool = False
) -> None:
    """Run ``work`` (``run``'s or ``resume``'s) with the output and the log lines the command
    line asked for, then exit with the code it returns; Ctrl-C exits with 130 and says how
    to resume what it started."""
    output = make_output(full=full)
    live_console = output.console if isinstance(output, LiveOutput) else None
    configure_logging(verbose, live_console)
    session = Session(db)
    try:
        code = execute(lambda: asyncio.run(work(output, session)))
    except KeyboardInterrupt:
        raise session.interrupted() from None
    raise typer.Exit(code)


class Session:
    """What a command started, for the message after Ctrl-C."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.execution_ids: list[str] = []
        # The options resume needs to find and allow the modules this command allowed.
        self.resume_flags: list[str] = []

    def resume_command(self, execution_id: str) -> str:
        """The ``procstore resume`` command that carries on ``execution_id`` with what this
        command had, quoted for a POSIX shell."""
        words = ["procstore", "resume", execution_id]
        if self.db != DEFAULT_DB:
            words += ["--db", self.db]
        return shlex.join([*words, *self.resume_flags])

    def interrupted(self) -> typer.Exit:
        """Say what Ctrl-C left running, and how to resume it; the exit to raise."""
        echo("interrupted", err=True)
        for execution_id in self.execution_ids:
            echo(
                f"execution {execution_id} stays running in the database: "
                f"{self.resume_command(execution_id)}",
                err=True,
            )
        return typer.Exit(ExitCode.INTERRUPTED)


async def drive(
    store: ProcedureStore,
    executions: Sequence[Execution],
    timeout: float,
    output: Output,
    since: datetime | None = None,
) -> list[tuple[Execution, bool]]:
    """Drive ``executions`` to their end (``run_to_completion``) at once, printing their
    records; returns each with whether it timed out."""
    several = len(executions) > 1
    trackers = []
    for execution in executions:
        procedure = await store.get(execution.procedure, execution.version)
        label = f"{execution.procedure}@{execution.version}"
        if several:
            label = f"{execution.id[:8]} {label}"
        trackers.append(Tracker(execution, procedure, label))
    followers = [
        Follower(tracker, output, f"{tracker.execution.id[:8]}  " if several else "", since)
        for tracker in trackers
    ]

    async def finish(execution: Execution) -> bool:
        try:
            await execution.run_to_completion(timeout)
        except TimeoutError:
            return True
        return False

    async with output.watch(trackers):
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(follower.follow()) for follower in followers]
        try:
            timed_out = await asyncio.gather(*(finish(execution) for execution in executions))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for follower in followers:
            follower.catch_up()
    return list(zip(executions, timed_out, strict=True))


def final_lines(
    output: Output, final: ExecutionState, timed_out: bool, timeout: float, session: Session
) -> None:
    """The last lines about one execution: its context, then its status, or (timed out) the
    command that resumes it."""
    output.line(context_line(final.context, output.full))
    status = status_text(final.status)
    if timed_out:
        output.line(
            f"timeout     still {status} in state {final.current} after {timeout:g}s", "yellow"
        )
        output.line(f"resume      {session.resume_command(final.id)}")
        return
    style = "bold green" if final.status == Status.COMPLETED else "bold red"
    output.line(f"status      {status} (state: {final.current})", style)
    if final.error is not None:
        output.line(error_line(final.error), style)


def exit_code_of(results: Sequence[tuple[ExecutionState, bool]]) -> ExitCode:
    """How a command that drove executions ends: 1 when one ended without completing, else
    3 when one timed out, else 0."""
    if any(not timed_out and s.status != Status.COMPLETED for s, timed_out in results):
        return ExitCode.NOT_COMPLETED
    if any(timed_out for _, timed_out in results):
        return ExitCode.TIMEOUT
    return ExitCode.OK
