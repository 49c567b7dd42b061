"""The ``procstore`` command line: run and validate procedure files.

Exit codes (every command):

* ``0`` - success: the run completed, or every file is valid;
* ``1`` - the run ended without completing (status ``failed``, ``cancelled``, ``rolled_back``),
  or at least one file is invalid;
* ``2`` - usage error: bad option or argument, unreadable file, ``--context`` that is not a JSON
  object, or (for ``run``) a procedure file that does not validate;
* ``3`` - ``run`` only: the execution did not finish within ``--timeout`` (for instance, it waits
  in a state without an action for an event that nothing sends).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

from procstore import (
    ExecutionState,
    HistoryRecord,
    InvalidProcedure,
    Procedure,
    ProcedureStore,
    ProcstoreError,
    Status,
)

EXIT_OK = 0
EXIT_NOT_COMPLETED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


_RUN_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  the execution completed\n"
    "  1  it ended failed, cancelled or rolled back\n"
    "  2  usage error: bad option, unreadable FILE, bad --context, or FILE is not a valid\n"
    "     procedure (its problems are printed as FILE: $.json.path: message)\n"
    "  3  it did not finish within --timeout"
)
_VALIDATE_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  every FILE is valid\n"
    "  1  at least one FILE is invalid, missing or unreadable\n"
    "  2  usage error (bad option, no FILE given)"
)
_EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  success: the run completed, or every file is valid\n"
    "  1  the run ended failed, cancelled or rolled back, or a file is invalid\n"
    "  2  usage error (for run: also a procedure that does not validate)\n"
    "  3  run: the execution did not finish within --timeout"
)

app = typer.Typer(
    name="procstore",
    help=(
        "procstore: declarative, versioned workflow procedures (JSON/YAML) run on "
        "transitions' AsyncMachine.\n\nSee `procstore COMMAND --help` for each command.\n\n"
        + _EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _package_version() -> str:
    try:
        return metadata.version("procstore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"procstore {_package_version()}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print procstore's version and exit.",
        ),
    ] = False,
) -> None:
    """procstore: declarative, versioned workflow procedures run on transitions' AsyncMachine."""


# --------------------------------------------------------------------------------------------
# helpers


def _add_to_sys_path(directory: Path) -> None:
    """Put ``directory`` first on ``sys.path`` so an actions module beside a file imports."""
    entry = str(directory.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _parse_context(raw: str | None) -> dict[str, Any]:
    """``--context``: a JSON object, or ``@path`` naming a file that holds one."""
    if raw is None:
        return {}
    text = raw
    source = "--context"
    if raw.startswith("@"):
        path = Path(raw[1:])
        source = f"--context file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {path}: {exc.strerror or exc}", param_hint="--context"
            ) from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{source} is not valid JSON: {exc}", param_hint="--context"
        ) from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f"{source} must be a JSON object, got {type(value).__name__}", param_hint="--context"
        )
    return value


def _status_text(status: Status | str | None) -> str:
    if status is None:
        return "-"
    return str(getattr(status, "value", status))


