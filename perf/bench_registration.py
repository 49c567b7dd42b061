"""Registration time of large definitions: is validate + compile near-linear in the states?

``store.register()`` of generated definitions with 1k, 2k, 4k and 8k states, in three shapes:

- ``parallel``: one parallel state whose regions each hold one leaf;
- ``parallels``: a chain of parallel states, each with two regions of one leaf;
- ``compound``: a chain of compound states, each with one leaf.

Prints, per shape and size, the median registration time and its ratio to the previous size
(near-linear: about 2x per doubling; quadratic: about 4x), then per shape the growth from the
smallest to the largest size against the growth of the size (8x for 1k -> 8k: near-linear is
about 8-12x, quadratic 64x). The machines are shared and noisy: read the overall growth. A
report, not a test: exit code 0.

    .venv/bin/python perf/bench_registration.py            # 1k, 2k, 4k, 8k
    .venv/bin/python perf/bench_registration.py --quick    # 500, 1k, 2k
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from procstore import ProcedureStore


def parallel_doc(n: int) -> dict[str, Any]:
    """One parallel state of n/2 regions, each with one leaf: n states in all."""
    regions = {f"r{i}": {"initial_state": "s", "states": {"s": {}}} for i in range(n // 2)}
    return _doc({"p": {"parallel": regions}}, "p")


def parallels_doc(n: int) -> dict[str, Any]:
    """n/5 parallel states in a chain, each with two regions of one leaf: n states in all."""
    count = n // 5
    states: dict[str, Any] = {}
    for i in range(count):
        region = {"initial_state": "s", "states": {"s": {}}}
        state: dict[str, Any] = {"parallel": {"a": region, "b": region}}
        if i + 1 < count:
            state["transitions"] = [{"event": "next", "target": f"p{i + 1}"}]
        states[f"p{i}"] = state
    return _doc(states, "p0")


def compound_doc(n: int) -> dict[str, Any]:
    """n/2 compound states in a chain, each with one leaf: n states in all."""
    count = n // 2
    states: dict[str, Any] = {}
    for i in range(count):
        state: dict[str, Any] = {"initial_state": "s", "states": {"s": {}}}
        if i + 1 < count:
            state["transitions"] = [{"event": "next", "target": f"c{i + 1}"}]
        states[f"c{i}"] = state
    return _doc(states, "c0")


def _doc(states: dict[str, Any], initial: str) -> dict[str, Any]:
    return {
        "name": "big",
        "version": "1.0",
        "definition": {"initial_state": initial, "states": states},
    }


SHAPES: dict[str, Callable[[int], dict[str, Any]]] = {
    "parallel": parallel_doc,
    "parallels": parallels_doc,
    "compound": compound_doc,
}


async def register_seconds(doc: dict[str, Any]) -> float:
    store = ProcedureStore()
    began = time.perf_counter()
    await store.register(doc)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 500, 1k, 2k")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per size (median)")
    args = parser.parse_args()
    sizes = [500, 1000, 2000] if args.quick else [1000, 2000, 4000, 8000]
    print(f"{'shape':<10} {'states':>7} {'register':>10} {'x previous':>11}")
    growth: dict[str, float] = {}
    for shape, make in SHAPES.items():
        previous = first = None
        for n in sizes:
            doc = make(n)
            seconds = statistics.median(
                asyncio.run(register_seconds(doc)) for _ in range(args.repeat)
            )
            ratio = f"{seconds / previous:.2f}x" if previous else "-"
            print(f"{shape:<10} {n:>7} {seconds * 1000:>8.0f} ms {ratio:>11}", flush=True)
            previous = seconds
            first = first or seconds
        growth[shape] = seconds / first
    for shape, factor in growth.items():
        print(
            f"{shape}: {sizes[0]} -> {sizes[-1]} states ({sizes[-1] // sizes[0]}x): {factor:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
