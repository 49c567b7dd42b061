"""Crash recovery with a real SIGKILL.

A child process (tests/crash_worker.py, started with ``sys.executable``) runs a 5-step procedure
``s1 -> s2 -> s3 -> s4 -> s5`` on ``sqlite:///<tmp_path>/x.db``. Its function actions append
``"<state> <attempt>"`` to a log file (fsynced) and sleep a little, so the log says how often
each step really ran. The parent polls the log (or the database) until the kill point is reached,
kills the child with ``os.kill(pid, SIGKILL)``, then a new process (or, where timing is measured,
a store in this process) calls ``recover()`` and drives the execution to its end.

Each test checks: every step whose completion was committed before the kill ran exactly once;
the interrupted one at most twice (and with the same attempt number); the journal stored before
the kill is an unchanged prefix of the final history; the final history is continuous (exactly
the expected entered/action/transition/... records, in order, timestamps non-decreasing, the
last action record of every completed state a success); the final status is right.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procstore import HistoryRecord, ProcedureStore, Status
from tests import crash_worker
from tests.conftest import read_line
from tests.crash_worker import MODULE, RETRY_INTERVAL_MS, STATE_TIMEOUT_MS, STEPS

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parents[1] / "crash_worker.py"
CHILD_TIMEOUT = 20.0

# -- the child process --------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def sigkill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=CHILD_TIMEOUT)
    assert process.returncode == -signal.SIGKILL


@dataclass
class Crash:
    """One run of the crash tests: the database, the action log, the killed child."""

    db: Path
    log: Path
    child: subprocess.Popen[str] | None = None
    execution_id: str = ""

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def lines(self) -> list[str]:
        if not self.log.exists():
            return []
        return self.log.read_text(encoding="utf-8").splitlines()

    def start(self, scenario: str, drive: str = "auto", **context: Any) -> None:
        context = {"log": str(self.log), "default_sleep": 0.02, **context}
        self.child = spawn("run", str(self.db), scenario, drive, json.dumps(context))
        words = read_line(self.child, CHILD_TIMEOUT).split()
        assert words[0] == "started", words
        self.execution_id = words[1]

    async def until(self, reached: Callable[[], bool], what: str) -> None:
        """Poll until ``reached()``; fail if the child ends (or nothing happens) first."""
        assert self.child is not None
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not reached():
            if self.child.poll() is not None:
                out, err = self.child.communicate()
                raise AssertionError(f"the child ended before {what}: {out}\n{err}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {CHILD_TIMEOUT}s")
            await asyncio.sleep(0.005)

    async def until_logged(self, line: str) -> None:
        await self.until(lambda: line in self.lines(), f"log line {line!r}")

    def journal(self) -> list[dict[str, Any]]:
        """The records committed so far, read with a plain read-only sqlite3 connection."""
        if not self.db.exists():
            return []
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            rows = connection.execute(
                "SELECT record FROM journal WHERE execution_id = ? ORDER BY seq",
                (self.execution_id,),
            ).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            connection.close()
        return [json.loads(row[0]) for row in rows]

    async def until_committed(self, matches: Callable[[dict[str, Any]], bool], what: str) -> None:
        await self.until(lambda: any(matches(r) for r in self.journal()), f"{what} committed")

    def kill(self) -> None:
        assert self.child is not None
        sigkill(self.child)

    async def stored(self) -> tuple[HistoryRecord, ...]:
        """The history stored in the database now, read through a read-only store."""
        async with ProcedureStore(self.url, read_only=True) as store:
            execution = await store.get_execution(self.execution_id)
            return execution.state.history

    def recover_in_new_process(self) -> float:
        """Run ``recover()`` and drive to the end in a fresh process; return the wall-clock time
        just before it called ``recover()``."""
        process = spawn("recover", str(self.db))
        out, err = process.communicate(timeout=CHILD_TIMEOUT)
        assert process.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("recovering "), out
        assert lines[1] == "recovered 1", out
        assert self.execution_id in json.loads(lines[2]), out
        return float(lines[0].split()[1])


@pytest.fixture
def crash(tmp_path: Path) -> Iterator[Crash]:
    run = Crash(db=tmp_path / "x.db", log=tmp_path / "actions.log")
    yield run
    if run.child is not None and run.child.poll() is None:
        run.child.kill()
        run.child.communicate(timeout=CHILD_TIMEOUT)


# -- what the tests check -----------------------------------------------------------------------


def runs(lines: list[str]) -> Counter[str]:
    """How many times each step's action started (compensations excluded)."""
    return Counter(line.split()[0] for line in lines if not line.startswith("undo:"))


def completed_before(stored: tuple[HistoryRecord, ...]) -> set[str]:
    """The states whose action completion was committed (a successful action record)."""
    return {r.state for r in stored if r.kind == "action" and r.error is None and r.state}


