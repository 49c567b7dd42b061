"""Crash soak test: SIGKILL a process running a few hundred executions, again and again, and check
that procstore's recovery guarantees held (docs/persistence.md, "What is committed when").

    .venv/bin/python perf/soak_crash.py              # 300 executions, 30 kills: about a minute
    .venv/bin/python perf/soak_crash.py --quick      # 80 executions, 10 kills: a smoke run
    .venv/bin/python perf/soak_crash.py --seed 7 --kills 50 --executions 500 --db-dir /var/tmp/x

Each *generation* is a child process (``perf/soak_worker.py``) that opens the store, calls
``recover()``, starts its share of the executions (counted from the database) and drives
everything: retries with backoff and action timeouts, state timeouts, external events, a saga
through parallel and compound states, rollbacks and cancels on purpose. Every action and
compensation appends ``<generation> <execution> act|undo <state> <attempt>`` to an fsynced log
before it does anything. This process kills generation ``g`` with SIGKILL at a random moment,
then reads what the database committed (a read-only store and a read-only sqlite3 connection: the
file is exactly what the crash left). After ``--kills`` kills, a last generation runs until
every execution has finished. Then it checks, and counts violations of:

1. **no committed step re-ran**: no action attempt or compensation ran in a generation after a
   kill at which its completion was already committed, and none ran twice in one generation;
2. **no execution lost**: every execution the database ever showed, a worker reported starting,
   or the log mentions, is in the final database, finished, with the end its procedure and
   start context call for; the database holds exactly ``--executions``, one per plan index;
3. **compensations once, newest first**: each final history's ``compensation`` records are the
   completed compensated steps in reverse completion order, one each, all successful, exactly
   when the execution rolled back; every compensation that ran (in the log) is recorded, and
   every recorded one ran;
4. **continuous history**: the journal stored at each kill is an unchanged prefix of the journal
   at every later kill and at the end; each state's recorded attempts are numbered 1, 2, ...
   without a repeat or a gap, within its retry budget;
5. **interrupted steps ran again**: every action attempt that started (in the log) has its end
   recorded in the final history, unless its state's timeout ran out;
6. **workers ran cleanly**: no worker reported an unexpected error or exited by itself with a
   failure.

It prints the counts and every violation, and exits 1 if there was any. The seed fixes the mix
of executions and the kill delays; the timing of a run (where each kill lands) is not
reproducible. Not part of ``make test``: it is a soak run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the worker module; this checkout's procstore

import soak_worker  # noqa: E402  (perf/ is not a package: the worker's plan and procedures)

from procstore import ExecutionState, ProcedureStore, Status, StoreError  # noqa: E402

WORKER = HERE / "soak_worker.py"

READY_TIMEOUT = 120.0
"""Seconds a generation may take to open the store and recover() before it counts as hung."""

EARLY_KILL_SHARE = 0.15
"""Share of kills that come at a random moment of the first half second after the worker was
spawned, mostly during its start-up (opening the store, registering, ``recover()``): the others
come 0.2 to 2 s after it reports ready."""

TAIL_KILLS = 2
"""The last kills start no new executions: they land on the last ones' later steps and
rollbacks. Before them, each generation starts an equal share of the executions left."""

START_SPREAD = 0.8
"""Seconds over which a generation spreads its starts (it lives 0.2 to 2 s once ready), so that
kills land on executions at every stage."""

QUICK = {"kills": 10, "executions": 80}
"""``--quick``: a smoke run of well under two minutes."""

INVARIANTS = (
    "no committed step re-ran",
    "no execution lost",
    "compensations once, newest first",
    "continuous history",
    "interrupted steps ran again",
    "workers ran cleanly",
)

Key = tuple[str, str, str, int]
"""A step as the log and the journal name it: (execution id, "act" or "undo", state, attempt).
A compensation's attempt is always 1 (compensations are not retried)."""


