"""``procstore run FILE``: register a procedure file and run it to completion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from procstore import InvalidProcedure, VersionConflict, documents
from procstore.cli.db import open_store
from procstore.cli.drive import Session, drive, drive_command, exit_code_of, final_lines
from procstore.cli.exits import CommandError, ExitCode
from procstore.cli.hostcode import HostCode, names_modules
from procstore.cli.options import (
    DEFAULT_DB,
    DEFAULT_TIMEOUT_S,
    AllowModule,
    Db,
    Full,
    LocalModules,
    ProcedureFile,
    Timeout,
    Verbose,
)
from procstore.cli.output import echo
from procstore.cli.procfile import invalid_lines, register_file
from procstore.cli.progress import Output


def run(
    file: ProcedureFile,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            "-c",
            metavar="JSON|@FILE",
            help="Start context: a JSON object, or @path to a file holding one.",
        ),
    ] = None,
    allow_module: AllowModule = None,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
    db: Db = DEFAULT_DB,
    verbose: Verbose = False,
    full: Full = False,
    local_modules: LocalModules = True,
) -> None:
    """Register FILE's procedure in the store and run it to completion, showing its progress.

    The procedure is registered in the --db store (again with identical content: nothing
    changes; with different content under the same name and version: exit 2, bump the
    version) and started with the given context; outcome events fire by themselves until the
    execution finishes. The execution id is printed first, so `procstore history ID` and
    `procstore resume ID` can find it.

    On a terminal a live status line shows the current state(s), the attempt and the elapsed
    time under the records; otherwise (a pipe, a file) each state entered, action and
    transition is one plain line. The last lines give the final context and status.
    """
    start_context = _parse_context(context)

    def work(output: Output, session: Session) -> Any:
        allowed = allow_module or []
        return run_file(file, start_context, allowed, timeout, db, output, session, local_modules)

    drive_command(verbose, db, work, full)


def _parse_context(raw: str | None) -> dict[str, Any]:
    """``--context``: a JSON object, or ``@path`` naming a file that holds one (read like a
    procedure document: a regular file of at most ``MAX_DOCUMENT_BYTES``)."""
    if raw is None:
        return {}
    source = "--context"
    try:
        if raw.startswith("@"):
            source = f"--context file {raw[1:]}"
            value = documents.parse_json(documents.read_text(Path(raw[1:])))
        else:
            value = documents.parse_json(raw)
    except documents.DocumentError as exc:
        problems = "; ".join(str(p) for p in exc.problems[:3])
        if len(exc.problems) > 3:
            problems += f" (and {len(exc.problems) - 3} more)"
        raise typer.BadParameter(f"{source}: {problems}", param_hint="--context") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f"{source} must be a JSON object, got {type(value).__name__}", param_hint="--context"
        )
    return value


async def run_file(
    path: Path,
    context: dict[str, Any],
    allowed: Sequence[str],
    timeout: float,
    db: str,
    output: Output,
    session: Session,
    local_modules: bool = True,
) -> ExitCode:
    """Register the procedure file ``path`` with the host code beside it and the ``allowed``
    modules, start it with ``context`` and drive it to its end (or ``timeout``), printing to
    ``output``; the exit code."""
    code = HostCode.beside(path, allowed, local_modules)
    # Checked first in memory, as validate checks it: an invalid FILE never creates the
    # database (./procstore.db by default) just to be refused.
    try:
        _, warned = await register_file(code.store(), path)
    except InvalidProcedure as exc:
        raise CommandError(ExitCode.USAGE, *invalid_lines(path, exc, code)) from None
    for line in warned:
        echo(line, err=True)
    async with open_store(db, code=code) as store:
        try:
            procedure, _ = await register_file(store, path)  # its warnings were said above
        except VersionConflict as exc:
            raise CommandError(
                ExitCode.USAGE,
                f"{path}: $.version: {exc}",
                f"hint: a registered version never changes: bump the version in {path} "
                f"(or use another --db)",
            ) from None
        except InvalidProcedure as exc:
            raise CommandError(ExitCode.USAGE, *invalid_lines(path, exc, code)) from None

        session.resume_flags = code.resume_flags(names_modules(procedure))
        output.line(f"procedure   {procedure.name} {procedure.version}")
        execution = await store.start(procedure.name, procedure.version, context, auto=True)
        session.execution_ids.append(execution.id)
        output.line(f"execution   {execution.id}")
        [(_, timed_out)] = await drive(store, [execution], timeout, output)
        final = execution.state
        final_lines(output, final, timed_out, timeout, session)
        return exit_code_of([(final, timed_out)])
