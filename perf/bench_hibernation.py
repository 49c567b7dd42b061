"""Hibernation at scale (issue 14, goal 1): waiting executions bounded by disk, not memory.

Three measurements on SQLite files (``synchronous=NORMAL``), each printed beside its goal:

1. **Waiting.** ``--waiting`` executions (1,000,000) of a procedure that waits for ``approve``
   are started on one store with ``hibernate_after=0``, ``--batch`` (200) at a time. Printed:
   the start rate, the process's RSS once they all wait (after a ``gc.collect()``), its peak
   RSS, how many are still in memory, and the file's size. Goal: RSS under 300 MB. Beside it,
   the bytes per waiting execution of a store that keeps them in memory
   (``hibernate_after=None``), from a sample of ``--sample`` (10,000), by ``tracemalloc``.
2. **Sends.** ``--sends`` (1,000) executions picked at random among the hibernated ones each get
   ``await (await store.get_execution(id)).send("approve")``: restored from the database, then
   moved on and committed. Printed: median, p95, p99 of that call. Goal: median < 5 ms, p99 <
   20 ms. Beside it, the same call on executions that are in memory (a store without
   hibernation), interleaved with the hibernated ones.
3. **Timeouts.** ``--timeouts`` (100,000) executions whose state times out after
   ``--timeout-s`` (60 s) are started on a clock that stands still, so that every deadline is
   the same instant; the store is closed, then opened again on the system clock and
   ``work()`` indexes them (timed: the recovery of that many unfinished executions). When the
   instant comes, every timeout fires: each execution is restored, takes its ``timeout``
   transition to a terminal state and is committed. Printed: from the due instant to the last
   ``timeout`` record, and to the last commit, and whether each fired exactly once. Goal: all
   within 2 s.

    .venv/bin/python perf/bench_hibernation.py            # the issue's sizes: ~15 minutes
    .venv/bin/python perf/bench_hibernation.py --quick    # small sizes, a smoke run: seconds
    .venv/bin/python perf/bench_hibernation.py --json out.json --dir /var/tmp

A report, not a test: the exit code is 0 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from procstore import ProcedureStore
from procstore.clock import SYSTEM

APPROVAL = {
    "name": "approval",
    "version": "1",
    "definition": {
        "initial_state": "ask",
        "states": {"ask": {"transitions": [{"event": "approve", "target": "done"}]}, "done": {}},
    },
}


def timed_out(timeout_s: float) -> dict[str, Any]:
    return {
        "name": "deadline",
        "version": "1",
        "definition": {
            "initial_state": "ask",
            "states": {
                "ask": {
                    "timeout_ms": int(timeout_s * 1000),
                    "transitions": [
                        {"event": "approve", "target": "done"},
                        {"event": "timeout", "target": "late"},
                    ],
                },
                "done": {},
                "late": {},
            },
        },
    }


class StillClock:
    """The system clock, except that ``time()`` stands still at ``at``: every execution
    started on it has the same deadlines."""

    def __init__(self, at: float) -> None:
        self.at = at

    def time(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return SYSTEM.monotonic()

    async def sleep(self, seconds: float) -> None:
        await SYSTEM.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[..., None], *args: Any) -> Any:
        return SYSTEM.call_later(seconds, callback, *args)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[Any]:
        return SYSTEM.timeout(seconds)


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def progress(*words: object) -> None:
    print(*words, file=sys.stderr, flush=True)


def fresh(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")
    return f"sqlite:///{path}"


async def start_many(store: ProcedureStore, name: str, count: int, batch: int) -> list[str]:
    """Start ``count`` executions, ``batch`` at a time; return a random sample of 10,000 ids
    (holding a million ids would weigh on the RSS being measured)."""
    sample: list[str] = []
    started = 0
    began = time.perf_counter()
    while started < count:
        size = min(batch, count - started)
        executions = await asyncio.gather(*(store.start(name) for _ in range(size)))
        for execution in executions:  # reservoir sampling
            started += 1
            if len(sample) < 10_000:
                sample.append(execution.id)
            elif (slot := random.randrange(started)) < 10_000:
                sample[slot] = execution.id
        del executions
        if started % 100_000 < batch:
            rate = started / (time.perf_counter() - began)
            progress(f"  {started:,} started ({rate:,.0f}/s), RSS {rss_mib():.0f} MiB")
    return sample


async def per_execution_in_memory(directory: Path, sample: int) -> float:
    """Bytes per waiting execution of a store that keeps them in memory (tracemalloc)."""
    store = ProcedureStore(fresh(directory / "awake.db"), hibernate_after=None)
    await store.register(APPROVAL)
    await asyncio.gather(*(store.start("approval") for _ in range(10)))  # warm
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = await asyncio.gather(*(store.start("approval") for _ in range(sample)))
    await asyncio.sleep(0.1)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del kept
    await store.close()
    return grown / sample


async def waiting(args: argparse.Namespace, directory: Path) -> tuple[dict[str, Any], list[str]]:
    url = fresh(directory / "waiting.db")
    progress(f"waiting: starting {args.waiting:,} executions (hibernate_after=0)")
    store = ProcedureStore(url, hibernate_after=0)
    await store.register(APPROVAL)
    began = time.perf_counter()
    sample = await start_many(store, "approval", args.waiting, args.batch)
    seconds = time.perf_counter() - began
    await asyncio.sleep(0.5)  # the last ones are parked
    gc.collect()
    row = {
        "executions": args.waiting,
        "start_per_second": args.waiting / seconds,
        "rss_mib": rss_mib(),
        "peak_rss_mib": peak_rss_mib(),
        "in_memory": len(store._executions.running),
        "database_mib": sum(
            f.stat().st_size for f in directory.iterdir() if f.name.startswith("waiting.db")
        )
        / 2**20,
    }
    await store.close()
    row["awake_bytes_each"] = await per_execution_in_memory(directory, args.sample)
    return row, sample


async def sends(args: argparse.Namespace, directory: Path, ids: list[str]) -> dict[str, Any]:
    """Latency of get_execution + send on hibernated executions, beside in-memory ones."""
    asleep = ProcedureStore(f"sqlite:///{directory / 'waiting.db'}", hibernate_after=0)
    await asleep.register(APPROVAL)
    await asleep.work()
    awake = ProcedureStore(fresh(directory / "awake-sends.db"), hibernate_after=None)
    await awake.register(APPROVAL)
    awake_ids = [(await awake.start("approval")).id for _ in range(args.sends)]
    chosen = random.sample(ids, min(args.sends, len(ids)))
    hibernated_ms, in_memory_ms = [], []
    for sleeping_id, awake_id in zip(chosen, awake_ids, strict=False):
        for store, execution_id, into in (
            (asleep, sleeping_id, hibernated_ms),
            (awake, awake_id, in_memory_ms),
        ):
            began = time.perf_counter()
            execution = await store.get_execution(execution_id)
            await execution.send("approve")
            into.append((time.perf_counter() - began) * 1000)
    await asleep.close()
    await awake.close()

    def quantiles(values: list[float]) -> dict[str, float]:
        cuts = statistics.quantiles(values, n=100)
        return {"median": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}

    return {
        "sends": len(hibernated_ms),
        "hibernated_ms": quantiles(hibernated_ms),
        "in_memory_ms": quantiles(in_memory_ms),
    }


async def timeouts(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    path = directory / "timeouts.db"
    url = fresh(path)
    still = StillClock(time.time())
    due = still.at + args.timeout_s
    progress(f"timeouts: starting {args.timeouts:,} executions, all due at one instant")
    store = ProcedureStore(url, hibernate_after=0, clock=still)
    await store.register(timed_out(args.timeout_s))
    await start_many(store, "deadline", args.timeouts, args.batch)
    await store.close()
    gc.collect()
    if time.time() > due - 1:
        progress("  (starting them took longer than --timeout-s: they are due already)")

    store = ProcedureStore(url, hibernate_after=0)
    await store.register(timed_out(args.timeout_s))
    began = time.perf_counter()
    await store.work()
    indexed = time.perf_counter() - began
    progress(f"  work() indexed them in {indexed:.2f} s; waiting for the instant")
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def unfinished() -> int:
        query = "SELECT count(*) FROM executions WHERE status = 'running'"
        return int(reader.execute(query).fetchone()[0])

    limit = max(due, time.time()) + 600
    while time.time() < limit:  # counted in a thread: the store's loop must not wait on it
        if await asyncio.to_thread(unfinished) == 0:
            break
        await asyncio.sleep(0.25)
    await store.close()
    fired = reader.execute(
        "SELECT count(*), count(DISTINCT execution_id), max(json_extract(record, '$.at'))"
        " FROM journal WHERE json_extract(record, '$.kind') = 'timeout'"
    ).fetchone()
    (last_commit,) = reader.execute(
        "SELECT max(json_extract(record, '$.at')) FROM journal"
        " WHERE json_extract(record, '$.kind') = 'finished'"
    ).fetchone()
    (late,) = reader.execute(
        "SELECT count(*) FROM executions WHERE status = 'completed'"
    ).fetchone()
    reader.close()
    return {
        "executions": args.timeouts,
        "work_seconds": indexed,
        "timeout_records": fired[0],
        "executions_timed_out": fired[1],
        "completed": late,
        "last_timeout_after_due_s": (fired[2] - due) if fired[2] is not None else None,
        "last_finished_after_due_s": (last_commit - due) if last_commit is not None else None,
        "each_once": fired[0] == fired[1] == args.timeouts,
    }


def report(results: dict[str, Any]) -> None:
    w, s, t = results["waiting"], results["sends"], results["timeouts"]
    hib, mem = s["hibernated_ms"], s["in_memory_ms"]
    print(f"\nHibernation, {time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}")
    print(f"{'measure':<52} {'procstore':>14} {'beside it':>16} {'goal':>14}")
    rows = [
        (
            f"{w['executions']:,} waiting: RSS after gc (MiB)",
            f"{w['rss_mib']:.0f}",
            f"peak {w['peak_rss_mib']:.0f}",
            "< 300 MB",
        ),
        ("  still in memory", f"{w['in_memory']:,}", "", "0"),
        ("  started per second (batches)", f"{w['start_per_second']:,.0f}", "", ""),
        ("  database file (MiB)", f"{w['database_mib']:,.0f}", "", ""),
        (
            "  bytes per waiting execution in memory",
            "0 (on disk)",
            f"{w['awake_bytes_each']:,.0f} awake",
            "",
        ),
        (
            "send() to a hibernated execution, median (ms)",
            f"{hib['median']:.2f}",
            f"{mem['median']:.2f} awake",
            "< 5 ms",
        ),
        ("  p95 (ms)", f"{hib['p95']:.2f}", f"{mem['p95']:.2f} awake", ""),
        ("  p99 (ms)", f"{hib['p99']:.2f}", f"{mem['p99']:.2f} awake", "< 20 ms"),
        (
            f"{t['executions']:,} timeouts due at once: last fired (s)",
            _seconds(t["last_timeout_after_due_s"]),
            "",
            "< 2 s",
        ),
        ("  last committed, finished (s)", _seconds(t["last_finished_after_due_s"]), "", ""),
        ("  each fired exactly once", str(t["each_once"]), "", "True"),
        (
            f"  work() on {t['executions']:,} unfinished (s)",
            f"{t['work_seconds']:.2f}",
            "",
            "< 5 s",
        ),
    ]
    for name, value, beside, goal in rows:
        print(f"{name:<52} {value:>14} {beside:>16} {goal:>14}")


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        directory = Path(name)
        row, sample = await waiting(args, directory)
        results = {"waiting": row, "sends": await sends(args, directory, sample)}
        (directory / "waiting.db").unlink()
        results["timeouts"] = await timeouts(args, directory)
    return results


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--waiting", type=int, default=1_000_000)
    parser.add_argument("--sends", type=int, default=1_000)
    parser.add_argument("--timeouts", type=int, default=100_000)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--dir", default=None, help="where the database files go")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.waiting, args.sends, args.timeouts = 1_000, 30, 500
        args.timeout_s, args.sample = 2.0, 300
    return args


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    outcome = asyncio.run(main(arguments))
    report(outcome)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(outcome, indent=2))
