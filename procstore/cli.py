"""The ``procstore`` command line.

Commands: ``run``, ``resume``, ``list``, ``show``, ``history``, ``diagram``, ``validate`` and
``schema``. Every command that reads or writes a store takes ``--db URL`` (default
``sqlite:///procstore.db``, the file ``procstore.db`` in the working directory, or the
``PROCSTORE_DB`` environment variable).

Exit codes (every command):

* ``0`` - success;
* ``1`` - an execution ended without completing (``failed``, ``cancelled``, ``rolled_back``),
  or (``validate``) a file is invalid;
* ``2`` - usage error: bad option or argument, unreadable or invalid FILE, ``--context`` that is
  not a JSON object, a version conflict, or (``resume``) host code the CLI cannot provide;
* ``3`` - an execution did not finish within ``--timeout``: it stays ``running`` in the
  database and ``procstore resume`` carries it on;
* ``4`` - not found: no such execution or procedure in the database;
* ``5`` - the store cannot be used (not a procstore database, written by a newer procstore,
  another process runs its executions), or Graphviz is missing for svg/png;
* ``130`` - interrupted (Ctrl-C): started executions stay ``running`` in the database.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import shlex
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from procstore import (
    Execution,
    ExecutionNotFound,
    ExecutionState,
    HistoryRecord,
    InvalidProcedure,
    Procedure,
    ProcedureNotFound,
    ProcedureStore,
    ProcedureWarning,
    Status,
    StoreError,
    VersionConflict,
    documents,
    modules,
    paths,
)
from procstore.actions import ActionNotAllowed, ActionRegistry, ModuleNotFound, module_files_in
from procstore.chart import Chart, build_chart
from procstore.definition import FunctionAction, StateDef
from procstore.describe import describe_action, describe_retry
from procstore.store import sqlite_path
from procstore.terminal import safe_text
from procstore.validation import load_document, read_document

EXIT_OK = 0
EXIT_NOT_COMPLETED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_NOT_FOUND = 4
EXIT_STORE = 5
EXIT_INTERRUPTED = 130

#: How many characters of an action's result a record line shows (``run``, ``resume``,
#: ``history``); ``--full`` shows it whole.
RESULT_SHOWN_CHARS = 80
#: How many characters of the final context the ``context`` line shows; ``--full`` shows it
#: whole.
CONTEXT_SHOWN_CHARS = 400

#: The store every command uses unless ``--db`` (or ``PROCSTORE_DB``) says otherwise: the file
#: ``procstore.db`` in the working directory.
DEFAULT_DB = "sqlite:///procstore.db"
DB_ENVVAR = "PROCSTORE_DB"

_EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0    success\n"
    "  1    run/resume: an execution ended failed, cancelled or rolled back;\n"
    "       validate: a file is invalid\n"
    "  2    usage error: bad option or argument, unreadable or invalid FILE, bad --context,\n"
    "       a version conflict (bump the version), or (resume) actions the CLI cannot provide\n"
    "  3    run/resume: an execution did not finish within --timeout (it stays running in\n"
    "       the database: procstore resume ID carries it on)\n"
    "  4    not found: no such execution or procedure in the database\n"
    "  5    the store cannot be used (not a procstore database, newer schema, another\n"
    "       process runs its executions), or Graphviz is missing (diagram svg/png)\n"
    "  130  interrupted (Ctrl-C): started executions stay running in the database"
)
_RUN_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0    the execution completed\n"
    "  1    it ended failed, cancelled or rolled back\n"
    "  2    usage error: bad option, unreadable FILE, bad --context, FILE is not a valid\n"
    "       procedure (its problems are printed as FILE: $.json.path: message), or FILE's\n"
    "       name and version are stored with different content (bump the version)\n"
    "  3    it did not finish within --timeout: it stays running in the database\n"
    "  5    the store cannot be used (not a procstore database, newer schema, another\n"
    "       process runs its executions)\n"
    "  130  interrupted (Ctrl-C): the execution stays running in the database"
)
_RESUME_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0    every resumed execution completed (or there was nothing to resume)\n"
    "  1    one ended failed, cancelled or rolled back (also: EXECUTION_ID had already\n"
    "       ended that way)\n"
    "  2    usage error, or an execution needs actions or guards the CLI cannot provide\n"
    "       (nothing is resumed then)\n"
    "  3    one did not finish within --timeout (none failed): it stays running\n"
    "  4    no execution EXECUTION_ID (or no database)\n"
    "  5    the store cannot be used (another process runs its executions, ...)\n"
    "  130  interrupted (Ctrl-C): the executions stay running in the database"
)
_VALIDATE_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  every FILE is valid\n"
    "  1  at least one FILE is invalid, missing or unreadable\n"
    "  2  usage error (bad option, no FILE given)"
)
_LIST_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  listed (also when the database does not exist yet: nothing to list)\n"
    "  2  usage error (bad option, bad --db URL)\n"
    "  5  the store cannot be used (not a procstore database, newer schema)"
)
_SHOW_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  shown\n"
    "  2  usage error (bad option, bad --db URL)\n"
    "  4  no such procedure or version (or no database)\n"
    "  5  the store cannot be used (not a procstore database, newer schema)"
)
_HISTORY_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  shown (whatever the execution's status)\n"
    "  2  usage error (bad option, bad --db URL)\n"
    "  4  no execution EXECUTION_ID (or no database)\n"
    "  5  the store cannot be used (not a procstore database, newer schema)"
)
_DIAGRAM_EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  written\n"
    "  2  usage error: bad option, unreadable or invalid FILE, a format that cannot be told\n"
    "     from OUT's suffix, png to a terminal, FILE is not the procedure of --execution\n"
    "  4  no execution --execution ID (or no database)\n"
    "  5  Graphviz's dot program is missing (svg, png), or the store cannot be used"
)
_SCHEMA_EXIT_CODES = "\b\nExit codes:\n  0  printed\n  2  usage error (bad option)"

app = typer.Typer(
    name="procstore",
    help=(
        "procstore: declarative, versioned workflow procedures (JSON/YAML) run on "
        "transitions' AsyncMachine, persisted in an embedded SQLite database.\n\n"
        "Commands that use a store take --db URL (default sqlite:///procstore.db, i.e. "
        f"./procstore.db; or set {DB_ENVVAR}). See `procstore COMMAND --help` for each "
        "command.\n\n" + _EXIT_CODES_HELP
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
        _echo(f"procstore {_package_version()}")
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
# output: everything the CLI prints goes through these, as most of it is data someone else wrote


def _echo(line: str = "", err: bool = False) -> None:
    """Print one line built from data (a definition, a context, a history, an error message,
    a file name): every character a terminal would act on is shown as a visible escape
    (`procstore.terminal.safe_text`), embedded newlines included, so nothing in the data can
    clear the screen, set the window title or forge another line."""
    typer.echo(safe_text(line), err=err)


def _echo_document(text: str) -> None:
    """Print a multi-line document (a diagram's text, the schema): its own line breaks and
    indentation stay, anything else a terminal would act on is escaped."""
    typer.echo(safe_text(text, keep="\n\t"), nl=not text.endswith("\n"))


def _echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON. With ``ensure_ascii`` (kept on on purpose),
    ``json.dumps`` escapes every character outside printable ASCII (ESC, DEL, C1, bidi
    overrides) as ``\\uXXXX``: safe on a terminal, and still JSON with its strings intact."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=True))


class _SafeFormatter(logging.Formatter):
    """Log lines for ``--verbose``: a `log` action's message is data, escaped like any line;
    a traceback keeps its line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return safe_text(super().formatException(ei), keep="\n\t")

    def formatStack(self, stack_info: str) -> str:
        return safe_text(super().formatStack(stack_info), keep="\n\t")


# --------------------------------------------------------------------------------------------
# errors


class CommandError(Exception):
    """Ends a command: ``lines`` go to stderr and the process exits with ``code``."""

    def __init__(self, code: int, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.code = code
        self.lines = lines


def _execute(work: Callable[[], Any]) -> Any:
    """Run ``work`` (usually ``asyncio.run(...)``), turning a :class:`CommandError` or a store
    error into its message on stderr and the exit code."""
    try:
        return work()
    except CommandError as exc:
        for line in exc.lines:
            _echo(line, err=True)
        raise typer.Exit(exc.code) from None
    except StoreError as exc:
        _echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE) from None


# --------------------------------------------------------------------------------------------
# helpers


def _add_to_sys_path(directory: Path) -> None:
    """Put ``directory`` last on ``sys.path`` so an actions module in it imports, while a file
    there named like another module (``json.py``) never shadows that module."""
    entry = str(directory.resolve())
    if entry not in sys.path:
        sys.path.append(entry)


@dataclass(frozen=True)
class _HostCode:
    """The modules a command lets function actions name: the ``--allow-module`` ones by name
    and, unless ``--no-local-modules``, the ``.py`` files in its directories (FILE's for
    ``run`` and ``validate``, each ``--path DIR`` for ``resume``), each as that file. The
    directories are appended to ``sys.path``, so those modules import when an action runs."""

    allowed: tuple[str, ...]
    directories: tuple[Path, ...]
    local: bool = True

    @classmethod
    def beside(cls, file: Path, allowed: Iterable[str], local: bool) -> _HostCode:
        """What ``run`` and ``validate`` allow for FILE."""
        return cls(tuple(allowed), (file.parent,), local)

    @property
    def files(self) -> list[Path]:
        """The module files in the directories, allowed by default: running a file from the
        command line trusts the code that lies next to it (``--no-local-modules`` turns this
        off). Each is allowed as that file only, never by its name: an empty
        ``subprocess.py`` there does not allow the standard library's ``subprocess``."""
        return [f for d in self.directories for f in module_files_in(d)] if self.local else []

    def registry(self) -> ActionRegistry:
        """The allowlist (to check with, as the store checks). Two directories that hold a
        module of the same name are a usage error."""
        try:
            return ActionRegistry(self.allowed, self.files)
        except ValueError as exc:
            raise CommandError(EXIT_USAGE, f"error: {exc}") from None

    def store(self, db: str | None = None) -> ProcedureStore:
        """A store with this allowlist (in memory without ``db``)."""
        self.registry()
        for directory in self.directories:
            _add_to_sys_path(directory)
        return ProcedureStore(db, allowed_modules=self.allowed, allowed_module_files=self.files)

    def describe(self, file: Path) -> str:
        """What ``run`` or ``validate`` allows for ``file``, in its terms, on one line."""
        given = ", ".join(self.allowed) or "none"
        if not self.local:
            return (
                f"function actions may name only the --allow-module modules ({given}), not "
                f"the modules beside {file} (--no-local-modules)"
            )
        names = ", ".join(p.name for p in self.files) or "none"
        return (
            f"function actions may name the modules beside {file} ({names}) and the "
            f"--allow-module modules ({given})"
        )

    def resume_flags(self, names_modules: bool) -> list[str]:
        """The options that let ``resume`` find and allow what this command allowed, for
        procedures whose actions name modules (``names_modules``); none for the others."""
        if not names_modules:
            return []
        flags: list[str] = []
        for directory in self.directories:
            flags += ["--path", str(directory)]
        if self.directories and not self.local:
            flags.append("--no-local-modules")
        for module in self.allowed:
            flags += ["--allow-module", module]
        return flags


def _names_modules(procedure: Procedure) -> bool:
    """Whether a function action of ``procedure`` names a module."""
    return any(
        isinstance(action, FunctionAction) and action.module is not None
        for state in _state_defs(procedure).values()
        for action in (state.action, state.compensate)
    )


def _resume_command(execution_id: str | None, db: str, flags: Sequence[str]) -> str:
    """The ``procstore resume`` command that carries on ``execution_id`` (every unfinished
    execution without it) with what this command had, quoted for a POSIX shell."""
    words = ["procstore", "resume", *([execution_id] if execution_id else [])]
    if db != DEFAULT_DB:
        words += ["--db", db]
    return shlex.join([*words, *flags])


def _invalid_lines(file: Path, exc: InvalidProcedure, code: _HostCode | None = None) -> list[str]:
    """``FILE: $.json.path: message`` for each problem of an invalid FILE. With the ``code``
    the command allowed, a module that is not allowed is said so in the command's terms,
    followed by one hint line naming what is allowed."""
    label = str(file)
    refusals: dict[str, str] = {}  # the store's refusal message -> the module it refuses
    if code is not None:
        registry = code.registry()
        try:
            data, _ = read_document(file)
        except InvalidProcedure:
            data = None
        for module in _function_modules(data):
            refusal = registry.refusal(module)
            if refusal is not None:
                refusals[refusal] = module
    lines: list[str] = []
    refused: list[str] = []
    for problem in exc.errors:
        refused_module = refusals.get(problem.message)
        if refused_module is None:
            lines.append(f"{label}: {problem.path}: {problem.message}")
            continue
        lines.append(f"{label}: {problem.path}: module {refused_module!r} is not allowed")
        if refused_module not in refused:
            refused.append(refused_module)
    if not exc.errors:
        lines.append(f"{label}: $: {exc}")
    if refused and code is not None:
        # Not "pass --allow-module os": the document may be someone else's, and allowing a
        # module lets it call every public function the module defines.
        lines.append(
            f"{label}: hint: {code.describe(file)}; --allow-module MODULE would let the document "
            "call every public function of MODULE"
        )
    return lines


def _function_modules(data: Any) -> list[str]:
    """Every module a function action in the raw document ``data`` names, wherever it stands
    (an action in the wrong place has its own problem), in document order."""
    found: dict[str, None] = {}
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, Mapping):
            module = item.get("module")
            if item.get("type") == "function" and isinstance(module, str):
                found.setdefault(module)
            todo.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            todo.extend(reversed(item))
    return list(found)


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


