"""The exit codes of the ``procstore`` command, and how a command ends with one.

`EXIT_CODES` is the one table of what each code means: for every command (`procstore --help`
and docs/cli.md's table, which a test compares with it) and for each command that can end with
it (the ``Exit codes`` epilog of ``procstore COMMAND --help``, written by `epilog`). A command
ends by raising `CommandError` with its code, or through `execute`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer

from procstore import StoreError
from procstore.cli.output import echo

__all__ = [
    "EXIT_CODES",
    "CommandError",
    "ExitCode",
    "Meaning",
    "app_exit_codes",
    "epilog",
    "execute",
]


class ExitCode(enum.IntEnum):
    """The process's exit status."""

    OK = 0
    NOT_COMPLETED = 1
    USAGE = 2
    TIMEOUT = 3
    NOT_FOUND = 4
    STORE = 5
    REFUSED = 6
    INTERRUPTED = 130


@dataclass(frozen=True)
class Meaning:
    """What one exit code means.

    Attributes:
        docs: For every command, as docs/cli.md's table says it (Markdown).
        summary: For every command, as ``procstore --help`` says it: one entry per line.
        commands: For each command that can end with this code, as its ``--help`` says it:
            one entry per line.
    """

    docs: str
    summary: tuple[str, ...]
    commands: Mapping[str, tuple[str, ...]]


_LIST_USAGE = ("usage error (bad option, bad --db URL)",)
_READ_STORE = ("the store cannot be used (not a procstore database, newer schema)",)
_NO_EXECUTION = ("no execution EXECUTION_ID (or no database)",)

EXIT_CODES: Mapping[ExitCode, Meaning] = {
    ExitCode.OK: Meaning(
        docs="Success: the execution(s) completed, every file is valid, the "
        "listing/diagram/schema was written, the event, callback or cancel was queued, `worker` "
        "stopped on SIGTERM or SIGINT.",
        summary=("success",),
        commands={
            "run": ("the execution completed",),
            "resume": ("every resumed execution completed (or there was nothing to resume)",),
            "worker": ("stopped by SIGTERM or SIGINT, its leases released",),
            "list": ("listed (also when the database does not exist yet: nothing to list)",),
            "show": ("shown",),
            "history": ("shown (whatever the execution's status)",),
            "diagram": ("written",),
            "schema": ("printed",),
            "validate": ("every FILE is valid",),
            "import-asl": ("the procedure document was written",),
            "send": ("the event is queued for the process that runs the execution",),
            "callback": ("the callback's outcome is queued for the process that runs it",),
            "cancel": ("the cancel is queued (or the execution had ended already)",),
            "status": ("shown (whatever the execution's status)",),
            "wait": ("the execution completed",),
            "mcp": ("the client closed the connection (stdio), or stopped by Ctrl-C",),
        },
    ),
    ExitCode.NOT_COMPLETED: Meaning(
        docs="`run`, `resume`, `wait`: an execution ended `failed`, `cancelled` or "
        "`rolled_back`. `validate`: a file is invalid, missing or unreadable. `import-asl`: "
        "something in FILE has no procstore counterpart (each problem is printed).",
        summary=(
            "run/resume/wait: an execution ended failed, cancelled or rolled back;",
            "validate: a file is invalid; import-asl: FILE cannot be translated",
        ),
        commands={
            "run": ("it ended failed, cancelled or rolled back",),
            "resume": (
                "one ended failed, cancelled or rolled back (also: EXECUTION_ID had already",
                "ended that way)",
            ),
            "validate": ("at least one FILE is invalid, missing or unreadable",),
            "import-asl": ("FILE cannot be translated: every problem is printed",),
            "wait": ("it ended failed, cancelled or rolled back",),
        },
    ),
    ExitCode.USAGE: Meaning(
        docs="Usage error: a bad option or argument, an unreadable or invalid `FILE`, a "
        "`--context` that is not a JSON object, a `send --data` that is not JSON, a bad `--db` "
        "URL, a version conflict (the "
        "procedure's name and version are stored with different content: bump the version), "
        "`resume` of an execution that needs host code the CLI cannot provide.",
        summary=(
            "usage error: bad option or argument, unreadable or invalid FILE, bad --context,",
            "a version conflict (bump the version), or (resume) actions the CLI cannot provide",
        ),
        commands={
            "run": (
                "usage error: bad option, unreadable FILE, bad --context, FILE is not a valid",
                "procedure (its problems are printed as FILE: $.json.path: message), or FILE's",
                "name and version are stored with different content (bump the version)",
            ),
            "resume": (
                "usage error, or an execution needs actions or guards the CLI cannot provide",
                "(nothing is resumed then)",
            ),
            "list": _LIST_USAGE,
            "show": _LIST_USAGE,
            "history": _LIST_USAGE,
            "diagram": (
                "usage error: bad option, unreadable or invalid FILE, a format that cannot be told",
                "from OUT's suffix, png to a terminal, FILE is not the procedure of --execution",
            ),
            "schema": ("usage error (bad option)",),
            "worker": ("usage error (bad option, bad --db URL)",),
            "validate": ("usage error (bad option, no FILE given)",),
            "import-asl": (
                "usage error: bad option, FILE or MAP unreadable or not JSON, MAP not an object",
                "of strings",
            ),
            "send": ("usage error (bad option, bad --db URL, --data that is not JSON)",),
            "callback": ("usage error (bad option, --data that is not JSON, --data and --fail)",),
            "cancel": _LIST_USAGE,
            "status": _LIST_USAGE,
            "wait": _LIST_USAGE,
            "mcp": (
                "usage error: bad option, bad --db URL, --host not a loopback address without",
                "--token, or the MCP SDK is not installed (pip install 'procstore[mcp]')",
            ),
        },
    ),
    ExitCode.TIMEOUT: Meaning(
        docs="`run`, `resume`, `wait`: an execution did not finish within `--timeout`. It "
        "stays `running` in the database; `procstore resume ID` carries it on.",
        summary=(
            "run/resume/wait: an execution did not finish within --timeout (it stays running",
            "in the database: procstore resume ID carries it on)",
        ),
        commands={
            "run": ("it did not finish within --timeout: it stays running in the database",),
            "resume": ("one did not finish within --timeout (none failed): it stays running",),
            "wait": ("it did not finish within --timeout (it is left as it is)",),
        },
    ),
    ExitCode.NOT_FOUND: Meaning(
        docs="Not found: no such execution (`history`, `resume ID`, `diagram --execution`, "
        "`send`, `callback`, `cancel`, `status`, `wait`) or procedure (`show`) in the database, "
        "or no database at all.",
        summary=("not found: no such execution or procedure in the database",),
        commands={
            "resume": ("no execution EXECUTION_ID (or no database)",),
            "show": ("no such procedure or version (or no database)",),
            "history": _NO_EXECUTION,
            "diagram": ("no execution --execution ID (or no database)",),
            "send": _NO_EXECUTION,
            "callback": ("no execution the token names (or no database)",),
            "cancel": _NO_EXECUTION,
            "status": _NO_EXECUTION,
            "wait": _NO_EXECUTION,
        },
    ),
    ExitCode.STORE: Meaning(
        docs="The store cannot be used: the file is not a procstore database (it is left "
        "unchanged), was written by a newer procstore, or another process runs its "
        "executions. `diagram`: Graphviz's `dot` program is missing for `svg`/`png`.",
        summary=(
            "the store cannot be used (not a procstore database, newer schema, another",
            "process runs its executions), or Graphviz is missing (diagram svg/png)",
        ),
        commands={
            "run": (
                "the store cannot be used (not a procstore database, newer schema, another",
                "process runs its executions)",
            ),
            "resume": ("the store cannot be used (another process runs its executions, ...)",),
            "worker": (
                "the store cannot be used (not a procstore database, newer schema, the server",
                "cannot be reached, SQLite: another process runs its executions)",
            ),
            "list": _READ_STORE,
            "show": _READ_STORE,
            "history": _READ_STORE,
            "diagram": (
                "Graphviz's dot program is missing (svg, png), or the store cannot be used",
            ),
            "send": _READ_STORE,
            "callback": _READ_STORE,
            "cancel": _READ_STORE,
            "status": _READ_STORE,
            "wait": _READ_STORE,
            "mcp": _READ_STORE,
        },
    ),
    ExitCode.REFUSED: Meaning(
        docs="`send`: the execution cannot take the event: it has finished, or no state of "
        "its procedure has a transition on it (a typo?), or it is `done` or `timeout`, which "
        "only procstore raises, or its `--data` is larger than the limit. `callback`: TOKEN is not "
        "a callback token, or its execution has finished. Nothing is queued.",
        summary=(
            "send/callback: the execution has finished, or no state of it accepts EVENT (or",
            "TOKEN is not a callback token)",
        ),
        commands={
            "send": (
                "refused: the execution has finished, no state of its procedure has a",
                "transition on EVENT, or --data is too large (nothing is queued)",
            ),
            "callback": (
                "refused: not a callback token, the execution has finished, or --data is too",
                "large (nothing is queued)",
            ),
        },
    ),
    ExitCode.INTERRUPTED: Meaning(
        docs="Interrupted (Ctrl-C): the executions that `run`/`resume` was driving stay "
        "`running` in the database.",
        summary=("interrupted (Ctrl-C): started executions stay running in the database",),
        commands={
            "run": ("interrupted (Ctrl-C): the execution stays running in the database",),
            "resume": ("interrupted (Ctrl-C): the executions stay running in the database",),
            "wait": ("interrupted (Ctrl-C): the execution is left as it is",),
        },
    ),
}


