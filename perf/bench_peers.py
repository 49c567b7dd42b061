"""procstore beside its peers (issue 14, goal 5): the same workloads, one run, ratios printed.

Run from the repository root (the peers come with the ``bench`` extra)::

    .venv/bin/python perf/bench_peers.py                # full run, about three minutes
    .venv/bin/python perf/bench_peers.py --quick        # small sizes: a smoke run (a test runs it)
    .venv/bin/python perf/bench_peers.py --json out.json
    .venv/bin/python perf/bench_peers.py --workloads a,d # only some workloads

Workloads (perf/README.md, section "Peers", says exactly what each side does):

a. one transition on a 5-state chain with a noop action per state, µs per transition: procstore,
   stock ``transitions`` AsyncMachine, python-statemachine (async engine), sismic;
b. 10,000 concurrent 5-state runs driven by ``send()``: wall seconds and peak RSS, each side in a
   fresh subprocess: procstore, stock AsyncMachine, python-statemachine;
c. 10,000 concurrent 5-state runs driving themselves: procstore ``auto=True``, stock AsyncMachine
   with a driver loop firing each outcome event;
d. live waiting executions: bytes each (tracemalloc), each side in a fresh subprocess;
e. persisted steps per second on an SQLite file, 1 execution of 20 steps and 100 concurrent:
   procstore (``synchronous`` NORMAL and FULL) beside DBOS on SQLite.

Every figure is the median of its repeats, and procstore's repeats alternate with the peers'
so that the machine's drift hits all sides alike: on a shared machine the ratios are the figures
to read. A peer that is not installed is named at the top and its rows say so. The exit code is
0 even when procstore is behind: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

perf_counter = time.perf_counter

# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    repeats: int = 7  # a: repeats (each side's figure is the median)
    runs: int = 500  # a: 5-state runs per repeat and side, 4 timed transitions each
    concurrent: int = 10_000  # b, c: runs at once
    concurrent_repeats: int = 3  # b, c: one fresh subprocess per repeat and side
    live: int = 2_000  # d: waiting executions measured per subprocess
    live_repeats: int = 2
    steps: int = 20  # e: steps per execution (DBOS: @DBOS.step calls per workflow)
    sequential: int = 5  # e: executions run one after another per sample
    parallel: int = 100  # e: executions run at once per sample
    durable_repeats: int = 3
    timeout: float = 600.0  # seconds allowed to one subprocess


FULL = Sizes()
QUICK = Sizes(
    repeats=3,
    runs=30,
    concurrent=200,
    concurrent_repeats=1,
    live=100,
    live_repeats=1,
    sequential=1,
    parallel=10,
    durable_repeats=1,
    timeout=120.0,
)

WORKLOADS = ("a", "b", "c", "d", "e")

# --------------------------------------------------------------------------- sides

PROCSTORE = "procstore"
STOCK = "stock"
PSM = "python-statemachine"
SISMIC = "sismic"
DBOS = "dbos"
DBOS_WAL = "dbos-wal"
PROCSTORE_NORMAL = "procstore-NORMAL"  # e: an SQLite file, synchronous=NORMAL
PROCSTORE_FULL = "procstore-FULL"  # e: synchronous=FULL

#: The importable module each side needs, and the distribution whose version is printed.
MODULES = {
    PROCSTORE: ("procstore", "procstore"),
    PROCSTORE_NORMAL: ("procstore", "procstore"),
    PROCSTORE_FULL: ("procstore", "procstore"),
    STOCK: ("transitions", "transitions"),
    PSM: ("statemachine", "python-statemachine"),
    SISMIC: ("sismic", "sismic"),
    DBOS: ("dbos", "dbos"),
    DBOS_WAL: ("dbos", "dbos"),
}

LABELS = {
    PROCSTORE: "procstore",
    PROCSTORE_NORMAL: "procstore, WAL + NORMAL",
    PROCSTORE_FULL: "procstore, WAL + FULL",
    STOCK: "transitions AsyncMachine (stock)",
    PSM: "python-statemachine (async)",
    SISMIC: "sismic (sync interpreter)",
    DBOS: "DBOS, SQLite as it ships",
    DBOS_WAL: "DBOS, SQLite WAL + NORMAL",
}


def installed(side: str) -> bool:
    try:
        return importlib.util.find_spec(MODULES[side][0]) is not None
    except (ImportError, ValueError):  # a finder refused it, or a broken install
        return False


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- the charts

#: The 5-state chain of workloads a to d: s1 -> ... -> s5, a noop action in s1..s4.
CHAIN = 5


def chain_doc(name: str, states: int, event: str) -> dict[str, Any]:
    """procstore's chain s1 -> s2 -> ... -> s{states}: every state but the last has a noop
    action and one transition on ``event`` to the next; the last is terminal."""
    body: dict[str, Any] = {
        f"s{i}": {
            "action": {"type": "noop"},
            "transitions": [{"event": event, "target": f"s{i + 1}"}],
        }
        for i in range(1, states)
    }
    body[f"s{states}"] = {}
    return {"name": name, "version": "1.0", "definition": {"initial_state": "s1", "states": body}}


async def _noop_callback(event_data: Any) -> None:
    """The stock machine's stand-in for a noop action: one async on_enter callback."""


