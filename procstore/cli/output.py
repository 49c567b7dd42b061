"""What the CLI prints, and how: safe lines, record lines, values cut to size, log lines.

Most of what the commands print is data someone else wrote (state and event names, log
messages, results, contexts, file names), so every line goes through `echo` (or
`echo_document`, `echo_json`), which shows whatever a terminal would act on as a visible escape.
`format_record` is the one plain line of a history record that ``run``, ``resume`` and
``history`` print.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

import typer
from rich.console import Console

from procstore import ErrorInfo, HistoryRecord, Status
from procstore.terminal import safe_text

#: How many characters of an action's result a record line shows (``run``, ``resume``,
#: ``history``); ``--full`` shows it whole.
RESULT_SHOWN_CHARS = 80
#: How many characters of the final context the ``context`` line shows; ``--full`` shows it
#: whole.
CONTEXT_SHOWN_CHARS = 400


def echo(line: str = "", err: bool = False) -> None:
    """Print one line built from data (a definition, a context, a history, an error message,
    a file name): every character a terminal would act on is shown as a visible escape
    (`procstore.terminal.safe_text`), embedded newlines included, so nothing in the data can
    clear the screen, set the window title or forge another line."""
    typer.echo(safe_text(line), err=err)


def echo_document(text: str) -> None:
    """Print a multi-line document (a diagram's text, the schema): its own line breaks and
    indentation stay, anything else a terminal would act on is escaped."""
    typer.echo(safe_text(text, keep="\n\t"), nl=not text.endswith("\n"))


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON. With ``ensure_ascii`` (kept on on purpose),
    ``json.dumps`` escapes every character outside printable ASCII (ESC, DEL, C1, bidi
    overrides) as ``\\uXXXX``: safe on a terminal, and still JSON with its strings intact."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=True))


class SafeFormatter(logging.Formatter):
    """Log lines for ``--verbose``: a `log` action's message is data, escaped like any line;
    a traceback keeps its line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return safe_text(super().formatException(ei), keep="\n\t")

    def formatStack(self, stack_info: str) -> str:
        return safe_text(super().formatStack(stack_info), keep="\n\t")


def configure_logging(verbose: bool, console: Console | None = None) -> None:
    """``--verbose``: the actions' INFO log lines on stderr (through the live display when one
    is shown, so they do not tear it)."""
    handler: logging.Handler
    if console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, show_time=False)
        handler.setFormatter(SafeFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True
    )
    # transitions logs every callback at INFO: keep it to warnings, --verbose is for actions.
    logging.getLogger("transitions").setLevel(logging.WARNING)


def status_text(status: Status | str | None) -> str:
    """An execution's status as the commands print it (``-`` when there is none)."""
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


def error_line(error: ErrorInfo) -> str:
    """The ``error`` line of a failed execution: its error type and, when it has one, its
    message (a failure terminal's cause)."""
    return (
        f"error       {error.type}: {error.message}"
        if error.message
        else f"error       {error.type}"
    )


def context_line(context: Any, full: bool) -> str:
    """The ``context`` line: the context as JSON, cut to `CONTEXT_SHOWN_CHARS` unless
    ``full``, saying so when it is cut."""
    text = _value_text(context, limit=None)
    if full or len(text) <= CONTEXT_SHOWN_CHARS:
        return f"context     {text}"
    shown = _value_text(context, limit=CONTEXT_SHOWN_CHARS)
    return f"context     {shown} (cut from {len(text)} characters: --full prints it whole)"


def time_text(at: datetime) -> str:
    """A timestamp in local time, to the second."""
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def elapsed_text(seconds: float) -> str:
    """A duration for the live display: ``4.2s``, ``3m05s``, ``1h02m``."""
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
        return _action_line(record, limit)
    if kind == "transition":
        line = f"transition  {record.state} --{record.event}--> {record.target}"
        return line + _data_text(record, limit)
    if kind == "log":
        return f"log         {record.state}: {record.message}"
    if kind == "reset":
        return f"reset       -> {record.state}"
    if kind == "finished":
        line = f"finished    {record.state}: {status_text(record.status)}"
        return line + (f" ({error_line(record.error)[12:]})" if record.error is not None else "")
    if kind == "received":
        return _received_line(record)
    if kind == "item" and isinstance(record.result, dict):
        return _item_line(record)
    # Any other kind (an event the state had no transition for, ...): show what it carries.
    return _fields_line(record, limit)


def _item_line(record: HistoryRecord) -> str:
    """An ``item`` record of a map state: ``item        fan[2] started: <id>`` or ``item
    fan[2] completed (3/10 done, 1 failed)``."""
    counts = record.result
    where = f"{record.state}[{counts.get('index')}]"
    if record.status is None:
        return f"item        {where} started: {record.target}"
    tally = f"{counts.get('done')}/{counts.get('count')} done, {counts.get('failed')} failed"
    return f"item        {where} {status_text(record.status)} ({tally})"


def _received_line(record: HistoryRecord) -> str:
    """A ``received`` record: what a client queued, where, and why it was refused if it was."""
    message = record.message or ""
    refused = message.startswith("refused: ")
    asked = record.event if record.event is not None else ("" if refused else message)
    line = (
        f"received    {asked} (in {record.state})" if asked else f"received    (in {record.state})"
    )
    return f"{line} {message}" if refused else line + _data_text(record, RESULT_SHOWN_CHARS)


def _data_text(record: HistoryRecord, limit: int | None) -> str:
    """`` data=<JSON>`` for a record of an event that carried data (cut to ``limit``)."""
    return "" if record.data is None else f" data={_value_text(record.data, limit)}"


def _action_line(record: HistoryRecord, limit: int | None) -> str:
    """An ``action`` record: the attempt's error, or ``ok`` and its result (cut to ``limit``)."""
    attempt = f" #{record.attempt}" if record.attempt is not None else ""
    if record.error is not None:
        return (
            f"action      {record.state}{attempt} error: "
            f"{record.error.type}: {record.error.message}"
        )
    result = "" if record.result is None else f" -> {_value_text(record.result, limit)}"
    return f"action      {record.state}{attempt} ok{result}"


def _fields_line(record: HistoryRecord, limit: int | None) -> str:
    """A record of any other kind: its kind, then each field it carries as ``name=value``
    (a result cut to ``limit``)."""
    kind = record.kind
    fields: list[str] = []
    for name in ("state", "event", "target", "attempt", "delay_ms", "message"):
        value = getattr(record, name, None)
        if value is not None:
            fields.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    if record.result is not None:
        fields.append(f"result={_value_text(record.result, limit)}")
    if record.data is not None:
        fields.append(f"data={_value_text(record.data, limit)}")
    if record.error is not None:
        fields.append(f"error={record.error.type}: {record.error.message}")
    if record.status is not None:
        fields.append(f"status={status_text(record.status)}")
    return f"{kind:<11} {' '.join(fields)}".rstrip()


def record_style(record: HistoryRecord) -> str | None:
    """How the live display colours a record line (plain output has no styles)."""
    if record.error is not None or record.kind in ("timeout", "cancelled", "blocked"):
        return "red"
    if record.kind == "received" and (record.message or "").startswith("refused: "):
        return "yellow"
    if record.kind in ("rollback", "retry"):
        return "yellow"
    if record.kind == "finished":
        return "bold green" if record.status == Status.COMPLETED else "bold red"
    return None
