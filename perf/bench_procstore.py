"""procstore benchmarks: SPEC-007 Task 4, each beside the same work on a bare AsyncMachine.

Run from the repository root::

    .venv/bin/python perf/bench_procstore.py            # full run (about 2 minutes)
    .venv/bin/python perf/bench_procstore.py --quick    # smoke run with small sizes (tests use it)
    .venv/bin/python perf/bench_procstore.py --json out.json
    .venv/bin/python perf/bench_procstore.py --profile  # cProfile of the per-transition benchmark

Every procstore figure is measured in the same process, interleaved with the same work on a bare
``transitions.extensions.asyncio.AsyncMachine``; the ratio procstore/bare is what to read on a
shared, noisy machine. Each figure is the median of several repeats. The exit code is 0 even when
a target fails: this is a report, and FAIL is printed in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import transitions
from transitions.extensions.asyncio import AsyncMachine, HierarchicalAsyncMachine

try:  # the library may be half-written while this script is developed
    import procstore
    from procstore import ProcedureStore

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - reported in the table
    procstore = None  # type: ignore[assignment]
    ProcedureStore = None  # type: ignore[assignment,misc]
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

perf_counter = time.perf_counter


# --------------------------------------------------------------------------- sizes and rows


@dataclass(frozen=True)
class Sizes:
    repeats: int = 5  # every figure is the median of this many repeats
    loads: int = 100  # 1. procedures registered
    send_reset: int = 1000  # 2. send("next") + reset() iterations
    chain: int = 1000  # 2. states in the chain procedure
    chain_repeats: int = 7  # 2. the ratio target hangs on this one: more repeats
    nested_chain: int = 200  # 2. children of the compound state in the nested chain
    full: int = 100  # 3. full executions (start + 4 sends)
    parallel: tuple[int, ...] = (10, 1000)  # 4. executions run with asyncio.gather
    live_small: int = 10  # 5. live executions before the measured starts
    live_large: int = 10_000
    start_batch: int = 200  # 5. starts measured per repeat, on top of the live ones
    flat_repeats: int = 7  # 5. repeats (start() is cheap and its timing noisy)
    waiting: int = 2000  # 6. waiting executions whose memory tracemalloc counts
    many: int = 10_000  # 7. concurrent runs, each side in a fresh process
    many_repeats: int = 3  # 7. processes per side and mode (each a few seconds)
    timeout: float = 60.0  # seconds allowed to each procstore benchmark


FULL = Sizes()
QUICK = Sizes(
    repeats=3,
    loads=20,
    send_reset=100,
    chain=100,
    chain_repeats=3,
    nested_chain=50,
    full=20,
    parallel=(10, 100),
    live_large=1000,
    start_batch=50,
    flat_repeats=3,
    waiting=200,
    many=500,
    many_repeats=1,
    timeout=10.0,
)


@dataclass
class Row:
    key: str
    name: str
    value: float | None  # procstore figure
    unit: str
    baseline: float | None  # the same work on a bare AsyncMachine, same unit
    ratio: float | None  # value / baseline
    target: str
    passed: bool | None  # None: informational row, no target
    note: str = ""
    error: str = ""  # the procstore side raised or timed out (passed is then False)
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


async def _drain(rounds: int = 3) -> None:
    """Let background tasks (actions started by start()/send()) run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def _quiesce() -> None:
    gc.collect()


# --------------------------------------------------------------------------- documents


def bench_proc_doc() -> dict[str, Any]:
    states: dict[str, Any] = {
        f"s{i}": {
            "action": {"type": "noop"},
            "transitions": [{"event": "next", "target": f"s{i + 1}"}],
        }
        for i in range(1, 5)
    }
    states["s5"] = {}
    return {
        "name": "bench_proc",
        "version": "1.0",
        "definition": {"initial_state": "s1", "states": states},
    }


def auto_proc_doc() -> dict[str, Any]:
    """bench_proc with its transitions on ``success``: ``auto=True`` drives it to s5 alone."""
    doc = bench_proc_doc()
    doc["name"] = "bench_auto"
    for state in doc["definition"]["states"].values():
        for transition in state.get("transitions", ()):
            transition["event"] = "success"
    return doc


#: The guard every transition of the guarded chain carries, and the context it reads.
CHAIN_GUARD = "n >= 0"
CHAIN_GUARD_CONTEXT = {"n": 1}
#: The retry block every state of the retrying chain carries (nothing fails: bookkeeping only).
CHAIN_RETRY = {"max_attempts": 3, "interval_ms": 10, "backoff_rate": 2.0}