@dataclass
class Soak:
    """What the run saw: the kills, the journal at each kill, the workers' reports."""

    db: Path
    log: Path
    seed: str
    total: int
    kills: int = 0
    early_kills: int = 0
    generations: int = 0
    committed_at: dict[Key, int] = field(default_factory=dict)  # first kill that saw it
    journals: dict[str, list[str]] = field(default_factory=dict)  # latest, raw records
    seen: set[str] = field(default_factory=set)  # ids the database ever showed
    started: set[str] = field(default_factory=set)  # ids a worker printed
    caught: Counter[str] = field(default_factory=Counter)  # what the kills interrupted
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def violate(self, invariant: str, message: str) -> None:
        assert invariant in INVARIANTS, invariant
        self.violations[invariant].append(message)


# -- the workers ----------------------------------------------------------------------------


def spawn(
    soak: Soak, generation: int, target: int, pace: float, final: bool
) -> subprocess.Popen[bytes]:
    """Start generation ``generation``: it starts executions until the database holds
    ``target``, one every ``pace`` seconds."""
    args = [str(soak.db), str(soak.log), str(generation), str(target), soak.seed]
    args += ["--pace", f"{pace:.4f}"] + (["--final"] if final else [])
    out = open(soak.db.parent / f"gen-{generation}.out", "wb")  # noqa: SIM115 (closed below)
    err = open(soak.db.parent / f"gen-{generation}.err", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=out, stderr=err)
    finally:
        out.close()
        err.close()


def output(soak: Soak, generation: int) -> list[list[str]]:
    path = soak.db.parent / f"gen-{generation}.out"
    return [line.split(" ", 2) for line in path.read_text().splitlines() if line]


def wait_ready(soak: Soak, worker: subprocess.Popen[bytes], generation: int) -> bool:
    """Wait until the worker says ``ready``; False if it exited first."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not any(words[0] == "ready" for words in output(soak, generation)):
        if worker.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise SystemExit(f"generation {generation} not ready within {READY_TIMEOUT}s")
        time.sleep(0.01)
    return True


def collect(soak: Soak, worker: subprocess.Popen[bytes], generation: int, killed: bool) -> None:
    """Read what a generation reported, once it has ended."""
    for words in output(soak, generation):
        if words[0] == "started":
            soak.started.add(words[2])
        elif words[0] == "worker-error":
            soak.violate("workers ran cleanly", f"generation {generation}: {' '.join(words[1:])}")
    if not killed and worker.returncode != 0:
        stderr = (soak.db.parent / f"gen-{generation}.err").read_text()[-2000:]
        soak.violate(
            "workers ran cleanly",
            f"generation {generation} exited with {worker.returncode}: {stderr}",
        )


def run_generation(
    soak: Soak, generation: int, stored: int, kills_left: int, rng: random.Random
) -> str:
    """Run one generation, starting its share of the executions left, and SIGKILL it at a random
    moment. Returns what happened, for the progress line; "" if the worker ended by itself
    (which only a crash explains)."""
    share = math.ceil((soak.total - stored) / max(1, kills_left - TAIL_KILLS))
    target = min(soak.total, stored + share)
    began = time.monotonic()
    worker = spawn(soak, generation, target, START_SPREAD / max(1, share), final=False)
    soak.generations += 1
    if rng.random() < EARLY_KILL_SHARE:
        time.sleep(rng.uniform(0.0, 0.5))
        early = not any(words[0] == "ready" for words in output(soak, generation))
        ready = "killed during start-up" if early else "killed just after start-up"
    else:
        if not wait_ready(soak, worker, generation):
            worker.wait()
            collect(soak, worker, generation, killed=False)
            return ""
        ready = f"ready after {time.monotonic() - began:.2f}s"
        time.sleep(rng.uniform(0.2, 2.0))
        early = False
    if worker.poll() is not None:  # only a crash ends a non-final worker
        collect(soak, worker, generation, killed=False)
        return ""
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    soak.kills += 1
    soak.early_kills += early
    collect(soak, worker, generation, killed=True)
    return f"{ready}, killed after {time.monotonic() - began:.2f}s"


def run_final(soak: Soak, generation: int, timeout: float) -> None:
    worker = spawn(soak, generation, soak.total, 0.0, final=True)
    soak.generations += 1
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        soak.violate(
            "no execution lost", f"the final generation did not finish within {timeout:.0f}s"
        )
    collect(soak, worker, generation, killed=False)


# -- what the database holds ------------------------------------------------------------------


def read_journal(soak: Soak, when: str) -> dict[str, list[str]]:
    """Every execution's journal records, raw, in order, through a read-only connection."""
    db = soak.db
    journals: dict[str, list[str]] = defaultdict(list)
    if not db.exists():
        return journals
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT execution_id, seq, record FROM journal ORDER BY execution_id, seq"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # killed before the schema was created
            return journals
        raise
    finally:
        connection.close()
    for execution_id, seq, record in rows:
        if seq != len(journals[execution_id]) + 1:
            soak.violate(
                "continuous history",
                f"{execution_id}: {when}, journal record {seq} follows "
                f"{len(journals[execution_id])}",
            )
        journals[execution_id].append(record)
    return journals