class StockModel:
    """A plain model object, added to the shared stock machine with ``add_model``."""

    state: str
    trigger: Callable[..., Awaitable[bool]]


def stock_machine(states: int, event: str) -> Any:
    """The chain as stock transitions: one AsyncMachine for all runs (models added with
    add_model), an async on_enter callback on every state but the last."""
    from transitions.extensions.asyncio import AsyncMachine

    names = [f"s{i}" for i in range(1, states + 1)]
    return AsyncMachine(
        model=None,
        states=[{"name": n, "on_enter": [_noop_callback]} for n in names[:-1]] + [names[-1]],
        transitions=[
            {"trigger": event, "source": a, "dest": b} for a, b in itertools.pairwise(names)
        ],
        initial=names[0],
        auto_transitions=False,
        send_event=True,
    )


def psm_chart() -> type:
    """The chain as a python-statemachine 3 StateChart: an async ``noop`` enter callback on
    s1..s4 (so the async engine runs it), s5 final."""
    from statemachine import State, StateChart

    class Chain(StateChart):  # type: ignore[misc]
        s1 = State(initial=True, enter="noop")
        s2 = State(enter="noop")
        s3 = State(enter="noop")
        s4 = State(enter="noop")
        s5 = State(final=True)
        next = s1.to(s2) | s2.to(s3) | s3.to(s4) | s4.to(s5)

        async def noop(self) -> None:
            pass

    return Chain


def sismic_chart() -> Any:
    """The chain as a sismic statechart: ``on entry: noop()`` (a Python callable from the
    interpreter's context) on s1..s4, s5 final."""
    from sismic.io import import_from_yaml

    lines = ["statechart:", "  name: chain", "  root state:", "    name: root"]
    lines += ["    initial: s1", "    states:"]
    for i in range(1, CHAIN):
        lines += [f"      - name: s{i}", "        on entry: noop()", "        transitions:"]
        lines += [f"          - target: s{i + 1}", "            event: next"]
    lines += [f"      - name: s{CHAIN}", "        type: final"]
    return import_from_yaml("\n".join(lines) + "\n")


def _noop() -> None:
    """sismic's noop action, called by its ``on entry: noop()``."""


