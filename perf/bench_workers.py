"""PostgreSQL workers: throughput with 1, 2 and 4 ``procstore worker`` processes beside the same
workload on SQLite, the latency from a client's start to the first action on a worker, and the
issue's crash run (3 workers, 500 executions of 10 steps, one worker SIGKILLed mid-run).

Run from the repository root (the workers import ``tests.worker_actions``)::

    .venv/bin/python perf/bench_workers.py            # full run, a few minutes
    .venv/bin/python perf/bench_workers.py --quick    # small sizes: a smoke run
    .venv/bin/python perf/bench_workers.py --profile  # also a cProfile of one worker

It uses the PostgreSQL server ``PROCSTORE_TEST_POSTGRES`` names, or starts a throwaway one
(``tools/pg_cluster.py``). Each figure gets a new database. The exit code is 1 only when the
crash run's checks fail (an execution that did not complete, a committed step run again, two
workers on one execution): the figures themselves are a report.

What is measured:

* **throughput**: N executions of M steps whose action does nothing, created first with no
  worker running (as a client creates them), then run by K workers; steps per second from the
  first claim to the last commit (both on the server's clock). Beside it, the same executions
  started and run by one process on SQLite, and on PostgreSQL (the backends alone, no worker
  processes).
* **latency**: with idle workers listening, a client creates one execution at a time; the time
  from just before its ``start`` to its first action starting on a worker (``time.time()`` on
  one machine); median and 90th percentile. Beside it, ``start()`` to first action in one
  process on SQLite.
* **crash run**: 3 workers (concurrency 100, leases of 2 s) run 500 executions of 10 steps of
  10 ms; the first worker is SIGKILLed once 30 % of the steps have started. Checked: every
  execution completes; every step's completion is committed once; only steps of the killed
  worker ran twice, with the same attempt; each execution's steps ran one worker at a time, in
  the order of the lease history.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from procstore import ProcedureStore  # noqa: E402
from procstore.storage.postgres import PostgresBackend  # noqa: E402
from tests import postgres  # noqa: E402
from tests.workers import MODULE, Claimed, Client, Ran, chain, lease_history, ran  # noqa: E402
from tools import pg_cluster  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    executions: int = 200  # throughput: executions per run
    steps: int = 10  # throughput: steps per execution
    workers: tuple[int, ...] = (1, 2, 4)
    repeats: int = 3  # throughput: each figure is the median of this many runs, interleaved
    latency_samples: int = 50
    crash_executions: int = 500
    crash_steps: int = 10
    crash_step_s: float = 0.01


#: The owner of the throughput run's executions until the workers are ready: no worker.
HOLD = "bench: held until every worker listens"

QUICK = Sizes(
    executions=30,
    steps=3,
    workers=(1, 2),
    repeats=1,
    latency_samples=5,
    crash_executions=30,
    crash_steps=5,
    crash_step_s=0.05,
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the server and the workers ------------------------------------------------------------------


@contextmanager
def server() -> Iterator[str]:
    url = os.environ.get(pg_cluster.ENV_VAR)
    if url:
        yield url
        return
    with pg_cluster.running_cluster() as started:
        yield started


@asynccontextmanager
async def database(server_url: str) -> AsyncIterator[str]:
    async with postgres.database(server_url) as url:
        async with await PostgresBackend.open(url):  # the tables, before any worker
            pass
        yield url


@contextmanager
def workers(
    url: str, count: int, logs: Path, *options: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``procstore worker`` processes, logging to ``logs/worker-N.log``."""
    processes = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for n in range(count):
        command = [sys.executable, "-m", "procstore", "worker", "--db", url]
        command += ["--allow-module", MODULE, *options]
        with open(logs / f"worker-{n}.log", "wb") as out:
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def ready(logs: Path, count: int) -> None:
    """Until ``count`` workers have logged that they work (they listen from then on)."""
    while True:
        up = sum("working on" in f.read_text(errors="replace") for f in logs.glob("worker-*.log"))
        if up >= count:
            return
        await asyncio.sleep(0.05)


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def wait_all_ended(url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (row,) = await query(url, "SELECT count(*) FROM executions WHERE status <> 'running'")
        if row[0] >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{row[0]} of {count} executions ended within {timeout:g} s")
        await asyncio.sleep(0.1)


# -- throughput ----------------------------------------------------------------------------------


async def held_executions(url: str, sizes: Sizes, log: Path) -> None:
    """Create the throughput run's executions, held by no live worker but not claimable yet
    (a lease of a worker that does not exist), so that the workers start on them together."""
    async with Client(url, chain(sizes.steps, name="throughput")) as client:
        for _ in range(sizes.executions):
            await client.start({"log": str(log)})
    await query(
        url,
        "UPDATE executions SET lease_owner = $1, lease_expires_at = now() + interval '1 hour'",
        HOLD,
    )


async def let_go(url: str) -> None:
    """Release the held executions in one statement: every idle worker is notified at once."""
    await query(
        url,
        "UPDATE executions SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1",
        HOLD,
    )


async def steps_per_second(url: str, sizes: Sizes) -> float:
    """From the first claim to the last commit, on the server's clock."""
    ((seconds,),) = await query(
        url,
        "SELECT extract(epoch FROM (SELECT max(updated_at) FROM executions)"
        " - (SELECT min(claimed_at) FROM claims))::float8",
    )
    return sizes.executions * sizes.steps / float(seconds)


async def throughput_workers(server_url: str, sizes: Sizes, count: int) -> float:
    """Steps per second of ``count`` worker processes."""
    async with database(server_url) as url:
        with tempfile.TemporaryDirectory() as tmp:
            logs = Path(tmp)
            await held_executions(url, sizes, logs / "actions.log")
            with workers(url, count, logs):
                await ready(logs, count)
                await let_go(url)
                await wait_all_ended(url, sizes.executions, 600)
            return await steps_per_second(url, sizes)


async def profile_worker(server_url: str, sizes: Sizes) -> pstats.Stats:
    """cProfile of a worker (``store.work()`` in this process) running the throughput run."""
    profiler = cProfile.Profile()
    async with database(server_url) as url:
        with tempfile.TemporaryDirectory() as tmp:
            await held_executions(url, sizes, Path(tmp) / "actions.log")
            async with ProcedureStore(url, allowed_modules=[MODULE]) as store:
                await store.work()
                await asyncio.sleep(0.5)  # listening
                profiler.enable()
                await let_go(url)
                await wait_all_ended(url, sizes.executions, 600)
                profiler.disable()
    return pstats.Stats(profiler, stream=sys.stdout)


async def throughput_in_process(url: str, sizes: Sizes) -> float:
    """Steps per second of one process that starts and runs the executions itself."""
    async with ProcedureStore(url, allowed_modules=[MODULE], concurrency=0) as store:
        with tempfile.TemporaryDirectory() as tmp:
            doc = chain(sizes.steps, name="throughput")
            await store.register(doc)
            context = {"log": str(Path(tmp) / "actions.log")}
            began = time.perf_counter()
            executions = [
                await store.start("throughput", context=context, auto=True)
                for _ in range(sizes.executions)
            ]
            await asyncio.gather(*(e.run_to_completion() for e in executions))
            elapsed = time.perf_counter() - began
    return sizes.executions * sizes.steps / elapsed


# -- latency -------------------------------------------------------------------------------------


async def latency_workers(server_url: str, sizes: Sizes, count: int) -> list[float]:
    """Milliseconds from a client's start to the first action on one of ``count`` idle
    workers, one execution at a time."""
    samples = []
    async with database(server_url) as url:
        with tempfile.TemporaryDirectory() as tmp:
            logs = Path(tmp)
            log = logs / "actions.log"
            with workers(url, count, logs):
                await ready(logs, count)
                async with Client(url, chain(1, name="latency")) as client:
                    for n in range(sizes.latency_samples + 1):
                        began = time.time()
                        execution_id = await client.start({"log": str(log)})
                        while not any(r.execution_id == execution_id for r in ran(log)):
                            await asyncio.sleep(0.001)
                        (line,) = [r for r in ran(log) if r.execution_id == execution_id]
                        if n:  # the first one warms the worker up (imports, prepared queries)
                            samples.append((line.at - began) * 1000)
                        await asyncio.sleep(0.05)
    return samples


async def latency_sqlite(sizes: Sizes) -> list[float]:
    """Milliseconds from ``start()`` to the first action, in one process on SQLite."""
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'latency.db'}"
        log = Path(tmp) / "actions.log"
        async with ProcedureStore(url, allowed_modules=[MODULE]) as store:
            await store.register(chain(1, name="latency"))
            for n in range(sizes.latency_samples + 1):
                began = time.time()
                execution = await store.start("latency", context={"log": str(log)}, auto=True)
                await execution.run_to_completion()
                (line,) = [r for r in ran(log) if r.execution_id == execution.id]
                if n:
                    samples.append((line.at - began) * 1000)
    return samples