async def read_statuses(db: Path) -> dict[str, str]:
    """Every stored execution's status, through a read-only store; ``{}`` before the first
    generation has created the database (a kill may land before it is initialised)."""
    if not db.exists():
        return {}
    try:
        async with ProcedureStore(f"sqlite:///{db}", read_only=True) as store:
            return {summary.id: summary.status.value for summary in await store.executions()}
    except StoreError as exc:
        if "not a procstore database yet" in str(exc):
            return {}
        raise


def steps_of(execution_id: str, records: list[str]) -> list[Key]:
    """The steps whose end a journal records: action attempts (success or failure) and
    compensations."""
    keys: list[Key] = []
    for text in records:
        record = json.loads(text)
        if record["kind"] == "action":
            keys.append((execution_id, "act", record["state"], record["attempt"]))
        elif record["kind"] == "compensation":
            keys.append((execution_id, "undo", record["state"], 1))
    return keys


def check_prefix(soak: Soak, execution_id: str, records: list[str], when: str) -> None:
    before = soak.journals.get(execution_id, [])
    if records[: len(before)] != before:
        at = next(
            (n for n, (a, b) in enumerate(zip(before, records, strict=False)) if a != b),
            len(records),
        )
        soak.violate(
            "continuous history",
            f"{execution_id}: {when}, record {at + 1} of the {len(before)} stored earlier "
            f"changed or vanished: {before[at]} -> {records[at] if at < len(records) else None}",
        )


def after_kill(soak: Soak, kill: int) -> dict[str, str]:
    """Remember what the database committed by this kill; return the executions' statuses."""
    statuses = asyncio.run(read_statuses(soak.db))
    journals = read_journal(soak, f"at kill {kill}")
    soak.seen.update(statuses)
    for execution_id, status in statuses.items():
        records = journals.get(execution_id, [])
        check_prefix(soak, execution_id, records, f"at kill {kill}")
        soak.journals[execution_id] = records
        for key in steps_of(execution_id, records):
            soak.committed_at.setdefault(key, kill)
        if status == "running":
            soak.caught["running"] += 1
            kinds = [json.loads(text)["kind"] for text in records]
            if "rollback" in kinds:
                soak.caught["mid-rollback"] += 1
            elif kinds and kinds[-1] == "retry":
                soak.caught["in a retry delay"] += 1
    return statuses


# -- the checks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    generation: int
    key: Key


def read_log(path: Path) -> list[LogLine]:
    lines: list[LogLine] = []
    if not path.exists():  # no action ran at all
        return lines
    for text in path.read_text().splitlines():
        generation, execution_id, kind, state, attempt = text.split()
        number = 1 if kind == "undo" else int(attempt)  # a compensation: once per state
        lines.append(LogLine(int(generation), (execution_id, kind, state, number)))
    return lines


def check_reruns(soak: Soak, lines: list[LogLine]) -> Counter[str]:
    """Invariant 1; returns the counts of steps run and re-run (after an interrupted attempt)."""
    counts: Counter[str] = Counter()
    per_generation = Counter((line.key, line.generation) for line in lines)
    for (key, generation), times in sorted(per_generation.items()):
        if times > 1:
            soak.violate(
                "no committed step re-ran",
                f"{describe(key)} ran {times}x in generation {generation}",
            )
    runs: Counter[Key] = Counter()
    for line in lines:
        kind = line.key[1]
        counts[f"{kind} run"] += 1
        runs[line.key] += 1
        if runs[line.key] > 1:
            counts[f"{kind} re-run"] += 1
        committed = soak.committed_at.get(line.key)
        if committed is not None and line.generation > committed:
            soak.violate(
                "no committed step re-ran",
                f"{describe(line.key)} ran in generation {line.generation}, but its completion "
                f"was committed when generation {committed} was killed",
            )
    return counts


