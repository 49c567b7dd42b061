"""The typer application: its help, its top-level options (``--version``, ``--help``) and its
commands, each from its own module, in the order ``procstore --help`` lists them."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Annotated

import typer

from procstore.cli import (
    asl,
    clients,
    diagram,
    exits,
    inspect,
    mcp,
    resume,
    run,
    schema,
    validate,
    worker,
)
from procstore.cli.exits import ExitCode
from procstore.cli.options import DB_ENVVAR, DEFAULT_DB
from procstore.cli.output import echo

#: The ``procstore`` command.
app = typer.Typer(
    name="procstore",
    help=(
        "procstore: declarative, versioned workflow procedures (JSON/YAML) run on "
        "transitions' AsyncMachine, persisted in an embedded SQLite database.\n\n"
        f"Commands that use a store take --db URL (default {DEFAULT_DB}, i.e. "
        f"./procstore.db; or set {DB_ENVVAR}). See `procstore COMMAND --help` for each "
        "command.\n\n" + exits.app_exit_codes()
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _package_version() -> str:
    """The installed procstore's version."""
    try:
        return metadata.version("procstore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        echo(f"procstore {_package_version()}")
        raise typer.Exit(ExitCode.OK)


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


def _command(name: str, short_help: str, function: Callable[..., None]) -> None:
    """Add ``function`` to `app` as command ``name``: ``short_help`` is its line in
    ``procstore --help``, the exit codes it can end with (`exits.epilog`) close its own help."""
    app.command(name=name, epilog=exits.epilog(name), short_help=short_help)(function)


# The commands, in the order ``procstore --help`` lists them.
_command("run", "Register FILE's procedure and run it to completion.", run.run)
_command("resume", "Carry on unfinished executions to completion.", resume.resume)
_command("worker", "Run the store's executions until stopped (SIGTERM, Ctrl-C).", worker.worker)
_command("send", "Send an event to an execution, wherever it runs.", clients.send)
_command("callback", "Complete a callback token: success with data, or failure.", clients.callback)
_command("cancel", "Cancel an execution, wherever it runs.", clients.cancel)
_command("status", "Show an execution's status, state and context.", clients.status)
_command("wait", "Wait until an execution ends, wherever it runs.", clients.wait)
_command("list", "List the registered procedures and the executions.", inspect.list_)
_command("show", "Show a registered procedure's states and transitions.", inspect.show)
_command("history", "Print an execution's stored history.", inspect.history)
_command("diagram", "Draw a procedure's state diagram: SVG, PNG, DOT or Mermaid.", diagram.diagram)
_command("schema", "Print the JSON Schema of procedure documents.", schema.schema)
_command("validate", "Check procedure files, printing every problem.", validate.validate)
_command("mcp", "Serve the store to AI agents (Model Context Protocol).", mcp.mcp)
_command("import-asl", "Translate a Step Functions (ASL) definition.", asl.import_asl_command)
