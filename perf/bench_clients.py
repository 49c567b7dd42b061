"""Pickup latency of the inbox (issue 12): how long after a client's ``send()`` the process that
runs the execution takes the event up, on SQLite and PostgreSQL.

A runner process (this script with ``--runner URL``) opens the store, calls ``recover()`` (so
it holds the runner lock and reads the inbox) and waits. This process is the client
(``ProcedureStore(url, worker=False)``): it starts one execution of a procedure that waits in
``wait`` for ``ping`` (a transition back to ``wait``), then sends ``ping`` N times, one every
``--gap`` seconds (more than a pickup takes, so no event queues behind another). The latency of
one ping is the ``received`` record's timestamp (taken by the runner when it applies the
command, on this machine's clock) minus the wall-clock instant just before ``send()``: it
covers committing the command, the runner noticing the change (SQLite: ``PRAGMA data_version``
every 10 ms, every 25 ms after a quiet second; PostgreSQL: ``LISTEN/NOTIFY``), reading the
inbox, and applying it. ``send()`` is timed on its own too (the client's commit). Two paces:
*busy*, a ping every 0.1 s, and *after quiet*, a ping every 1.2 s (SQLite's slower pace). Last,
what waiting costs: the runner's CPU time over ``IDLE_S`` seconds in which nothing happens, as
a share of one core (read from ``/proc``: Linux only).

    .venv/bin/python perf/bench_clients.py                 # 200 + 30 pings per store, ~2 min
    .venv/bin/python perf/bench_clients.py --quick         # 20 + 3 pings: a smoke run
    .venv/bin/python perf/bench_clients.py --postgres URL  # that server instead of a new one

PostgreSQL: the server of ``--postgres`` or ``PROCSTORE_TEST_POSTGRES`` (a new database is
created on it and dropped afterwards), else a throwaway cluster (tools/pg_cluster.py); without
either the PostgreSQL row is skipped, saying why. The figures are a report, not a test: the
exit code is 0. The issue's target is a pickup within 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procstore import HistoryRecord, ProcedureStore  # noqa: E402
from tools import pg_cluster  # noqa: E402

PING = {
    "name": "ping",
    "version": "1.0",
    "definition": {
        "initial_state": "wait",
        "states": {
            "wait": {
                "transitions": [
                    {"event": "ping", "target": "wait"},
                    {"event": "stop", "target": "stopped"},
                ]
            },
            "stopped": {},
        },
    },
}


QUIET_GAP_S = 1.2  # more than procstore.storage.sqlite.changes.QUIET_AFTER_S
IDLE_S = 10.0  # the idle window whose CPU use is measured


@dataclass(frozen=True)
class Result:
    """The figures of one store at one pace."""

    store: str
    pace: str
    pings: int
    pickup_ms: list[float]
    send_ms: list[float]
    idle_cpu: float | None = None  # share of one core the runner used while idle


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# -- the runner process ---------------------------------------------------------------------------


async def run_runner(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.recover()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (``None`` without ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def runner(url: str) -> Iterator[int]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--runner", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the runner process did not start")
        yield child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(60)


# -- the client -----------------------------------------------------------------------------------


async def measure(store: str, url: str, paces: list[tuple[str, int, float]]) -> list[Result]:
    """Ping one execution at each pace ``(name, pings, gap)`` in turn; the figures of each."""
    results = []
    async with ProcedureStore(url, worker=False) as client:
        await client.register(PING)
        with runner(url) as pid:
            execution = await client.start("ping")
            done = 0
            for pace, pings, gap in paces:
                sent_at: list[float] = []
                send_ms: list[float] = []
                for _ in range(pings):
                    await asyncio.sleep(gap)
                    before = time.time()
                    await execution.send("ping")
                    send_ms.append((time.time() - before) * 1000)
                    sent_at.append(before)
                done += pings
                while len(received := _received(execution.history)) < done:
                    await asyncio.sleep(0.05)
                    await execution.refresh()
                taken = received[done - pings : done]
                pickup = [(t - s) * 1000 for t, s in zip(taken, sent_at, strict=True)]
                results.append(Result(store, pace, pings, pickup, send_ms))
            await asyncio.sleep(QUIET_GAP_S)  # past the last ping: the runner is quiet
            cpu_before = cpu_seconds(pid)
            await asyncio.sleep(IDLE_S)
            cpu_after = cpu_seconds(pid)
    if cpu_before is not None and cpu_after is not None:
        results[-1] = dataclasses.replace(results[-1], idle_cpu=(cpu_after - cpu_before) / IDLE_S)
    return results


def _received(history: tuple[HistoryRecord, ...]) -> list[float]:
    return [r.at.timestamp() for r in history if r.kind == "received"]


@contextlib.asynccontextmanager
async def postgres_database(server: str) -> AsyncIterator[str]:
    import asyncpg

    name = f"procstore_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.contextmanager
def postgres_server(given: str | None) -> Iterator[str | None]:
    url = given or os.environ.get(pg_cluster.ENV_VAR)
    if url:
        yield url
        return
    if pg_cluster.find_bin_dir() is None:
        print("no PostgreSQL server: skipping it (pass --postgres URL)", file=sys.stderr)
        yield None
        return
    with pg_cluster.running_cluster() as started:
        yield started


async def main(args: argparse.Namespace) -> None:
    paces = [("busy", 20 if args.quick else 200, 0.1)]
    paces.append(("after quiet", 3 if args.quick else 30, QUIET_GAP_S))
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        print("sqlite", file=sys.stderr)
        results += await measure("sqlite", sqlite_url, paces)
    with postgres_server(args.postgres) as server:
        if server is not None:
            async with postgres_database(server) as url:
                print("postgresql", file=sys.stderr)
                results += await measure("postgresql", url, paces)
    print(
        f"{'store':<11} {'pace':<11} {'pings':>5}  {'pickup median':>13}  {'p95':>8}  "
        f"{'max':>8}  {'send() median':>13}  {'idle runner CPU':>15}"
    )
    for r in results:
        idle = "" if r.idle_cpu is None else f"{100 * r.idle_cpu:.1f}% of a core"
        print(
            f"{r.store:<11} {r.pace:<11} {r.pings:>5}  "
            f"{statistics.median(r.pickup_ms):>10.1f} ms  "
            f"{percentile(r.pickup_ms, 0.95):>5.1f} ms  {max(r.pickup_ms):>5.1f} ms  "
            f"{statistics.median(r.send_ms):>10.1f} ms  {idle:>15}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 + 3 pings per store")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server to use")
    parser.add_argument("--runner", metavar="URL", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.runner:
        asyncio.run(run_runner(arguments.runner))
    else:
        asyncio.run(main(arguments))
