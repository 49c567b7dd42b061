"""Events in statecharts: bubbling to ancestors, interrupting a compound state,
what ``send()`` waits for, events handled by several parallel regions, outcome routing,
concurrency of regions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from procstore import InvalidEvent, ProcedureStore, Status
from tests.builders import fn, on, region, step_region
from tests.clock import ManualClock
from tests.conftest import Gate, index_of, make_doc, records, wait_until, within


def _transitions(history: Any) -> list[tuple[str | None, str | None, str | None]]:
    return [(r.event, r.state, r.target) for r in history if r.kind == "transition"]


class LongAction:
    """An async action that sleeps ``seconds`` (on ``clock`` if given, else real time); records
    whether it was cancelled and whether its ``finally`` ran."""

    def __init__(self, seconds: float = 30.0, clock: ManualClock | None = None) -> None:
        self.seconds = seconds
        self.sleep = clock.sleep if clock is not None else asyncio.sleep
        self.started = asyncio.Event()
        self.cancelled = False
        self.cleaned_up = False

    async def action(self, context: dict[str, Any]) -> str:
        self.started.set()
        try:
            await self.sleep(self.seconds)
            return "slept"
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.cleaned_up = True


# --- bubbling ------------------------------------------------------------------------------------


def _nested_doc(
    leaf_handles: bool = False, inner_handles: bool = False, outer_handles: bool = False
) -> dict[str, Any]:
    """outer (compound) > inner (compound) > leaf; each level may handle ``go``, each to its own
    top-level target (``by_leaf``, ``by_inner``, ``by_outer``)."""
    leaf: dict[str, Any] = {"transitions": [on("stay", "other")]}
    inner: dict[str, Any] = {
        "initial_state": "leaf",
        "states": {"leaf": leaf, "other": {"transitions": [on("back", "leaf")]}},
    }
    outer: dict[str, Any] = {"initial_state": "inner", "states": {"inner": inner}}
    if leaf_handles:
        leaf["transitions"].append(on("go", "by_leaf"))
    if inner_handles:
        inner["transitions"] = [on("go", "by_inner")]
    if outer_handles:
        outer["transitions"] = [on("go", "by_outer")]
    states: dict[str, Any] = {"outer": outer}
    for name, used in (
        ("by_leaf", leaf_handles),
        ("by_inner", inner_handles),
        ("by_outer", outer_handles),
    ):
        if used:
            states[name] = {}
    return make_doc(states, "outer")


@pytest.mark.parametrize(
    ("handler", "source"),
    [
        pytest.param("inner", "outer.inner", id="its parent"),
        pytest.param("outer", "outer", id="two levels up"),
    ],
)
async def test_an_event_the_leaf_does_not_handle_bubbles_to_the_ancestor_that_handles_it(
    store: ProcedureStore, handler: str, source: str
) -> None:
    await store.register(_nested_doc(**{f"{handler}_handles": True}))
    ex = await within(store.start("p", "1.0", {}))

    assert await within(ex.send("go")) is True
    assert ex.state.current == f"by_{handler}"
    assert ("go", source, f"by_{handler}") in _transitions(ex.state.history)


async def test_the_innermost_ancestor_that_handles_an_event_wins(store: ProcedureStore) -> None:
    await store.register(_nested_doc(inner_handles=True, outer_handles=True))
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("go"))
    assert ex.state.current == "by_inner"
    assert not records(ex.state.history, "transition", state="outer")


async def test_the_leaf_wins_over_its_ancestors(store: ProcedureStore) -> None:
    await store.register(_nested_doc(leaf_handles=True, inner_handles=True, outer_handles=True))
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("go"))
    assert ex.state.current == "by_leaf"
    assert [t for t in _transitions(ex.state.history) if t[0] == "go"] == [
        ("go", "outer.inner.leaf", "by_leaf")
    ]


async def test_an_ancestor_handles_the_event_from_every_child(store: ProcedureStore) -> None:
    """The compound's transition applies whichever child is active."""
    await store.register(_nested_doc(inner_handles=True))
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.send("stay"))
    assert ex.state.current == "outer.inner.other"

    await within(ex.send("go"))
    assert ex.state.current == "by_inner"