def describe(key: Key) -> str:
    execution_id, kind, state, attempt = key
    if kind == "undo":
        return f"{execution_id}: compensation of {state}"
    return f"{execution_id}: {state} attempt {attempt}"


def expected_end(name: str, context: dict[str, Any]) -> tuple[Status, set[str]]:
    """The status and final state the execution must end with, from its start context."""
    if name == "retrying":
        exhausted = len(context["faults"]) >= soak_worker.RETRY["max_attempts"]
        return (Status.ROLLED_BACK, {"gave_up"}) if exhausted else (Status.COMPLETED, {"done"})
    if name == "timed":
        return Status.COMPLETED, {"fast", "late"}
    if name == "event":
        return Status.COMPLETED, {"end", "late"}
    if name == "saga":
        return Status.ROLLED_BACK, {"pay.confirm"}
    if name == "manual":
        ends = {"cancel": Status.CANCELLED}
        return ends.get(context["end_by"], Status.ROLLED_BACK), {"hold"}
    raise ValueError(f"unknown procedure {name!r}")


def took_the_right_path(state: ExecutionState) -> str | None:
    """For the procedures with two good ends: the end matches what the history says happened."""
    history = state.history
    if state.procedure == "timed":
        ok = any(r.kind == "action" and r.state == "slow" and r.error is None for r in history)
        timed_out = any(r.kind == "timeout" and r.state == "slow" for r in history)
        if (state.current == "fast") != ok or (state.current == "late") != timed_out:
            return f"ended in {state.current} (slow succeeded: {ok}, timed out: {timed_out})"
    if state.procedure == "event":
        got = any(r.kind == "transition" and r.event == "go" for r in history)
        timed_out = any(r.kind == "timeout" and r.state == "wait" for r in history)
        if (state.current == "end") != got or (state.current == "late") != timed_out:
            return f"ended in {state.current} (go: {got}, timed out: {timed_out})"
    return None


