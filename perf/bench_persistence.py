"""Cost of durable executions (issue 5): persisted transitions per second, and recovery time.

Throughput: a chain procedure ``s0 -> s1 -> ... -> s{N-1}`` (every state has a ``noop`` action
and a ``next`` transition) driven by ``send("next")``, on a store in memory and on SQLite with
``synchronous=NORMAL`` and ``FULL``. *sequential*: one execution, N-1 sends one after the other.
*concurrent*: 100 executions, each driven by its own task, all at once. Every persisted
transition commits the transition, the next state's entry and its action's result before
``send()`` returns (the write-ahead rule), so the figure is end-to-end, not a raw commit rate
(``perf/bench_storage.py`` measures that).

Recovery: 10,000 unfinished executions are created and the store is closed; then a new store
opens the file and ``recover()`` resumes all of them. Two kinds: waiting for an event in a state
without an action, and waiting in a retry delay (an action that failed, next attempt in an
hour). The open (loading the registry) and ``recover()`` are timed separately; the integrity
check every open starts with (``PRAGMA quick_check`` over the whole file, before anything is
written beside it) is timed on its own too, on the same file, with the file's size.

    .venv/bin/python perf/bench_persistence.py            # about two minutes
    .venv/bin/python perf/bench_persistence.py --quick    # a smoke run, a few seconds
    .venv/bin/python perf/bench_persistence.py --json out.json --dir /var/tmp
    .venv/bin/python perf/bench_persistence.py --only recovery --recover 100000
    .venv/bin/python perf/bench_persistence.py --profile  # where one execution's step goes

``--only throughput`` or ``--only recovery`` runs one half. ``--profile`` runs cProfile over
one execution of 1,000 steps on SQLite ``NORMAL`` and prints the top functions by own time
(``--top N``) and the event loop iterations per step, instead of the benchmark.

The figures are a report, not a test: there are no targets and the exit code is 0. The
machines these run on are noisy; each throughput figure is the median of its repeats, with the
backends alternating repeat by repeat, and the ratio to in-memory is the figure to read.
``FULL`` only means something on a real disk (``--dir``): on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from procstore import ActionInfo, Execution, ProcedureStore, Status

BACKENDS = ("memory", "NORMAL", "FULL")


@dataclass(frozen=True)
class Throughput:
    """Transitions per second of one backend in one shape (the median of its repeats)."""

    shape: str  # "sequential" or "concurrent"
    backend: str  # "memory", "NORMAL" or "FULL"
    executions: int
    transitions: int
    per_second: float


@dataclass(frozen=True)
class Recovery:
    """Opening a store with ``count`` unfinished executions and recovering them."""

    kind: str
    synchronous: str
    count: int
    create_seconds: float
    open_seconds: float
    recover_seconds: float
    check_seconds: float  # PRAGMA quick_check alone, part of open_seconds
    megabytes: float  # the database file's size


def chain(states: int) -> dict[str, Any]:
    definition: dict[str, Any] = {}
    for n in range(states):
        definition[f"s{n}"] = {"action": {"type": "noop"}}
        if n + 1 < states:
            definition[f"s{n}"]["transitions"] = [{"event": "next", "target": f"s{n + 1}"}]
    return {
        "name": "chain",
        "version": "1.0",
        "definition": {"initial_state": "s0", "states": definition},
    }


WAITING = {
    "name": "waiting",
    "version": "1.0",
    "definition": {
        "initial_state": "wait",
        "states": {"wait": {"transitions": [{"event": "go", "target": "end"}]}, "end": {}},
    },
}

RETRYING = {
    "name": "retrying",
    "version": "1.0",
    "definition": {
        "initial_state": "call",
        "states": {
            "call": {
                "action": {"type": "function", "function": "bench.flaky"},
                "retry": {"max_attempts": 5, "interval_ms": 3_600_000},
                "transitions": [{"event": "success", "target": "end"}],
            },
            "end": {},
        },
    },
}


def flaky(context: dict[str, Any], info: ActionInfo) -> None:
    raise ConnectionError(f"attempt {info.attempt} fails")


def make_store(directory: Path, backend: str, name: str) -> ProcedureStore:
    if backend == "memory":
        return ProcedureStore()
    url = f"sqlite:///{directory / f'{name}-{time.monotonic_ns()}.db'}"
    return ProcedureStore(url, synchronous="FULL" if backend == "FULL" else "NORMAL")


def remove_databases(directory: Path) -> None:
    for path in directory.iterdir():
        path.unlink()


async def throughput(
    directory: Path, backend: str, executions: int, states: int
) -> tuple[int, float]:
    """Drive ``executions`` chains of ``states`` states at once; return (transitions, s)."""
    store = make_store(directory, backend, f"throughput-{executions}")
    try:
        await store.register(chain(states))
        handles = [await store.start("chain") for _ in range(executions)]

        async def drive(execution: Any) -> None:
            for _ in range(states - 1):
                await execution.send("next")

        gc.collect()
        started = time.perf_counter()
        await asyncio.gather(*(drive(e) for e in handles))
        finals = [await e.run_to_completion(timeout=60) for e in handles]
        elapsed = time.perf_counter() - started
        assert all(f.status is Status.COMPLETED for f in finals), "a chain did not complete"
    finally:
        await store.close()
        remove_databases(directory)
    return executions * (states - 1), elapsed


async def recovery(directory: Path, kind: str, synchronous: str, count: int) -> Recovery:
    """Create ``count`` unfinished executions, close, reopen and time ``recover()``."""
    path = directory / f"recovery-{kind}-{time.monotonic_ns()}.db"
    url = f"sqlite:///{path}"
    procedure = WAITING if kind == "waiting for an event" else RETRYING
    started = time.perf_counter()
    async with ProcedureStore(url, synchronous=synchronous) as store:  # type: ignore[arg-type]
        store.register_action("bench.flaky", flaky)
        await store.register(procedure)
        name = str(procedure["name"])
        created: list[Execution] = []
        for offset in range(0, count, 500):
            batch = min(500, count - offset)
            created += await asyncio.gather(*(store.start(name) for _ in range(batch)))
        if procedure is RETRYING:  # wait until every first attempt has failed
            while not all(any(r.kind == "retry" for r in e.history) for e in created):
                await asyncio.sleep(0.05)
            # Let the last retry records reach the database: close() detaches executions
            # whose commit is still in flight, and those commits are dropped.
            await asyncio.sleep(0.5)
    create_seconds = time.perf_counter() - started
    check_seconds = quick_check_seconds(path)

    path_megabytes = path.stat().st_size / 1e6
    gc.collect()
    store = ProcedureStore(url, synchronous=synchronous)  # type: ignore[arg-type]
    store.register_action("bench.flaky", flaky)
    try:
        started = time.perf_counter()
        await store.open()
        opened = time.perf_counter()
        handles = await store.recover()
        recovered = time.perf_counter()
        assert len(handles) == count, f"recovered {len(handles)} of {count}"
        assert all(h.status is Status.RUNNING for h in handles)
        if procedure is RETRYING:  # each one resumed waiting for its stored retry deadline
            assert all(h.history[-1].kind == "retry" for h in handles)
    finally:
        await store.close()
        remove_databases(directory)
    return Recovery(
        kind,
        synchronous,
        count,
        create_seconds,
        opened - started,
        recovered - opened,
        check_seconds,
        path_megabytes,
    )


def quick_check_seconds(path: Path) -> float:
    """Time ``PRAGMA quick_check`` on the closed database, as opening a store runs it."""
    connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        started = time.perf_counter()
        assert connection.execute("PRAGMA quick_check(1)").fetchall() == [("ok",)]
        return time.perf_counter() - started
    finally:
        connection.close()


async def profile(directory: str | None, states: int, top: int) -> None:
    """cProfile one execution of ``states - 1`` steps on SQLite ``NORMAL``; print the top
    functions by own time and how many event loop iterations a step takes."""
    with tempfile.TemporaryDirectory(prefix="procstore-bench-", dir=directory) as scratch:
        store = make_store(Path(scratch), "NORMAL", "profile")
        try:
            await store.register(chain(states))
            execution = await store.start("chain")
            loop = asyncio.get_running_loop()
            iterations = 0
            run_once = loop._run_once  # type: ignore[attr-defined]

            def counted() -> None:
                nonlocal iterations
                iterations += 1
                run_once()

            loop._run_once = counted  # type: ignore[attr-defined]
            profiler = cProfile.Profile()
            gc.collect()
            started = time.perf_counter()
            profiler.enable()
            for _ in range(states - 1):
                await execution.send("next")
            profiler.disable()
            elapsed = time.perf_counter() - started
            loop._run_once = run_once  # type: ignore[attr-defined]
        finally:
            await store.close()
    print(
        f"{states - 1} steps of one execution on SQLite NORMAL, profiled: "
        f"{(states - 1) / elapsed:,.0f} steps/s under the profiler, "
        f"{iterations / (states - 1):.1f} event loop iterations per step"
    )
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


async def run(
    sequential_states: int,
    concurrent: int,
    concurrent_states: int,
    recover_count: int,
    repeats: int,
    directory: str | None,
    only: str | None = None,
) -> tuple[list[Throughput], list[Recovery]]:
    shapes = {
        "sequential": (1, sequential_states),
        "concurrent": (concurrent, concurrent_states),
    }
    samples: dict[tuple[str, str], list[tuple[int, float]]] = {
        (shape, backend): [] for shape in shapes for backend in BACKENDS
    }
    recoveries: list[Recovery] = []
    with tempfile.TemporaryDirectory(prefix="procstore-bench-", dir=directory) as scratch:
        where = Path(scratch)
        for repeat in range(repeats if only != "recovery" else 0):
            for shape, (executions, states) in shapes.items():
                for backend in BACKENDS:
                    transitions, seconds = await throughput(where, backend, executions, states)
                    samples[(shape, backend)].append((transitions, seconds))
                    print(
                        f"  repeat {repeat + 1}/{repeats} {shape:10} {backend:6}: "
                        f"{transitions / seconds:9.0f} transitions/s",
                        file=sys.stderr,
                    )
        for kind in ("waiting for an event", "in a retry delay") if only != "throughput" else ():
            result = await recovery(where, kind, "NORMAL", recover_count)
            print(
                f"  recovery {kind}: created in {result.create_seconds:.1f}s, "
                f"open {result.open_seconds:.3f}s "
                f"(quick_check {result.check_seconds:.3f}s), "
                f"recover {result.recover_seconds:.3f}s",
                file=sys.stderr,
            )
            recoveries.append(result)
    rows = [
        Throughput(
            shape,
            backend,
            shapes[shape][0],
            runs[0][0],
            statistics.median(t / s for t, s in runs),
        )
        for (shape, backend), runs in samples.items()
        if runs
    ]
    return rows, recoveries


def filesystem(path: str) -> str:
    """The type of the filesystem ``path`` is on (best effort, from /proc/mounts)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    path = os.path.realpath(path)
    best = ("", "unknown")
    for fields in mounts:
        point, kind = fields[1], fields[2]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, kind)
    return best[1]