# --- interrupting a compound state ---------------------------------------------------------------


def _cancellable_doc(store: ProcedureStore, picking: LongAction, **picking_extra: Any) -> Any:
    store.register_action("pick", picking.action)
    return make_doc(
        {
            "fulfilment": {
                "initial_state": "picking",
                "states": {
                    "picking": {
                        "action": fn("pick"),
                        "transitions": [on("success", "packing"), on("skip", "packing")],
                        **picking_extra,
                    },
                    "packing": {"transitions": [on("success", "packed")]},
                    "packed": {},
                },
                "transitions": [on("done", "shipping"), on("cancel", "cancelled")],
            },
            "shipping": {},
            "cancelled": {"transitions": [on("restart", "fulfilment")]},
        },
        "fulfilment",
    )


async def test_cancel_on_the_compound_interrupts_a_long_running_child_action_at_once(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    picking = LongAction(30.0, clock)
    await timed_store.register(_cancellable_doc(timed_store, picking))
    ex = await within(timed_store.start("p", "1.0", {}))
    await within(picking.started.wait())

    # No time passes: the send does not wait for the picking action, which still sleeps.
    fired = await clock.instantly(ex.send("cancel"))

    assert fired is True
    assert picking.cancelled and clock.pending() == []
    assert ex.state.current == "cancelled"
    assert ("cancel", "fulfilment", "cancelled") in _transitions(ex.state.history)


async def test_cancel_on_the_compound_runs_the_interrupted_actions_finally(
    store: ProcedureStore,
) -> None:
    picking = LongAction(30.0)
    await store.register(_cancellable_doc(store, picking))
    ex = await within(store.start("p", "1.0", {}))
    await within(picking.started.wait())

    await within(ex.send("cancel"))

    await wait_until(lambda: picking.cleaned_up, timeout=0.5)
    assert picking.cancelled
    attempts = records(ex.state.history, "action", state="fulfilment.picking")
    assert all(a.error is not None for a in attempts), "the interrupted action counted as done"


async def test_cancel_on_the_compound_stops_the_childs_timers(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    picking = LongAction(30.0, clock)
    doc = _cancellable_doc(timed_store, picking, timeout_ms=40)
    doc["definition"]["states"]["fulfilment"]["states"]["picking"]["transitions"].append(
        on("timeout", "late")
    )
    doc["definition"]["states"]["late"] = {}
    await timed_store.register(doc)
    ex = await within(timed_store.start("p", "1.0", {}))
    await within(picking.started.wait())

    await within(ex.send("cancel"))
    assert clock.pending() == [], "a timer of the picking state survived"
    await clock.advance(0.08)  # well past the picking state's 40 ms

    assert ex.state.current == "cancelled"
    assert ex.state.status is Status.RUNNING
    assert not records(ex.state.history, "timeout")
    assert not records(ex.state.history, "entered", state="late")


async def test_send_waits_for_the_running_action_of_the_leaf_that_handles_the_event(
    store: ProcedureStore,
) -> None:
    gate = Gate()
    store.register_action("hold", gate.action)
    await store.register(
        make_doc(
            {
                "fulfilment": {
                    "initial_state": "picking",
                    "states": {
                        "picking": {"action": fn("hold"), "transitions": [on("skip", "packed")]},
                        "packed": {"transitions": [on("again", "picking")]},
                    },
                    "transitions": [on("cancel", "cancelled")],
                },
                "cancelled": {},
            },
            "fulfilment",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(gate.started.wait())

    sending = asyncio.create_task(ex.send("skip"))
    await asyncio.sleep(0.03)
    assert not sending.done(), "send() did not wait for the leaf's running action"
    assert ex.state.current == "fulfilment.picking"

    gate.release.set()
    assert await within(sending) is True
    assert gate.returned and not gate.cancelled
    history = ex.state.history
    assert index_of(history, "action", state="fulfilment.picking") < index_of(
        history, "transition", event="skip"
    )
    assert ex.state.current == "fulfilment.packed"


async def test_send_to_one_region_waits_only_for_that_regions_action(
    store: ProcedureStore,
) -> None:
    """An event handled by region ``a``'s leaf does not wait for region ``b``'s action."""
    gate_b = Gate()
    store.register_action("hold_b", gate_b.action)
    await store.register(
        make_doc(
            {
                "p": {
                    "parallel": {
                        "a": region(
                            "wait", {"wait": {"transitions": [on("go", "end")]}, "end": {}}
                        ),
                        "b": region(
                            "run",
                            {
                                "run": {
                                    "action": fn("hold_b"),
                                    "transitions": [on("success", "end")],
                                },
                                "end": {},
                            },
                        ),
                    }
                }
            },
            "p",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(gate_b.started.wait())

    assert await within(ex.send("go"), timeout=0.5) is True
    assert list(ex.state.active) == ["p.a.end", "p.b.run"]
    assert not gate_b.cancelled
    gate_b.release.set()
    await within(ex.run_to_completion())


# --- several regions -----------------------------------------------------------------------------


def _two_regions(zeta_go: str, alpha_go: str) -> dict[str, Any]:
    """Parallel ``p`` with regions ``zeta`` (declared first) and ``alpha``, both handling
    ``go`` from their ``wait`` leaf (``step`` goes to ``next`` in the region)."""
    return make_doc(
        {
            "p": {
                "parallel": {
                    "zeta": region(
                        "wait",
                        {
                            "wait": {"transitions": [on("go", zeta_go), on("step", "next")]},
                            "next": {},
                        },
                    ),
                    "alpha": region(
                        "wait",
                        {
                            "wait": {"transitions": [on("go", alpha_go), on("step", "next")]},
                            "next": {},
                        },
                    ),
                },
                "transitions": [on("done", "out")],
            },
            "out": {},
        },
        "p",
    )


async def test_an_event_several_regions_handle_fires_in_each(store: ProcedureStore) -> None:
    await store.register(_two_regions("next", "next"))
    ex = await within(store.start("p", "1.0", {}))

    assert await within(ex.send("go")) is True

    go = [t for t in _transitions(ex.state.history) if t[0] == "go"]
    assert sorted(go) == [
        ("go", "p.alpha.wait", "p.alpha.next"),
        ("go", "p.zeta.wait", "p.zeta.next"),
    ]


async def test_an_event_several_regions_handle_fires_in_document_order(
    store: ProcedureStore,
) -> None:
    """Region ``zeta`` is declared before ``alpha``: it fires first."""
    await store.register(_two_regions("next", "next"))
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("go"))

    go = [t for t in _transitions(ex.state.history) if t[0] == "go"]
    assert go == [("go", "p.zeta.wait", "p.zeta.next"), ("go", "p.alpha.wait", "p.alpha.next")]
    entered = [r.state for r in ex.state.history if r.kind == "entered"]
    assert entered.index("p.zeta.next") < entered.index("p.alpha.next")


async def test_both_regions_completing_on_one_event_completes_the_parallel_state(
    store: ProcedureStore,
) -> None:
    await store.register(_two_regions("next", "next"))
    ex = await within(store.start("p", "1.0", {}))

    await within(ex.send("go"))

    assert ex.state.current == "out"
    assert ex.state.status is Status.COMPLETED


async def test_later_transitions_from_a_state_already_left_are_dropped(
    store: ProcedureStore,
) -> None:
    """Region ``zeta``'s ``go`` leaves the parallel state: region ``alpha``'s does not fire."""
    await store.register(_two_regions("out", "next"))
    ex = await within(store.start("p", "1.0", {}))

    assert await within(ex.send("go")) is True

    assert ex.state.current == "out"
    go = [t for t in _transitions(ex.state.history) if t[0] == "go"]
    assert go == [("go", "p.zeta.wait", "out")]
    assert not records(ex.state.history, "entered", state="p.alpha.next")
    assert not records(ex.state.history, "entered", state="p.zeta.next")


async def test_an_outcome_of_one_regions_action_moves_only_that_region(
    store: ProcedureStore,
) -> None:
    """Both regions' leaves handle ``success``; only region ``a``'s action has succeeded."""
    gate_b = Gate()
    store.register_action("hold_b", gate_b.action)
    await store.register(
        make_doc(
            {
                "p": {
                    "parallel": {
                        "a": step_region({"type": "noop"}),
                        "b": step_region(fn("hold_b")),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {},
            },
            "p",
        )
    )
    ex = await within(store.start("p", "1.0", {}, auto=True))
    await within(gate_b.started.wait())
    await wait_until(lambda: "p.a.ok" in ex.active)
    await asyncio.sleep(0.01)

    assert list(ex.state.active) == ["p.a.ok", "p.b.run"]
    assert not gate_b.cancelled and not gate_b.finished.is_set()
    assert gate_b.calls == 1
    assert [t for t in _transitions(ex.state.history) if t[1] == "p.b.run"] == []

    gate_b.release.set()
    final = await within(ex.run_to_completion())
    assert final.current == "approved"
    assert gate_b.returned


async def test_an_undriven_outcome_of_one_region_waits_for_send_without_moving_the_other(
    store: ProcedureStore,
) -> None:
    """Not driven: region ``a``'s success waits; sending ``success`` then moves the regions whose
    leaves handle it (both here) once their actions are done."""
    await store.register(
        make_doc(
            {
                "p": {
                    "parallel": {
                        "a": step_region({"type": "noop"}),
                        "b": step_region({"type": "sleep", "ms": 20}),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {},
            },
            "p",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: len(records(ex.state.history, "action")) == 2)
    assert list(ex.state.active) == ["p.a.run", "p.b.run"]

    assert await within(ex.send("success")) is True
    assert ex.state.current == "approved"


async def test_parallel_regions_actions_run_concurrently(store: ProcedureStore) -> None:
    # Each region's action waits until the other's has started: run one after the other, they
    # would wait forever (and the run would time out).
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def waits_for(other: str, own: str) -> Any:
        async def action(context: dict[str, Any]) -> str:
            started[own].set()
            await started[other].wait()
            return own

        return action

    store.register_action("run_a", waits_for("b", "a"))
    store.register_action("run_b", waits_for("a", "b"))
    regions = {name: step_region(fn(f"run_{name}")) for name in ("a", "b")}
    await store.register(
        make_doc(
            {"p": {"parallel": regions, "transitions": [on("done", "approved")]}, "approved": {}},
            "p",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.status is Status.COMPLETED
    assert final.current == "approved"


# --- unknown events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param("nope", id="no state handles it"),
        # ``back`` belongs to ``outer.inner.other``, which is not active.
        pytest.param("back", id="only an inactive state handles it"),
    ],
)
async def test_an_event_no_active_state_handles_raises_invalid_event(
    store: ProcedureStore, event: str
) -> None:
    await store.register(_nested_doc(inner_handles=True))
    ex = await within(store.start("p", "1.0", {}))

    with pytest.raises(InvalidEvent):
        await within(ex.send(event))
    assert ex.state.current == "outer.inner.leaf"
    assert ex.state.status is Status.RUNNING


async def test_an_unknown_event_in_a_parallel_state_raises_invalid_event(
    store: ProcedureStore,
) -> None:
    await store.register(_two_regions("next", "next"))
    ex = await within(store.start("p", "1.0", {}))

    with pytest.raises(InvalidEvent):
        await within(ex.send("nope"))
    assert list(ex.state.active) == ["p.alpha.wait", "p.zeta.wait"]