# -- the crash run -------------------------------------------------------------------------------


async def crash_run(server_url: str, sizes: Sizes) -> tuple[dict[str, Any], list[str]]:
    """The issue's run: figures and the failed checks (none when all hold)."""
    async with database(server_url) as url:
        with tempfile.TemporaryDirectory() as tmp:
            logs = Path(tmp)
            log = logs / "actions.log"
            total = sizes.crash_executions * sizes.crash_steps
            doc = chain(sizes.crash_steps, name="crash")
            context = {"log": str(log), "step_s": sizes.crash_step_s}
            with workers(url, 3, logs, "--lease-seconds", "2") as processes:
                await ready(logs, 3)
                began = time.monotonic()
                async with Client(url, doc) as client:
                    ids = [await client.start(context) for _ in range(sizes.crash_executions)]
                while len(ran(log)) < total * 0.3:
                    await asyncio.sleep(0.01)
                victim = processes[0]
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                await wait_all_ended(url, sizes.crash_executions, 600)
                elapsed = time.monotonic() - began
            lines = ran(log)
            warnings = [
                line
                for path in sorted(logs.glob("worker-*.log"))
                for line in path.read_text(errors="replace").splitlines()
                if " WARNING " in line or " ERROR " in line
            ]
            history = await lease_history(url)
            committed = await query(
                url,
                "SELECT execution_id, record->>'state' FROM journal"
                " WHERE record->>'kind' = 'action' ORDER BY execution_id, seq",
            )
            statuses = Counter(row[0] for row in await query(url, "SELECT status FROM executions"))
    failed = check_crash(sizes, statuses, ids, committed, lines, history, victim.pid)
    repeats = len(lines) - total
    figures = {
        "executions": sizes.crash_executions,
        "steps": total,
        "seconds": round(elapsed, 1),
        "steps/s": round(total / elapsed),
        "takeovers": sum(1 for c in history if c.previous_pid == victim.pid),
        "steps run twice": repeats,
        "warnings": len(warnings),
    }
    if failed:
        failed += [f"worker log: {line}" for line in warnings[:10]]
    return figures, failed


