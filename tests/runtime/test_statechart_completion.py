"""Completion events in statecharts: ``done`` when a compound state's child or every region of a
parallel state reaches a terminal state, ``error`` from a failure terminal or a region's
unhandled error, and how completion ends an execution."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import fn, on, region, step_region
from tests.conftest import Gate, make_doc, records, transitions_on, wait_until, within


def _gated_region(store: ProcedureStore, name: str, gate: Gate) -> dict[str, Any]:
    """A region: ``run`` (waits on ``gate``) -> ``ok`` (terminal) on success."""
    store.register_action(name, gate.action)
    return step_region(fn(name))


# --- done ----------------------------------------------------------------------------------------


async def test_a_compound_gets_done_when_its_child_reaches_a_terminal_state(
    store: ProcedureStore,
) -> None:
    """Not driven, and ``done`` is never sent: it fires by itself."""
    await store.register(
        make_doc(
            {
                "fulfilment": {
                    "initial_state": "picking",
                    "states": {"picking": {"transitions": [on("next", "packed")]}, "packed": {}},
                    "transitions": [on("done", "shipping")],
                },
                "shipping": {"transitions": [on("again", "fulfilment"), on("stop", "stopped")]},
                "stopped": {},
            },
            "fulfilment",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("next"))

    assert ex.state.current == "shipping"
    assert ex.state.status is Status.RUNNING
    assert transitions_on(ex.state.history, "done") == [("fulfilment", "shipping")]


async def test_done_fires_after_a_terminal_childs_action_without_a_driver(
    store: ProcedureStore,
) -> None:
    """The compound's only child is terminal with an action: nothing is sent, nothing drives."""
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "work",
                    "states": {"work": {"action": {"type": "sleep", "ms": 5}}},
                    "transitions": [on("done", "after")],
                },
                "after": {"transitions": [on("again", "phase"), on("stop", "stopped")]},
                "stopped": {},
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert ex.state.current == "phase.work"

    await wait_until(lambda: ex.current == "after")
    history = ex.state.history
    assert transitions_on(history, "done") == [("phase", "after")]
    [action] = records(history, "action", state="phase.work")
    assert action.error is None


async def test_a_parallel_state_gets_done_only_when_every_region_is_terminal(
    store: ProcedureStore,
) -> None:
    credit, fraud = Gate(), Gate()
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": _gated_region(store, "credit", credit),
                        "fraud": _gated_region(store, "fraud", fraud),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}, auto=True))
    await within(credit.started.wait())
    await within(fraud.started.wait())

    credit.release.set()
    await wait_until(lambda: "checks.credit.ok" in ex.active)
    assert ex.state.current == "checks"
    assert not transitions_on(ex.state.history, "done")

    fraud.release.set()
    final = await within(ex.run_to_completion())
    assert final.current == "approved"
    assert final.status is Status.COMPLETED
    assert transitions_on(final.history, "done") == [("checks", "approved")]


async def test_a_parallel_state_gets_done_without_a_driver(store: ProcedureStore) -> None:
    """Each region's initial state is terminal (with an action): nothing is sent or driven."""
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": region("run", {"run": {"action": {"type": "noop"}}}),
                        "fraud": region("run", {"run": {"action": {"type": "sleep", "ms": 5}}}),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {"transitions": [on("again", "checks"), on("stop", "stopped")]},
                "stopped": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.current == "approved")
    assert ex.state.status is Status.RUNNING
    assert transitions_on(ex.state.history, "done") == [("checks", "approved")]