def assert_ran_once_except(
    lines: list[str], stored: tuple[HistoryRecord, ...], interrupted: str, steps: tuple[str, ...]
) -> None:
    """Every step in ``steps`` ran exactly once, but ``interrupted``: at most twice."""
    counts = runs(lines)
    assert interrupted not in completed_before(stored)
    for name in completed_before(stored):
        assert counts[name] == 1, f"{name} completed before the kill but ran {counts[name]}x"
    for name in steps:
        expected = (1, 2) if name == interrupted else (1,)
        assert counts[name] in expected, f"{name} ran {counts[name]} times: {lines}"
    assert set(counts) <= set(steps), counts


def skeleton(history: tuple[HistoryRecord, ...]) -> list[tuple[Any, ...]]:
    """The records that make up the run, without timestamps and values."""
    shape: list[tuple[Any, ...]] = []
    for r in history:
        outcome = "ok" if r.error is None else r.error.type
        if r.kind == "entered":
            shape.append(("entered", r.state, r.event))
        elif r.kind == "action":
            shape.append(("action", r.state, r.attempt, outcome))
        elif r.kind == "transition":
            shape.append(("transition", r.state, r.event, r.target))
        elif r.kind == "retry":
            shape.append(("retry", r.state, r.attempt))
        elif r.kind in ("timeout", "rollback"):
            shape.append((r.kind, r.state))
        elif r.kind == "compensation":
            shape.append(("compensation", r.state, outcome))
        elif r.kind == "finished":
            shape.append(("finished", r.state, r.status))
        else:
            shape.append((r.kind, r.state))
    return shape


def chain(*steps: str, attempts: dict[str, list[str]] | None = None) -> list[tuple[Any, ...]]:
    """The expected skeleton of ``steps`` run in order (each one's action attempts as given,
    by default one success), each moved on by ``success``."""
    shape: list[tuple[Any, ...]] = []
    for n, name in enumerate(steps):
        shape.append(("entered", name, None if n == 0 else "success"))
        outcomes = (attempts or {}).get(name, ["ok"])
        for attempt, outcome in enumerate(outcomes, start=1):
            shape.append(("action", name, attempt, outcome))
            if outcome != "ok" and attempt < len(outcomes):
                shape.append(("retry", name, attempt + 1))
        if n + 1 < len(steps):
            shape.append(("transition", name, "success", steps[n + 1]))
    return shape


def assert_continuous(
    final: tuple[HistoryRecord, ...],
    stored: tuple[HistoryRecord, ...],
    expected: list[tuple[Any, ...]],
) -> None:
    """``final`` is the journal stored before the kill plus the rest, exactly as expected."""
    assert [r.model_dump() for r in final[: len(stored)]] == [r.model_dump() for r in stored]
    assert skeleton(final) == expected
    stamps = [r.at for r in final]
    assert stamps == sorted(stamps)
    last_action: dict[str, HistoryRecord] = {}
    for r in final:
        if r.kind == "action" and r.state:
            last_action[r.state] = r
    exits = {r.state for r in final if r.kind == "transition" and r.event == "success" and r.state}
    for name in exits:
        assert last_action[name].error is None, f"{name} left on success after a failed action"


async def final_state(crash: Crash) -> Any:
    async with ProcedureStore(crash.url, read_only=True) as store:
        return (await store.get_execution(crash.execution_id)).state


# -- kill points --------------------------------------------------------------------------------


async def test_kill_mid_step_reruns_only_the_interrupted_step(crash: Crash) -> None:
    crash.start("chain", sleep={"s3": 30})  # s3 runs until it is killed
    await crash.until_logged("s3 1")
    crash.kill()
    stored = await crash.stored()
    assert completed_before(stored) == {"s1", "s2"}
    assert skeleton(stored)[-1] == ("entered", "s3", "success")  # entered before it ran

    crash.recover_in_new_process()  # s3 sleeps long only the first time it runs

    state = await final_state(crash)
    assert state.status is Status.COMPLETED
    lines = crash.lines()
    assert lines == ["s1 1", "s2 1", "s3 1", "s3 1", "s4 1", "s5 1"]  # same attempt number
    assert_ran_once_except(lines, stored, "s3", STEPS)
    expected = [*chain(*STEPS), ("finished", "s5", Status.COMPLETED)]
    assert_continuous(state.history, stored, expected)