def chain_doc(
    n: int, *, guard: str | None = None, retry: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The chain s0 -> s1 -> ... -> s{n-1}; optionally a guard on every transition and a retry
    block on every state with an action."""
    transition: dict[str, Any] = {"event": "next"}
    if guard is not None:
        transition["guard"] = guard
    extra: dict[str, Any] = {} if retry is None else {"retry": retry}
    states: dict[str, Any] = {
        f"s{i}": {
            "action": {"type": "noop"},
            **extra,
            "transitions": [{**transition, "target": f"s{i + 1}"}],
        }
        for i in range(n - 1)
    }
    states[f"s{n - 1}"] = {}
    return {
        "name": "chain_proc",
        "version": "1.0",
        "definition": {"initial_state": "s0", "states": states},
    }


#: The compound state holding the nested chain (procstore path `phase.c0`, bare `phase_c0`).
NESTED_PARENT = "phase"


def nested_chain_doc(n: int) -> dict[str, Any]:
    """The chain c0 -> c1 -> ... -> c{n-1} inside the compound state NESTED_PARENT (the only
    top-level state): compiled to the hierarchical machine. The last child is terminal, which
    completes the parent and, the parent having no transitions, the execution."""
    children: dict[str, Any] = {
        f"c{i}": {
            "action": {"type": "noop"},
            "transitions": [{"event": "next", "target": f"c{i + 1}"}],
        }
        for i in range(n - 1)
    }
    children[f"c{n - 1}"] = {}
    return {
        "name": "nested_chain_proc",
        "version": "1.0",
        "definition": {
            "initial_state": NESTED_PARENT,
            "states": {NESTED_PARENT: {"initial_state": "c0", "states": children}},
        },
    }


def load_doc(i: int) -> dict[str, Any]:
    return {
        "name": f"load_test_{i}",
        "version": "1.0",
        "definition": {"initial_state": "s", "states": {"s": {}}},
    }


BENCH_STATES = ["s1", "s2", "s3", "s4", "s5"]


async def new_store() -> Any:
    store = ProcedureStore()
    await store.register(bench_proc_doc())
    return store


def _is_done(state: Any, final: str) -> bool:
    return state.current == final and str(getattr(state.status, "value", state.status)) == (
        "completed"
    )


# --------------------------------------------------------------------------- bare AsyncMachine


async def _noop_cb(event_data: Any) -> None:
    """The bare machine's stand-in for a noop action: one async on_enter callback."""


class BareModel:
    """A plain model object, added to the shared machine with add_model."""

    # set by AsyncMachine.add_model
    state: str
    trigger: Callable[..., Awaitable[bool]]

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self.context = {} if context is None else context


def _n_nonneg(event_data: Any) -> bool:
    """The bare machine's equivalent of the guard ``n >= 0``: a python condition callable."""
    return bool(event_data.model.context["n"] >= 0)


class SequentialAsyncMachine(AsyncMachine):
    """AsyncMachine awaiting callbacks one after another instead of one asyncio.gather per list.

    Only for the informational "vs sequential" row: a machine may run this way (procstore's
    design notes measure it ~2.6x cheaper), so that row isolates what procstore adds on top of
    the engine from what the engine's gathers cost.
    """

    async def callbacks(self, funcs: Any, event_data: Any) -> None:  # type: ignore[override]
        for func in funcs:
            await self.callback(func, event_data)

    @staticmethod
    async def await_all(callables: list[Callable[[], Any]]) -> list[Any]:
        return [await func() for func in callables]


def bare_machine(
    names: list[str],
    *,
    actions: int | None = None,
    cls: type[AsyncMachine] = AsyncMachine,
    condition: Callable[[Any], bool] | None = None,
) -> AsyncMachine:
    """One machine per procedure, as procstore compiles them: a `next` chain over `names`.

    Every state except the last gets an async on_enter callback (the noop action); `_reset`
    goes from anywhere back to the first state. `condition`, if given, guards every `next`.
    """
    last = len(names) - 1 if actions is None else actions
    states = [
        {"name": n, "on_enter": [_noop_cb]} if i < last else {"name": n}
        for i, n in enumerate(names)
    ]
    guard: dict[str, Any] = {} if condition is None else {"conditions": [condition]}
    trans = [
        {"trigger": "next", "source": names[i], "dest": names[i + 1], **guard}
        for i in range(len(names) - 1)
    ]
    trans.append({"trigger": "_reset", "source": "*", "dest": names[0]})
    return cls(
        model=None,
        states=states,
        transitions=trans,
        initial=names[0],
        auto_transitions=False,
        send_event=True,
    )


def bare_nested_machine(n: int) -> HierarchicalAsyncMachine:
    """The nested chain as a bare hierarchical machine: children c0..c{n-1} in a parent state
    with `initial`, an async on_enter on every child but the last (the ones with a noop action),
    a `next` transition between neighbours. transitions' own separator: `phase_c0`."""
    children = [
        {"name": f"c{i}", "on_enter": [_noop_cb]} if i < n - 1 else {"name": f"c{i}"}
        for i in range(n)
    ]
    trans = [
        {
            "trigger": "next",
            "source": f"{NESTED_PARENT}_c{i}",
            "dest": f"{NESTED_PARENT}_c{i + 1}",
        }
        for i in range(n - 1)
    ]
    return HierarchicalAsyncMachine(
        model=None,
        states=[{"name": NESTED_PARENT, "children": children, "initial": "c0"}],
        transitions=trans,
        initial=NESTED_PARENT,
        auto_transitions=False,
        send_event=True,
    )


# --------------------------------------------------------------------------- 1. load


async def ps_load(sz: Sizes) -> float:
    store = ProcedureStore()
    t0 = perf_counter()
    for i in range(1, sz.loads + 1):
        await store.register(load_doc(i))
    return (perf_counter() - t0) / sz.loads * 1e3  # ms per load


async def bare_load(sz: Sizes) -> float:
    t0 = perf_counter()
    for _ in range(sz.loads):
        AsyncMachine(model=None, states=["s"], initial="s", auto_transitions=False)
    return (perf_counter() - t0) / sz.loads * 1e3


# --------------------------------------------------------------------------- 2. transitions


async def ps_send_reset(sz: Sizes) -> tuple[float, float]:
    """Seed's loop: 1000 x (send next; reset). Returns (ms per send+reset, ms per send)."""
    store = await new_store()
    ex = await store.start("bench_proc", "1.0", {})
    await _drain()
    send_total = 0.0
    t0 = perf_counter()
    for _ in range(sz.send_reset):
        t1 = perf_counter()
        await ex.send("next")
        send_total += perf_counter() - t1
        await ex.reset()
    total = perf_counter() - t0
    return total / sz.send_reset * 1e3, send_total / sz.send_reset * 1e3


async def bare_send_reset(sz: Sizes) -> tuple[float, float]:
    machine = bare_machine(BENCH_STATES)
    model = BareModel()
    machine.add_model(model)
    send_total = 0.0
    t0 = perf_counter()
    for _ in range(sz.send_reset):
        t1 = perf_counter()
        await model.trigger("next")
        send_total += perf_counter() - t1
        await model.trigger("_reset")
    total = perf_counter() - t0
    return total / sz.send_reset * 1e3, send_total / sz.send_reset * 1e3


class ChainBench:
    """Per-transition cost: a chain s0 -> s1 -> ... driven by send("next").

    variant "plain": noop actions only; "guard": every transition carries the expression guard
    CHAIN_GUARD (the bare machine: an equivalent python condition on every transition);
    "retry": every state carries CHAIN_RETRY, nothing fails (the bare machine: plain).
    """

    def __init__(self, sz: Sizes, variant: str = "plain") -> None:
        if variant not in ("plain", "guard", "retry"):
            raise ValueError(f"unknown chain variant {variant!r}")
        self.n = sz.chain
        self.variant = variant
        self.store: Any = None
        self.machine: AsyncMachine | None = None
        self.seq_machine: AsyncMachine | None = None
        self.completed = True

    def _doc(self) -> dict[str, Any]:
        if self.variant == "guard":
            return chain_doc(self.n, guard=CHAIN_GUARD)
        if self.variant == "retry":
            return chain_doc(self.n, retry=CHAIN_RETRY)
        return chain_doc(self.n)

    def _context(self) -> dict[str, Any]:
        return dict(CHAIN_GUARD_CONTEXT) if self.variant == "guard" else {}

    async def ps(self, prof: Any = None) -> float:
        if self.store is None:
            self.store = ProcedureStore()
            await self.store.register(self._doc())
        ex = await self.store.start("chain_proc", "1.0", self._context())
        await _drain()
        sends = self.n - 1
        if prof is not None:
            prof.enable()
        t0 = perf_counter()
        for _ in range(sends):
            await ex.send("next")
        dt = perf_counter() - t0
        if prof is not None:
            prof.disable()
        if not _is_done(ex.state, f"s{self.n - 1}"):
            self.completed = False
        return dt / sends * 1e6  # µs per transition

    async def _bare_run(self, machine: AsyncMachine) -> float:
        model = BareModel(self._context())
        machine.add_model(model)
        sends = self.n - 1
        t0 = perf_counter()
        for _ in range(sends):
            await model.trigger("next")
        dt = perf_counter() - t0
        machine.remove_model(model)
        return dt / sends * 1e6

    async def bare(self) -> tuple[float, float]:
        """(plain AsyncMachine, AsyncMachine awaiting its callbacks in sequence), µs each."""
        names = [f"s{i}" for i in range(self.n)]
        if self.machine is None or self.seq_machine is None:
            condition = _n_nonneg if self.variant == "guard" else None
            self.machine = bare_machine(names, condition=condition)
            self.seq_machine = bare_machine(names, cls=SequentialAsyncMachine, condition=condition)
        return await self._bare_run(self.machine), await self._bare_run(self.seq_machine)


class NestedBench:
    """Per-transition cost of nesting: the chain inside a compound state (hierarchical machine)
    and, in the same repeat, a flat chain of the same length (flat machine).

    ps() returns (nested, flat) procstore figures; bare() returns (HierarchicalAsyncMachine,
    AsyncMachine) figures; µs per transition each.
    """

    def __init__(self, sz: Sizes) -> None:
        self.n = sz.nested_chain
        self.nested_store: Any = None
        self.flat_store: Any = None
        self.nested_machine: HierarchicalAsyncMachine | None = None
        self.flat_machine: AsyncMachine | None = None
        self.completed = True

    async def _ps_run(self, store: Any, name: str, final: str) -> float:
        ex = await store.start(name, "1.0", {})
        await _drain()
        sends = self.n - 1
        t0 = perf_counter()
        for _ in range(sends):
            await ex.send("next")
        dt = perf_counter() - t0
        if not _is_done(ex.state, final):
            self.completed = False
        return dt / sends * 1e6  # µs per transition

    async def ps(self) -> tuple[float, float]:
        if self.nested_store is None or self.flat_store is None:
            self.nested_store = ProcedureStore()
            await self.nested_store.register(nested_chain_doc(self.n))
            self.flat_store = ProcedureStore()
            await self.flat_store.register(chain_doc(self.n))
        nested = await self._ps_run(
            self.nested_store, "nested_chain_proc", f"{NESTED_PARENT}.c{self.n - 1}"
        )
        _quiesce()
        flat = await self._ps_run(self.flat_store, "chain_proc", f"s{self.n - 1}")
        return nested, flat

    async def _bare_run(self, machine: AsyncMachine) -> float:
        model = BareModel()
        machine.add_model(model)
        sends = self.n - 1
        t0 = perf_counter()
        for _ in range(sends):
            await model.trigger("next")
        dt = perf_counter() - t0
        machine.remove_model(model)
        return dt / sends * 1e6

    async def bare(self) -> tuple[float, float]:
        if self.nested_machine is None or self.flat_machine is None:
            self.nested_machine = bare_nested_machine(self.n)
            self.flat_machine = bare_machine([f"s{i}" for i in range(self.n)])
        nested = await self._bare_run(self.nested_machine)
        _quiesce()
        return nested, await self._bare_run(self.flat_machine)


# --------------------------------------------------------------------------- 3. full


class FullBench:
    def __init__(self, sz: Sizes) -> None:
        self.sz = sz
        self.store: Any = None
        self.machine: AsyncMachine | None = None
        self.incomplete = 0

    async def ps(self) -> float:
        if self.store is None:
            self.store = await new_store()
        store = self.store
        total = 0.0
        for _ in range(self.sz.full):
            t0 = perf_counter()
            ex = await store.start("bench_proc", "1.0", {})
            for _ in range(4):
                await ex.send("next")
            total += perf_counter() - t0
            if not _is_done(ex.state, "s5"):
                self.incomplete += 1
        return total / self.sz.full * 1e3  # ms per execution

    async def bare(self) -> float:
        if self.machine is None:
            self.machine = bare_machine(BENCH_STATES)
        machine = self.machine
        total = 0.0
        for _ in range(self.sz.full):
            t0 = perf_counter()
            model = BareModel()
            machine.add_model(model)
            for _ in range(4):
                await model.trigger("next")
            machine.remove_model(model)
            total += perf_counter() - t0
        return total / self.sz.full * 1e3


# --------------------------------------------------------------------------- 4. concurrent


class ConcurrentBench:
    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.completed: list[int] = []
        self.bare_completed: list[int] = []

    async def ps(self) -> float:
        store = await new_store()

        async def one(i: int) -> Any:
            ex = await store.start("bench_proc", "1.0", {"id": i})
            for _ in range(4):
                await ex.send("next")
            return ex.state

        _quiesce()
        t0 = perf_counter()
        states = await asyncio.gather(*(one(i) for i in range(self.parallel)))
        dt = perf_counter() - t0
        self.completed.append(sum(_is_done(s, "s5") for s in states))
        return dt * 1e3  # ms wall for all

    async def bare(self) -> float:
        machine = bare_machine(BENCH_STATES)

        async def one(i: int) -> str:
            model = BareModel()
            machine.add_model(model)
            for _ in range(4):
                await model.trigger("next")
            machine.remove_model(model)
            return model.state

        _quiesce()
        t0 = perf_counter()
        states = await asyncio.gather(*(one(i) for i in range(self.parallel)))
        dt = perf_counter() - t0
        self.bare_completed.append(sum(s == "s5" for s in states))
        return dt * 1e3


# --------------------------------------------------------------------------- 5. start flatness


class StartFlatness:
    """Per-execution start() cost with few and with many live (unfinished) executions."""

    def __init__(self, sz: Sizes) -> None:
        self.sz = sz
        self.large_store: Any = None
        self.large_machine: AsyncMachine | None = None
        self.prefill_s: float | None = None
        self.live: list[Any] = []
        self.bare_live: list[Any] = []

    async def _prefill(self, store: Any, n: int) -> list[Any]:
        live = []
        for i in range(n):
            live.append(await store.start("bench_proc", "1.0", {"i": i}))
            if i % 100 == 99:
                await _drain(1)
        await _drain()
        return live

    async def _time_starts(self, store: Any, keep: list[Any]) -> float:
        k = self.sz.start_batch
        _quiesce()
        t0 = perf_counter()
        for i in range(k):
            keep.append(await store.start("bench_proc", "1.0", {"i": i}))
        await _drain()
        return (perf_counter() - t0) / k * 1e6  # µs per start

    async def ps_small(self) -> float:
        store = await new_store()
        live = await self._prefill(store, self.sz.live_small)
        return await self._time_starts(store, live)

    async def ps_large(self) -> float:
        if self.large_store is None:
            store = await new_store()
            t0 = perf_counter()
            self.live = await self._prefill(store, self.sz.live_large)
            self.prefill_s = perf_counter() - t0
            self.large_store = store
        return await self._time_starts(self.large_store, self.live)

    def _bare_time_adds(self, machine: AsyncMachine, keep: list[Any]) -> float:
        k = self.sz.start_batch
        _quiesce()
        t0 = perf_counter()
        for _ in range(k):
            model = BareModel()
            machine.add_model(model)
            keep.append(model)
        return (perf_counter() - t0) / k * 1e6

    async def bare_small(self) -> float:
        machine = bare_machine(BENCH_STATES)
        live: list[Any] = []
        for _ in range(self.sz.live_small):
            model = BareModel()
            machine.add_model(model)
            live.append(model)
        return self._bare_time_adds(machine, live)

    async def bare_large(self) -> float:
        if self.large_machine is None:
            self.large_machine = bare_machine(BENCH_STATES)
            self.bare_live = []
            for _ in range(self.sz.live_large):
                model = BareModel()
                self.large_machine.add_model(model)
                self.bare_live.append(model)
        return self._bare_time_adds(self.large_machine, self.bare_live)

    async def run(
        self, have: bool
    ) -> tuple[list[float], list[float], list[float], list[float], str, str]:
        """Interleave the four measures round by round, so drift hits them alike."""
        ps_small: list[float] = []
        ps_large: list[float] = []
        b_small: list[float] = []
        b_large: list[float] = []
        err_s = err_l = "" if have else "procstore not importable"

        async def guard(fn: Measure, out: list[float]) -> str:
            try:
                out.append(await asyncio.wait_for(fn(), self.sz.timeout))
            except Exception as exc:
                return _describe(exc)
            return ""

        for _ in range(self.sz.flat_repeats):
            if not err_s:
                err_s = await guard(self.ps_small, ps_small)
            if not err_l:
                err_l = await guard(self.ps_large, ps_large)
            b_small.append(await self.bare_small())
            b_large.append(await self.bare_large())
        return ps_small, ps_large, b_small, b_large, err_s, err_l

    def release(self) -> None:
        self.large_store = None
        self.large_machine = None
        self.live = []
        self.bare_live = []


# --------------------------------------------------------------------------- 6. waiting memory


async def ps_waiting_bytes(sz: Sizes) -> float:
    """Bytes (tracemalloc) per execution of bench_proc started and waiting for ``next``."""
    store = await new_store()
    keep = [await store.start("bench_proc", "1.0", {}) for _ in range(10)]  # warm up
    await _drain(5)
    _quiesce()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(sz.waiting):
            keep.append(await store.start("bench_proc", "1.0", {}))
        await _drain(5)
        _quiesce()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if not all(ex.current == "s1" and ex.status.value == "running" for ex in keep):
        raise AssertionError("an execution is not waiting in s1")
    return (after - before) / sz.waiting


async def bare_waiting_bytes(sz: Sizes) -> float:
    """Bytes (tracemalloc) per model added to one bare machine with add_model."""
    machine = bare_machine(BENCH_STATES)
    keep: list[BareModel] = []
    _quiesce()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(sz.waiting):
            model = BareModel()
            machine.add_model(model)
            keep.append(model)
        _quiesce()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / sz.waiting


# --------------------------------------------------------------------------- 7. many at once

#: The two ways row 7 drives its runs: ``send()`` (bench_proc, 4 sends each), and ``auto``
#: (bench_auto: ``start(auto=True)``, then ``run_to_completion()``).
MANY_MODES = ("send", "auto")


async def _many_ps(mode: str, n: int) -> tuple[float, int]:
    store = ProcedureStore()
    name = "bench_proc" if mode == "send" else "bench_auto"
    await store.register(bench_proc_doc() if mode == "send" else auto_proc_doc())

    async def one(i: int) -> bool:
        # Only where it ended is kept, as the bare side keeps its model's state.
        if mode == "auto":
            ex = await store.start(name, "1.0", {"id": i}, auto=True)
            await ex.run_to_completion()
        else:
            ex = await store.start(name, "1.0", {"id": i})
            for _ in range(4):
                await ex.send("next")
        return ex.current == "s5" and ex.status.value == "completed"

    _quiesce()
    t0 = perf_counter()
    ended = await asyncio.gather(*(one(i) for i in range(n)))
    wall = perf_counter() - t0
    return wall * 1e3, sum(ended)


async def _many_bare(n: int) -> tuple[float, int]:
    machine = bare_machine(BENCH_STATES)

    async def one() -> str:
        model = BareModel()
        machine.add_model(model)
        for _ in range(4):
            await model.trigger("next")
        machine.remove_model(model)
        return model.state

    _quiesce()
    t0 = perf_counter()
    states = await asyncio.gather(*(one() for _ in range(n)))
    return (perf_counter() - t0) * 1e3, sum(s == "s5" for s in states)


def many_child(side: str, mode: str, n: int) -> None:
    """Row 7's work for one side in this (fresh) process; prints wall ms, completed runs and
    peak RSS (MiB) as JSON."""
    if side == "ps":
        wall, done = asyncio.run(_many_ps(mode, n))
    else:
        wall, done = asyncio.run(_many_bare(n))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"wall_ms": wall, "done": done, "rss_mib": rss_mib}))