async def _drain(rounds: int = 3) -> None:
    """Let background tasks run: procstore's ``start()`` runs the initial state's action as a
    task, and one turn of the loop takes a noop to its end (three to be sure; workload d checks
    it afterwards). Never wait by reading ``Execution.history``: it builds, and keeps, a
    pydantic model per record, which would then count in d's bytes."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def _procstore_done(execution: Any) -> bool:
    return bool(execution.status == "completed" and execution.current == f"s{CHAIN}")


# --------------------------------------------------------------------------- a. one transition


class Transition:
    """Workload a, in this process: every side's ``measure()`` runs ``runs`` fresh 5-state runs
    and returns µs per transition over the 4 timed transitions of each (setting a run up, and
    its initial state's action, are not timed)."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.fixture: dict[str, Any] = {}

    async def measure(self, side: str) -> float:
        method = {
            PROCSTORE: self.procstore,
            STOCK: self.stock,
            PSM: self.psm,
            SISMIC: self.sismic,
        }[side]
        gc.collect()
        seconds = await method()
        return seconds / (self.runs * (CHAIN - 1)) * 1e6

    async def procstore(self) -> float:
        from procstore import ProcedureStore

        if PROCSTORE not in self.fixture:
            store = ProcedureStore()
            await store.register(chain_doc("chain", CHAIN, "next"))
            self.fixture[PROCSTORE] = store
        store, total = self.fixture[PROCSTORE], 0.0
        for _ in range(self.runs):
            execution = await store.start("chain")
            await _drain()  # s1's action has run: the execution waits for `next`
            started = perf_counter()
            for _ in range(CHAIN - 1):
                await execution.send("next")
            total += perf_counter() - started
            if not _procstore_done(execution):
                raise AssertionError(f"procstore ended in {execution.current}")
        return total

    async def stock(self) -> float:
        machine = self.fixture.setdefault(STOCK, stock_machine(CHAIN, "next"))
        total = 0.0
        for _ in range(self.runs):
            model = StockModel()
            machine.add_model(model)
            started = perf_counter()
            for _ in range(CHAIN - 1):
                await model.trigger("next")
            total += perf_counter() - started
            machine.remove_model(model)
            if model.state != f"s{CHAIN}":
                raise AssertionError(f"stock ended in {model.state}")
        return total

    async def psm(self) -> float:
        chart = self.fixture.setdefault(PSM, psm_chart())
        total = 0.0
        for _ in range(self.runs):
            machine = chart()
            await machine.activate_initial_state()  # enters s1, runs its noop
            started = perf_counter()
            for _ in range(CHAIN - 1):
                await machine.send("next")
            total += perf_counter() - started
            if not machine.is_terminated:
                raise AssertionError("python-statemachine did not reach s5")
        return total

    async def sismic(self) -> float:
        from sismic.interpreter import Interpreter

        chart = self.fixture.setdefault(SISMIC, sismic_chart())
        total = 0.0
        for _ in range(self.runs):
            interpreter = Interpreter(chart, initial_context={"noop": _noop})
            interpreter.execute_once()  # enters s1, runs its noop
            started = perf_counter()
            for _ in range(CHAIN - 1):
                interpreter.queue("next").execute_once()
            total += perf_counter() - started
            if not interpreter.final:
                raise AssertionError("sismic did not reach s5")
        return total


# --------------------------------------------------------------------------- b, c. concurrent
# Each side in a fresh subprocess (its own peak RSS), all runs started at once with gather.


def peak_rss_kib() -> int:
    """This process's own peak resident set, in KiB: Linux's ``VmHWM``. Not ``ru_maxrss``: Linux
    carries it across ``exec``, so a child started by a process of 300 MiB reports 300 MiB from
    its first instruction (subprocess forks the parent, then execs); ``VmHWM`` belongs to the
    address space that ``exec`` made. Elsewhere, ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


async def concurrent_procstore(count: int, auto: bool) -> tuple[float, int]:
    from procstore import ProcedureStore

    store = ProcedureStore()
    event = "success" if auto else "next"
    await store.register(chain_doc("chain", CHAIN, event))

    async def run() -> Any:
        execution = await store.start("chain", auto=auto)
        if auto:
            await execution.run_to_completion(timeout=600)
        else:
            for _ in range(CHAIN - 1):
                await execution.send("next")
        return execution

    setup = peak_rss_kib()
    gc.collect()
    started = perf_counter()
    executions = await asyncio.gather(*(run() for _ in range(count)))
    seconds = perf_counter() - started
    if not all(_procstore_done(e) for e in executions):
        raise AssertionError("a procstore run did not complete in s5")
    return seconds, setup


async def concurrent_stock(count: int, auto: bool) -> tuple[float, int]:
    """Stock transitions; with ``auto`` a driver loop fires ``success`` (the outcome event of
    each state's action) until the last state, as procstore's auto mode does."""
    event = "success" if auto else "next"
    machine = stock_machine(CHAIN, event)
    last = f"s{CHAIN}"

    async def run() -> StockModel:
        model = StockModel()
        machine.add_model(model)
        if auto:
            while model.state != last:
                await model.trigger("success")
        else:
            for _ in range(CHAIN - 1):
                await model.trigger("next")
        machine.remove_model(model)
        return model

    setup = peak_rss_kib()
    gc.collect()
    started = perf_counter()
    models = await asyncio.gather(*(run() for _ in range(count)))
    seconds = perf_counter() - started
    if not all(m.state == last for m in models):
        raise AssertionError("a stock run did not reach s5")
    return seconds, setup


async def concurrent_psm(count: int, auto: bool) -> tuple[float, int]:
    """python-statemachine runs workload b only (``auto`` is there for the common signature)."""
    chart = psm_chart()

    async def run() -> Any:
        machine = chart()
        await machine.activate_initial_state()
        for _ in range(CHAIN - 1):
            await machine.send("next")
        return machine

    setup = peak_rss_kib()
    gc.collect()
    started = perf_counter()
    machines = await asyncio.gather(*(run() for _ in range(count)))
    seconds = perf_counter() - started
    if not all(m.is_terminated for m in machines):
        raise AssertionError("a python-statemachine run did not reach s5")
    return seconds, setup


CONCURRENT = {PROCSTORE: concurrent_procstore, STOCK: concurrent_stock, PSM: concurrent_psm}


async def child_concurrent(side: str, count: int, auto: bool) -> dict[str, Any]:
    """Wall seconds of the runs, this process's peak RSS, and its peak once the side's library
    was imported and its fixture built (so the peak's growth from there is the runs')."""
    seconds, setup = await CONCURRENT[side](count, auto)
    return {"seconds": seconds, "peak_mib": peak_rss_kib() / 1024, "setup_mib": setup / 1024}


# --------------------------------------------------------------------------- d. footprint


class Waiting:
    """Workload d: one waiting execution of the 5-state chain, in s1 with its action done,
    waiting for ``next``; ``make()`` builds one, ``check()`` says the built ones are so."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.fixture: Any = None

    async def setup(self) -> None:
        if self.side == PROCSTORE:
            from procstore import ProcedureStore

            self.fixture = ProcedureStore()
            await self.fixture.register(chain_doc("chain", CHAIN, "next"))
        elif self.side == STOCK:
            self.fixture = stock_machine(CHAIN, "next")
        elif self.side == PSM:
            self.fixture = psm_chart()
        else:
            self.fixture = sismic_chart()

    async def make(self) -> Any:
        if self.side == PROCSTORE:
            return await self.fixture.start("chain")
        if self.side == STOCK:
            model = StockModel()
            self.fixture.add_model(model)
            return model
        if self.side == PSM:
            machine = self.fixture()
            await machine.activate_initial_state()
            return machine
        from sismic.interpreter import Interpreter

        interpreter = Interpreter(self.fixture, initial_context={"noop": _noop})
        interpreter.execute_once()
        return interpreter

    def check(self, items: list[Any]) -> None:
        """Every item waits in s1, its action run (read after the measurement: procstore's
        ``history`` builds models that would count)."""
        if self.side == PROCSTORE:
            ok = all(e.current == "s1" and e.history[-2].kind == "action" for e in items)
        elif self.side == STOCK:
            ok = all(m.state == "s1" for m in items)
        elif self.side == PSM:
            ok = all(list(m.configuration_values) == ["s1"] for m in items)
        else:
            ok = all(i.configuration == ["root", "s1"] for i in items)
        if not ok:
            raise AssertionError(f"a {self.side} execution is not waiting in s1")


async def child_footprint(side: str, count: int) -> dict[str, Any]:
    """Bytes (tracemalloc) held by ``count`` waiting executions, after ten built first so that
    one-time caches are not counted."""
    waiting = Waiting(side)
    await waiting.setup()
    tracemalloc.start()
    warm = [await waiting.make() for _ in range(10)]
    await _drain()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    items = [await waiting.make() for _ in range(count)]
    await _drain()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    waiting.check(warm + items)
    return {"bytes": (after - before) / count, "kept": len(items) + len(warm)}


# --------------------------------------------------------------------------- e. durable steps


async def durable_procstore(
    directory: str, synchronous: str, steps: int, sequential: int, parallel: int
) -> dict[str, float]:
    """procstore on an SQLite file: a chain of ``steps`` states with a noop action each, run
    with ``auto=True`` to the end; steps/s one execution after another, and all at once."""
    from procstore import ProcedureStore

    url = f"sqlite:///{Path(directory) / f'procstore-{uuid.uuid4().hex}.db'}"
    doc = chain_doc("steps", steps + 1, "success")

    async def run(store: Any) -> None:
        execution = await store.start("steps", auto=True)
        final = await execution.run_to_completion(timeout=600)
        if final.status != "completed":
            raise AssertionError(f"a procstore execution ended {final.status}")

    async with ProcedureStore(url, synchronous=synchronous) as store:  # type: ignore[arg-type]
        await store.register(doc)
        await run(store)  # warm-up, not timed
        gc.collect()
        started = perf_counter()
        for _ in range(sequential):
            await run(store)
        one = sequential * steps / (perf_counter() - started)
        gc.collect()
        started = perf_counter()
        await asyncio.gather(*(run(store) for _ in range(parallel)))
        many = parallel * steps / (perf_counter() - started)
    return {"sequential": one, "concurrent": many}


def durable_dbos(
    directory: str, wal: bool, steps: int, sequential: int, parallel: int
) -> dict[str, float]:
    """DBOS on an SQLite file: a workflow of ``steps`` ``@DBOS.step`` calls (sync API: here it
    is faster than DBOS's async one), one after another, and ``parallel`` at once through
    ``DBOS.start_workflow`` (DBOS's thread pool). ``wal``: every connection is switched to
    ``journal_mode=WAL`` and ``synchronous=NORMAL``, procstore's settings; otherwise DBOS's own
    (SQLite's defaults: a rollback journal, ``synchronous=FULL``)."""
    import sqlalchemy
    from dbos import DBOS as Dbos

    if wal:

        @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
        def _wal(connection: Any, record: Any) -> None:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")

    @Dbos.step()
    def step(i: int) -> int:
        return i

    @Dbos.workflow()
    def workflow(n: int) -> int:
        for i in range(n):
            step(i)
        return n

    path = Path(directory) / f"dbos-{uuid.uuid4().hex}.sqlite"
    Dbos(config={"name": "bench", "system_database_url": f"sqlite:///{path}", "log_level": "ERROR"})
    Dbos.launch()
    try:
        workflow(steps)  # warm-up, not timed
        gc.collect()
        started = perf_counter()
        for _ in range(sequential):
            workflow(steps)
        one = sequential * steps / (perf_counter() - started)
        gc.collect()
        started = perf_counter()
        handles = [Dbos.start_workflow(workflow, steps) for _ in range(parallel)]
        if [h.get_result() for h in handles] != [steps] * parallel:
            raise AssertionError("a DBOS workflow did not return its step count")
        many = parallel * steps / (perf_counter() - started)
    finally:
        Dbos.destroy()
    return {"sequential": one, "concurrent": many}


def child_durable(side: str, directory: str, sizes: dict[str, int]) -> dict[str, Any]:
    if side in (DBOS, DBOS_WAL):  # DBOS's sync API, outside any event loop
        return durable_dbos(directory, side == DBOS_WAL, **sizes)
    synchronous = "FULL" if side == PROCSTORE_FULL else "NORMAL"
    return asyncio.run(durable_procstore(directory, synchronous, **sizes))


# --------------------------------------------------------------------------- subprocesses


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (fresh) process: ``spec`` says which (see ``in_child``)."""
    kind = spec["kind"]
    if kind == "concurrent":
        return asyncio.run(child_concurrent(spec["side"], spec["count"], spec["auto"]))
    if kind == "footprint":
        return asyncio.run(child_footprint(spec["side"], spec["count"]))
    if kind == "durable":
        return child_durable(spec["side"], spec["dir"], spec["sizes"])
    raise ValueError(f"unknown child kind {kind!r}")


def in_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --------------------------------------------------------------------------- results


@dataclass
class Group:
    """One workload's figure on every side; procstore's is the reference of the ratios."""

    key: str
    name: str
    unit: str
    higher_is_better: bool
    sides: list[str]
    reference: str = PROCSTORE  # the side the ratios put over the others
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, side: str, value: float) -> None:
        self.samples.setdefault(side, []).append(value)

    def fail(self, side: str, error: str) -> None:
        self.errors.setdefault(side, error)

    def median(self, side: str) -> float | None:
        xs = self.samples.get(side, [])
        return statistics.median(xs) if xs and side not in self.errors else None


@dataclass
class Row:
    key: str  # the workload's stable identifier, e.g. "transition_us"
    name: str
    side: str  # procstore, stock, python-statemachine, sismic, dbos, dbos-wal, procstore-FULL...
    label: str
    value: float | None  # the median of the samples
    unit: str
    ratio: float | None  # the group's procstore figure / this side's
    stock_ratio: float | None  # this side's figure / stock transitions' (where it ran)
    ahead: bool | None  # procstore's figure is better than this side's (None: procstore's row)
    samples: list[float]
    note: str = ""
    error: str = ""


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def rows_of(group: Group) -> list[Row]:
    ours, stock = group.median(group.reference), group.median(STOCK)
    rows = []
    for side in group.sides:
        value = group.median(side)
        ahead = None
        if side != group.reference and ours is not None and value is not None:
            ahead = ours > value if group.higher_is_better else ours < value
        rows.append(
            Row(
                key=group.key,
                name=group.name,
                side=side,
                label=LABELS.get(side, side),
                value=value,
                unit=group.unit,
                ratio=None if side == group.reference else _ratio(ours, value),
                stock_ratio=_ratio(value, stock) if STOCK in group.sides else None,
                ahead=ahead,
                samples=group.samples.get(side, []),
                note=group.notes.get(side, ""),
                error=group.errors.get(side, ""),
            )
        )
    return rows


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


# --------------------------------------------------------------------------- the workloads


def present(sides: list[str], missing: list[str]) -> list[str]:
    return [s for s in sides if MODULES[s][1] not in missing]


async def run_transition(sz: Sizes, missing: list[str]) -> list[Group]:
    sides = [PROCSTORE, STOCK, PSM, SISMIC]
    group = Group(
        "transition_us", "a. one transition, 5-state chain, noop action", "µs", False, sides
    )
    bench = Transition(sz.runs)
    for repeat in range(sz.repeats):
        for side in present(sides, missing):
            try:
                group.add(side, await bench.measure(side))
            except Exception as exc:
                group.fail(side, _describe(exc))
        progress(f"a. repeat {repeat + 1}/{sz.repeats}")
    return [group]


def run_children(
    groups: dict[str, Group],
    sides: list[str],
    repeats: int,
    spec: Callable[[str], dict[str, Any]],
    collect: Callable[[str, dict[str, Any]], None],
    timeout: float,
    label: str,
) -> None:
    """``repeats`` rounds of one fresh subprocess per side, sides alternating within a round."""
    for repeat in range(repeats):
        for side in sides:
            try:
                collect(side, in_child(spec(side), timeout))
            except Exception as exc:
                for group in groups.values():
                    group.fail(side, _describe(exc))
        progress(f"{label} repeat {repeat + 1}/{repeats}")


def run_concurrent(sz: Sizes, missing: list[str], auto: bool) -> list[Group]:
    letter, how = ("c", "auto") if auto else ("b", "send()")
    sides = [PROCSTORE, STOCK] if auto else [PROCSTORE, STOCK, PSM]
    title = f"{letter}. {sz.concurrent:,} concurrent 5-state runs, {how}"
    key = f"concurrent_{'auto' if auto else 'send'}"
    wall = Group(f"{key}_s", f"{title}: wall", "s", False, sides)
    rss = Group(f"{key}_rss", f"{title}: peak RSS", "MiB", False, sides)
    setups: dict[str, list[float]] = {}

    def collect(side: str, result: dict[str, Any]) -> None:
        wall.add(side, result["seconds"])
        rss.add(side, result["peak_mib"])
        setups.setdefault(side, []).append(result["setup_mib"])

    run_children(
        {"wall": wall, "rss": rss},
        present(sides, missing),
        sz.concurrent_repeats,
        lambda side: {"kind": "concurrent", "side": side, "count": sz.concurrent, "auto": auto},
        collect,
        sz.timeout,
        f"{letter}.",
    )
    for side, xs in setups.items():
        rss.notes[side] = f"{statistics.median(xs):.0f} MiB once imported and set up"
    return [wall, rss]


def run_footprint(sz: Sizes, missing: list[str]) -> list[Group]:
    sides = [PROCSTORE, STOCK, PSM, SISMIC]
    group = Group(
        "waiting_bytes",
        "d. one live execution waiting for an event, in memory",
        "bytes",
        False,
        sides,
    )
    run_children(
        {"bytes": group},
        present(sides, missing),
        sz.live_repeats,
        lambda side: {"kind": "footprint", "side": side, "count": sz.live},
        lambda side, result: group.add(side, result["bytes"]),
        sz.timeout,
        "d.",
    )
    return [group]


def run_durable(sz: Sizes, missing: list[str], directory: str) -> list[Group]:
    normal, full = PROCSTORE_NORMAL, PROCSTORE_FULL
    shapes = {
        "sequential": f"1 execution of {sz.steps} steps",
        "concurrent": f"{sz.parallel} concurrent executions of {sz.steps} steps",
    }
    groups: dict[str, Group] = {}
    for shape, what in shapes.items():
        for sync, ours, peers in (("NORMAL", normal, [DBOS, DBOS_WAL]), ("FULL", full, [DBOS])):
            groups[f"{shape}-{sync}"] = Group(
                f"steps_{shape}_{sync.lower()}",
                f"e. persisted steps/s, SQLite file, {what}, procstore {sync}",
                "steps/s",
                True,
                [ours, *peers],
                reference=ours,
            )
    sizes = {"steps": sz.steps, "sequential": sz.sequential, "parallel": sz.parallel}

    def collect(side: str, result: dict[str, Any]) -> None:
        for group in groups.values():
            if side in group.sides:
                group.add(side, result[group.key.split("_")[1]])

    run_children(
        groups,
        present([normal, full, DBOS, DBOS_WAL], missing),
        sz.durable_repeats,
        lambda side: {"kind": "durable", "side": side, "dir": directory, "sizes": sizes},
        collect,
        sz.timeout,
        "e.",
    )
    return list(groups.values())


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- output


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f}"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def print_table(rows: list[Row], repeats: dict[str, int]) -> None:
    print(
        "Peers: the same work on every side, one run; figures are medians of repeats, "
        "procstore's repeats interleaved with the peers'."
    )
    print("ratio = procstore / side (µs, s, MiB, bytes: below 1 is better for procstore; steps/s:")
    print("above 1); vs stock = side / stock transitions; procstore = ahead of or behind it.\n")
    head = f"{'side':34} {'figure':>10} {'unit':8} {'ratio':>7} {'vs stock':>9}  procstore"
    name = ""
    for row in rows:
        if row.name != name:
            name = row.name
            print(f"{name} (median of {repeats.get(row.key, 0)})")
            print(head)
        verdict = {True: "ahead", False: "behind", None: ""}[row.ahead]
        figure = "error" if row.error else _figure(row.value, row.unit)
        print(
            f"  {row.label:32} {figure:>10} {row.unit:8} {_times(row.ratio):>7} "
            f"{_times(row.stock_ratio):>9}  {verdict}"
        )
        for extra in (row.note, row.error):
            if extra:
                print(f"      {extra}")
    print()


def environment(missing: list[str]) -> dict[str, Any]:
    distributions = ["procstore", "transitions", "python-statemachine", "sismic", "dbos"]
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": {d: version(d) for d in distributions},
        "missing": missing,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def filesystem(path: str) -> str:
    """The type of the filesystem ``path`` is on (FULL's fsync costs nothing on tmpfs):
    bench_persistence.py's own function, loaded from its file (perf/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "bench_persistence", Path(__file__).with_name("bench_persistence.py")
    )
    if spec is None or spec.loader is None:
        return "unknown"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return str(module.filesystem(path))


def print_header(env: dict[str, Any], quick: bool, directory: str) -> None:
    print("=== procstore beside its peers (issue 14, goal 5) ===")
    versions = ", ".join(f"{d} {v}" for d, v in env["versions"].items())
    print(f"{env['date']}; Python {env['python']}, SQLite {env['sqlite']}, {env['cpus']} CPUs")
    print(
        f"{versions}; {'quick' if quick else 'full'} run; "
        f"SQLite files in {directory} ({filesystem(directory)})"
    )
    if env["missing"]:
        print(
            f"!! NOT INSTALLED, their rows are empty: {', '.join(env['missing'])} "
            "(install the bench extra: pip install -e '.[bench]')"
        )
    print()


# --------------------------------------------------------------------------- main


async def run_in_process(sz: Sizes, missing: list[str], chosen: list[str]) -> list[Group]:
    return await run_transition(sz, missing) if "a" in chosen else []


def mark_missing(groups: list[Group], missing: list[str]) -> None:
    """A side whose library is not installed gets an error saying so, not an empty row."""
    for group in groups:
        for side in group.sides:
            if MODULES[side][1] in missing:
                group.fail(side, f"not installed: {MODULES[side][1]}")


def run(sz: Sizes, missing: list[str], chosen: list[str], directory: str) -> list[Group]:
    groups = asyncio.run(run_in_process(sz, missing, chosen))
    if "b" in chosen:
        groups += run_concurrent(sz, missing, auto=False)
    if "c" in chosen:
        groups += run_concurrent(sz, missing, auto=True)
    if "d" in chosen:
        groups += run_footprint(sz, missing)
    if "e" in chosen:
        groups += run_durable(sz, missing, directory)
    mark_missing(groups, missing)
    return groups


def repeats_of(sz: Sizes) -> dict[str, int]:
    counts = {"transition_us": sz.repeats, "waiting_bytes": sz.live_repeats}
    for key in ("concurrent_send", "concurrent_auto"):
        counts[f"{key}_s"] = counts[f"{key}_rss"] = sz.concurrent_repeats
    for shape in ("sequential", "concurrent"):
        for sync in ("normal", "full"):
            counts[f"steps_{shape}_{sync}"] = sz.durable_repeats
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", metavar="OUT", help="also write the rows as JSON to OUT")
    parser.add_argument("--dir", help="where to create the SQLite files (default: a temp dir)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="e.g. a,b (default all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0
    chosen = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: choose from {WORKLOADS}")
    sz = QUICK if args.quick else FULL
    missing = sorted({MODULES[s][1] for s in MODULES if not installed(s)})
    with tempfile.TemporaryDirectory(prefix="procstore-peers-", dir=args.dir) as scratch:
        env = environment(missing)
        print_header(env, args.quick, args.dir or tempfile.gettempdir())
        groups = run(sz, missing, chosen, scratch)
    rows = [row for group in groups for row in rows_of(group)]
    print_table(rows, repeats_of(sz))
    if args.json:
        document = {"environment": env, "rows": [asdict(r) for r in rows]}
        Path(args.json).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