def states_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a procedure document, by dotted path."""
    found: dict[str, dict[str, Any]] = {}

    def walk(states: dict[str, Any], prefix: str) -> None:
        for name, state in states.items():
            path = f"{prefix}{name}"
            found[path] = state
            walk(state.get("states", {}), f"{path}.")
            for region, body in state.get("parallel", {}).items():
                walk(body["states"], f"{path}.{region}.")

    walk(document["definition"]["states"], "")
    return found


def check_end(soak: Soak, state: ExecutionState, indices: Counter[int]) -> None:
    """Invariant 2 for one execution (its end), invariant 3's history part, and invariant 4's
    attempts part (`check_attempts`)."""
    index = state.context.get("index")
    indices[index] += 1
    name, context = soak_worker.plan(soak.seed, index)
    if (state.procedure, dict(state.context)) != (name, context):
        soak.violate(
            "no execution lost",
            f"{state.id}: runs {state.procedure} {state.context}, plan {index} is {name} {context}",
        )
        return
    status, ends = expected_end(name, context)
    if state.status is not status or state.current not in ends:
        soak.violate(
            "no execution lost",
            f"{state.id} ({name}, {context}): ended {state.status.value} in {state.current}, "
            f"expected {status.value} in {' or '.join(sorted(ends))}",
        )
    wrong = took_the_right_path(state)
    if wrong:
        soak.violate("no execution lost", f"{state.id} ({name}): {wrong}")

    states = states_of(soak_worker.PROCEDURES[name])
    undoable = {path for path, body in states.items() if "compensate" in body}
    done = [
        r.state
        for r in state.history
        if r.kind == "action" and r.error is None and r.state in undoable
    ]
    rollbacks = [r for r in state.history if r.kind == "rollback"]
    compensations = [r for r in state.history if r.kind == "compensation"]
    expected = list(reversed(done)) if rollbacks else []
    if [r.state for r in compensations] != expected or len(rollbacks) > 1:
        soak.violate(
            "compensations once, newest first",
            f"{state.id} ({name}): compensations {[r.state for r in compensations]} after "
            f"{len(rollbacks)} rollback(s), completed compensated steps {done}",
        )
    for record in compensations:
        if record.error is not None:
            soak.violate(
                "compensations once, newest first",
                f"{state.id}: compensation of {record.state} failed: {record.error}",
            )
    if (status is Status.ROLLED_BACK) != bool(rollbacks):
        soak.violate(
            "compensations once, newest first",
            f"{state.id} ({name}): {len(rollbacks)} rollback record(s), expected status "
            f"{status.value}",
        )
    check_attempts(soak, state, states)


def check_attempts(soak: Soak, state: ExecutionState, states: dict[str, dict[str, Any]]) -> None:
    """Invariant 4's attempts part for one execution: each state's recorded attempts are
    numbered 1, 2, ... without a repeat or a gap, within its retry budget."""
    attempts: dict[str, list[int]] = defaultdict(list)
    for record in state.history:
        if record.kind == "action" and record.state and record.attempt:
            attempts[record.state].append(record.attempt)
    for path, numbers in attempts.items():
        budget = states[path].get("retry", {}).get("max_attempts", 1)
        if numbers != list(range(1, len(numbers) + 1)) or len(numbers) > budget:
            soak.violate(
                "continuous history",
                f"{state.id}: {path} recorded attempts {numbers} (at most {budget})",
            )


def check_started_steps_ended(
    soak: Soak, states: dict[str, ExecutionState], lines: list[LogLine]
) -> None:
    """Invariant 5: every action attempt that started (in the log) is recorded in the end, with
    its result or error: a kill before its end was committed made it run again. Except in a
    state whose timeout ran out (the deadline may pass while no process runs)."""
    recorded = {
        (execution_id, "act", r.state, r.attempt)
        for execution_id, state in states.items()
        for r in state.history
        if r.kind == "action" and r.state and r.attempt
    }
    timed_out = {
        (execution_id, r.state)
        for execution_id, state in states.items()
        for r in state.history
        if r.kind == "timeout"
    }
    for key in sorted({line.key for line in lines if line.key[1] == "act"} - recorded):
        if (key[0], key[2]) not in timed_out and key[0] in states:
            soak.violate(
                "interrupted steps ran again", f"{describe(key)} started, its end never recorded"
            )


async def read_final(db: Path, ids: set[str]) -> tuple[dict[str, ExecutionState], set[str]]:
    states = {}
    async with ProcedureStore(f"sqlite:///{db}", read_only=True) as store:
        stored = {summary.id for summary in await store.executions()}
        for execution_id in sorted(stored):
            states[execution_id] = (await store.get_execution(execution_id)).state
    return states, ids - stored


def check(soak: Soak) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Run every check; return the counts of steps run and re-run, and the executions by
    procedure and final status."""
    lines = read_log(soak.log)
    counts = check_reruns(soak, lines)
    logged = {line.key[0] for line in lines}
    states, missing = asyncio.run(read_final(soak.db, soak.seen | soak.started | logged))
    for execution_id in sorted(missing):
        soak.violate("no execution lost", f"{execution_id} is not in the final database")
    if len(states) != soak.total:
        soak.violate(
            "no execution lost", f"the database holds {len(states)} executions, not {soak.total}"
        )

    journals = read_journal(soak, "at the end")
    indices: Counter[int] = Counter()
    ends: Counter[tuple[str, str]] = Counter()
    for execution_id, state in states.items():
        ends[state.procedure, state.status.value] += 1
        records = journals.get(execution_id, [])
        check_prefix(soak, execution_id, records, "at the end")
        if len(records) != len(state.history):
            soak.violate(
                "continuous history",
                f"{execution_id}: {len(records)} journal rows, {len(state.history)} in its history",
            )
        if state.status is Status.RUNNING:
            soak.violate("no execution lost", f"{execution_id} is still running")
            continue
        check_end(soak, state, indices)
    missing_indices = sorted(set(range(soak.total)) - set(indices))
    repeated = sorted(i for i, n in indices.items() if n > 1)
    if missing_indices or repeated:
        soak.violate(
            "no execution lost",
            f"finished executions of plan indices: missing {missing_indices[:20]}, "
            f"repeated {repeated[:20]}",
        )

    check_started_steps_ended(soak, states, lines)
    recorded = {
        (execution_id, "undo", r.state, 1)
        for execution_id, state in states.items()
        for r in state.history
        if r.kind == "compensation" and r.state
    }
    ran = {line.key for line in lines if line.key[1] == "undo"}
    for key in sorted(ran - recorded):
        soak.violate("compensations once, newest first", f"{describe(key)} ran, not recorded")
    for key in sorted(recorded - ran):
        soak.violate("compensations once, newest first", f"{describe(key)} recorded, never ran")
    return counts, ends