def _three_levels(own_done: bool) -> dict[str, Any]:
    """l1 > l2 > l3 > work -> fin (terminal). ``own_done``: l3 and l2 each have a ``done``
    transition to a terminal sibling; otherwise they have no transitions at all."""
    l3: dict[str, Any] = {
        "initial_state": "work",
        "states": {"work": {"transitions": [on("finish", "fin")]}, "fin": {}},
    }
    l2: dict[str, Any] = {"initial_state": "l3", "states": {"l3": l3}}
    l1: dict[str, Any] = {
        "initial_state": "l2",
        "states": {"l2": l2},
        "transitions": [on("done", "after")],
    }
    if own_done:
        l3["transitions"] = [on("done", "l3_done")]
        l2["states"]["l3_done"] = {}
        l2["transitions"] = [on("done", "l2_done")]
        l1["states"]["l2_done"] = {}
    after = {"transitions": [on("again", "l1"), on("stop", "stopped")]}
    return make_doc({"l1": l1, "after": after, "stopped": {}}, "l1")


async def test_done_propagates_through_three_levels_of_terminal_compound_states(
    store: ProcedureStore,
) -> None:
    """l3 and l2 have no transitions: each is terminal in its parent, so completing l3
    completes l2, which gives l1 its ``done``."""
    await store.register(_three_levels(own_done=False))
    ex = await within(store.start("p", "1.0", {}))
    assert ex.state.current == "l1.l2.l3.work"

    await within(ex.send("finish"))

    assert ex.state.current == "after"
    assert ex.state.status is Status.RUNNING
    assert transitions_on(ex.state.history, "done") == [("l1", "after")]


async def test_done_propagates_through_three_levels_each_with_its_own_done_transition(
    store: ProcedureStore,
) -> None:
    await store.register(_three_levels(own_done=True))
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("finish"))

    assert ex.state.current == "after"
    assert transitions_on(ex.state.history, "done") == [
        ("l1.l2.l3", "l1.l2.l3_done"),
        ("l1.l2", "l1.l2_done"),
        ("l1", "after"),
    ]
    entered = [r.state for r in ex.state.history if r.kind == "entered"]
    assert entered[-3:] == ["l1.l2.l3_done", "l1.l2_done", "after"]


async def test_a_compound_with_a_non_terminal_child_does_not_get_done(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "a",
                    "states": {"a": {"transitions": [on("next", "b")]}, "b": {}},
                    "transitions": [on("done", "after")],
                },
                "after": {},
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    assert ex.state.current == "phase.a"
    assert not transitions_on(ex.state.history, "done")


# --- error ---------------------------------------------------------------------------------------


async def test_a_failure_terminal_leaf_gives_its_compound_error_instead_of_done(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "fulfilment": {
                    "initial_state": "picking",
                    "states": {
                        "picking": {"transitions": [on("lose", "lost"), on("next", "packed")]},
                        "lost": {"outcome": "failure"},
                        "packed": {},
                    },
                    "transitions": [on("done", "shipping"), on("error", "rejected")],
                },
                "shipping": {},
                "rejected": {},
            },
            "fulfilment",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("lose"))

    assert ex.state.current == "rejected"
    assert transitions_on(ex.state.history, "error") == [("fulfilment", "rejected")]
    assert not transitions_on(ex.state.history, "done")


async def test_a_failure_terminal_leaf_in_a_region_gives_the_parallel_state_error(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": region(
                            "run",
                            {
                                "run": {"transitions": [on("pass", "ok"), on("deny", "bad")]},
                                "ok": {},
                                "bad": {"outcome": "failure"},
                            },
                        ),
                        "fraud": region(
                            "run", {"run": {"transitions": [on("pass", "ok")]}, "ok": {}}
                        ),
                    },
                    "transitions": [on("done", "approved"), on("error", "rejected")],
                },
                "approved": {},
                "rejected": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("deny"))

    assert ex.state.current == "rejected"
    assert transitions_on(ex.state.history, "error") == [("checks", "rejected")]