# -- the report ----------------------------------------------------------------------------------


def check_crash(
    sizes: Sizes,
    statuses: Counter[str],
    ids: list[str],
    committed: list[asyncpg.Record],
    lines: list[Ran],
    history: list[Claimed],
    victim: int,
) -> list[str]:
    """What the crash run broke (nothing, when every check holds)."""
    failed: list[str] = []
    if statuses != Counter({"completed": sizes.crash_executions}):
        failed.append(f"statuses: {dict(statuses)}")
    steps = [f"s{n}" for n in range(1, sizes.crash_steps + 1)]
    done: dict[str, list[str]] = defaultdict(list)
    for execution_id, state in committed:
        done[execution_id].append(state)
    by_execution: dict[str, list[Ran]] = defaultdict(list)
    for line in lines:
        by_execution[line.execution_id].append(line)
    for execution_id in ids:
        if done[execution_id] != steps:
            failed.append(f"{execution_id}: committed steps {done[execution_id]}")
        mine = by_execution[execution_id]
        for state in steps:
            runs = [line for line in mine if line.state == state]
            if any(line.pid != victim for line in runs[:-1]) or {r.attempt for r in runs} != {1}:
                failed.append(f"{execution_id} {state}: ran {[(r.pid, r.attempt) for r in runs]}")
        turns = [line.pid for n, line in enumerate(mine) if n == 0 or mine[n - 1].pid != line.pid]
        holders = iter(c.owner_pid for c in history if c.execution_id == execution_id)
        if not all(pid in holders for pid in turns):
            failed.append(f"{execution_id}: ran by {turns}, not in the order of the lease history")
    return failed


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered):6.1f} ms   p90 {p90:6.1f} ms"