# -- the run ----------------------------------------------------------------------------------


def report(soak: Soak, counts: Counter[str], ends: Counter[tuple[str, str]], wall: float) -> None:
    print(
        f"\nseed {soak.seed}: {soak.kills} kills ({soak.early_kills} during start-up), "
        f"{soak.generations} generations, {wall:.0f} s"
    )
    print(
        f"caught at the kills: {soak.caught['running']} running executions, "
        f"{soak.caught['mid-rollback']} mid-rollback, "
        f"{soak.caught['in a retry delay']} in a retry delay"
    )
    print("\nexecutions by procedure and final status:")
    for name in soak_worker.PROCEDURES:
        mine = sorted((status, n) for (procedure, status), n in ends.items() if procedure == name)
        text = ", ".join(f"{n} {status}" for status, n in mine)
        print(f"  {name:<9} {sum(n for _, n in mine):>4}  {text}")
    print(
        f"\nsteps run {counts['act run']}, re-run after an interrupted attempt "
        f"{counts['act re-run']}\n"
        f"compensations run {counts['undo run']}, re-run after an interrupted one "
        f"{counts['undo re-run']}"
    )
    print("\nviolations:")
    for invariant in INVARIANTS:
        print(f"  {len(soak.violations[invariant]):>4}  {invariant}")
    for invariant in INVARIANTS:
        for message in soak.violations[invariant]:
            print(f"VIOLATION [{invariant}] {message}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="SIGKILL a procstore worker again and again; check recovery's guarantees."
    )
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--seed", default=None, help="default: a random one (printed)")
    parser.add_argument("--db-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['kills']} kills, {QUICK['executions']} executions",
    )
    parser.add_argument("--final-timeout", type=float, default=600.0)
    args = parser.parse_args()
    if args.quick:
        args.kills, args.executions = QUICK["kills"], QUICK["executions"]
    seed = args.seed if args.seed is not None else str(random.randrange(10**6))
    directory = args.db_dir or Path(tempfile.mkdtemp(prefix="procstore-soak-"))
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "soak.db"
    if db.exists():
        raise SystemExit(f"{db} exists: give a fresh --db-dir")
    soak = Soak(db=db, log=directory / "actions.log", seed=seed, total=args.executions)
    rng = random.Random(f"kills:{seed}")
    print(
        f"soak: {args.executions} executions, {args.kills} kills, seed {seed}, in {directory}",
        flush=True,
    )

    began = time.monotonic()
    generation = 0
    stored = 0
    while soak.kills < args.kills:
        what = run_generation(soak, generation, stored, args.kills - soak.kills, rng)
        generation += 1
        if not what:
            print(f"  generation {generation - 1} ended by itself", flush=True)
            break
        statuses = after_kill(soak, soak.kills - 1)
        stored = len(statuses)
        finished = sum(1 for status in statuses.values() if status != "running")
        print(
            f"  generation {generation - 1}: {what}; {finished}/{len(statuses)} finished",
            flush=True,
        )
        if finished == args.executions and soak.kills < args.kills:
            print("  every execution has finished: no more kills", flush=True)
            break
    # The kill number of a generation is its index; the final one comes after the last kill.
    run_final(soak, generation, args.final_timeout)
    counts, ends = check(soak)
    report(soak, counts, ends, time.monotonic() - began)
    failed = any(soak.violations.values())
    if failed:
        print(f"\nthe database, log and worker output are kept in {directory}")
    elif args.db_dir is None:
        shutil.rmtree(directory)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