async def test_a_regions_unhandled_error_becomes_the_parallel_states_error(
    store: ProcedureStore,
) -> None:
    fraud = Gate()
    store.register_action("fraud", fraud.action)
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": step_region({"type": "fail", "message": "no credit"}),
                        "fraud": step_region(fn("fraud")),
                    },
                    "transitions": [on("done", "approved"), on("error", "rejected")],
                },
                "approved": {},
                "rejected": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.current == "rejected"
    assert final.status is Status.COMPLETED
    assert transitions_on(final.history, "error") == [("checks", "rejected")]
    [failed] = records(final.history, "action", state="checks.credit.run")
    assert failed.error is not None and failed.error.message == "no credit"


async def test_a_regions_unhandled_error_cancels_the_other_regions_running_action(
    store: ProcedureStore,
) -> None:
    fraud = Gate()
    store.register_action("fraud", fraud.action)
    store.register_action("credit", _failing_after_start(fraud))
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": step_region(fn("credit")),
                        "fraud": step_region(fn("fraud")),
                    },
                    "transitions": [on("done", "approved"), on("error", "rejected")],
                },
                "approved": {},
                "rejected": {"transitions": [on("again", "checks"), on("stop", "stopped")]},
                "stopped": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.current == "rejected")
    await wait_until(lambda: fraud.finished.is_set(), timeout=0.5)
    assert fraud.cancelled, "the fraud check kept running after the parallel state was left"
    assert not fraud.returned
    assert not records(ex.state.history, "entered", state="checks.fraud.ok")


def _failing_after_start(other: Gate) -> Any:
    async def credit(context: dict[str, Any]) -> None:
        await other.started.wait()  # fail only once the other region's action runs
        raise RuntimeError("credit refused")

    return credit


# --- the end of the execution --------------------------------------------------------------------


async def test_a_compound_state_without_transitions_completing_at_the_top_completes_the_execution(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "a",
                    "states": {"a": {"transitions": [on("next", "b")]}, "b": {}},
                }
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("next"))

    assert ex.state.status is Status.COMPLETED
    assert records(ex.state.history, "finished", status=Status.COMPLETED)


async def test_a_parallel_state_without_transitions_completing_at_the_top_completes_the_execution(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": region("run", {"run": {"action": {"type": "noop"}}}),
                        "fraud": region("run", {"run": {"action": {"type": "sleep", "ms": 5}}}),
                    }
                }
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.status is Status.COMPLETED
    assert not transitions_on(final.history, "done")


async def test_a_chart_starting_in_a_terminal_nested_state_completes_at_once(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc({"phase": {"initial_state": "end", "states": {"end": {}}}}, "phase")
    )
    ex = await within(store.start("p", "1.0", {}))

    assert ex.state.status is Status.COMPLETED


@pytest.mark.parametrize("where", ["compound", "region"])
async def test_an_unhandled_error_with_no_handler_anywhere_fails_the_execution(
    store: ProcedureStore, where: str
) -> None:
    work = {"action": {"type": "fail", "message": "broken"}, "transitions": [on("success", "ok")]}
    if where == "compound":
        top: dict[str, Any] = {
            "initial_state": "work",
            "states": {"work": work, "ok": {}},
            "transitions": [on("done", "after")],
        }
    else:
        top = {
            "parallel": {
                "a": region("work", {"work": work, "ok": {}}),
                "b": region("wait", {"wait": {"transitions": [on("go", "ok")]}, "ok": {}}),
            },
            "transitions": [on("done", "after")],
        }
    await store.register(make_doc({"top": top, "after": {}}, "top"))
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.status is Status.FAILED
    assert not records(final.history, "entered", state="after")
    [attempt] = records(
        final.history, "action", state="top.a.work" if where == "region" else "top.work"
    )
    assert attempt.error is not None and attempt.error.message == "broken"


async def test_a_failure_terminal_at_the_top_of_a_compound_without_handler_fails(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "a",
                    "states": {
                        "a": {"transitions": [on("lose", "lost")]},
                        "lost": {"outcome": "failure"},
                    },
                }
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("lose"))

    assert ex.state.status is Status.FAILED
