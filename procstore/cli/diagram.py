"""``procstore diagram``: a procedure's state diagram (SVG, PNG, DOT or Mermaid), optionally
with a stored execution drawn on top."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from procstore import ExecutionNotFound, ExecutionState, InvalidProcedure, Procedure
from procstore.cli.db import open_store
from procstore.cli.exits import CommandError, ExitCode, execute
from procstore.cli.options import DEFAULT_DB, Db, DrawnFile
from procstore.cli.output import echo, echo_document
from procstore.cli.procfile import invalid_lines
from procstore.validation import load_document


class DiagramFormat(enum.StrEnum):
    """The formats ``procstore diagram`` writes."""

    svg = "svg"
    png = "png"
    dot = "dot"
    mermaid = "mermaid"


class RankDir(enum.StrEnum):
    """Graphviz's layout direction."""

    TB = "TB"
    LR = "LR"
    BT = "BT"
    RL = "RL"


def diagram(
    file: DrawnFile = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="OUT", dir_okay=False, help="Write here, not to stdout."
        ),
    ] = None,
    fmt: Annotated[
        DiagramFormat | None,
        typer.Option(
            "--format",
            "-f",
            help=(
                "Output format. Default: from OUT's suffix (.svg .png .dot .gv .mmd .mermaid), "
                "dot without -o."
            ),
            show_default=False,
        ),
    ] = None,
    execution: Annotated[
        str | None,
        typer.Option(
            "--execution",
            "-e",
            metavar="ID",
            help=(
                "Draw this stored execution on top: its current state, the transitions it took "
                "(and how often), the states that failed or were compensated."
            ),
        ),
    ] = None,
    db: Db = DEFAULT_DB,
    rankdir: Annotated[
        RankDir,
        typer.Option("--rankdir", help="Graphviz layout direction (svg, png, dot)."),
    ] = RankDir.TB,
    allow_invalid: Annotated[
        bool,
        typer.Option(
            "--allow-invalid",
            help=(
                "Draw FILE even when it is invalid (a target that names no state is drawn as "
                "one), to debug it; its problems are printed on stderr as warnings."
            ),
        ),
    ] = False,
) -> None:
    """Export a procedure's state diagram: SVG or PNG (through Graphviz), DOT, or Mermaid.

    FILE is checked as validate checks it, except that modules and guard predicates are not
    looked for, so a procedure can be drawn before it runs anywhere. An invalid FILE draws
    nothing: its problems are printed (exit 2); --allow-invalid draws it all the same, with the
    problems as warnings on stderr. Without -o the text formats (dot, mermaid, svg) go to stdout.
    With --execution ID the execution's snapshot is read from --db (read-only) and drawn over
    the procedure.
    """
    execute(lambda: asyncio.run(_diagram(file, out, fmt, execution, db, rankdir, allow_invalid)))


async def _diagram(
    file: Path | None,
    out: Path | None,
    fmt: DiagramFormat | None,
    execution_id: str | None,
    db: str,
    rankdir: RankDir,
    allow_invalid: bool = False,
) -> None:
    """Draw FILE's procedure (or the stored one of ``execution_id``) in the format chosen,
    with the execution over it, to ``out`` or stdout."""
    # Imported when a diagram is drawn, so the other commands start without it.
    from procstore import diagrams

    if file is None and execution_id is None:
        raise CommandError(
            ExitCode.USAGE, "error: give FILE, or --execution ID to draw a stored one"
        )
    chosen = _chosen_format(fmt, out)
    source = _procedure_to_draw(file, allow_invalid) if file is not None else None

    snapshot: ExecutionState | None = None
    if execution_id is not None:
        missing = f"no execution {execution_id!r}"
        async with open_store(db, read_only=True, missing=missing) as store:
            try:
                snapshot = (await store.get_execution(execution_id)).state
            except ExecutionNotFound as exc:
                raise CommandError(ExitCode.NOT_FOUND, f"error: {exc}") from None
            if source is None:
                source = await store.get(snapshot.procedure, snapshot.version)
        if (source.name, source.version) != (snapshot.procedure, snapshot.version):
            raise CommandError(
                ExitCode.USAGE,
                f"error: execution {execution_id} runs {snapshot.procedure} {snapshot.version}, "
                f"but {file} is {source.name} {source.version} (leave FILE out to draw the "
                "stored procedure)",
            )
    assert source is not None

    if out is not None:
        with _graphviz_errors(chosen):
            diagrams.save(source, out, chosen, snapshot, rankdir=rankdir.value)
        echo(f"wrote {out} ({chosen})", err=True)
        return
    with _graphviz_errors(chosen):
        data = diagrams.render(source, chosen, snapshot, rankdir=rankdir.value)
    _print(data, chosen)


@contextlib.contextmanager
def _graphviz_errors(chosen: str) -> Iterator[None]:
    """Drawing in the ``chosen`` format, where Graphviz is missing or too slow: a command
    error that says what to do instead."""
    import graphviz

    from procstore.diagrams.dot import DiagramTimeout

    try:
        yield
    except graphviz.ExecutableNotFound:
        raise CommandError(
            ExitCode.STORE,
            f"error: {chosen} needs Graphviz's dot program, which is not installed "
            "(apt install graphviz / brew install graphviz); dot and mermaid need nothing",
        ) from None
    except DiagramTimeout as exc:
        raise CommandError(
            ExitCode.STORE, f"error: {exc}; --format dot or mermaid gives the chart's text at once"
        ) from None


def _chosen_format(fmt: DiagramFormat | None, out: Path | None) -> str:
    """The format to write: ``fmt``, else the one OUT's suffix names, else dot. A PNG for a
    terminal is refused (it is a file's content, not text)."""
    from procstore import diagrams

    if fmt is not None:
        chosen: str = fmt.value
    elif out is not None:
        try:
            chosen = diagrams.format_for(out)
        except ValueError as exc:
            raise CommandError(ExitCode.USAGE, f"error: {exc}; or give --format") from None
    else:
        chosen = "dot"
    if chosen == "png" and out is None and sys.stdout.isatty():
        raise CommandError(ExitCode.USAGE, "error: a PNG goes to a file: give -o OUT.png")
    return chosen


def _print(data: str | bytes, chosen: str) -> None:
    """Write the rendered diagram to stdout: a PNG as bytes, text as the document it is."""
    if isinstance(data, bytes) and chosen == "png":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    echo_document(text)


def _procedure_to_draw(file: Path, allow_invalid: bool) -> Procedure:
    """FILE's procedure, checked as registering it would check it except for the host code
    (modules and guard predicates are not resolved: a procedure can be drawn before it runs
    anywhere). An invalid one ends the command with its problems, unless ``allow_invalid``:
    then they are warnings on stderr and what the schema accepts is drawn (a target that
    names no state, to debug the procedure)."""
    from procstore.diagrams.extract import as_procedure

    try:
        procedure = load_document(file, None, None).procedure
    except InvalidProcedure as exc:
        lines = invalid_lines(file, exc)
        if not allow_invalid:
            raise CommandError(
                ExitCode.USAGE, *lines, f"{file}: hint: --allow-invalid draws it all the same"
            ) from None
        try:
            procedure = as_procedure(file)
        except (InvalidProcedure, ValidationError):
            raise CommandError(
                ExitCode.USAGE,
                *lines,
                f"{file}: cannot be drawn until its schema problems are fixed",
            ) from None
        for line in lines:
            echo(f"warning: {line}", err=True)
    return procedure