def _check_db(value: str) -> str:
    """``--db``: a ``sqlite:///`` URL (the file need not exist yet)."""
    try:
        sqlite_path(value)
    except StoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from exc
    return value


def _db_file(db: str) -> Path:
    """The database file of ``--db URL``: how every message names the store (the library's
    errors name it so too); a suggested command repeats the URL instead."""
    return sqlite_path(db)


def _status_text(status: Status | str | None) -> str:
    if status is None:
        return "-"
    return str(getattr(status, "value", status))


def _value_text(value: Any, limit: int | None = RESULT_SHOWN_CHARS) -> str:
    """``value`` as JSON, cut to ``limit`` characters (ending in ``...``; whole with
    ``None``)."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _context_line(context: Any, full: bool) -> str:
    """The ``context`` line: the context as JSON, cut to `CONTEXT_SHOWN_CHARS` unless
    ``full``, saying so when it is cut."""
    text = _value_text(context, limit=None)
    if full or len(text) <= CONTEXT_SHOWN_CHARS:
        return f"context     {text}"
    shown = _value_text(context, limit=CONTEXT_SHOWN_CHARS)
    return f"context     {shown} (cut from {len(text)} characters: --full prints it whole)"


def _time_text(at: datetime) -> str:
    """A timestamp in local time, to the second."""
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _elapsed_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_record(record: HistoryRecord, full: bool = False) -> str:
    """One plain line for one history record; an action's result is cut to
    `RESULT_SHOWN_CHARS` unless ``full``."""
    limit = None if full else RESULT_SHOWN_CHARS
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
        result = "" if record.result is None else f" -> {_value_text(record.result, limit)}"
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
        fields.append(f"result={_value_text(record.result, limit)}")
    if record.error is not None:
        fields.append(f"error={record.error.type}: {record.error.message}")
    if record.status is not None:
        fields.append(f"status={_status_text(record.status)}")
    return f"{kind:<11} {' '.join(fields)}".rstrip()


def _record_style(record: HistoryRecord) -> str | None:
    """How the live display colours a record line (plain output has no styles)."""
    if record.error is not None or record.kind in ("timeout", "cancelled", "blocked"):
        return "red"
    if record.kind in ("rollback", "retry"):
        return "yellow"
    if record.kind == "finished":
        return "bold green" if record.status == Status.COMPLETED else "bold red"
    return None


def _configure_logging(verbose: bool, console: Console | None = None) -> None:
    """``--verbose``: the actions' INFO log lines on stderr (through the live display when one
    is shown, so they do not tear it)."""
    handler: logging.Handler
    if console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, show_time=False)
        handler.setFormatter(_SafeFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True
    )
    # transitions logs every callback at INFO: keep it to warnings, --verbose is for actions.
    logging.getLogger("transitions").setLevel(logging.WARNING)


@asynccontextmanager
async def _open_store(
    db: str,
    *,
    code: _HostCode | None = None,
    allowed: Sequence[str] = (),
    read_only: bool = False,
    missing: str | None = None,
) -> AsyncIterator[ProcedureStore]:
    """Open the store at ``db`` and close it afterwards (running executions detach and stay
    ``running`` in the database).

    Args:
        code: The host code its actions may use (``run``); else the modules ``allowed``.
        missing: For read-only use: when the database file does not exist, end the command
            with exit 4 and this message instead of an error about the file.
    """
    if read_only and missing is not None and not _db_file(db).exists():
        raise CommandError(EXIT_NOT_FOUND, f"error: {missing}: no database at {_db_file(db)}")
    if code is not None:
        store = code.store(db)
    else:
        store = ProcedureStore(db, allowed_modules=list(allowed), read_only=read_only)
    try:
        await store.open()
        yield store
    finally:
        await store.close()


def _state_defs(procedure: Procedure | Chart) -> dict[str, StateDef]:
    """Every state of ``procedure`` (not the regions) by its path, in document order."""
    chart = procedure if isinstance(procedure, Chart) else build_chart(procedure)
    return {node.path: node.state for node in chart if node.state is not None}


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


# --------------------------------------------------------------------------------------------
# progress: live display on a terminal, plain lines otherwise


class _Tracker:
    """What the live display says about one execution, kept up to date from its records."""

    def __init__(self, execution: Execution, procedure: Procedure, label: str) -> None:
        self.execution = execution
        self.label = label
        chart = build_chart(procedure)
        self.with_action = {path for path, state in _state_defs(chart).items() if state.action}
        # Leaves without transitions: a region that reached one waits for the others.
        self.terminal = {s.path for s in chart if s.kind == "leaf" and s.terminal}
        self.attempt: dict[str, int] = {}
        self.acted: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.compensating = False
        self.spinner = Spinner("dots", style="cyan")
        self.ended: float | None = None  # when the display first saw it finished

    def update(self, record: HistoryRecord) -> None:
        state = record.state or ""
        if record.kind == "entered":
            self.attempt[state] = 1
            self.acted.discard(state)
            self.retry_at.pop(state, None)
        elif record.kind == "action":
            self.attempt[state] = record.attempt or 1
            self.acted.add(state)
        elif record.kind == "retry":
            self.attempt[state] = record.attempt or 1
            self.acted.discard(state)
            self.retry_at[state] = record.at.timestamp() + (record.delay_ms or 0) / 1000
        elif record.kind == "rollback":
            self.compensating = True
        elif record.kind == "reset":
            self.compensating = False

    def describe(self) -> str:
        """``build (attempt 2)``, ``approve (waiting for an event)``, ``compensating``..."""
        execution = self.execution
        if execution.status is not Status.RUNNING:
            return f"{_status_text(execution.status)} in {execution.current}"
        if self.compensating:
            return f"compensating (from {execution.current})"
        parts = []
        now = time.time()
        for leaf in execution.active:
            if leaf in self.with_action and leaf not in self.acted:
                attempt = self.attempt.get(leaf, 1)
                wait = self.retry_at.get(leaf, 0.0) - now
                when = f" in {wait:.1f}s" if wait > 0 else ""
                parts.append(f"{leaf} (attempt {attempt}{when})")
            elif leaf in self.terminal:
                parts.append(f"{leaf} (done)")
            else:
                parts.append(f"{leaf} (waiting for an event)")
        return ", ".join(parts) or execution.current


class _Output(Protocol):
    """Where a command that drives executions writes."""

    full: bool  # values (results, the final context) whole, not cut

    def line(self, text: str, style: str | None = None) -> None: ...

    def record(self, tracker: _Tracker, record: HistoryRecord, prefix: str) -> None: ...

    def watch(self, trackers: Sequence[_Tracker]) -> Any:
        """An async context manager around the time the executions run."""
        ...


class _PlainOutput:
    """One line per record (the ``format_record`` lines): for pipes, files and tests."""

    def __init__(self, full: bool = False) -> None:
        self.full = full

    def line(self, text: str, style: str | None = None) -> None:
        _echo(text)

    def record(self, tracker: _Tracker, record: HistoryRecord, prefix: str) -> None:
        _echo(prefix + format_record(record, self.full))

    @asynccontextmanager
    async def watch(self, trackers: Sequence[_Tracker]) -> AsyncIterator[None]:
        yield


class _LiveOutput:
    """On a terminal: the record lines scroll by above a status line per execution (spinner,
    current state(s), attempt, elapsed time), refreshed ten times a second."""

    def __init__(self, console: Console, full: bool = False) -> None:
        self.console = console
        self.full = full
        self._started = time.monotonic()

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(safe_text(text), style=style or ""), soft_wrap=True)

    def record(self, tracker: _Tracker, record: HistoryRecord, prefix: str) -> None:
        text = Text()
        text.append(safe_text(prefix), style="dim")
        line = format_record(record, self.full)
        text.append(safe_text(line), style=_record_style(record) or "")
        self.console.print(text, soft_wrap=True)

    def render(self, trackers: Sequence[_Tracker]) -> Table:
        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for tracker in trackers:
            running = tracker.execution.status is Status.RUNNING
            if not running and tracker.ended is None:
                tracker.ended = now
            elapsed = _elapsed_text((tracker.ended or now) - self._started)
            mark: Any = tracker.spinner if running else Text("done", style="dim")
            grid.add_row(
                mark,
                Text(safe_text(tracker.label), style="bold"),
                Text(safe_text(tracker.describe())),
                Text(elapsed, style="dim"),
            )
        return grid

    @asynccontextmanager
    async def watch(self, trackers: Sequence[_Tracker]) -> AsyncIterator[None]:
        self._started = time.monotonic()
        live = Live(
            self.render(trackers),
            console=self.console,
            auto_refresh=False,  # refreshed from the event loop below, never from a thread
            transient=True,
            redirect_stdout=True,
            redirect_stderr=True,
        )

        async def tick() -> None:
            while True:
                live.update(self.render(trackers), refresh=True)
                await asyncio.sleep(0.1)

        with live:
            ticker = asyncio.get_running_loop().create_task(tick())
            try:
                yield
            finally:
                ticker.cancel()


def _make_output(console: Console | None = None, full: bool = False) -> _Output:
    """The live display when stdout is a terminal, plain lines otherwise."""
    if console is not None:
        return _LiveOutput(console, full)
    if sys.stdout.isatty():
        return _LiveOutput(Console(highlight=False), full)
    return _PlainOutput(full)


class _Follower:
    """Prints an execution's records as they happen (only those at or after ``since``, when
    given: a resumed execution's stored past is not printed again)."""

    def __init__(
        self, tracker: _Tracker, output: _Output, prefix: str, since: datetime | None
    ) -> None:
        self.tracker = tracker
        self.output = output
        self.prefix = prefix
        self.since = since
        self.seen = 0

    def _emit(self, record: HistoryRecord) -> None:
        self.seen += 1
        self.tracker.update(record)
        if self.since is None or record.at >= self.since:
            self.output.record(self.tracker, record, self.prefix)

    async def follow(self) -> None:
        async for record in self.tracker.execution.watch():
            self._emit(record)

    def catch_up(self) -> None:
        """Print what the follower has not printed yet (it was cancelled)."""
        for record in self.tracker.execution.history[self.seen :]:
            self._emit(record)


