"""State paths in statecharts: ``current``/``active``, entering compound and parallel states, how a
transition's target is resolved, and the paths in the history."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import fn, on, region, step_region
from tests.conftest import Gate, make_doc, records, wait_until, within


def _entered(history: Any) -> list[str]:
    return [r.state for r in history if r.kind == "entered"]


def _fulfilment_doc() -> dict[str, Any]:
    """start -> fulfilment (picking -> packing -> packed) -> shipping; nothing runs actions."""
    return make_doc(
        {
            "start": {"transitions": [on("go", "fulfilment"), on("jump", "fulfilment.packing")]},
            "fulfilment": {
                "initial_state": "picking",
                "states": {
                    "picking": {"transitions": [on("next", "packing"), on("ship_now", "shipping")]},
                    "packing": {"transitions": [on("next", "packed")]},
                    "packed": {},
                },
                "transitions": [on("done", "shipping")],
            },
            "shipping": {"transitions": [on("again", "start"), on("stop", "stopped")]},
            "stopped": {},
        },
        "start",
    )


def _checks_doc(store: ProcedureStore, gate: Gate) -> dict[str, Any]:
    """checks (parallel): region ``zeta`` (declared first) waits on ``gate``; region ``alpha``
    runs a noop and reaches ``ok``. Region names are in reverse alphabetical document order, so
    a sorted ``active`` is distinguishable from document order."""
    store.register_action("hold", gate.action)
    return make_doc(
        {
            "checks": {
                "parallel": {
                    "zeta": step_region(fn("hold")),
                    "alpha": step_region({"type": "noop"}),
                },
                "transitions": [on("done", "approved")],
            },
            "approved": {},
        },
        "checks",
    )


# --- current / active ----------------------------------------------------------------------------


async def test_current_is_the_dotted_path_of_the_active_leaf(store: ProcedureStore) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    assert ex.state.current == "fulfilment.picking"
    assert isinstance(ex.state.current, str)
    assert list(ex.state.active) == ["fulfilment.picking"]
    assert ex.current == "fulfilment.picking"


async def test_current_follows_the_leaf_inside_a_compound_state(store: ProcedureStore) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))
    await within(ex.send("next"))

    assert ex.state.current == "fulfilment.packing"
    assert list(ex.state.active) == ["fulfilment.packing"]


async def test_current_is_the_parallel_state_while_its_regions_are_active(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    await store.register(_checks_doc(store, gate))
    ex = await within(store.start("p", "1.0", {}, auto=True))
    await within(gate.started.wait())
    await wait_until(lambda: "checks.alpha.ok" in ex.active)

    assert ex.state.current == "checks"
    assert list(ex.state.active) == ["checks.alpha.ok", "checks.zeta.run"]
    gate.release.set()
    final = await within(ex.run_to_completion())
    assert final.current == "approved"
    assert list(final.active) == ["approved"]


async def test_active_is_the_sorted_list_of_active_leaf_paths(store: ProcedureStore) -> None:
    """``ex.state.active`` is always the sorted *list* of active leaf paths."""
    gate = Gate()
    await store.register(_checks_doc(store, gate))
    ex = await within(store.start("p", "1.0", {}, auto=True))
    await wait_until(lambda: "checks.alpha.ok" in ex.active)

    assert ex.state.active == ["checks.alpha.ok", "checks.zeta.run"]
    gate.release.set()
    await within(ex.run_to_completion())


async def test_active_is_in_the_json_snapshot_as_a_sorted_list(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_checks_doc(store, gate))
    ex = await within(store.start("p", "1.0", {}, auto=True))
    await wait_until(lambda: "checks.alpha.ok" in ex.active)

    dumped = ex.state.model_dump(mode="json")
    assert dumped["current"] == "checks"
    assert dumped["active"] == ["checks.alpha.ok", "checks.zeta.run"]
    gate.release.set()
    await within(ex.run_to_completion())


async def test_current_is_the_outermost_active_parallel_state(store: ProcedureStore) -> None:
    """A parallel state inside a region of another parallel state: current is the outer one."""
    leaf = {"transitions": [on("finish", "end")]}
    inner = {
        "parallel": {
            "x": region("wait", {"wait": leaf, "end": {}}),
            "y": region("wait", {"wait": leaf, "end": {}}),
        }
    }
    await store.register(
        make_doc(
            {
                "outer": {
                    "parallel": {
                        "r1": region("inner", {"inner": inner}),
                        "r2": region("wait", {"wait": leaf, "end": {}}),
                    }
                }
            },
            "outer",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    assert ex.state.current == "outer"
    assert list(ex.state.active) == [
        "outer.r1.inner.x.wait",
        "outer.r1.inner.y.wait",
        "outer.r2.wait",
    ]


async def test_current_is_a_nested_parallel_state_inside_a_compound(
    store: ProcedureStore,
) -> None:
    leaf = {"transitions": [on("finish", "end")]}
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "checks",
                    "states": {
                        "checks": {
                            "parallel": {
                                "a": region("wait", {"wait": leaf, "end": {}}),
                                "b": region("wait", {"wait": leaf, "end": {}}),
                            }
                        }
                    },
                }
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    assert ex.state.current == "phase.checks"
    assert list(ex.state.active) == ["phase.checks.a.wait", "phase.checks.b.wait"]


async def test_a_flat_procedure_keeps_plain_state_names(store: ProcedureStore) -> None:
    await store.register(make_doc({"a": {"transitions": [on("go", "b")]}, "b": {}}, "a"))
    ex = await within(store.start("p", "1.0", {}))

    assert ex.state.current == "a"
    assert list(ex.state.active) == ["a"]
    await within(ex.send("go"))
    assert ex.state.current == "b"
    assert list(ex.state.active) == ["b"]
    assert ex.state.status is Status.COMPLETED


# --- entering compound and parallel states -------------------------------------------------------


async def test_starting_in_a_compound_state_enters_its_initial_state_recursively(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "initial_state": "b",
                    "states": {
                        "b": {
                            "initial_state": "c",
                            "states": {"c": {"transitions": [on("next", "d")]}, "d": {}},
                        }
                    },
                }
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))

    assert ex.state.current == "a.b.c"
    assert _entered(ex.state.history) == ["a", "a.b", "a.b.c"]


async def test_a_transition_to_a_compound_state_enters_its_initial_state(
    store: ProcedureStore,
) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    assert ex.state.current == "fulfilment.picking"
    assert _entered(ex.state.history) == ["start", "fulfilment", "fulfilment.picking"]


async def test_a_transition_to_a_parallel_state_enters_every_region(
    store: ProcedureStore,
) -> None:
    leaf = {"transitions": [on("finish", "end")]}
    await store.register(
        make_doc(
            {
                "start": {"transitions": [on("go", "checks")]},
                "checks": {
                    "parallel": {
                        "credit": region("run", {"run": leaf, "end": {}}),
                        "fraud": region("run", {"run": leaf, "end": {}}),
                    }
                },
            },
            "start",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    assert ex.state.current == "checks"
    assert list(ex.state.active) == ["checks.credit.run", "checks.fraud.run"]
    entered = _entered(ex.state.history)
    assert entered[:2] == ["start", "checks"]
    assert sorted(entered[2:]) == ["checks.credit.run", "checks.fraud.run"]


# --- targets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "target"),
    [
        # picking -> "packing": the sibling fulfilment.packing
        pytest.param("next", "fulfilment.packing", id="a sibling"),
        # picking -> "shipping": the top-level state
        pytest.param("ship_now", "shipping", id="a top-level state"),
    ],
)
async def test_a_plain_target_names_a_sibling_or_else_a_top_level_state(
    store: ProcedureStore, event: str, target: str
) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))
    await within(ex.send(event))

    assert ex.state.current == target
    [transition] = records(ex.state.history, "transition", event=event)
    assert (transition.state, transition.target) == ("fulfilment.picking", target)
    assert list(ex.state.active) == [target]  # only the target: no other state stayed active


async def test_a_plain_target_prefers_the_own_sibling_over_a_cousin_of_the_same_name(
    store: ProcedureStore,
) -> None:
    """Two compound states each have a child ``end``: a plain ``end`` is the sibling."""
    await store.register(
        make_doc(
            {
                "a": {
                    "initial_state": "x",
                    "states": {"x": {"transitions": [on("go", "end")]}, "end": {}},
                    "transitions": [on("done", "b")],
                },
                "b": {
                    "initial_state": "x",
                    "states": {"x": {"transitions": [on("go", "end")]}, "end": {}},
                },
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    assert ex.state.current == "b.x"
    assert _entered(ex.state.history)[:3] == ["a", "a.x", "a.end"]


async def test_a_full_dotted_path_target_enters_that_nested_state(store: ProcedureStore) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("jump"))  # start -> "fulfilment.packing", skipping picking

    assert ex.state.current == "fulfilment.packing"
    assert _entered(ex.state.history) == ["start", "fulfilment", "fulfilment.packing"]
    [transition] = records(ex.state.history, "transition", event="jump")
    assert transition.target == "fulfilment.packing"


async def test_a_full_dotted_path_into_a_region_enters_the_other_regions_initial_states(
    store: ProcedureStore,
) -> None:
    leaf = {"transitions": [on("finish", "end")]}
    await store.register(
        make_doc(
            {
                # ("checks", "enter"), declared first, keeps the validator's reachability check
                # out of this test: see test_statechart_validation for that.
                "start": {"transitions": [on("enter", "checks"), on("go", "checks.fraud.end")]},
                "checks": {
                    "parallel": {
                        "credit": region("run", {"run": leaf, "end": {}}),
                        "fraud": region(
                            "run",
                            {
                                "run": leaf,
                                "end": {"transitions": [on("redo", "run"), on("close", "closed")]},
                                "closed": {},
                            },
                        ),
                    },
                },
            },
            "start",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    assert ex.state.current == "checks"
    assert list(ex.state.active) == ["checks.credit.run", "checks.fraud.end"]


async def test_a_dotted_target_can_leave_for_a_state_inside_another_compound(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "initial_state": "x",
                    "states": {"x": {"transitions": [on("go", "b.z")]}},
                },
                "b": {
                    "initial_state": "y",
                    "states": {"y": {}, "z": {"transitions": [on("back", "y")]}},
                },
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("go"))

    assert ex.state.current == "b.z"
    assert _entered(ex.state.history) == ["a", "a.x", "b", "b.z"]


async def test_state_names_with_underscores_are_single_path_components(
    store: ProcedureStore,
) -> None:
    """transitions' default separator is ``_``; procstore's is ``.``."""
    await store.register(
        make_doc(
            {
                "pick_phase": {
                    "initial_state": "pick_items",
                    "states": {"pick_items": {"transitions": [on("next", "pack_items")]}},
                    "transitions": [on("done", "pack_items")],
                },
                "pack_items": {},
            },
            "pick_phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert ex.state.current == "pick_phase.pick_items"
    await within(ex.send("next"))  # no such sibling: the top-level state
    assert ex.state.current == "pack_items"


# --- history -------------------------------------------------------------------------------------


async def test_entered_records_carry_full_paths_and_their_events(store: ProcedureStore) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    for event in ("go", "next", "next"):
        await within(ex.send(event))

    entered = [(r.state, r.event) for r in ex.state.history if r.kind == "entered"]
    assert entered == [
        ("start", None),
        ("fulfilment", "go"),
        ("fulfilment.picking", "go"),
        ("fulfilment.packing", "next"),
        ("fulfilment.packed", "next"),
        ("shipping", "done"),
    ]


async def test_regions_are_not_recorded_as_entered_states(store: ProcedureStore) -> None:
    gate = Gate()
    await store.register(_checks_doc(store, gate))
    ex = await within(store.start("p", "1.0", {}, auto=True))
    await wait_until(lambda: "checks.alpha.ok" in ex.active)

    entered = _entered(ex.state.history)
    assert "checks.alpha" not in entered
    assert "checks.zeta" not in entered
    assert entered[0] == "checks"
    assert set(entered) == {"checks", "checks.zeta.run", "checks.alpha.run", "checks.alpha.ok"}
    gate.release.set()
    await within(ex.run_to_completion())


async def test_transition_records_name_the_declaring_state_and_the_resolved_target(
    store: ProcedureStore,
) -> None:
    await store.register(_fulfilment_doc())
    ex = await within(store.start("p", "1.0", {}))
    for event in ("go", "next", "next"):
        await within(ex.send(event))

    transitions = [(r.event, r.state, r.target) for r in ex.state.history if r.kind == "transition"]
    assert transitions == [
        ("go", "start", "fulfilment"),
        ("next", "fulfilment.picking", "fulfilment.packing"),
        ("next", "fulfilment.packing", "fulfilment.packed"),
        ("done", "fulfilment", "shipping"),
    ]