def print_table(rows: list[Throughput], recoveries: list[Recovery], repeats: int) -> None:
    memory = {row.shape: row.per_second for row in rows if row.backend == "memory"}
    print(f"\nPersisted transitions per second (median of {repeats}; ratio = / in-memory)")
    print(f"{'shape':40} {'backend':15} {'transitions/s':>14} {'ratio':>7}")
    for row in rows:
        shape = (
            f"sequential: 1 execution, {row.transitions} sends"
            if row.shape == "sequential"
            else f"concurrent: {row.executions} executions, {row.transitions} sends"
        )
        backend = "in memory" if row.backend == "memory" else f"SQLite {row.backend}"
        ratio = row.per_second / memory[row.shape]
        print(f"{shape:40} {backend:15} {row.per_second:14,.0f} {ratio:7.2f}")
    print("\nRecovery (a new store opens the file, then recover() resumes every execution;")
    print("open includes the integrity check, PRAGMA quick_check, shown on its own)")
    print(
        f"{'unfinished executions':40} {'file MB':>8} {'open s':>8} {'check s':>8} "
        f"{'recover s':>10} {'per second':>12}"
    )
    for r in recoveries:
        label = f"{r.count:,} {r.kind}"
        rate = r.count / r.recover_seconds if r.recover_seconds else float("inf")
        print(
            f"{label:40} {r.megabytes:8.1f} {r.open_seconds:8.3f} {r.check_seconds:8.3f} "
            f"{r.recover_seconds:10.3f} {rate:12,.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (the median is shown)")
    parser.add_argument("--recover", type=int, default=10_000, help="executions to recover")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--dir", help="where to create the databases (default: temp dir)")
    parser.add_argument(
        "--only", choices=("throughput", "recovery"), help="run only one half of the benchmark"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile one execution's 1,000 steps instead"
    )
    parser.add_argument("--top", type=int, default=30, help="functions --profile prints")
    args = parser.parse_args(argv)
    if args.profile:
        asyncio.run(profile(args.dir, 1001, args.top))
        return 0
    if args.quick:
        sizes = {"sequential_states": 101, "concurrent": 100, "concurrent_states": 6}
        recover_count, repeats = 500, 1
    else:
        sizes = {"sequential_states": 1001, "concurrent": 100, "concurrent_states": 21}
        recover_count, repeats = args.recover, args.repeats

    rows, recoveries = asyncio.run(
        run(
            **sizes,
            recover_count=recover_count,
            repeats=repeats,
            directory=args.dir,
            only=args.only,
        )
    )
    where = args.dir or tempfile.gettempdir()
    print(
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}; "
        f"databases in {where} ({filesystem(where)})"
    )
    print_table(rows, recoveries, repeats)
    if args.json:
        document = {
            "throughput": [asdict(row) for row in rows],
            "recovery": [asdict(r) for r in recoveries],
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