async def test_kill_between_steps_never_reruns_the_completed_step(crash: Crash) -> None:
    # Undriven: s2's action completes, its outcome waits for a driver; nothing else happens.
    crash.start("chain", drive="pause-after-s2")
    await crash.until_committed(
        lambda r: r["kind"] == "action" and r["state"] == "s2" and r.get("error") is None,
        "s2's completion",
    )
    crash.kill()
    stored = await crash.stored()
    assert completed_before(stored) == {"s1", "s2"}
    assert skeleton(stored)[-1] == ("action", "s2", 1, "ok")

    crash.recover_in_new_process()

    state = await final_state(crash)
    assert state.status is Status.COMPLETED
    assert crash.lines() == ["s1 1", "s2 1", "s3 1", "s4 1", "s5 1"]
    expected = [*chain(*STEPS), ("finished", "s5", Status.COMPLETED)]
    assert_continuous(state.history, stored, expected)


async def test_kill_right_after_a_commit_while_driven_loses_and_repeats_nothing(
    crash: Crash,
) -> None:
    # Driven: the kill lands as soon as s2's completion is committed, anywhere in the window
    # where the transition to s3 is being committed or s3 has started.
    crash.start("chain", sleep={"s3": 0.5})
    await crash.until_committed(
        lambda r: r["kind"] == "action" and r["state"] == "s2" and r.get("error") is None,
        "s2's completion",
    )
    crash.kill()
    stored = await crash.stored()
    assert {"s1", "s2"} <= completed_before(stored)
    interrupted = next(s for s in STEPS if s not in completed_before(stored))

    crash.recover_in_new_process()

    state = await final_state(crash)
    assert state.status is Status.COMPLETED
    assert_ran_once_except(crash.lines(), stored, interrupted, STEPS)
    expected = [*chain(*STEPS), ("finished", "s5", Status.COMPLETED)]
    assert_continuous(state.history, stored, expected)


# -- inside a retry delay -----------------------------------------------------------------------


def is_retry_record(record: dict[str, Any]) -> bool:
    return bool(record["kind"] == "retry" and record["state"] == "s3" and record["attempt"] == 2)


async def test_a_retry_resumes_at_its_stored_deadline_with_the_next_attempt_number(
    crash: Crash,
) -> None:
    crash.start("retry", succeed_at=3)
    await crash.until_committed(is_retry_record, "attempt 1's failure and the retry deadline")
    crash.kill()
    killed_at = time.time()
    stored = await crash.stored()
    retry = next(r for r in stored if r.kind == "retry")
    assert retry.delay_ms == RETRY_INTERVAL_MS
    deadline = retry.at.timestamp() + RETRY_INTERVAL_MS / 1000
    assert killed_at < deadline, "the kill came too late to land inside the retry delay"

    # Resume here, part-way through the delay: a fresh full delay would end 300 ms after
    # resuming; the stored deadline comes earlier.
    await asyncio.sleep(max(0.0, retry.at.timestamp() + 0.15 - time.time()))
    async with ProcedureStore(crash.url, allowed_modules=[MODULE]) as store:
        resumed_at = time.time()
        (execution,) = await store.recover()
        recovered_at = time.time()
        state = await execution.run_to_completion(timeout=10)

    assert state.status is Status.COMPLETED
    assert crash.lines() == ["s1 1", "s2 1", "s3 1", "s3 2", "s3 3", "s4 1", "s5 1"]
    attempt_2 = next(r for r in state.history if r.kind == "action" and r.attempt == 2)
    started = attempt_2.at.timestamp()  # flaky() fails at once: its record is its start
    # The stored deadline, or at once if it passed while recover() ran (a loaded machine).
    due = max(deadline, recovered_at)
    fresh_delay_end = resumed_at + RETRY_INTERVAL_MS / 1000
    assert due + 0.1 < fresh_delay_end, "recover() took too long to tell the two apart"
    assert deadline - 0.005 <= started, "the retry fired before its stored deadline"
    assert started < due + 0.1, (
        f"attempt 2 started {started - deadline:.3f}s after the stored deadline "
        f"(a fresh delay would end {fresh_delay_end - deadline:.3f}s after it)"
    )
    failed = {"s3": ["ConnectionError", "ConnectionError", "ok"]}
    expected = [*chain(*STEPS, attempts=failed), ("finished", "s5", Status.COMPLETED)]
    assert_continuous(state.history, stored, expected)


async def test_attempts_finished_before_the_crash_count_towards_max_attempts(
    crash: Crash,
) -> None:
    crash.start("retry", succeed_at=99)  # s3 always fails; max_attempts is 3
    await crash.until_committed(is_retry_record, "attempt 1's failure and the retry deadline")
    crash.kill()
    stored = await crash.stored()

    crash.recover_in_new_process()

    state = await final_state(crash)
    assert state.status is Status.FAILED
    assert crash.lines() == ["s1 1", "s2 1", "s3 1", "s3 2", "s3 3"]  # 3 in all, not 1 + 3
    failed = {"s3": ["ConnectionError"] * 3}
    expected = [*chain("s1", "s2", "s3", attempts=failed), ("finished", "s3", Status.FAILED)]
    assert_continuous(state.history, stored, expected)


