"""Choice states: entered, a choice state goes at once to the target of the first rule whose
guard is true, else to its default; a rule whose guard raises is passed over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from procstore.runtime.state import RunState
from tests.builders import on
from tests.conftest import make_doc, records, transitions_on, within

ROUTE = make_doc(
    {
        "route": {
            "choice": [
                {"guard": "amount > 1000", "target": "large"},
                {"guard": "amount > 100", "target": "medium"},
            ],
            "default": "small",
        },
        "large": {},
        "medium": {},
        "small": {},
    },
    "route",
)


@pytest.mark.parametrize(
    ("amount", "target"), [(5000, "large"), (500, "medium"), (50, "small")], ids=str
)
async def test_a_choice_goes_to_the_first_rule_whose_guard_is_true_else_the_default(
    store: ProcedureStore, amount: int, target: str
) -> None:
    await store.register(ROUTE)
    execution = await within(store.start("p", "1.0", {"amount": amount}))
    assert execution.status is Status.COMPLETED, "the choice did not route at once"
    assert execution.current == target


async def test_the_rules_are_tried_in_order_and_the_first_true_one_wins(
    store: ProcedureStore,
) -> None:
    await store.register(ROUTE)
    execution = await within(store.start("p", "1.0", {"amount": 5000}))  # both rules hold
    assert transitions_on(execution.history, "choice") == [("route", "large")]


async def test_a_rule_whose_guard_raises_is_passed_over_and_recorded(
    store: ProcedureStore,
) -> None:
    await store.register(ROUTE)
    execution = await within(store.start("p", "1.0", {}))  # no amount: both guards raise
    assert execution.current == "small"
    assert len(records(execution.history, "guard_error", state="route")) == 2


async def test_a_choice_after_an_action_routes_on_what_the_action_stored(
    store: ProcedureStore,
) -> None:
    store.register_action("score", lambda context: 720)
    doc = make_doc(
        {
            "rate": {
                "action": {"type": "function", "function": "score", "result": "score"},
                "transitions": [on("success", "decide")],
            },
            "decide": {"choice": [{"guard": "score >= 700", "target": "approved"}], "default": "x"},
            "approved": {},
            "x": {},
        },
        "rate",
    )
    await store.register(doc)
    execution = await within(store.start("p", "1.0", {}))
    final = await within(execution.run_to_completion())
    assert final.current == "approved"


async def test_a_choice_inside_a_compound_state_routes_to_a_sibling_or_out(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {
            "outer": {
                "initial_state": "pick",
                "states": {
                    "pick": {"choice": [{"guard": "go_out", "target": "out"}], "default": "inner"},
                    "inner": {},
                },
                "transitions": [on("done", "finished")],
            },
            "out": {},
            "finished": {},
        },
        "outer",
    )
    await store.register(doc)
    for go_out, where in ((True, "out"), (False, "finished")):
        execution = await within(store.start("p", "1.0", {"go_out": go_out}))
        assert (execution.status, execution.current) == (Status.COMPLETED, where)


async def test_a_choice_that_routes_to_another_choice_follows_both_at_once(
    store: ProcedureStore,
) -> None:
    states: dict[str, Any] = {
        "first": {"choice": [{"guard": "a", "target": "second"}], "default": "no"},
        "second": {"choice": [{"guard": "b", "target": "yes"}], "default": "no"},
        "yes": {},
        "no": {},
    }
    await store.register(make_doc(states, "first"))
    execution = await within(store.start("p", "1.0", {"a": True, "b": True}))
    assert execution.current == "yes"


async def test_a_choice_state_found_active_in_a_stored_checkpoint_routes_on_recovery(
    tmp_path: Path,
) -> None:
    """Routing is queued on entry and done before anything is stored; should a checkpoint
    still hold a choice state active, recovery routes it instead of leaving it stuck."""
    checkpoint = RunState.fresh({"amount": 5000}, auto=True)
    checkpoint.active = {"route"}
    order = {path: i for i, path in enumerate(ROUTE["definition"]["states"])}
    async with ProcedureStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        await store.register(ROUTE)
        backend = store._backend
        assert backend is not None
        snapshot = checkpoint.checkpoint("route", order)
        await backend.create_execution("x1", "p", "1.0", "running", snapshot, [])
        [execution] = await within(store.recover())
        final = await within(execution.run_to_completion())
    assert (final.status, final.current) == (Status.COMPLETED, "large")


async def test_choices_that_start_the_regions_of_a_parallel_state_each_route(
    store: ProcedureStore,
) -> None:
    def region(n: int, guard: str) -> dict[str, Any]:
        pick = {"choice": [{"guard": guard, "target": f"yes{n}"}], "default": f"no{n}"}
        return {
            "initial_state": f"pick{n}",
            "states": {f"pick{n}": pick, f"yes{n}": {}, f"no{n}": {}},
        }

    doc = make_doc(
        {
            "par": {
                "parallel": {"r1": region(1, "x"), "r2": region(2, "not x")},
                "transitions": [on("done", "end")],
            },
            "end": {},
        },
        "par",
    )
    await store.register(doc)
    execution = await within(store.start("p", "1.0", {"x": True}))
    final = await within(execution.run_to_completion())
    assert final.current == "end"
    assert transitions_on(final.history, "choice") == [
        ("par.r1.pick1", "par.r1.yes1"),
        ("par.r2.pick2", "par.r2.no2"),
    ]
