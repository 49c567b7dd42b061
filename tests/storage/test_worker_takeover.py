"""``procstore worker`` processes sharing one PostgreSQL database, killed and frozen for real:
every execution completes, no committed step runs twice, only the steps in flight on a killed
worker run again (with the same attempt number), no two workers ever run one execution at once,
a frozen worker that lost its lease commits nothing, and stored deadlines fire once across a
takeover.

Each action appends ``execution state attempt pid`` to a log (``tests.worker_actions``); the
lease history (``claims``) says which worker held each execution under which fencing token.
Leases are short (1 s) so that takeovers come quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import asyncpg

from procstore.storage.postgres import PostgresBackend
from tests.workers import (
    Claimed,
    Ran,
    chain,
    enqueue,
    lease_history,
    ran,
    start_worker,
    statuses,
    until,
    workers,
)

LEASE = "1"  # seconds: a dead worker's executions are taken over within ~1.25 s
#: Generous: how long a whole scenario may take before the test counts it as hung.
HANG_S = 120
STEPS = 10  # of the procedure the crash test's 500 executions run
# The crash test's leases: 300 executions in flight on 2 cores delay renewals, and a live
# worker whose lease expired would repeat steps too; the killed one's are taken over in ~4 s.
CRASH_LEASE = "3"


async def initialised(url: str) -> None:
    """Create procstore's tables before the workers start (each would otherwise)."""
    async with await PostgresBackend.open(url):
        pass