async def test_a_retry_deadline_that_passed_while_dead_fires_at_once_on_resume(
    crash: Crash,
) -> None:
    crash.start("retry", succeed_at=2)
    await crash.until_committed(is_retry_record, "attempt 1's failure and the retry deadline")
    crash.kill()
    stored = await crash.stored()
    retry = next(r for r in stored if r.kind == "retry")
    deadline = retry.at.timestamp() + RETRY_INTERVAL_MS / 1000
    await asyncio.sleep(max(0.0, deadline + 0.1 - time.time()))

    recovering = crash.recover_in_new_process()

    state = await final_state(crash)
    assert state.status is Status.COMPLETED
    attempt_2 = next(r for r in state.history if r.kind == "action" and r.attempt == 2)
    assert recovering > deadline
    assert attempt_2.at.timestamp() - recovering < RETRY_INTERVAL_MS / 1000 / 2
    assert crash.lines() == ["s1 1", "s2 1", "s3 1", "s3 2", "s4 1", "s5 1"]


# -- inside compensation ------------------------------------------------------------------------


async def test_kill_during_compensation_reruns_only_the_interrupted_compensation(
    crash: Crash,
) -> None:
    # s4 fails: compensations run newest first, s3 (#1), s2 (#2, killed), s1 (#3).
    crash.start("saga", undo_sleep={"s2": 30})
    await crash.until_logged("undo:s2 1")
    crash.kill()
    stored = await crash.stored()
    assert [r.state for r in stored if r.kind == "compensation"] == ["s3"]  # #1 is committed

    crash.recover_in_new_process()

    state = await final_state(crash)
    assert state.status is Status.ROLLED_BACK
    lines = crash.lines()
    assert lines == [
        *("s1 1", "s2 1", "s3 1", "s4 1"),
        *("undo:s3 1", "undo:s2 1", "undo:s2 1", "undo:s1 1"),
    ]
    assert runs(lines) == Counter({"s1": 1, "s2": 1, "s3": 1, "s4": 1})  # no step re-ran
    expected = [
        *chain("s1", "s2", "s3", "s4", attempts={"s4": ["RuntimeError"]}),
        ("rollback", "s4"),
        ("compensation", "s3", "ok"),
        ("compensation", "s2", "ok"),
        ("compensation", "s1", "ok"),
        ("finished", "s4", Status.ROLLED_BACK),
    ]
    assert_continuous(state.history, stored, expected)


# -- a state timeout ----------------------------------------------------------------------------


async def test_a_state_timeout_that_passed_while_dead_fires_as_soon_as_it_resumes(
    crash: Crash,
) -> None:
    crash.start("timeout", sleep={"s3": 30})  # s3's action outlives its 500 ms timeout
    await crash.until_logged("s3 1")
    crash.kill()
    stored = await crash.stored()
    entered = next(r for r in stored if r.kind == "entered" and r.state == "s3")
    deadline = entered.at.timestamp() + STATE_TIMEOUT_MS / 1000
    assert time.time() < deadline, "the kill came too late: s3's timeout had fired already"
    await asyncio.sleep(max(0.0, deadline + 0.1 - time.time()))

    recovering = crash.recover_in_new_process()

    state = await final_state(crash)
    assert state.status is Status.COMPLETED
    timeout = next(r for r in state.history if r.kind == "timeout")
    assert timeout.state == "s3"
    assert recovering > deadline
    assert timeout.at.timestamp() - recovering < 0.25, "the passed deadline did not fire at once"
    shape = skeleton(state.history)
    at = shape.index(("timeout", "s3"))
    assert shape[at + 1 : at + 3] == [
        ("transition", "s3", "timeout", "s4"),
        ("entered", "s4", "timeout"),
    ]
    assert not any(
        r.kind == "action" and r.state == "s3" and r.error is None for r in state.history
    )
    assert runs(crash.lines())["s3"] <= 2
    assert runs(crash.lines())["s4"] == runs(crash.lines())["s5"] == 1


# -- a program that crashes without closing its store --------------------------------------------


def test_a_program_that_raises_with_its_store_open_exits(tmp_path: Path) -> None:
    child = spawn("crash", str(tmp_path / "x.db"))
    assert read_line(child, CHILD_TIMEOUT).split()[0] == "started"
    try:
        _, stderr = child.communicate(timeout=60)  # a hang: its database threads kept it alive
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == 1
    # Not "RuntimeError: ..." whole: a database thread that outlives the closed event loop may
    # print its own traceback at the same moment, and the two interleave on stderr.
    assert "the program crashed with its store open" in stderr


def test_the_worker_procedures_are_five_steps() -> None:
    for scenario in ("chain", "retry", "saga", "timeout"):
        states = crash_worker.procedure(scenario)["definition"]["states"]
        assert tuple(states) == STEPS