def _many_run(side: str, mode: str, sz: Sizes) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--many-child", side, mode, str(sz.many)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=sz.timeout * 5)
    if out.returncode != 0:
        raise RuntimeError(f"{side} {mode} child failed: {out.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def many_rows(sz: Sizes) -> list[Row]:
    """Row 7: wall and peak RSS of ``sz.many`` concurrent runs, each side and repeat in a
    fresh process (peak RSS is per process), procstore and bare alternating."""
    rows = []
    for mode in MANY_MODES:
        ps: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        error = ""
        for _ in range(sz.many_repeats):
            if not error:
                try:
                    ps.append(_many_run("ps", mode, sz))
                except Exception as exc:
                    error = _describe(exc)
            bare.append(_many_run("bare", mode, sz))
        done = min((r["done"] for r in ps), default=0)
        what = "4 sends each" if mode == "send" else "auto=True + run_to_completion()"
        note = f"completed {done}/{sz.many}; bare: 4 triggers each, add_model/remove_model"
        rows.append(
            make_row(
                f"many_{mode}",
                f"7. {sz.many:,} concurrent runs, {what}: wall",
                "ms",
                [r["wall_ms"] for r in ps],
                [r["wall_ms"] for r in bare],
                "ratio <= 1.0",
                lambda v, r, done=done: r is not None and r <= 1.0 and done == sz.many,
                note=note,
                error=error,
            )
        )
        rows.append(
            make_row(
                f"many_{mode}_rss",
                f"7. {sz.many:,} concurrent runs, {what}: peak RSS",
                "MiB",
                [r["rss_mib"] for r in ps],
                [r["rss_mib"] for r in bare],
                "ratio <= 1.5",
                lambda v, r: r is not None and r <= 1.5,
                note="each side in a fresh process (same script and imports)",
                error=error,
            )
        )
    return rows


# --------------------------------------------------------------------------- running


Measure = Callable[[], Awaitable[Any]]


async def paired(
    sz: Sizes, ps: Measure | None, bare: Measure, repeats: int | None = None
) -> tuple[list[Any], list[Any], str]:
    """Run ps and bare alternately `repeats` times; returns (ps samples, bare samples, error)."""
    ps_samples: list[Any] = []
    bare_samples: list[Any] = []
    error = ""
    for _ in range(repeats or sz.repeats):
        if ps is not None and not error:
            _quiesce()
            try:
                ps_samples.append(await asyncio.wait_for(ps(), sz.timeout))
            except Exception as exc:
                error = _describe(exc)
        _quiesce()
        bare_samples.append(await bare())
    if ps is None:
        error = "procstore not importable"
    return ps_samples, bare_samples, error


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _verdict(ok: bool) -> Callable[[float, float | None], bool]:
    """A check that ignores the timing: the target is about correctness."""
    return lambda value, ratio: ok


def make_row(
    key: str,
    name: str,
    unit: str,
    ps_samples: list[float],
    bare_samples: list[float],
    target: str,
    check: Callable[[float, float | None], bool] | None,
    note: str = "",
    error: str = "",
) -> Row:
    value = _median(ps_samples)
    base = _median(bare_samples)
    ratio = _ratio(value, base)
    passed: bool | None
    if error or value is None:
        passed = False if check is not None or error else None
    else:
        passed = check(value, ratio) if check is not None else None
    return Row(
        key, name, value, unit, base, ratio, target, passed, note, error, ps_samples, bare_samples
    )


async def run_all(sz: Sizes) -> list[Row]:
    have = ProcedureStore is not None
    rows: list[Row] = []

    def log(msg: str) -> None:
        print(f"  .. {msg}", file=sys.stderr, flush=True)

    # 1. load
    log(f"1. load {sz.loads} procedures")
    p, b, err = await paired(sz, (lambda: ps_load(sz)) if have else None, lambda: bare_load(sz))
    rows.append(
        make_row(
            "load",
            f"1. procedure load (avg of {sz.loads})",
            "ms",
            p,
            b,
            "< 10 ms",
            lambda v, r: v < 10,
            error=err,
        )
    )

    # 2. send + reset
    log(f"2. {sz.send_reset} x (send + reset)")
    p2, b2, err = await paired(
        sz, (lambda: ps_send_reset(sz)) if have else None, lambda: bare_send_reset(sz)
    )
    rows.append(
        make_row(
            "send_reset",
            f"2. transition: send+reset (x{sz.send_reset})",
            "ms",
            [x[0] for x in p2],
            [x[0] for x in b2],
            "< 5 ms",
            lambda v, r: v < 5,
            error=err,
        )
    )
    rows.append(
        make_row(
            "send",
            "2. transition: send only (same loop)",
            "ms",
            [x[1] for x in p2],
            [x[1] for x in b2],
            "< 5 ms",
            lambda v, r: v < 5,
            error=err,
        )
    )

    # 2. per-transition chain
    log(f"2. chain of {sz.chain} states")
    chain = ChainBench(sz)
    p, b, err = await paired(sz, chain.ps if have else None, chain.bare, sz.chain_repeats)
    rows.append(
        make_row(
            "per_transition",
            f"2. per transition ({sz.chain}-state chain)",
            "µs",
            p,
            [x[0] for x in b],
            "ratio <= 2.0",
            lambda v, r: r is not None and r <= 2.0,
            note="" if chain.completed else "chain did not end completed",
            error=err,
        )
    )
    rows.append(
        make_row(
            "per_transition_sequential",
            "2. per transition vs a sequential-callback machine",
            "µs",
            p,
            [x[1] for x in b],
            "",
            None,
            note="info: baseline awaits callbacks in turn instead of asyncio.gather",
            error=err,
        )
    )
    del chain

    # 2. per transition with guards / with retry bookkeeping
    plain = _median(p)  # the plain chain's procstore figure, from the rows above
    variants = (
        ("guard", f"guard `{CHAIN_GUARD}`", "bare: a python condition on each transition"),
        ("retry", "retry block", "no failures: retry bookkeeping only; bare: no retry"),
    )
    for variant, what, info in variants:
        log(f"2. chain of {sz.chain} states, {what} on each")
        chain = ChainBench(sz, variant)
        p, b, err = await paired(sz, chain.ps if have else None, chain.bare, sz.chain_repeats)
        cost = _ratio(_median(p), plain)
        note = info if cost is None else f"{info}; {cost:.2f}x procstore's plain chain"
        if not chain.completed:
            note += "; chain did not end completed"
        rows.append(
            make_row(
                f"per_transition_{variant}",
                f"2. per transition, {what} on each ({sz.chain}-state chain)",
                "µs",
                p,
                [x[0] for x in b],
                "ratio <= 2.0",
                lambda v, r: r is not None and r <= 2.0,
                note=note,
                error=err,
            )
        )
        del chain

    # 2. per transition in a compound state, and what nesting costs against flat
    log(f"2. chain of {sz.nested_chain} states in a compound state, and flat")
    nested = NestedBench(sz)
    p, b, err = await paired(sz, nested.ps if have else None, nested.bare, sz.chain_repeats)
    rows.append(
        make_row(
            "per_transition_nested",
            f"2. per transition, nested ({sz.nested_chain}-state chain in a compound state)",
            "µs",
            [x[0] for x in p],
            [x[0] for x in b],
            "ratio <= 2.0",
            lambda v, r: r is not None and r <= 2.0,
            note="bare: HierarchicalAsyncMachine"
            + ("" if nested.completed else "; chain did not end completed"),
            error=err,
        )
    )
    # Each repeat times nested and flat back to back: the ratio is taken per repeat.
    flat_bare = _median([x[1] for x in b])
    ps_ratios = [r for x in p if (r := _ratio(x[0], x[1])) is not None]
    bare_ratios = [r for x in b if (r := _ratio(x[0], x[1])) is not None]
    rows.append(
        Row(
            "nested_vs_flat",
            f"2. nested / flat per transition ({sz.nested_chain}-state chains)",
            _median(ps_ratios),
            "x",
            _median(bare_ratios),
            None,
            "",
            None if not err else False,
            note="info: bare = HierarchicalAsyncMachine / AsyncMachine (issue: ~1.7x); flat "
            f"chain {_fmt(_median([x[1] for x in p]), 'µs')} (bare {_fmt(flat_bare, 'µs')})",
            error=err,
            samples=ps_ratios,
            baseline_samples=bare_ratios,
        )
    )
    del nested

    # 3. full execution
    log(f"3. {sz.full} full executions")
    full = FullBench(sz)
    p, b, err = await paired(sz, full.ps if have else None, full.bare)
    incomplete = full.incomplete
    del full
    rows.append(
        make_row(
            "full",
            f"3. full procedure: start + 4 sends (avg of {sz.full})",
            "ms",
            p,
            b,
            "< 100 ms",
            lambda v, r: v < 100 and incomplete == 0,
            note=f"{incomplete} executions did not complete" if incomplete else "",
            error=err,
        )
    )

    # 4. concurrent
    for par in sz.parallel:
        log(f"4. {par} parallel executions")
        conc = ConcurrentBench(par)
        p, b, err = await paired(sz, conc.ps if have else None, conc.bare)
        done = min(conc.completed) if conc.completed else 0
        bdone = min(conc.bare_completed) if conc.bare_completed else 0
        all_done = done == par
        del conc
        rows.append(
            make_row(
                f"concurrent_{par}",
                f"4. {par} parallel x (start + 4 sends), wall",
                "ms",
                p,
                b,
                f"all {par} complete",
                _verdict(all_done),
                note=f"completed {done}/{par} (bare {bdone}/{par})",
                error=err,
            )
        )

    # 5. start flatness
    log(f"5. start() cost at {sz.live_small} and {sz.live_large} live executions")
    flat = StartFlatness(sz)
    ps_small, ps_large, b_small, b_large, err_s, err_l = await flat.run(have)
    prefill = flat.prefill_s
    flat.release()
    del flat
    _quiesce()
    rows.append(
        make_row(
            "start_small",
            f"5. start() with {sz.live_small} live (bare: add_model)",
            "µs",
            ps_small,
            b_small,
            "",
            None,
            error=err_s,
        )
    )
    rows.append(
        make_row(
            "start_large",
            f"5. start() with {sz.live_large:,} live (bare: add_model)",
            "µs",
            ps_large,
            b_large,
            "",
            None,
            note=f"prefill {sz.live_large:,} starts took {prefill:.2f} s" if prefill else "",
            error=err_l,
        )
    )
    small, large = _median(ps_small), _median(ps_large)
    bsmall, blarge = _median(b_small), _median(b_large)
    flat_value = _ratio(large, small)
    flat_base = _ratio(blarge, bsmall)
    err = err_s or err_l
    rows.append(
        Row(
            "start_flatness",
            f"5. start flatness ({sz.live_large:,} live / {sz.live_small} live)",
            flat_value,
            "x",
            flat_base,
            None,
            "<= 1.5x",
            (flat_value is not None and flat_value <= 1.5) if not err else False,
            error=err,
        )
    )

    # 6. memory of a waiting execution
    log(f"6. memory of {sz.waiting} waiting executions (tracemalloc)")
    p, b, err = await paired(
        sz, (lambda: ps_waiting_bytes(sz)) if have else None, lambda: bare_waiting_bytes(sz)
    )
    rows.append(
        make_row(
            "waiting_bytes",
            "6. memory per waiting execution (bare: a model added with add_model)",
            "B",
            p,
            b,
            "<= 2048 B",
            lambda v, r: v <= 2048,
            note="tracemalloc; bench_proc started, its action done, waiting for `next`",
            error=err,
        )
    )

    # 7. many concurrent runs, each side in a fresh process
    log(f"7. {sz.many:,} concurrent runs, send() and auto, fresh processes")
    if have:
        rows += many_rows(sz)
    return rows


# --------------------------------------------------------------------------- output


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.2f}x"
    if v >= 100:
        return f"{v:,.0f} {unit}"
    if v >= 10:
        return f"{v:.1f} {unit}"
    if v >= 1:
        return f"{v:.2f} {unit}"
    return f"{v:.3f} {unit}"


