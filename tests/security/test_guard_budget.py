"""A guard expression evaluates within a budget: never a hang, never a frozen event loop.

Every operation of a guard is cheap on its own, yet a few of them can build a structure of
10^15 items that is then walked, or hand a built-in a gigantic argument (``round(1, -10**9)``
computes 10^(10^9)). One such guard would stop every execution in the process, so evaluation
counts steps: each syntax node, each item of every value the guard builds, each item a call or a
comparison goes through. A guard over budget raises, which records a ``guard_error`` and blocks
its transition, like any guard that raises.

The hostile guards run in a child process with a timeout and capped memory, so that an
evaluation that would take hours or eat the machine fails the test instead.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from procstore import ProcedureStore
from procstore.guards import MAX_GUARD_STEPS, MAX_INT_BITS
from tests.conftest import make_doc, python_child, records, within

#: Run in the child: register a procedure whose `go` transition carries the guard, start it
#: with the context, send `go`, print what happened as JSON.
_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from procstore import ProcedureStore

    if sys.argv[3] == "unlimited-digits":
        sys.set_int_max_str_digits(0)  # a host may lift CPython's own limit
    guard, context = sys.argv[1], json.loads(sys.argv[2])

    async def main():
        store = ProcedureStore()
        await store.register({
            "name": "p", "version": "1.0",
            "definition": {"initial_state": "a", "states": {
                "a": {"transitions": [
                    {"event": "go", "target": "b", "guard": guard},
                    {"event": "other", "target": "b"}]},
                "b": {}}}})
        ex = await store.start("p", "1.0", context)
        fired = await ex.send("go")
        errors = [r.error.model_dump() for r in ex.state.history if r.kind == "guard_error"]
        still_usable = await ex.send("other")
        print(json.dumps({"fired": fired, "errors": errors, "usable": still_usable}))

    asyncio.run(main())
    """
)


def _evaluate_in_child(
    guard: str, context_json: str = "{}", *, unlimited_digits: bool = False
) -> dict[str, Any]:
    proc = python_child(
        "-c",
        _CHILD,
        guard,
        context_json,
        "unlimited-digits" if unlimited_digits else "cpython-digits",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


OVER_BUDGET = [
    pytest.param("len([[[1]*99999]*99999]*99999) > 0", {}, id="nested-repetition-then-walk"),
    pytest.param("round(1, -10**9) == 0", {}, id="round-gigantic-power"),
    pytest.param("max([[1]*99999]*99999) == 0", {}, id="max-over-nested"),
    pytest.param("any([[0]*99999]*99999)", {}, id="any-over-nested"),
    pytest.param("all([[1]*99999]*99999)", {}, id="all-over-nested"),
    pytest.param("sum([[1]*1000]*1000, []) != []", {}, id="sum-of-lists"),
    pytest.param('str(["a"*99999]*99999) == ""', {}, id="str-of-nested-strings"),
    pytest.param("[[[1]*99999]*99999] == [[[1]*99999]*99999]", {}, id="compare-deep-structures"),
    pytest.param("[xs * n] * 99999 == []", {"xs": [1] * 1000, "n": 99}, id="lists-from-context"),
    pytest.param(f"(1 << {MAX_INT_BITS}) > 0", {}, id="int-over-the-bit-limit"),
]


@pytest.mark.parametrize(("guard", "context"), OVER_BUDGET)
def test_a_guard_over_budget_is_a_guard_error_not_a_hang(
    guard: str, context: dict[str, Any]
) -> None:
    outcome = _evaluate_in_child(guard, json.dumps(context))
    assert outcome["fired"] is False
    assert [e["type"] for e in outcome["errors"]] == ["GuardLimitExceeded"]
    assert outcome["usable"] is True


def test_int_of_a_long_digit_string_is_refused_even_without_cpythons_own_limit() -> None:
    outcome = _evaluate_in_child('int("9" * 9999) > 0', unlimited_digits=True)
    assert outcome["fired"] is False
    [error] = outcome["errors"]
    assert error["type"] == "GuardLimitExceeded"
    assert "int()" in error["message"]


def test_str_of_a_huge_int_is_refused_even_without_cpythons_own_limit() -> None:
    # int <-> str conversion is quadratic in CPython 3.11; its own 4300-digit limit may be off.
    huge = "9" * 20_000  # as JSON text: this process keeps CPython's limit
    outcome = _evaluate_in_child("str(x) != ''", f'{{"x": {huge}}}', unlimited_digits=True)
    assert outcome["fired"] is False
    [error] = outcome["errors"]
    assert error["type"] == "GuardLimitExceeded"
    assert "str()" in error["message"]


def _doc(guard: str, version: str = "1.0") -> dict[str, Any]:
    return make_doc(
        {"a": {"transitions": [{"event": "go", "target": "b", "guard": guard}]}, "b": {}},
        "a",
        version=version,
    )


async def test_the_budget_counts_every_value_built_in_one_evaluation(
    store: ProcedureStore,
) -> None:
    # Each list alone is well within the budget; together they are not.
    half = MAX_GUARD_STEPS // 2
    await store.register(_doc(f"len([0] * {half // 2}) + len([0] * {half}) > 0"))
    ex = await within(store.start("p", "1.0"))
    assert await within(ex.send("go")) is True
    await store.register(
        _doc(f"len([0] * {half}) + len([0] * {half}) + len([0] * {half}) > 0", "2")
    )
    ex = await within(store.start("p", "2"))
    assert await within(ex.send("go")) is False
    [error] = records(ex.state.history, "guard_error")
    assert error.error is not None and error.error.type == "GuardLimitExceeded"


async def test_a_guard_reads_a_context_list_larger_than_the_budget(
    store: ProcedureStore,
) -> None:
    # Reading is not building: len() and subscripts cost one step whatever the size.
    await store.register(_doc("len(items) > 0 and items[-1] == 0"))
    ex = await within(store.start("p", "1.0", {"items": [0] * (2 * MAX_GUARD_STEPS)}))
    assert await within(ex.send("go")) is True
    assert records(ex.state.history, "guard_error") == []


async def test_a_guard_may_sum_a_context_list_within_the_budget(store: ProcedureStore) -> None:
    await store.register(_doc("sum(items) == 0 and max(items) == 0"))
    ex = await within(store.start("p", "1.0", {"items": [0] * (MAX_GUARD_STEPS // 4)}))
    assert await within(ex.send("go")) is True


async def test_a_guard_that_iterates_a_context_list_too_often_is_over_budget(
    store: ProcedureStore,
) -> None:
    await store.register(_doc(" and ".join(["sum(items) == 0"] * 8)))
    ex = await within(store.start("p", "1.0", {"items": [0] * (MAX_GUARD_STEPS // 4)}))
    assert await within(ex.send("go")) is False
    [error] = records(ex.state.history, "guard_error")
    assert error.error is not None and error.error.type == "GuardLimitExceeded"
