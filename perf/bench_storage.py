"""Commit throughput of the SQLite storage backend (issue 5).

Each commit appends one journal record and replaces the execution's snapshot (about 1 KB of
JSON), as a persisted transition does. Measured at ``synchronous=NORMAL`` and ``FULL``, with
one writer committing sequentially and with 100 concurrent writers (asyncio tasks, one
execution each). The figures are a report, not a test: there are no targets and the exit code
is 0.

    .venv/bin/python perf/bench_storage.py            # about 20 s
    .venv/bin/python perf/bench_storage.py --quick    # a smoke run
    .venv/bin/python perf/bench_storage.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from procstore.storage import SQLiteBackend

Synchronous = Literal["NORMAL", "FULL"]


@dataclass(frozen=True)
class Row:
    """One benchmark figure (the median of its repeats)."""

    synchronous: str
    writers: int
    commits: int
    commits_per_second: float
    mean_batch: float


def snapshot(step: int) -> dict[str, Any]:
    """A snapshot of about 1 KB, like a runtime's: state, context, counters."""
    return {
        "state": f"step-{step}",
        "status": "running",
        "attempts": {"build": 1, "test": step % 3},
        "context": {f"key_{n}": f"value {n} of step {step}" for n in range(30)},
    }


def record(step: int) -> dict[str, Any]:
    """One history record."""
    return {"kind": "transition", "source": f"step-{step - 1}", "dest": f"step-{step}"}


async def measure(directory: Path, synchronous: Synchronous, writers: int, commits: int) -> Row:
    """Time ``commits`` commits spread over ``writers`` concurrent tasks on a fresh database.

    Args:
        directory: Where to create the database file.
        synchronous: The backend's synchronous setting.
        writers: Concurrent writers (each commits to its own execution).
        commits: Commits in total.

    Returns:
        The figure.
    """
    path = directory / f"bench-{synchronous}-{writers}-{time.monotonic_ns()}.db"
    backend = await SQLiteBackend.open(str(path), synchronous=synchronous)
    try:
        ids = [f"execution-{n}" for n in range(writers)]
        await asyncio.gather(
            *(backend.create_execution(i, "bench", "1.0", "running", snapshot(0), []) for i in ids)
        )
        before = backend.write_stats
        per_writer = commits // writers

        async def writer(execution_id: str) -> None:
            for step in range(1, per_writer + 1):
                await backend.commit(execution_id, "running", snapshot(step), [record(step)])

        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in ids))
        elapsed = time.perf_counter() - started
        after = backend.write_stats
    finally:
        await backend.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    done = per_writer * writers
    batches = after.batches - before.batches
    return Row(synchronous, writers, done, done / elapsed, (after.writes - before.writes) / batches)


async def run(commits: int, repeats: int, directory: str | None) -> list[Row]:
    """Run every combination ``repeats`` times, alternating them, and keep the medians.

    Args:
        commits: Commits per measurement.
        repeats: Measurements per combination.
        directory: Where to put the database files (default: the system's temporary
            directory; it must be on a real disk for ``FULL`` to mean anything).

    Returns:
        One row per combination.
    """
    combos: list[tuple[Synchronous, int]] = [
        (sync, writers) for sync in ("NORMAL", "FULL") for writers in (1, 100)
    ]
    samples: dict[tuple[Synchronous, int], list[Row]] = {combo: [] for combo in combos}
    with tempfile.TemporaryDirectory(prefix="procstore-bench-", dir=directory) as scratch:
        for repeat in range(repeats):
            for sync, writers in combos:
                row = await measure(Path(scratch), sync, writers, commits)
                samples[(sync, writers)].append(row)
                print(
                    f"  repeat {repeat + 1}/{repeats} {sync:6} writers={writers:3}: "
                    f"{row.commits_per_second:8.0f} commits/s",
                    file=sys.stderr,
                )
    rows = []
    for (sync, writers), runs in samples.items():
        rows.append(
            Row(
                sync,
                writers,
                runs[0].commits,
                statistics.median(r.commits_per_second for r in runs),
                statistics.median(r.mean_batch for r in runs),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark and print the table.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code (always 0).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=3000, help="commits per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (the median is shown)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--dir", help="where to create the databases (default: temp dir)")
    args = parser.parse_args(argv)
    commits, repeats = (300, 1) if args.quick else (args.commits, args.repeats)

    rows = asyncio.run(run(commits, repeats, args.dir))
    print(f"SQLite {sqlite3.sqlite_version}, aiosqlite {aiosqlite.__version__}")
    print(f"{commits} commits per run, median of {repeats}; 1 record + ~1 KB snapshot per commit")
    print(f"{'synchronous':12} {'writers':>7} {'commits/s':>10} {'mean batch':>11}")
    for row in rows:
        print(
            f"{row.synchronous:12} {row.writers:7d} {row.commits_per_second:10.0f} "
            f"{row.mean_batch:11.1f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
