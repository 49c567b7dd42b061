"""``procstore send``, ``cancel``, ``status`` and ``wait``: driving and watching an execution
from outside the process that runs it.

Each opens the store as a client (``ProcedureStore(db, worker=False)``; ``status`` and ``wait``
read-only too), so it works beside the process that runs the execution (``procstore run``,
``resume``, an application), and also when none does: what ``send`` and ``cancel`` queue waits
in the store's inbox for the next runner, which applies it once. When no process runs the
store's executions, each says so on stderr, with the command that would.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from procstore import (
    ExecutionDamaged,
    ExecutionNotFound,
    ExecutionState,
    InvalidEvent,
    ProcedureStore,
    RemoteExecution,
    Status,
    documents,
)
from procstore.cli.db import db_missing, db_name
from procstore.cli.exits import CommandError, ExitCode, execute
from procstore.cli.options import DEFAULT_DB, DEFAULT_TIMEOUT_S, AsJson, Db, Full, Timeout
from procstore.cli.output import context_line, echo, echo_json, error_line, status_text

ExecutionId = Annotated[str, typer.Argument(metavar="EXECUTION_ID", show_default=False)]


def send(
    execution_id: ExecutionId,
    event: Annotated[str, typer.Argument(metavar="EVENT", help="The event to send.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            metavar="JSON|@FILE",
            help="What the event carries: JSON, or @path to a file holding it.",
        ),
    ] = None,
    db: Db = DEFAULT_DB,
) -> None:
    """Send EVENT to an execution, wherever it runs.

    With --data the event carries that JSON value (guards read it as event["data"], a
    transition's assign as $$.event.data); it is queued with the event. Data that is not
    JSON is a usage error (exit 2); data over the size limit is refused (exit 6).

    The event is queued in the store's inbox and the command returns: the process that runs
    the execution (`procstore run`, `resume`, an application) applies it once, after the
    events queued before it, as the execution's own send() would; what it did shows in
    `procstore history` (a `received` record, then the transition or why it was refused).
    When no process runs the store's executions it waits there, and stderr says so with
    the command that runs it.

    An event the execution can never take (it has finished, or no state of its procedure
    has a transition on EVENT) is refused at once (exit 6).
    """
    execute(lambda: asyncio.run(_send(execution_id, event, _parse_data(data), db)))


def _parse_data(raw: str | None) -> Any:
    """``--data``: JSON, or ``@path`` naming a file that holds it (read like a procedure
    document: a regular file of at most ``MAX_DOCUMENT_BYTES``); exit 2 in one line when it is
    neither."""
    if raw is None:
        return None
    source = "--data"
    try:
        if raw.startswith("@"):
            source = f"--data file {raw[1:]}"
            return documents.parse_json(documents.read_text(Path(raw[1:])))
        return documents.parse_json(raw)
    except documents.DocumentError as exc:
        problem = exc.problems[0] if exc.problems else "not valid JSON"
        raise CommandError(ExitCode.USAGE, f"error: {source}: {problem}") from None


async def _send(execution_id: str, event: str, data: Any, db: str) -> None:
    async with _remote(db, execution_id) as (store, execution):
        try:
            await execution.send(event, data)
        except InvalidEvent as exc:
            raise CommandError(ExitCode.REFUSED, f"error: {exc}") from None
        echo(f"queued      {event} for execution {execution_id} (in {execution.current})")
        await _say_if_nobody_runs(store, execution_id, db)


def callback(
    token: Annotated[
        str, typer.Argument(metavar="TOKEN", help="The token the waiting state handed out.")
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            metavar="JSON|@FILE",
            help="The callback succeeded with this: JSON, or @path to a file holding it.",
        ),
    ] = None,
    fail: Annotated[
        str | None,
        typer.Option("--fail", metavar="ERROR", help="The callback failed with this error name."),
    ] = None,
    cause: Annotated[
        str, typer.Option("--cause", metavar="TEXT", help="Why it failed (with --fail).")
    ] = "",
    db: Db = DEFAULT_DB,
) -> None:
    """Complete the callback TOKEN: its state fires success (with --data) or, with --fail,
    error, wherever the execution runs.

    A state with "callback": true hands a token to its action, which passes it to an outside
    system; that system (or you) completes it here, knowing nothing of the execution's
    states. It is queued in the store's inbox like `send`, and applied once; a token no state
    waits for any more shows there as `received ... refused`.
    """
    if fail is not None and data is not None:
        raise typer.BadParameter("give --data (success) or --fail (failure), not both")
    payload = _parse_data(data)
    execute(lambda: asyncio.run(_callback(token, payload, fail, cause, db)))


async def _callback(token: str, data: Any, fail: str | None, cause: str, db: str) -> None:
    if db_missing(db):
        raise CommandError(ExitCode.NOT_FOUND, f"error: no database at {db_name(db)}")
    async with ProcedureStore(db, worker=False) as store:
        try:
            if fail is None:
                await store.complete_callback(token, data)
            else:
                await store.fail_callback(token, fail, cause)
        except InvalidEvent as exc:
            raise CommandError(ExitCode.REFUSED, f"error: {exc}") from None
        except ExecutionNotFound as exc:
            raise CommandError(ExitCode.NOT_FOUND, f"error: {exc}") from None
        except ExecutionDamaged as exc:
            raise CommandError(ExitCode.STORE, f"error: {exc}") from None
        execution_id = token.rpartition(".")[0]
        what = "success" if fail is None else f"error {fail}"
        echo(f"queued      {what} for the callback of execution {execution_id}")
        await _say_if_nobody_runs(store, execution_id, db)


def cancel(
    execution_id: ExecutionId,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Also compensate the completed actions, newest first (it ends rolled_back).",
        ),
    ] = False,
    db: Db = DEFAULT_DB,
) -> None:
    """Cancel an execution, wherever it runs.

    The cancel is queued in the store's inbox, as `send` queues an event: the process that
    runs the execution stops its running actions and ends it `cancelled` (with --rollback,
    after compensating what it did). An execution that has ended already is left as it is.
    """
    execute(lambda: asyncio.run(_cancel(execution_id, rollback, db)))


async def _cancel(execution_id: str, rollback: bool, db: str) -> None:
    async with _remote(db, execution_id) as (store, execution):
        await execution.cancel(rollback=rollback)
        if execution.status is not Status.RUNNING:
            status = status_text(execution.status)
            echo(f"execution   {execution_id} has already ended: {status}; nothing to cancel")
            return
        what = "cancel with rollback" if rollback else "cancel"
        echo(f"queued      {what} for execution {execution_id} (in {execution.current})")
        await _say_if_nobody_runs(store, execution_id, db)


def status(execution_id: ExecutionId, db: Db = DEFAULT_DB, as_json: AsJson = False) -> None:
    """Show an execution as last committed: its status, state and context, and whether a
    process runs it.

    The store is opened read-only: this works beside the process that runs it, and changes
    nothing. `procstore history` prints the records.
    """
    execute(lambda: asyncio.run(_status(execution_id, db, as_json)))


async def _status(execution_id: str, db: str, as_json: bool) -> None:
    async with _remote(db, execution_id, read_only=True) as (store, execution):
        state = execution.state
        runner = await store.has_runner()
    if as_json:
        document: dict[str, Any] = state.model_dump(mode="json", exclude={"history"})
        echo_json({**document, "runner": runner})
        return
    echo(f"procedure   {state.procedure} {state.version}")
    echo(f"execution   {state.id}")
    if len(state.active) > 1:
        echo(f"active      {', '.join(state.active)}")
    echo(context_line(state.context, full=False))
    echo(f"status      {status_text(state.status)} (state: {state.current})")
    if state.error is not None:
        echo(error_line(state.error))
    if state.status is Status.RUNNING and not runner:
        _say_nobody_runs(execution_id, db)


def wait(
    execution_id: ExecutionId,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
    db: Db = DEFAULT_DB,
    full: Full = False,
) -> None:
    """Wait until an execution ends, wherever it runs, then print its context and status.

    It only waits: it drives nothing, and leaves the execution as it is when it gives up
    (--timeout, Ctrl-C). The exit code says how it ended: 0 completed, 1 failed, cancelled
    or rolled back, 3 still running after --timeout. When no process runs the store's
    executions, stderr says so with the command that runs it, and it waits all the same.
    """
    try:
        code = execute(lambda: asyncio.run(_wait(execution_id, timeout, db, full)))
    except KeyboardInterrupt:
        echo("interrupted: the execution is left as it is", err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(code)


async def _wait(execution_id: str, timeout: float, db: str, full: bool) -> ExitCode:
    async with _remote(db, execution_id, read_only=True) as (store, execution):
        if execution.status is Status.RUNNING and not await store.has_runner():
            _say_nobody_runs(execution_id, db)
        try:
            final: ExecutionState = await execution.run_to_completion(timeout)
        except TimeoutError:
            current = execution.current
            echo(f"timeout     still running in state {current} after {timeout:g}s")
            return ExitCode.TIMEOUT
    echo(context_line(final.context, full))
    echo(f"status      {status_text(final.status)} (state: {final.current})")
    if final.error is not None:
        echo(error_line(final.error))
    return ExitCode.OK if final.status is Status.COMPLETED else ExitCode.NOT_COMPLETED


@asynccontextmanager
async def _remote(
    db: str, execution_id: str, *, read_only: bool = False
) -> AsyncIterator[tuple[ProcedureStore[RemoteExecution], RemoteExecution]]:
    """The store at ``db`` opened as a client, and a handle on ``execution_id``; exit 4 when
    there is no such execution (or no database)."""
    if db_missing(db):
        raise CommandError(
            ExitCode.NOT_FOUND,
            f"error: no execution {execution_id!r}: no database at {db_name(db)}",
        )
    store = ProcedureStore(db, worker=False, read_only=read_only)
    try:
        try:
            execution = await store.get_execution(execution_id)
        except ExecutionNotFound as exc:
            raise CommandError(ExitCode.NOT_FOUND, f"error: {exc}") from None
        except ExecutionDamaged as exc:
            raise CommandError(ExitCode.STORE, f"error: {exc}") from None
        yield store, execution
    finally:
        await store.close()


async def _say_if_nobody_runs(
    store: ProcedureStore[RemoteExecution], execution_id: str, db: str
) -> None:
    if not await store.has_runner():
        _say_nobody_runs(execution_id, db)


def _say_nobody_runs(execution_id: str, db: str) -> None:
    """Say on stderr that no process runs the store's executions, and how to run this one."""
    words = ["procstore", "resume", execution_id]
    if db != DEFAULT_DB:
        words += ["--db", db]
    echo(
        f"note: no process runs the executions of {db_name(db)} now: what is queued waits "
        f"until one does, e.g. {shlex.join(words)} (with the --path and --allow-module "
        "options its actions need)",
        err=True,
    )