def print_table(rows: list[Row]) -> None:
    headers = ["benchmark", "procstore", "bare AsyncMachine", "ratio", "target", "result"]
    body = []
    for r in rows:
        if r.error:
            result = "ERROR"
        else:
            result = "PASS" if r.passed else ("info" if r.passed is None else "FAIL")
        body.append(
            [
                r.name,
                _fmt(r.value, r.unit),
                _fmt(r.baseline, r.unit),
                "-" if r.ratio is None else f"{r.ratio:.2f}x",
                r.target or "-",
                result,
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
    right = {1, 2, 3}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        )

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for cells in body:
        print(line(cells))
    notes = [(r.name, "; ".join(x for x in (r.error, r.note) if x)) for r in rows]
    notes = [(name, note) for name, note in notes if note]
    if notes:
        print()
        for name, note in notes:
            print(f"  {name}: {note}")
    failed = [r for r in rows if r.passed is False]
    print()
    if failed:
        print(f"FAIL: {len(failed)} of {sum(r.passed is not None for r in rows)} targets missed:")
        for r in failed:
            print(f"  {'ERROR' if r.error else 'FAIL '}  {r.name}")
    else:
        print(f"all {sum(r.passed is not None for r in rows)} targets PASS")


def header(sz: Sizes, quick: bool) -> None:
    version = getattr(procstore, "__version__", "?") if procstore is not None else "not importable"
    print("=== procstore benchmarks (SPEC-007 Task 4) vs bare transitions.AsyncMachine ===")
    if _IMPORT_ERROR:
        print(f"!! procstore not importable ({_IMPORT_ERROR}): only the baselines ran")
    print(
        f"python {platform.python_version()}, transitions {transitions.__version__}, "
        f"procstore {version}, {platform.machine()}; "
        f"{'quick' if quick else 'full'} run, median of {sz.repeats} repeats, "
        "procstore and bare interleaved"
    )
    print()


async def profile_chain(sz: Sizes, top: int) -> None:
    import cProfile
    import pstats

    chain = ChainBench(sz)
    plain = [await chain.ps() for _ in range(3)]  # also registers + compiles, unprofiled
    bare = [await chain.bare() for _ in range(3)]
    prof = cProfile.Profile()
    profiled = await chain.ps(prof)
    print(
        f"{sz.chain}-state chain, per transition: procstore {statistics.median(plain):.1f} µs, "
        f"bare AsyncMachine {statistics.median(b[0] for b in bare):.1f} µs, sequential-callback "
        f"machine {statistics.median(b[1] for b in bare):.1f} µs (unprofiled, median of 3); "
        f"{profiled:.1f} µs under cProfile.\ncProfile covers the {sz.chain - 1} send() calls only."
    )
    for key in ("tottime", "cumulative"):
        print(f"\n--- top {top} by {key} ---")
        pstats.Stats(prof).strip_dirs().sort_stats(key).print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", metavar="OUT", help="write the rows as a JSON list to OUT")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile the per-transition benchmark only"
    )
    ap.add_argument("--top", type=int, default=30, help="rows of --profile output")
    ap.add_argument("--many-child", nargs=3, metavar=("SIDE", "MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.many_child:
        side, mode, n = args.many_child
        many_child(side, mode, int(n))
        return 0
    sz = QUICK if args.quick else FULL

    if args.profile:
        if ProcedureStore is None:
            print(f"procstore not importable: {_IMPORT_ERROR}")
            return 0
        asyncio.run(profile_chain(sz, args.top))
        return 0

    header(sz, args.quick)
    t0 = perf_counter()
    rows = asyncio.run(run_all(sz))
    print_table(rows)
    print(f"\n(total {perf_counter() - t0:.1f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([asdict(r) for r in rows], fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