async def _drive(
    store: ProcedureStore,
    executions: Sequence[Execution],
    timeout: float,
    output: _Output,
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
        trackers.append(_Tracker(execution, procedure, label))
    followers = [
        _Follower(tracker, output, f"{tracker.execution.id[:8]}  " if several else "", since)
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


def _final_lines(
    output: _Output, final: ExecutionState, timed_out: bool, timeout: float, session: _Session
) -> None:
    output.line(_context_line(final.context, output.full))
    status = _status_text(final.status)
    if timed_out:
        output.line(
            f"timeout     still {status} in state {final.current} after {timeout:g}s", "yellow"
        )
        output.line(f"resume      {session.resume_command(final.id)}")
        return
    style = "bold green" if final.status == Status.COMPLETED else "bold red"
    output.line(f"status      {status} (state: {final.current})", style)


def _exit_code(results: Sequence[tuple[ExecutionState, bool]]) -> int:
    if any(not timed_out and s.status != Status.COMPLETED for s, timed_out in results):
        return EXIT_NOT_COMPLETED
    if any(timed_out for _, timed_out in results):
        return EXIT_TIMEOUT
    return EXIT_OK


class _Session:
    """What a command started, for the message after Ctrl-C."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.execution_ids: list[str] = []
        # The options resume needs to find and allow the modules this command allowed.
        self.resume_flags: list[str] = []

    def resume_command(self, execution_id: str) -> str:
        return _resume_command(execution_id, self.db, self.resume_flags)

    def interrupted(self) -> typer.Exit:
        _echo("interrupted", err=True)
        for execution_id in self.execution_ids:
            _echo(
                f"execution {execution_id} stays running in the database: "
                f"{self.resume_command(execution_id)}",
                err=True,
            )
        return typer.Exit(EXIT_INTERRUPTED)


# --------------------------------------------------------------------------------------------
# run


async def _run(
    path: Path,
    context: dict[str, Any],
    allowed: Sequence[str],
    timeout: float,
    db: str,
    output: _Output,
    session: _Session,
    local_modules: bool = True,
) -> int:
    code = _HostCode.beside(path, allowed, local_modules)
    # Checked first in memory, as validate checks it: an invalid FILE never creates the
    # database (./procstore.db by default) just to be refused.
    try:
        _, warned = await _register(code.store(), path)
    except InvalidProcedure as exc:
        raise CommandError(EXIT_USAGE, *_invalid_lines(path, exc, code)) from None
    for line in warned:
        _echo(line, err=True)
    async with _open_store(db, code=code) as store:
        try:
            procedure, _ = await _register(store, path)  # its warnings were said above
        except VersionConflict as exc:
            raise CommandError(
                EXIT_USAGE,
                f"{path}: $.version: {exc}",
                f"hint: a registered version never changes: bump the version in {path} "
                f"(or use another --db)",
            ) from None
        except InvalidProcedure as exc:
            raise CommandError(EXIT_USAGE, *_invalid_lines(path, exc, code)) from None

        session.resume_flags = code.resume_flags(_names_modules(procedure))
        output.line(f"procedure   {procedure.name} {procedure.version}")
        execution = await store.start(procedure.name, procedure.version, context, auto=True)
        session.execution_ids.append(execution.id)
        output.line(f"execution   {execution.id}")
        [(_, timed_out)] = await _drive(store, [execution], timeout, output)
        final = execution.state
        _final_lines(output, final, timed_out, timeout, session)
        return _exit_code([(final, timed_out)])


# --------------------------------------------------------------------------------------------
# resume


def _missing_host_code(procedure: Procedure, registry: ActionRegistry) -> list[str]:
    """What the CLI cannot provide for ``procedure``'s executions, as clauses of one line,
    each with what to pass: modules not allowed or not found, functions a module lacks,
    actions and guard predicates an application registers by name. Checked as registration
    checks, without importing (running) any module."""
    refused: dict[str, None] = {}  # not allowed here
    unfound: dict[str, None] = {}  # allowed by name, found nowhere
    by_name: dict[str, None] = {}
    other: dict[str, None] = {}
    for path, state in _state_defs(procedure).items():
        for action in (state.action, state.compensate):
            if not isinstance(action, FunctionAction):
                continue
            if action.module is None:
                by_name.setdefault(f"action {action.function!r}")
            elif registry.refusal(action.module) is not None:
                refused.setdefault(action.module)
            else:
                try:
                    registry.check(action)
                except ModuleNotFound:
                    unfound.setdefault(action.module)
                except ActionNotAllowed as exc:
                    other.setdefault(f"state {path}: {exc.message}")
        for transition in state.transitions:
            for name in (*transition.conditions, *transition.unless):
                by_name.setdefault(f"guard predicate {name!r}")
    clauses: list[str] = []
    if refused or unfound:
        flags: list[str] = []
        holding: list[str] = []  # what the directory to pass with --path must hold
        for module in [*refused, *unfound]:
            findable = _findable(module)
            if module in refused and (findable or "." in module):
                flags += ["--allow-module", module]  # --path allows only plain module files
            if not findable:
                top = module.split(".")[0]
                holding.append(f"{top}/" if "." in module else f"{top}.py")
        if holding:
            flags += ["--path", "DIR"]
        names = ", ".join(repr(m) for m in [*refused, *unfound])
        clause = f"its actions need module{'s' if len(refused) + len(unfound) > 1 else ''} "
        clause += f"{names}: pass {' '.join(flags)}"
        if holding:
            clause += f" (DIR: the directory that holds {', '.join(dict.fromkeys(holding))})"
        clauses.append(clause)
    clauses += other
    if by_name:
        clauses.append(
            f"{', '.join(by_name)} {'are' if len(by_name) > 1 else 'is'} registered by name in "
            "an application: resume it there (store.recover() after registering them)"
        )
    return clauses


def _findable(module: str) -> bool:
    """Whether ``module`` is found on ``sys.path`` (without importing anything)."""
    try:
        return modules.find_spec(module) is not None
    except modules.ModuleUnreadable:
        return False


def _executions_text(ids: Sequence[str], procedure: str, version: str) -> str:
    """``execution ID (name@version)``, or ``3 executions of name@version (ID, ID, ID)``."""
    if len(ids) == 1:
        return f"execution {ids[0]} ({procedure}@{version})"
    return f"{len(ids)} executions of {procedure}@{version} ({', '.join(ids)})"


async def _resume(
    execution_id: str | None,
    code: _HostCode,
    timeout: float,
    db: str,
    output: _Output,
    session: _Session,
) -> int:
    if not _db_file(db).exists():
        if execution_id is not None:
            raise CommandError(
                EXIT_NOT_FOUND,
                f"error: no execution {execution_id!r}: no database at {_db_file(db)}",
            )
        output.line(f"nothing to resume: no database at {_db_file(db)}")
        return EXIT_OK
    async with _open_store(db, code=code) as store:
        everything = await store.executions()
        if execution_id is not None:
            found = [s for s in everything if s.id == execution_id]
            if not found:
                raise CommandError(
                    EXIT_NOT_FOUND, f"error: no execution {execution_id!r} in {_db_file(db)}"
                )
            if found[0].status != Status.RUNNING:
                status = _status_text(found[0].status)
                output.line(f"execution   {execution_id} has already ended: {status}")
                return EXIT_OK if found[0].status == Status.COMPLETED else EXIT_NOT_COMPLETED
            targets = found
        else:
            targets = [s for s in everything if s.status == Status.RUNNING]
            if not targets:
                output.line(f"nothing to resume: no unfinished execution in {_db_file(db)}")
                return EXIT_OK

        # Check first, resume after: an execution resumed without its host code would fail
        # its next step for good. One line per procedure version, with what to pass.
        waiting: dict[tuple[str, str], list[str]] = {}
        for summary in targets:
            waiting.setdefault((summary.procedure, summary.version), []).append(summary.id)
        problems: list[str] = []
        registry = code.registry()
        names_modules = False
        for (name, version), ids in waiting.items():
            try:
                procedure = await store.get(name, version)
            except ProcedureNotFound:  # cannot be loaded: recover() quarantines these
                continue
            names_modules = names_modules or _names_modules(procedure)
            clauses = _missing_host_code(procedure, registry)
            if clauses:
                problems.append(
                    f"cannot resume {_executions_text(ids, name, version)}: {'; '.join(clauses)}"
                )
        if problems:
            raise CommandError(EXIT_USAGE, *problems, "nothing was resumed")
        session.resume_flags = code.resume_flags(names_modules)

        since = datetime.now(UTC)
        if execution_id is not None:
            executions = [await store.get_execution(execution_id)]
        else:
            executions = await store.recover()
        session.execution_ids += [execution.id for execution in executions]
        for execution in executions:
            output.line(
                f"resumed     {execution.id} {execution.procedure} {execution.version} "
                f"in {', '.join(execution.active) or execution.current}"
            )
        results = await _drive(store, executions, timeout, output, since=since)
        finals = [(execution.state, timed_out) for execution, timed_out in results]
        if len(finals) == 1:
            final, timed_out = finals[0]
            _final_lines(output, final, timed_out, timeout, session)
        else:
            for final, timed_out in finals:
                status = _status_text(final.status)
                if timed_out:
                    output.line(f"timeout     {final.id} still {status} in state {final.current}")
                else:
                    output.line(f"status      {final.id} {status} (state: {final.current})")
        return _exit_code(finals)


# --------------------------------------------------------------------------------------------
# list, show, history


async def _list(
    db: str,
    status: Status | None,
    procedure_name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    if not _db_file(db).exists():
        procedures: list[Procedure] = []
        executions: list[Any] = []
        if not as_json:
            _echo(f"no database at {_db_file(db)} yet: nothing registered, nothing run")
            return
    else:
        async with _open_store(db, read_only=True) as store:
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
        _echo_json(document)
        return

    if versions:
        width = max(len("PROCEDURE"), *(len(name) for name in versions))
        _echo(f"{'PROCEDURE':<{width}}  VERSIONS")
        for name, names in versions.items():
            _echo(f"{name:<{width}}  {', '.join(names)}")
    else:
        _echo("no procedures")
    _echo("")
    if executions:
        rows: list[tuple[str, ...]] = [
            (s.id, f"{s.procedure}@{s.version}", _status_text(s.status), _time_text(s.updated_at))
            for s in executions
        ]
        headers: tuple[str, ...] = ("EXECUTION", "PROCEDURE", "STATUS", "UPDATED")
        if any(s.reason for s in executions):  # quarantined ones: say why
            rows = [(*row, s.reason or "") for row, s in zip(rows, executions, strict=True)]
            headers = (*headers, "REASON")
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        for row in (headers, *rows):
            cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
            _echo("  ".join(cells).rstrip())
        if hidden:
            _echo(f"... and {hidden} older (--limit 0 lists them all)")
    else:
        _echo("no executions")


def _summary_lines(procedure: Procedure, versions: Sequence[str]) -> list[str]:
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
        if node.kind == "compound":
            kind = f"compound, initial {state.initial_state}"
        elif node.kind == "parallel":
            kind = f"parallel: {', '.join(state.parallel or ())}"
        elif node.terminal:
            kind = "terminal" + (", failure" if state.outcome == "failure" else "")
        else:
            kind = ""
        head = f"{indent}{node.name}" + (f"  ({kind})" if kind else "")
        lines.append(head)
        details = []
        if state.action is not None:
            timeout = state.action.timeout_ms
            limit = f" (timeout {timeout:g}ms)" if timeout is not None else ""
            details.append(f"action {describe_action(state.action)}{limit}")
        if state.retry is not None:
            details.append(describe_retry(state.retry))
        if state.timeout_ms is not None:
            details.append(f"timeout {state.timeout_ms:g}ms")
        if state.compensate is not None:
            details.append(f"compensate {describe_action(state.compensate)}")
        for transition in state.transitions:
            guards = []
            if transition.guard:
                guards.append(f"[{transition.guard}]")
            guards += [f"[{name}]" for name in transition.conditions]
            guards += [f"[!{name}]" for name in transition.unless]
            guard = f" {' '.join(guards)}" if guards else ""
            details.append(f"on {transition.event}{guard} -> {transition.target}")
        lines += [f"{indent}    {detail}" for detail in details]
    return lines


async def _show(spec: str, db: str, as_json: bool) -> None:
    name, version = _split_name(spec)
    async with _open_store(db, read_only=True, missing=f"no procedure {spec!r}") as store:
        try:
            procedure = await store.get(name, version)
        except ProcedureNotFound as exc:
            raise CommandError(EXIT_NOT_FOUND, f"error: {exc} in {_db_file(db)}") from None
        versions = [p.version for p in await store.list() if p.name == name]
    if as_json:
        _echo_json(json.loads(procedure.model_dump_json(exclude_unset=True)))
        return
    for line in _summary_lines(procedure, versions):
        _echo(line)


async def _history(
    execution_id: str, db: str, as_json: bool, timestamps: bool, full: bool = False
) -> None:
    missing = f"no execution {execution_id!r}"
    async with _open_store(db, read_only=True, missing=missing) as store:
        try:
            execution = await store.get_execution(execution_id)
        except ExecutionNotFound as exc:
            raise CommandError(EXIT_NOT_FOUND, f"error: {exc}") from None
        state = execution.state
    if as_json:
        _echo_json(state.model_dump(mode="json"))
        return
    _echo(f"procedure   {state.procedure} {state.version}")
    _echo(f"execution   {state.id}")
    for record in state.history:
        line = format_record(record, full)
        _echo(
            f"{record.at.astimezone().isoformat(timespec='milliseconds')}  {line}"
            if timestamps
            else line
        )
    _echo(_context_line(state.context, full))
    _echo(f"status      {_status_text(state.status)} (state: {state.current})")


# --------------------------------------------------------------------------------------------
# diagram


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


async def _diagram(
    file: Path | None,
    out: Path | None,
    fmt: DiagramFormat | None,
    execution_id: str | None,
    db: str,
    rankdir: RankDir,
    allow_invalid: bool = False,
) -> None:
    import graphviz

    from procstore import diagrams
    from procstore.diagrams.dot import DiagramTimeout

    if file is None and execution_id is None:
        raise CommandError(EXIT_USAGE, "error: give FILE, or --execution ID to draw a stored one")
    if fmt is not None:
        chosen: str = fmt.value
    elif out is not None:
        try:
            chosen = diagrams.format_for(out)
        except ValueError as exc:
            raise CommandError(EXIT_USAGE, f"error: {exc}; or give --format") from None
    else:
        chosen = "dot"
    if chosen == "png" and out is None and sys.stdout.isatty():
        raise CommandError(EXIT_USAGE, "error: a PNG goes to a file: give -o OUT.png")

    source = _procedure_to_draw(file, allow_invalid) if file is not None else None

    snapshot: ExecutionState | None = None
    if execution_id is not None:
        missing = f"no execution {execution_id!r}"
        async with _open_store(db, read_only=True, missing=missing) as store:
            try:
                snapshot = (await store.get_execution(execution_id)).state
            except ExecutionNotFound as exc:
                raise CommandError(EXIT_NOT_FOUND, f"error: {exc}") from None
            if source is None:
                source = await store.get(snapshot.procedure, snapshot.version)
        if (source.name, source.version) != (snapshot.procedure, snapshot.version):
            raise CommandError(
                EXIT_USAGE,
                f"error: execution {execution_id} runs {snapshot.procedure} {snapshot.version}, "
                f"but {file} is {source.name} {source.version} (leave FILE out to draw the "
                "stored procedure)",
            )
    assert source is not None

    try:
        data = diagrams.render(source, chosen, snapshot, rankdir=rankdir.value)
    except graphviz.ExecutableNotFound:
        raise CommandError(
            EXIT_STORE,
            f"error: {chosen} needs Graphviz's dot program, which is not installed "
            "(apt install graphviz / brew install graphviz); dot and mermaid need nothing",
        ) from None
    except DiagramTimeout as exc:
        raise CommandError(
            EXIT_STORE, f"error: {exc}; --format dot or mermaid gives the chart's text at once"
        ) from None
    if out is not None:
        if isinstance(data, str):
            out.write_text(data, encoding="utf-8")
        else:
            out.write_bytes(data)
        _echo(f"wrote {out} ({chosen})", err=True)
        return
    if isinstance(data, bytes) and chosen == "png":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    _echo_document(text)


def _procedure_to_draw(file: Path, allow_invalid: bool) -> Procedure:
    """FILE's procedure, checked as registering it would check it except for the host code
    (modules and guard predicates are not resolved: a procedure can be drawn before it runs
    anywhere). An invalid one ends the command with its problems, unless ``allow_invalid``:
    then they are warnings on stderr and what the schema accepts is drawn (a target that
    names no state, to debug the procedure)."""
    try:
        procedure = load_document(file, None, None).procedure
    except InvalidProcedure as exc:
        lines = _invalid_lines(file, exc)
        if not allow_invalid:
            raise CommandError(
                EXIT_USAGE, *lines, f"{file}: hint: --allow-invalid draws it all the same"
            ) from None
        from procstore.diagrams.extract import as_procedure

        try:
            procedure = as_procedure(file)
        except (InvalidProcedure, ValidationError):
            raise CommandError(
                EXIT_USAGE, *lines, f"{file}: cannot be drawn until its schema problems are fixed"
            ) from None
        for line in lines:
            _echo(f"warning: {line}", err=True)
    return procedure


# --------------------------------------------------------------------------------------------
# validate


async def _register(store: ProcedureStore, path: Path) -> tuple[Procedure, list[str]]:
    """Register FILE; return it with the static checks' warnings, as lines to print."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProcedureWarning)
        procedure = await store.register(path)
    lines = []
    for warning in caught:
        if isinstance(warning.message, ProcedureWarning):
            lines += [f"{path}: warning: {problem}" for problem in warning.message.problems]
        else:  # not ours: as Python would have shown it
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return procedure, lines


async def _validate(
    paths: Iterable[Path], allowed: Sequence[str], local_modules: bool = True
) -> list[tuple[Path, list[str], list[str]]]:
    """Each FILE with its problems and its warnings, as lines."""
    results: list[tuple[Path, list[str], list[str]]] = []
    for path in paths:
        label = str(path)
        if not path.is_file():
            problem = "no such file" if not path.exists() else "not a file"
            results.append((path, [f"{label}: $: {problem}"], []))
            continue
        code = _HostCode.beside(path, allowed, local_modules)
        try:
            _, warned = await _register(code.store(), path)
        except InvalidProcedure as exc:
            results.append((path, _invalid_lines(path, exc, code), []))
        except Exception as exc:  # a check that broke: report it, and check the other files
            results.append((path, [f"{label}: $: {type(exc).__name__}: {exc}"], []))
        else:
            results.append((path, [], warned))
    return results


# --------------------------------------------------------------------------------------------
# commands

LocalModules = Annotated[
    bool,
    typer.Option(
        "--local-modules/--no-local-modules",
        help=(
            "Allow function actions from the Python modules in FILE's own directory (the "
            "default: running a file trusts the code beside it), each as that file only: a file "
            "named like another module (subprocess.py) allows nothing. --no-local-modules "
            "allows only the --allow-module ones."
        ),
    ),
]
AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        "-m",
        metavar="MODULE",
        help=(
            "Module that function actions may name (repeatable). The directory of each FILE is "
            "appended to sys.path, so an actions module beside the file imports."
        ),
    ),
]
Db = Annotated[
    str,
    typer.Option(
        "--db",
        metavar="URL",
        envvar=DB_ENVVAR,
        callback=_check_db,
        help=(
            "The store: sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(the default is procstore.db in the working directory)."
        ),
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        "-t",
        min=0.0,
        metavar="SECONDS",
        help=(
            "Seconds to wait for the execution(s) to finish; after that the command exits "
            "with 3 and they stay running in the database."
        ),
    ),
]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Show the actions' INFO log lines on stderr."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
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


