"""Following executions as they run: a live status display on a terminal, plain lines
otherwise.

A `Tracker` keeps what the display says about one execution up to date from its records; an
`Output` (`PlainOutput` or `LiveOutput`, chosen by `make_output`) prints; a `Follower` feeds an
execution's records to both as they happen.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from procstore import Execution, HistoryRecord, Procedure, Status
from procstore.chart import LEAF_KINDS, build_chart
from procstore.cli.output import echo, elapsed_text, format_record, record_style, status_text
from procstore.terminal import safe_text


class Tracker:
    """What the live display says about one execution, kept up to date from its records."""

    def __init__(self, execution: Execution, procedure: Procedure, label: str) -> None:
        self.execution = execution
        self.label = label
        chart = build_chart(procedure)
        self.with_action = {s.path for s in chart if s.state is not None and s.state.action}
        # Leaves without transitions: a region that reached one waits for the others.
        self.terminal = {s.path for s in chart if s.kind in LEAF_KINDS and s.terminal}
        self.maps = {s.path for s in chart if s.kind == "map"}
        self.attempt: dict[str, int] = {}
        self.acted: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.compensating = False
        self.items: dict[str, str] = {}  # map states: where their items stand
        self.spinner = Spinner("dots", style="cyan")
        self.ended: float | None = None  # when the display first saw it finished

    def update(self, record: HistoryRecord) -> None:
        """Take in the execution's next record."""
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
        elif record.kind == "item" and isinstance(record.result, dict):
            counts = record.result
            self.items[state] = f"{counts.get('done')}/{counts.get('count')} items done"
        elif record.kind == "rollback":
            self.compensating = True
        elif record.kind == "reset":
            self.compensating = False

    def describe(self) -> str:
        """``build (attempt 2)``, ``approve (waiting for an event)``, ``compensating``..."""
        execution = self.execution
        if execution.status is not Status.RUNNING:
            return f"{status_text(execution.status)} in {execution.current}"
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
            elif leaf in self.maps:
                parts.append(f"{leaf} ({self.items.get(leaf, 'starting its items')})")
            else:
                parts.append(f"{leaf} (waiting for an event)")
        return ", ".join(parts) or execution.current


class Output(Protocol):
    """Where a command that drives executions writes."""

    full: bool  # values (results, the final context) whole, not cut

    def line(self, text: str, style: str | None = None) -> None: ...

    def record(self, tracker: Tracker, record: HistoryRecord, prefix: str) -> None: ...

    def watch(self, trackers: Sequence[Tracker]) -> Any:
        """An async context manager around the time the executions run."""
        ...


class PlainOutput:
    """One line per record (the ``format_record`` lines): for pipes, files and tests."""

    def __init__(self, full: bool = False) -> None:
        self.full = full

    def line(self, text: str, style: str | None = None) -> None:
        echo(text)

    def record(self, tracker: Tracker, record: HistoryRecord, prefix: str) -> None:
        echo(prefix + format_record(record, self.full))

    @asynccontextmanager
    async def watch(self, trackers: Sequence[Tracker]) -> AsyncIterator[None]:
        yield


class LiveOutput:
    """On a terminal: the record lines scroll by above a status line per execution (spinner,
    current state(s), attempt, elapsed time), refreshed ten times a second."""

    def __init__(self, console: Console, full: bool = False) -> None:
        self.console = console
        self.full = full
        self._started = time.monotonic()

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(safe_text(text), style=style or ""), soft_wrap=True)

    def record(self, tracker: Tracker, record: HistoryRecord, prefix: str) -> None:
        text = Text()
        text.append(safe_text(prefix), style="dim")
        line = format_record(record, self.full)
        text.append(safe_text(line), style=record_style(record) or "")
        self.console.print(text, soft_wrap=True)

    def render(self, trackers: Sequence[Tracker]) -> Table:
        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for tracker in trackers:
            running = tracker.execution.status is Status.RUNNING
            if not running and tracker.ended is None:
                tracker.ended = now
            elapsed = elapsed_text((tracker.ended or now) - self._started)
            mark: Any = tracker.spinner if running else Text("done", style="dim")
            grid.add_row(
                mark,
                Text(safe_text(tracker.label), style="bold"),
                Text(safe_text(tracker.describe())),
                Text(elapsed, style="dim"),
            )
        return grid

    @asynccontextmanager
    async def watch(self, trackers: Sequence[Tracker]) -> AsyncIterator[None]:
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


def make_output(console: Console | None = None, full: bool = False) -> Output:
    """The live display when stdout is a terminal, plain lines otherwise."""
    if console is not None:
        return LiveOutput(console, full)
    if sys.stdout.isatty():
        return LiveOutput(Console(highlight=False), full)
    return PlainOutput(full)


class Follower:
    """Prints an execution's records as they happen (only those at or after ``since``, when
    given: a resumed execution's stored past is not printed again)."""

    def __init__(
        self, tracker: Tracker, output: Output, prefix: str, since: datetime | None
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
