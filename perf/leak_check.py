"""Run many executions to completion and check that nothing they used is left behind.

    .venv/bin/python perf/leak_check.py [--executions 100000]

Checks, after the executions finished and were dropped: no Execution object is alive, no
asyncio task is left, the compiled machine has no models attached, transitions' class-wide
``AsyncMachine.async_tasks`` map is empty, and resident memory grew by less than a bound.
Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time

from transitions.extensions.asyncio import AsyncMachine

from procstore import Event, ProcedureStore
from procstore.runtime import Execution

PROCEDURE = {
    "name": "leak_check",
    "version": "1.0",
    "definition": {
        "initial_state": "work",
        "states": {
            "work": {
                "action": {"type": "function", "function": "choose"},
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "retry", "target": "work"},
                    {"event": "error", "target": "failed"},
                ],
            },
            "done": {"action": {"type": "noop"}},
            "failed": {"outcome": "failure"},
        },
    },
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(executions: int, batch: int) -> int:
    store = ProcedureStore()

    @store.action("choose")
    def choose(context: dict) -> object:
        n = context["n"]
        if n % 3 == 1:
            raise ValueError("odd one out")
        return Event("success")

    await store.register(PROCEDURE)
    baseline_tasks = len(asyncio.all_tasks())
    started = time.perf_counter()
    rss_before = None
    for offset in range(0, executions, batch):
        batch_executions = [
            await store.start("leak_check", context={"n": n}, auto=True)
            for n in range(offset, min(offset + batch, executions))
        ]
        await asyncio.gather(*(ex.run_to_completion(timeout=30) for ex in batch_executions))
        del batch_executions
        if rss_before is None:
            gc.collect()
            rss_before = _rss_mib()
    elapsed = time.perf_counter() - started
    gc.collect()
    compiled = store._compiled("leak_check", "1.0")
    live = sum(1 for obj in gc.get_objects() if isinstance(obj, Execution))
    checks = {
        "live Execution objects": (live, live == 0),
        "asyncio tasks left": (len(asyncio.all_tasks()) - baseline_tasks, None),
        "machine.models": (len(compiled.machine.models), len(compiled.machine.models) == 0),
        "AsyncMachine.async_tasks entries": (
            len(AsyncMachine.async_tasks),
            len(AsyncMachine.async_tasks) == 0,
        ),
        "tracked executions in the store": (
            len(store._executions),
            len(store._executions) == 0,
        ),
        "max RSS growth after first batch (MiB)": (
            round(_rss_mib() - (rss_before or 0), 1),
            _rss_mib() - (rss_before or 0) < 50,
        ),
    }
    tasks_left = checks["asyncio tasks left"][0]
    checks["asyncio tasks left"] = (tasks_left, tasks_left == 0)
    print(f"{executions} executions in {elapsed:.1f} s ({elapsed / executions * 1e6:.0f} µs each)")
    ok = True
    for name, (value, passed) in checks.items():
        ok &= bool(passed)
        print(f"  {name:<42} {value!s:>8}  {'PASS' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.executions, args.batch)))