def _drive_command(
    verbose: bool, db: str, work: Callable[[_Output, _Session], Any], full: bool = False
) -> None:
    output = _make_output(full=full)
    live_console = output.console if isinstance(output, _LiveOutput) else None
    _configure_logging(verbose, live_console)
    session = _Session(db)
    try:
        code = _execute(lambda: asyncio.run(work(output, session)))
    except KeyboardInterrupt:
        raise session.interrupted() from None
    raise typer.Exit(code)


@app.command(
    epilog=_RUN_EXIT_CODES, short_help="Register FILE's procedure and run it to completion."
)
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
    timeout: Timeout = 60.0,
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

    def work(output: _Output, session: _Session) -> Any:
        allowed = allow_module or []
        return _run(file, start_context, allowed, timeout, db, output, session, local_modules)

    _drive_command(verbose, db, work, full)


@app.command(epilog=_RESUME_EXIT_CODES, short_help="Carry on unfinished executions to completion.")
def resume(
    execution_id: Annotated[
        str | None,
        typer.Argument(
            metavar="EXECUTION_ID",
            help="The execution to resume; without it, every unfinished execution.",
            show_default=False,
        ),
    ] = None,
    allow_module: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-module",
            "-m",
            metavar="MODULE",
            help="Module that function actions may name (repeatable), as given to `run`.",
        ),
    ] = None,
    path: Annotated[
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
    ] = None,
    timeout: Timeout = 60.0,
    db: Db = DEFAULT_DB,
    verbose: Verbose = False,
    full: Full = False,
    local_modules: Annotated[
        bool,
        typer.Option(
            "--local-modules/--no-local-modules",
            help=(
                "Allow function actions from the Python modules in each --path DIR (the "
                "default), as run allows those beside FILE; --no-local-modules only appends "
                "DIR to sys.path, for the --allow-module modules."
            ),
        ),
    ] = True,
) -> None:
    """Resume unfinished executions (or EXECUTION_ID) and drive them to completion.

    An execution left running (its process died, was interrupted, or `run` timed out) carries
    on from what the database holds: an action that was running when it stopped runs again
    (at least once), retry delays and state timeouts continue from their stored deadlines,
    a compensation in progress carries on. Records are printed as they happen, as `run` does.

    The actions must be available here as they were to run: pass --path DIR with the
    directory that held FILE (its modules are allowed as run allowed them) and the
    --allow-module options run had. The command that run prints on a timeout or Ctrl-C has
    them all. An execution whose actions are missing is not resumed (exit 2): one line per
    procedure version says what to pass. Actions and guard predicates registered by name in
    an application cannot be provided by the CLI: resume those from the application with
    store.recover() after registering them.
    """
    code = _HostCode(tuple(allow_module or []), tuple(path or []), local_modules)

    def work(output: _Output, session: _Session) -> Any:
        return _resume(execution_id, code, timeout, db, output, session)

    _drive_command(verbose, db, work, full)