def _block(rows: list[tuple[ExitCode, tuple[str, ...]]]) -> str:
    """``Exit codes:`` and one row per code, its meaning's later lines under its first; the
    leading ``\\b`` keeps click from rewrapping the block."""
    width = max(len(str(code.value)) for code, _ in rows)
    lines = ["\b", "Exit codes:"]
    for code, meaning in rows:
        first, *more = meaning
        lines.append(f"  {code.value:<{width}}  {first}")
        lines += [f"  {'':<{width}}  {line}" for line in more]
    return "\n".join(lines)


def app_exit_codes() -> str:
    """The exit codes for every command, for ``procstore --help``."""
    return _block([(code, meaning.summary) for code, meaning in EXIT_CODES.items()])


def epilog(command: str) -> str:
    """The exit codes ``command`` can end with, for ``procstore COMMAND --help``."""
    rows = [
        (code, meaning.commands[command])
        for code, meaning in EXIT_CODES.items()
        if command in meaning.commands
    ]
    if not rows:
        raise KeyError(f"no exit codes for command {command!r}")
    return _block(rows)


class CommandError(Exception):
    """Ends a command: ``lines`` go to stderr and the process exits with ``code``."""

    def __init__(self, code: ExitCode, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.code = code
        self.lines = lines


def execute(work: Callable[[], Any]) -> Any:
    """Run ``work`` (usually ``asyncio.run(...)``), turning a :class:`CommandError` or a store
    error into its message on stderr and the exit code."""
    try:
        return work()
    except CommandError as exc:
        for line in exc.lines:
            echo(line, err=True)
        raise typer.Exit(exc.code) from None
    except StoreError as exc:
        echo(f"error: {exc}", err=True)
        raise typer.Exit(ExitCode.STORE) from None