def _value_text(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def format_record(record: HistoryRecord) -> str:
    """One plain line for one history record."""
    kind = record.kind
    if kind == "entered":
        cause = f" (on {record.event})" if record.event is not None else ""
        return f"entered     {record.state}{cause}"
    if kind == "action":
        attempt = f" #{record.attempt}" if record.attempt is not None else ""
        if record.error is not None:
            return (
                f"action      {record.state}{attempt} error: "
                f"{record.error.type}: {record.error.message}"
            )
        result = "" if record.result is None else f" -> {_value_text(record.result)}"
        return f"action      {record.state}{attempt} ok{result}"
    if kind == "transition":
        return f"transition  {record.state} --{record.event}--> {record.target}"
    if kind == "log":
        return f"log         {record.state}: {record.message}"
    if kind == "reset":
        return f"reset       -> {record.state}"
    if kind == "finished":
        return f"finished    {record.state}: {_status_text(record.status)}"
    # Any other kind (an event the state had no transition for, ...): show what it carries.
    fields: list[str] = []
    for name in ("state", "event", "target", "attempt", "delay_ms", "message"):
        value = getattr(record, name, None)
        if value is not None:
            fields.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    if record.result is not None:
        fields.append(f"result={_value_text(record.result)}")
    if record.error is not None:
        fields.append(f"error={record.error.type}: {record.error.message}")
    if record.status is not None:
        fields.append(f"status={_status_text(record.status)}")
    return f"{kind:<11} {' '.join(fields)}".rstrip()


def _problem_lines(label: str, exc: BaseException) -> list[str]:
    """``FILE: $.json.path: message`` lines for whatever went wrong loading ``label``."""
    if isinstance(exc, InvalidProcedure):
        lines = [f"{label}: {problem.path}: {problem.message}" for problem in exc.errors]
        return lines or [f"{label}: $: {exc}"]
    if isinstance(exc, ProcstoreError):
        return [f"{label}: $: {exc}"]
    if isinstance(exc, OSError):
        return [f"{label}: $: cannot read file: {exc.strerror or exc}"]
    return [f"{label}: $: {type(exc).__name__}: {exc}"]


def _module_hint(exc: BaseException, allowed: Sequence[str]) -> str | None:
    """A hint when a problem is about a function action's module, which --allow-module fixes."""
    if not isinstance(exc, InvalidProcedure):
        return None
    if any(
        problem.path.endswith(".module") and "allowed" in problem.message for problem in exc.errors
    ):
        shown = ", ".join(allowed) if allowed else "none"
        return (
            f"hint: function actions may only use modules given with --allow-module "
            f"(allowed now: {shown})"
        )
    return None


async def _load(path: Path, allowed: Sequence[str]) -> tuple[ProcedureStore, Procedure]:
    _add_to_sys_path(path.parent)
    store = ProcedureStore(allowed_modules=list(allowed))
    procedure = await store.register(path)
    return store, procedure


async def _run(
    path: Path,
    context: dict[str, Any],
    allowed: Sequence[str],
    timeout: float,
    echo: Callable[[str], None],
) -> int:
    try:
        store, procedure = await _load(path, allowed)
    except Exception as exc:
        for line in _problem_lines(str(path), exc):
            typer.echo(line, err=True)
        hint = _module_hint(exc, allowed)
        if hint:
            typer.echo(hint, err=True)
        return EXIT_USAGE

    echo(f"procedure   {procedure.name} {procedure.version}")
    execution = await store.start(procedure.name, procedure.version, context, auto=True)
    echo(f"execution   {execution.id}")

    # Print each history record as it happens while the execution is driven to its end.
    async def follow() -> None:
        async for record in execution.watch():
            echo(format_record(record))

    final: ExecutionState
    timed_out = False
    try:
        await asyncio.wait_for(follow(), timeout)
        final = execution.state
    except TimeoutError:
        timed_out = True
        final = execution.state

    echo(f"context     {_value_text(final.context, limit=400)}")
    status = _status_text(final.status)
    if timed_out:
        echo(f"timeout     still {status} in state {final.current} after {timeout:g}s")
        return EXIT_TIMEOUT
    echo(f"status      {status} (state: {final.current})")
    return EXIT_OK if final.status == Status("completed") else EXIT_NOT_COMPLETED


async def _validate(paths: Iterable[Path], allowed: Sequence[str]) -> list[tuple[Path, list[str]]]:
    results: list[tuple[Path, list[str]]] = []
    for path in paths:
        label = str(path)
        if not path.is_file():
            problem = "no such file" if not path.exists() else "not a file"
            results.append((path, [f"{label}: $: {problem}"]))
            continue
        try:
            await _load(path, allowed)
        except Exception as exc:
            lines = _problem_lines(label, exc)
            hint = _module_hint(exc, allowed)
            if hint:
                lines.append(f"{label}: {hint}")
            results.append((path, lines))
        else:
            results.append((path, []))
    return results


# --------------------------------------------------------------------------------------------
# commands

AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        "-m",
        metavar="MODULE",
        help=(
            "Module that function actions may name (repeatable). The directory of each FILE is "
            "put on sys.path, so an actions module beside the file imports."
        ),
    ),
]


@app.command(epilog=_RUN_EXIT_CODES)
def run(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Procedure document (.json, .yaml or .yml).",
        ),
    ],
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
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            "-t",
            min=0.0,
            metavar="SECONDS",
            help="Seconds to wait for the execution to finish.",
        ),
    ] = 60.0,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the actions' INFO log lines on stderr."),
    ] = False,
) -> None:
    """Run a procedure to completion, printing each state entered, action and transition.

    The procedure in FILE is registered in an in-memory store and started with the given
    context; outcome events fire by themselves until the execution finishes. The last lines
    give the final context and status.
    """
    start_context = _parse_context(context)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # transitions logs every callback at INFO: keep it to warnings, --verbose is for actions.
    logging.getLogger("transitions").setLevel(logging.WARNING)

    def echo(line: str) -> None:
        typer.echo(line)

    code = asyncio.run(_run(file, start_context, allow_module or [], timeout, echo))
    raise typer.Exit(code)


@app.command(epilog=_VALIDATE_EXIT_CODES)
def validate(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="Procedure documents (.json, .yaml or .yml) to check."),
    ],
    allow_module: AllowModule = None,
) -> None:
    """Validate procedure files, printing every problem as `FILE: $.json.path: message`.

    Each file is registered into a throwaway in-memory store, so every check done at
    registration applies (schema, targets, reachability, allowed modules). A valid file prints
    `FILE: ok`.
    """
    results = asyncio.run(_validate(files, allow_module or []))
    invalid = False
    for path, lines in results:
        if lines:
            invalid = True
            for line in lines:
                typer.echo(line)
        else:
            typer.echo(f"{path}: ok")
    raise typer.Exit(EXIT_NOT_COMPLETED if invalid else EXIT_OK)


def main() -> None:
    """Entry point of the ``procstore`` script."""
    app(prog_name="procstore")


if __name__ == "__main__":  # pragma: no cover
    main()
