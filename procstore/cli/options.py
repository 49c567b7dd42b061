"""The options several commands share, defined once: ``--db``, ``--allow-module``,
``--local-modules``, ``--path``, ``--timeout``, ``--verbose``, ``--json``, ``--full``, and the
procedure FILE argument.

A command's own options (``run --context``, ``list --status``, ``diagram --format``, ...) are
defined with the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from procstore import StoreError
from procstore.cli.exits import ExitCode
from procstore.cli.output import CONTEXT_SHOWN_CHARS, RESULT_SHOWN_CHARS
from procstore.storage.urls import is_postgres_url
from procstore.store import sqlite_path

#: The store every command uses unless ``--db`` (or ``PROCSTORE_DB``) says otherwise: the file
#: ``procstore.db`` in the working directory.
DEFAULT_DB = "sqlite:///procstore.db"
#: The environment variable that replaces `DEFAULT_DB`; ``--db`` wins over it.
DB_ENVVAR = "PROCSTORE_DB"


def check_db(value: str) -> str:
    """``--db``: a ``sqlite:///`` URL (the file need not exist yet) or a ``postgresql://`` one."""
    if is_postgres_url(value):
        return value
    try:
        sqlite_path(value)
    except StoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from exc
    return value


def _procedure_file(help: str, show_default: bool = True) -> Any:
    """A FILE argument: a procedure document that must exist and be a readable file."""
    return typer.Argument(
        metavar="FILE",
        exists=True,
        dir_okay=False,
        readable=True,
        help=help,
        show_default=show_default,
    )


#: ``run``: the procedure document to run.
ProcedureFile = Annotated[Path, _procedure_file("Procedure document (.json, .yaml or .yml).")]
#: ``diagram``: the procedure document to draw; optional with ``--execution``.
DrawnFile = Annotated[
    Path | None,
    _procedure_file(
        "Procedure document; optional with --execution (the stored procedure).",
        show_default=False,
    ),
]
#: Every command that reads or writes a store: which one.
Db = Annotated[
    str,
    typer.Option(
        "--db",
        metavar="URL",
        envvar=DB_ENVVAR,
        callback=check_db,
        help=(
            "The store: sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(the default is procstore.db in the working directory), or "
            "postgresql://user:password@host:port/dbname."
        ),
    ),
]


def _allow_module(help: str) -> Any:
    """``--allow-module MODULE`` (repeatable), with ``help`` saying what it does for a command."""
    return typer.Option("--allow-module", "-m", metavar="MODULE", help=help)


def _local_modules(help: str) -> Any:
    """``--local-modules/--no-local-modules``, with ``help`` saying which directories."""
    return typer.Option("--local-modules/--no-local-modules", help=help)


#: ``run``, ``validate``: a module that function actions may name.
AllowModule = Annotated[
    list[str] | None,
    _allow_module(
        "Module that function actions may name (repeatable). The directory of each FILE is "
        "appended to sys.path, so an actions module beside the file imports."
    ),
]
#: ``resume``: a module that function actions may name, as ``run`` had it.
ResumeAllowModule = Annotated[
    list[str] | None,
    _allow_module("Module that function actions may name (repeatable), as given to `run`."),
]
#: ``worker``: a module that function actions may name.
WorkerAllowModule = Annotated[
    list[str] | None, _allow_module("Module that function actions may name (repeatable).")
]
#: ``mcp``: a module whose functions the agents' procedures may call.
McpAllowModule = Annotated[
    list[str] | None,
    _allow_module(
        "Module whose public functions procedures may call (repeatable; its submodules "
        "too). Nothing else is allowed: agents' procedures naming another module are "
        "refused at registration."
    ),
]
#: ``run``, ``validate``: whether the modules beside FILE are allowed.
LocalModules = Annotated[
    bool,
    _local_modules(
        "Allow function actions from the Python modules in FILE's own directory (the "
        "default: running a file trusts the code beside it), each as that file only: a file "
        "named like another module (subprocess.py) allows nothing. --no-local-modules "
        "allows only the --allow-module ones."
    ),
]
#: ``resume``: whether the modules in each ``--path DIR`` are allowed.
ResumeLocalModules = Annotated[
    bool,
    _local_modules(
        "Allow function actions from the Python modules in each --path DIR (the "
        "default), as run allows those beside FILE; --no-local-modules only appends "
        "DIR to sys.path, for the --allow-module modules."
    ),
]
#: ``resume``: a directory of actions modules, as FILE's directory is to ``run``.
ModulePath = Annotated[
    list[Path] | None,
    typer.Option(
        "--path",
        "-p",
        metavar="DIR",
        exists=True,
        file_okay=False,
        help=(
            "A directory of actions modules, as FILE's directory is to run (repeatable): "
            "appended to sys.path, and its .py modules allowed, each as that file."
        ),
    ),
]
#: How many seconds ``run`` and ``resume`` wait for their executions unless ``--timeout``
#: says otherwise; then they exit with 3 and the executions stay running in the database.
DEFAULT_TIMEOUT_S = 60.0
#: ``run``, ``resume``: how long to wait for the executions to finish.
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        "-t",
        min=0.0,
        metavar="SECONDS",
        help=(
            "Seconds to wait for the execution(s) to finish; after that the command exits "
            f"with {ExitCode.TIMEOUT.value} and they stay running in the database."
        ),
    ),
]
#: ``run``, ``resume``: the actions' log lines.
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Show the actions' INFO log lines on stderr."),
]
#: ``list``: JSON instead of text (``show`` and ``history`` say what their JSON is).
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
#: ``run``, ``resume``, ``history``: values whole, not cut.
Full = Annotated[
    bool,
    typer.Option(
        "--full",
        help=(
            f"Print the final context and the action results whole (else they are cut to "
            f"{CONTEXT_SHOWN_CHARS} and {RESULT_SHOWN_CHARS} characters)."
        ),
    ),
]