@app.command(
    name="list",
    epilog=_LIST_EXIT_CODES,
    short_help="List the registered procedures and the executions.",
)
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
    _execute(lambda: asyncio.run(_list(db, status, procedure, limit, as_json)))


@app.command(
    epilog=_SHOW_EXIT_CODES, short_help="Show a registered procedure's states and transitions."
)
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
    _execute(lambda: asyncio.run(_show(name, db, as_json)))


@app.command(epilog=_HISTORY_EXIT_CODES, short_help="Print an execution's stored history.")
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
    _execute(lambda: asyncio.run(_history(execution_id, db, as_json, timestamps, full)))


@app.command(
    epilog=_DIAGRAM_EXIT_CODES,
    short_help="Draw a procedure's state diagram: SVG, PNG, DOT or Mermaid.",
)
def diagram(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Procedure document; optional with --execution (the stored procedure).",
            show_default=False,
        ),
    ] = None,
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
    _execute(lambda: asyncio.run(_diagram(file, out, fmt, execution, db, rankdir, allow_invalid)))


@app.command(epilog=_SCHEMA_EXIT_CODES, short_help="Print the JSON Schema of procedure documents.")
def schema(
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="OUT", dir_okay=False, help="Write it here."),
    ] = None,
) -> None:
    """Print the JSON Schema of the procedure document (from the pydantic models).

    Point an editor at it for validation and completion, e.g. in VS Code
    "json.schemas": [{"fileMatch": ["*.procedure.json"], "url": "./procedure.schema.json"}],
    or for YAML a first line `# yaml-language-server: $schema=./procedure.schema.json`.
    """
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Procedure.model_json_schema(),
    }
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        _echo_document(text)
    else:
        out.write_text(text, encoding="utf-8")
        _echo(f"wrote {out}", err=True)