async def journal_actions(url: str) -> dict[str, list[tuple[str, int]]]:
    """``(state, attempt)`` of every committed action record, by execution, in journal order."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT execution_id, record->>'state', (record->>'attempt')::int FROM journal"
            " WHERE record->>'kind' = 'action' ORDER BY execution_id, seq"
        )
    finally:
        await connection.close()
    committed: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for execution_id, state, attempt in rows:
        committed[execution_id].append((state, attempt))
    return committed


async def all_ended(url: str, ids: list[str]) -> bool:
    stored = await statuses(url)
    return all(stored[execution_id] != "running" for execution_id in ids)


def by_execution(lines: list[Ran]) -> dict[str, list[Ran]]:
    grouped: dict[str, list[Ran]] = defaultdict(list)
    for line in lines:
        grouped[line.execution_id].append(line)
    return grouped


def owners_in_turn(lines: list[Ran]) -> list[int]:
    """The processes that ran an execution's steps, each once per turn: [A, B] when A ran the
    first steps and B the rest; [A, B, A] would be two workers at once."""
    turns: list[int] = []
    for line in lines:
        if not turns or turns[-1] != line.pid:
            turns.append(line.pid)
    return turns


def holders(history: list[Claimed], execution_id: str) -> list[int]:
    """The processes that held ``execution_id``, in fence order."""
    return [claim.owner_pid for claim in history if claim.execution_id == execution_id]


async def test_three_workers_run_500_executions_of_ten_steps_and_survive_one_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "actions.log"
    await initialised(postgres_url)
    options = ("--lease-seconds", CRASH_LEASE, "--concurrency", "100")
    with workers(postgres_url, tmp_path, 3, *options) as processes:
        contexts = [{"log": str(log), "step_s": 0.02} for _ in range(500)]
        ids = await enqueue(postgres_url, chain(STEPS), contexts)
        # Mid-run: 30 % of the steps are done; the victim runs some of the others now.
        await until(lambda: len(ran(log)) >= 1500, HANG_S)
        victim = processes[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        await until(lambda: all_ended(postgres_url, ids), HANG_S)

    assert set((await statuses(postgres_url)).values()) == {"completed"}
    committed = await journal_actions(postgres_url)
    history = await lease_history(postgres_url)
    lines = by_execution(ran(log))
    steps = [f"s{n}" for n in range(1, STEPS + 1)]
    for execution_id in ids:
        # Every step's completion committed once, in order: no committed step ran again.
        assert [state for state, _ in committed[execution_id]] == steps
        mine = lines[execution_id]
        assert without_repeats([line.state for line in mine]) == steps
        # A step that ran twice was in flight on the killed worker, and ran again with the
        # same attempt number.
        for state in steps:
            runs = [line for line in mine if line.state == state]
            assert all(line.pid == victim.pid for line in runs[:-1])
            assert {line.attempt for line in runs} == {1}
        # One worker at a time (never back and forth), each under a claim of the history.
        assert is_subsequence(owners_in_turn(mine), holders(history, execution_id))
    taken_over = [c for c in history if c.previous_pid == victim.pid]
    assert taken_over, "the killed worker held no execution"
    assert {c.owner_pid for c in taken_over} <= {p.pid for p in processes[1:]}


def without_repeats(items: list[str]) -> list[str]:
    """``items`` with each run of equal neighbours counted once."""
    return [item for n, item in enumerate(items) if n == 0 or items[n - 1] != item]


def is_subsequence(part: list[int], whole: list[int]) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


async def test_a_worker_frozen_past_its_lease_is_taken_over_and_commits_nothing_after(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "actions.log"
    await initialised(postgres_url)
    frozen = start_worker(postgres_url, tmp_path / "frozen.log", "--lease-seconds", LEASE)
    other: subprocess.Popen[bytes] | None = None
    try:
        # s1 takes 3 s: long enough to freeze the worker in the middle of it.
        doc = chain(3, name="slow")
        (execution_id,) = await enqueue(postgres_url, doc, [{"log": str(log), "step_s": 3}])
        await until(lambda: len(ran(log)) == 1, HANG_S)
        frozen.send_signal(signal.SIGSTOP)

        other = start_worker(postgres_url, tmp_path / "other.log", "--lease-seconds", LEASE)
        await until(lambda: all_ended(postgres_url, [execution_id]), HANG_S)
        committed = await journal_actions(postgres_url)

        frozen.send_signal(signal.SIGCONT)  # its s1 attempt ends: the commit is refused
        await until(lambda: "dropped here" in read(tmp_path / "frozen.log"), 60)
        frozen.send_signal(signal.SIGTERM)
        assert frozen.wait(timeout=60) == 0
    finally:
        for process in (frozen, other):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    assert await journal_actions(postgres_url) == committed  # nothing more from the frozen one
    assert committed[execution_id] == [("s1", 1), ("s2", 1), ("s3", 1)]
    assert other is not None
    assert [(line.state, line.pid) for line in ran(log)] == [
        ("s1", frozen.pid),
        ("s1", other.pid),  # the step in flight, again: the frozen one started no other
        ("s2", other.pid),
        ("s3", other.pid),
    ]
    history = await lease_history(postgres_url)
    assert [(c.owner_pid, c.previous_pid) for c in history] == [
        (frozen.pid, None),
        (other.pid, frozen.pid),
    ]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


async def test_a_retry_delay_spanning_a_worker_kill_fires_once(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "actions.log"
    await initialised(postgres_url)
    flaky = {"type": "function", "module": "tests.worker_actions", "function": "flaky"}
    doc = chain(2, name="retrying", action=flaky, retry={"max_attempts": 3, "interval_ms": 2500})
    killed = start_worker(postgres_url, tmp_path / "killed.log", "--lease-seconds", LEASE)
    try:
        (execution_id,) = await enqueue(postgres_url, doc, [{"log": str(log)}])
        await until(lambda: len(ran(log)) == 1, HANG_S)  # attempt 1 failed
        await until(lambda: retry_committed(postgres_url, execution_id), HANG_S)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        with workers(postgres_url, tmp_path, 1, "--lease-seconds", LEASE) as (taker,):
            await until(lambda: all_ended(postgres_url, [execution_id]), HANG_S)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()

    assert [(line.state, line.attempt, line.pid) for line in ran(log)] == [
        ("s1", 1, killed.pid),
        ("s1", 2, taker.pid),
        ("s2", 1, taker.pid),
    ]
    assert (await statuses(postgres_url))[execution_id] == "completed"


async def retry_committed(url: str, execution_id: str) -> bool:
    connection = await asyncpg.connect(url)
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM journal WHERE execution_id = $1 AND record->>'kind' = 'retry'",
            execution_id,
        )
    finally:
        await connection.close()
    return bool(found)


async def test_a_state_timeout_spanning_a_worker_kill_fires_once(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "actions.log"
    await initialised(postgres_url)
    # s1 waits for an event that never comes; its timeout (4 s) leads to s2.
    doc = chain(2, name="timed")
    doc["definition"]["states"]["s1"] = {
        "timeout_ms": 4000,
        "transitions": [{"event": "timeout", "target": "s2"}],
    }
    killed = start_worker(postgres_url, tmp_path / "killed.log", "--lease-seconds", LEASE)
    try:
        (execution_id,) = await enqueue(postgres_url, doc, [{"log": str(log)}])
        await until(lambda: "claimed" in read(tmp_path / "killed.log"), HANG_S)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        with workers(postgres_url, tmp_path, 1, "--lease-seconds", LEASE) as (taker,):
            await until(lambda: all_ended(postgres_url, [execution_id]), HANG_S)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()

    connection = await asyncpg.connect(postgres_url)
    try:
        kinds = [
            row[0]
            for row in await connection.fetch(
                "SELECT record->>'kind' FROM journal WHERE execution_id = $1 ORDER BY seq",
                execution_id,
            )
        ]
    finally:
        await connection.close()
    assert kinds.count("timeout") == 1
    assert [(line.state, line.pid) for line in ran(log)] == [("s2", taker.pid)]
    assert os.getpid() not in {line.pid for line in ran(log)}
