"""``procstore worker``: run a store's executions until SIGTERM or SIGINT.

On PostgreSQL the process is one of the database's workers (``procstore.worker``): it claims
the executions no live worker holds, up to ``--concurrency`` at once, and takes over those of
dead workers once their leases expire. On SQLite it is the database's one runner: it resumes
the unfinished executions and runs them. Either way, SIGTERM or SIGINT stops it gracefully: it
claims nothing more, lets the actions under way finish for ``--grace`` seconds (starting none),
commits, releases its leases and exits 0; a second signal cuts the grace short.

Not on a terminal (systemd, a container) each claim and takeover is one log line on stderr; on
a terminal a live line counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from procstore import ProcedureStore
from procstore.cli.db import db_name
from procstore.cli.exits import ExitCode, execute
from procstore.cli.hostcode import HostCode
from procstore.cli.options import (
    DEFAULT_DB,
    Db,
    ModulePath,
    ResumeLocalModules,
    Verbose,
    WorkerAllowModule,
)
from procstore.cli.output import SafeFormatter, elapsed_text
from procstore.storage.leasing import DEFAULT_LEASE_SECONDS, MIN_LEASE_SECONDS
from procstore.storage.urls import is_postgres_url
from procstore.terminal import safe_text
from procstore.worker import DEFAULT_CONCURRENCY

__all__ = ["DEFAULT_GRACE_S", "worker"]

DEFAULT_GRACE_S = 20.0
"""How long a stopping worker lets the actions under way finish unless ``--grace`` says
otherwise: under the 30 s a container runtime (Docker, Kubernetes) waits after SIGTERM before
SIGKILL, so that the worker still commits and releases its leases itself."""

_log = logging.getLogger("procstore")


def worker(
    db: Db = DEFAULT_DB,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=0,
            metavar="N",
            help="PostgreSQL: how many executions to run at once (0: claim none).",
        ),
    ] = DEFAULT_CONCURRENCY,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            min=MIN_LEASE_SECONDS,
            metavar="S",
            help=(
                "PostgreSQL: how long a lease lasts without renewal (renewed every third of "
                "it): how long a dead worker's executions wait before another takes them over."
            ),
        ),
    ] = DEFAULT_LEASE_SECONDS,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0.0,
            metavar="S",
            help="On SIGTERM/SIGINT, seconds to let the actions under way finish.",
        ),
    ] = DEFAULT_GRACE_S,
    allow_module: WorkerAllowModule = None,
    path: ModulePath = None,
    local_modules: ResumeLocalModules = True,
    verbose: Verbose = False,
) -> None:
    """Run the store's executions until SIGTERM or SIGINT (Ctrl-C), then stop gracefully.

    With a postgresql:// --db this process is one of the database's workers, beside any
    number of others on any machines: it claims the running executions no live worker holds
    (new ones within milliseconds of their start), runs up to --concurrency at once, renews
    its leases, and takes over the executions of a worker that died once their lease
    (--lease-seconds) expired, resuming each from its last commit. With an sqlite:/// --db it
    is the file's one runner: it resumes the unfinished executions.

    On SIGTERM or SIGINT it claims nothing more, lets the actions under way finish for
    --grace seconds (starting no new one), commits what they led to, releases its leases so
    that other workers take them over at once, and exits 0. A second signal cuts the grace
    short. Every worker of a database needs the same host code: the --allow-module modules
    and --path directories the procedures' actions name.
    """
    code = HostCode(tuple(allow_module or []), tuple(path or []), local_modules)
    console = Console(stderr=True, highlight=False) if sys.stderr.isatty() else None
    _configure_logging(verbose, console)
    execute(lambda: asyncio.run(_work(db, code, concurrency, lease_seconds, grace, console)))
    raise typer.Exit(ExitCode.OK)


async def _work(
    db: str,
    code: HostCode,
    concurrency: int,
    lease_seconds: float,
    grace: float,
    console: Console | None,
) -> None:
    """Open the store, work until a signal, then close it gracefully."""
    store: ProcedureStore = code.store(db, concurrency=concurrency, lease_seconds=lease_seconds)
    stop, hurry = asyncio.Event(), asyncio.Event()
    with _signals(stop, hurry):
        try:
            await store.work()
            _log.info("%s", _started_line(db, concurrency, lease_seconds))
            with _live(console, db):
                await stop.wait()
            _log.info("stopping: claiming nothing more; the actions under way get %gs", grace)
            closing = asyncio.ensure_future(store.close(grace=grace))
            hurried = asyncio.ensure_future(hurry.wait())
            await asyncio.wait([closing, hurried], return_when=asyncio.FIRST_COMPLETED)
            if not closing.done():  # a second signal: no more grace
                _log.info("stopping now: the actions under way run again elsewhere")
                closing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await closing
            hurried.cancel()
        finally:
            await store.close()
    _log.info("stopped")


def _started_line(db: str, concurrency: int, lease_seconds: float) -> str:
    if is_postgres_url(db):
        return (
            f"working on {db_name(db)}: up to {concurrency} executions at once, "
            f"leases of {lease_seconds:g}s"
        )
    return f"running the executions of {db_name(db)} (its one runner)"


@contextlib.contextmanager
def _signals(stop: asyncio.Event, hurry: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop``; a second one sets ``hurry``."""
    loop = asyncio.get_running_loop()

    def received(name: str) -> None:
        if stop.is_set():
            hurry.set()
        else:
            _log.info("%s received", name)
            stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, received, number.name)
    try:
        yield
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


class _Counter(logging.Handler):
    """Counts the worker's claims and takeovers (the records ``procstore.worker`` logs with a
    ``procstore_claim`` attribute) for the live line."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed = 0
        self.taken_over = 0

    def emit(self, record: logging.LogRecord) -> None:
        claim = getattr(record, "procstore_claim", None)
        if claim is not None:
            self.claimed += 1
            self.taken_over += claim.previous_owner is not None


@contextlib.contextmanager
def _live(console: Console | None, db: str) -> Iterator[None]:
    """On a terminal: a status line, refreshed every half second, with the claims so far."""
    if console is None:
        yield
        return
    counter = _Counter()
    _log.addHandler(counter)
    began = time.monotonic()

    def line() -> Text:
        up = elapsed_text(time.monotonic() - began)
        # The counts first: a narrow terminal cuts the end of the line.
        return Text(
            safe_text(
                f"{counter.claimed} claimed ({counter.taken_over} taken over), up {up}: "
                f"worker on {db_name(db)} (Ctrl-C stops it)"
            )
        )

    async def tick(live: Live) -> None:
        while True:
            live.update(line(), refresh=True)
            await asyncio.sleep(0.5)

    with Live(line(), console=console, auto_refresh=False, transient=True) as live:
        ticker = asyncio.get_running_loop().create_task(tick(live))
        try:
            yield
        finally:
            ticker.cancel()
            _log.removeHandler(counter)


class _NotClaims(logging.Filter):
    """On a terminal the live line counts the claims: their log lines are left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "procstore_claim", None) is None


def _configure_logging(verbose: bool, console: Console | None) -> None:
    """procstore's INFO lines (claims, takeovers, starting and stopping) on stderr, with the
    time; the actions' INFO lines only with ``--verbose``."""
    handler: logging.Handler
    if console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(SafeFormatter("%(message)s"))
        handler.addFilter(_NotClaims())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True
    )
    _log.setLevel(logging.INFO)
    logging.getLogger("transitions").setLevel(logging.WARNING)