@app.command(
    epilog=_VALIDATE_EXIT_CODES, short_help="Check procedure files, printing every problem."
)
def validate(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="Procedure documents (.json, .yaml or .yml) to check."),
    ],
    allow_module: AllowModule = None,
    local_modules: LocalModules = True,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Count warnings as problems: a file with warnings is invalid."
        ),
    ] = False,
) -> None:
    """Validate procedure files, printing every problem as `FILE: $.json.path: message`.

    Each file is registered into a throwaway in-memory store, so every check done at
    registration applies (schema, targets, reachability, allowed modules, the static checks).
    A valid file prints `FILE: ok`; the static checks' warnings print as
    `FILE: warning: $.json.path: message` and do not make a file invalid unless --strict.
    No database is used.
    """
    results = asyncio.run(_validate(files, allow_module or [], local_modules))
    invalid = False
    for path, problems, warned in results:
        for line in (*problems, *warned):
            _echo(line)
        if problems or (strict and warned):
            invalid = True
            if not problems:
                _echo(f"{path}: invalid: {len(warned)} warning(s), and --strict")
        else:
            _echo(f"{path}: ok" + (f" ({len(warned)} warning(s))" if warned else ""))
    raise typer.Exit(EXIT_NOT_COMPLETED if invalid else EXIT_OK)


def main() -> None:
    """Entry point of the ``procstore`` script."""
    app(prog_name="procstore")


if __name__ == "__main__":  # pragma: no cover
    main()