def by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    """The profile's own time by where it is spent, largest first."""
    groups = (
        ("idle: waiting in epoll", ("select.epoll",)),
        ("socket send/recv (syscalls)", ("send' of", "recv' of", "sendto", "recv_into")),
        ("asyncpg", ("asyncpg",)),
        ("asyncio event loop", ("asyncio", "_contextvars")),
        ("procstore", ("/procstore/",)),
        ("transitions", ("transitions",)),
        ("json", ("json",)),
    )
    totals: dict[str, float] = defaultdict(float)
    for (path, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path} {name}"
        label = next((g for g, marks in groups if any(m in where for m in marks)), "other")
        totals[label] += row[2]
    return sorted(totals.items(), key=lambda item: -item[1])


async def main(sizes: Sizes, profile: bool) -> int:
    with server() as server_url, tempfile.TemporaryDirectory() as tmp:
        print(
            f"procstore workers: {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}, {sizes.executions} executions x {sizes.steps} steps, "
            f"median of {sizes.repeats}"
        )
        figures: dict[str, list[float]] = defaultdict(list)
        for repeat in range(sizes.repeats):  # interleaved, so that drift hits every figure
            say(f"throughput, repeat {repeat + 1} of {sizes.repeats}")
            figures["SQLite, one process"].append(
                await throughput_in_process(f"sqlite:///{Path(tmp) / f't{repeat}.db'}", sizes)
            )
            async with database(server_url) as url:
                figures["PostgreSQL, one process"].append(await throughput_in_process(url, sizes))
            for count in sizes.workers:
                figures[f"PostgreSQL, {count} worker(s)"].append(
                    await throughput_workers(server_url, sizes, count)
                )
        print("\nthroughput (steps/s)")
        sqlite = statistics.median(figures["SQLite, one process"])
        for name, samples in figures.items():
            figure = statistics.median(samples)
            runs = ", ".join(f"{sample:.0f}" for sample in samples)
            print(f"  {name:<28} {figure:6.0f}   {figure / sqlite:4.2f}x SQLite   ({runs})")
        print("\nlatency: start() to the first action")
        say("latency: SQLite")
        print(f"  SQLite, one process            {ms(await latency_sqlite(sizes))}")
        for count in (1, 4) if max(sizes.workers) >= 4 else (1,):
            say(f"latency: {count} idle worker(s)")
            samples = await latency_workers(server_url, sizes, count)
            print(f"  client -> {count} idle worker(s)     {ms(samples)}")
        say("crash run")
        crash, failed = await crash_run(server_url, sizes)
        print("\ncrash run: 3 workers, the first SIGKILLed at 30 % of the steps")
        print("  " + ", ".join(f"{key} {value}" for key, value in crash.items()))
        print("  checks: " + ("all hold" if not failed else f"{len(failed)} FAILED"))
        for line in failed[:20]:
            print(f"    {line}")
        if profile:
            say("profile")
            stats = await profile_worker(server_url, sizes)
            total = sum(seconds for _, seconds in by_package(stats))
            print("\nprofile of a worker running the throughput run alone: own time by where")
            for label, seconds in by_package(stats):
                print(f"  {label:<28} {seconds:6.2f} s  {seconds / total:4.0%}")
            print()
            stats.sort_stats("tottime").print_stats(15)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--profile", action="store_true", help="cProfile one worker")
    options = parser.parse_args()
    sys.exit(asyncio.run(main(QUICK if options.quick else Sizes(), options.profile)))
