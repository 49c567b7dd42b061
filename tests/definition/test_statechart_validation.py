"""Registering statecharts: where each field may go, initial states, parallel
regions, target resolution, reachability, state names; each problem with its JSON path. Flat
documents stay valid and unchanged."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import on, region
from tests.conftest import SPEC_MODULE, make_doc, problems_by_path, within


def _leaf_to(target: str, event: str = "next") -> dict[str, Any]:
    return {"transitions": [on(event, target)]}


def _checks(**extra: Any) -> dict[str, Any]:
    """A valid parallel state with regions credit and fraud (run -> ok)."""
    return {
        "parallel": {
            "credit": region("run", {"run": _leaf_to("ok"), "ok": {}}),
            "fraud": region("run", {"run": _leaf_to("ok"), "ok": {}}),
        },
        "transitions": [on("done", "approved")],
        **extra,
    }


def _fulfilment(**extra: Any) -> dict[str, Any]:
    """A valid compound state: picking -> packed."""
    return {
        "initial_state": "picking",
        "states": {"picking": _leaf_to("packed"), "packed": {}},
        "transitions": [on("done", "approved")],
        **extra,
    }


def _doc(top: dict[str, Any], initial: str = "top") -> dict[str, Any]:
    return make_doc({**top, "approved": {}}, initial)


# --- valid charts --------------------------------------------------------------------------------


async def test_a_chart_with_compound_and_parallel_states_is_valid(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "fulfilment": {**_fulfilment(), "transitions": [on("done", "checks")]},
            "checks": _checks(),
            "approved": {},
        },
        "fulfilment",
    )
    procedure = await store.register(doc)

    assert procedure.definition.states["fulfilment"].states is not None
    assert procedure.definition.states["checks"].parallel is not None


async def test_compound_and_parallel_states_may_have_timeout_ms(store: ProcedureStore) -> None:
    doc = _doc({"top": _fulfilment(timeout_ms=100)})
    doc["definition"]["states"]["checks"] = _checks(timeout_ms=100)
    doc["definition"]["states"]["top"]["transitions"] = [on("done", "checks")]

    await store.register(doc)


# --- compound states -----------------------------------------------------------------------------


async def test_a_compound_state_without_initial_state_is_rejected(store: ProcedureStore) -> None:
    top = _fulfilment()
    del top["initial_state"]

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.initial_state" in problems


async def test_a_compound_initial_state_that_is_not_its_child_is_rejected(
    store: ProcedureStore,
) -> None:
    problems = await problems_by_path(store, _doc({"top": _fulfilment(initial_state="approved")}))

    assert "$.definition.states.top.initial_state" in problems


async def test_a_nested_compound_without_initial_state_is_rejected_at_its_path(
    store: ProcedureStore,
) -> None:
    inner = _fulfilment()
    del inner["initial_state"]
    del inner["transitions"]
    top = {
        "initial_state": "inner",
        "states": {"inner": inner},
        "transitions": [on("done", "approved")],
    }

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.states.inner.initial_state" in problems


async def test_a_region_without_initial_state_is_rejected(store: ProcedureStore) -> None:
    top = _checks()
    del top["parallel"]["fraud"]["initial_state"]

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.parallel.fraud.initial_state" in problems


async def test_a_region_initial_state_that_is_not_its_child_is_rejected(
    store: ProcedureStore,
) -> None:
    top = _checks()
    top["parallel"]["fraud"]["initial_state"] = "nowhere"

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.parallel.fraud.initial_state" in problems


async def test_initial_state_on_a_leaf_is_rejected(store: ProcedureStore) -> None:
    problems = await problems_by_path(
        store,
        _doc({"top": {"initial_state": "approved", "transitions": [on("success", "approved")]}}),
    )

    assert "$.definition.states.top.initial_state" in problems


# --- parallel states -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "regions", [pytest.param(["credit"], id="one region"), pytest.param([], id="no regions")]
)
async def test_a_parallel_state_with_fewer_than_two_regions_is_rejected(
    store: ProcedureStore, regions: list[str]
) -> None:
    top = _checks()
    top["parallel"] = {name: top["parallel"][name] for name in regions}

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.parallel" in problems


async def test_a_state_with_both_states_and_parallel_is_rejected(store: ProcedureStore) -> None:
    top = _checks(states={"x": {}})

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.states" in problems


@pytest.mark.parametrize("extra", ["transitions", "action", "timeout_ms", "retry"])
async def test_a_region_with_a_field_other_than_initial_state_and_states_is_rejected(
    store: ProcedureStore, extra: str
) -> None:
    value = {
        "transitions": [on("done", "approved")],
        "action": {"type": "noop"},
        "timeout_ms": 100,
        "retry": {"max_attempts": 2},
    }[extra]
    top = _checks()
    top["parallel"]["credit"][extra] = value

    problems = await problems_by_path(store, _doc({"top": top}))

    assert f"$.definition.states.top.parallel.credit.{extra}" in problems


# --- leaf-only fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", {"type": "noop"}),
        ("retry", {"max_attempts": 2}),
        ("compensate", {"type": "noop"}),
        ("outcome", "failure"),
    ],
)
@pytest.mark.parametrize("kind", ["compound", "parallel"])
async def test_leaf_only_fields_on_a_compound_or_parallel_state_are_rejected(
    store: ProcedureStore, kind: str, field: str, value: Any
) -> None:
    top = _fulfilment() if kind == "compound" else _checks()
    top[field] = value

    problems = await problems_by_path(store, _doc({"top": top}))

    assert f"$.definition.states.top.{field}" in problems


async def test_an_action_on_a_compound_state_is_rejected(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, _doc({"top": _fulfilment(action={"type": "noop"})}))

    assert list(problems) == ["$.definition.states.top.action"]


async def test_retry_on_a_parallel_state_is_rejected(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, _doc({"top": _checks(retry={"max_attempts": 3})}))

    assert list(problems) == ["$.definition.states.top.retry"]


# --- targets -------------------------------------------------------------------------------------


async def test_an_ambiguous_plain_target_is_rejected(store: ProcedureStore) -> None:
    """``packed`` is both a sibling of ``picking`` and a top-level state."""
    doc = make_doc(
        {
            "top": _fulfilment(transitions=[on("done", "packed")]),
            "packed": {},
        },
        "top",
    )

    problems = await problems_by_path(store, doc)

    path = "$.definition.states.top.states.picking.transitions[0].target"
    assert path in problems
    assert "ambiguous" in " ".join(problems[path])


async def test_a_full_path_resolves_what_a_plain_name_could_not(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "top": {
                "initial_state": "picking",
                "states": {
                    "picking": {
                        "transitions": [on("next", "top.packed"), on("skip", "packed_top")]
                    },
                    "packed": {},
                },
                "transitions": [on("done", "packed_top")],
            },
            "packed_top": {},
        },
        "top",
    )

    await store.register(doc)


async def test_an_unknown_nested_target_is_rejected(store: ProcedureStore) -> None:
    top = _fulfilment()
    top["states"]["picking"]["transitions"].append(on("jump", "top.nowhere"))

    problems = await problems_by_path(store, _doc({"top": top}))

    assert "$.definition.states.top.states.picking.transitions[1].target" in problems


async def test_a_plain_target_naming_a_cousin_is_rejected(store: ProcedureStore) -> None:
    """A plain name is a sibling or a top-level state, not a state elsewhere in the tree."""
    doc = make_doc(
        {
            "a": {
                "initial_state": "x",
                "states": {"x": _leaf_to("hidden"), "end": {}},
                "transitions": [on("done", "b")],
            },
            "b": {"initial_state": "hidden", "states": {"hidden": {}}},
        },
        "a",
    )

    problems = await problems_by_path(store, doc)

    assert "$.definition.states.a.states.x.transitions[0].target" in problems


async def test_a_transition_across_regions_is_rejected(store: ProcedureStore) -> None:
    top = _checks()
    top["parallel"]["credit"]["states"]["run"]["transitions"].append(on("cross", "top.fraud.ok"))

    problems = await problems_by_path(store, _doc({"top": top}))

    path = "$.definition.states.top.parallel.credit.states.run.transitions[1].target"
    assert path in problems
    assert "region" in " ".join(problems[path])


async def test_a_transition_across_regions_of_a_nested_parallel_state_is_rejected(
    store: ProcedureStore,
) -> None:
    checks = _checks()
    del checks["transitions"]
    checks["parallel"]["fraud"]["states"]["run"]["transitions"].append(
        on("cross", "top.checks.credit.run")
    )
    top = {
        "initial_state": "checks",
        "states": {"checks": checks},
        "transitions": [on("done", "approved")],
    }

    problems = await problems_by_path(store, _doc({"top": top}))

    assert (
        "$.definition.states.top.states.checks.parallel.fraud.states.run.transitions[1].target"
        in problems
    )


async def test_a_region_may_leave_its_parallel_state(store: ProcedureStore) -> None:
    top = _checks()
    top["parallel"]["credit"]["states"]["run"]["transitions"].append(on("abort", "approved"))

    await store.register(_doc({"top": top}))


# --- reachability --------------------------------------------------------------------------------


async def test_an_unreachable_nested_state_is_rejected(store: ProcedureStore) -> None:
    top = _fulfilment()
    top["states"]["orphan"] = {}

    problems = await problems_by_path(store, _doc({"top": top}))

    assert list(problems) == ["$.definition.states.top.states.orphan"]


async def test_an_unreachable_state_in_a_region_is_rejected(store: ProcedureStore) -> None:
    top = _checks()
    top["parallel"]["fraud"]["states"]["orphan"] = {}

    problems = await problems_by_path(store, _doc({"top": top}))

    assert list(problems) == ["$.definition.states.top.parallel.fraud.states.orphan"]


async def test_a_state_reached_only_through_a_compounds_transition_is_reachable(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {
            "top": _fulfilment(transitions=[on("done", "approved"), on("cancel", "cancelled")]),
            "approved": {},
            "cancelled": {},
        },
        "top",
    )

    await store.register(doc)


async def test_a_dotted_target_into_one_region_makes_the_other_regions_reachable(
    store: ProcedureStore,
) -> None:
    """Entering ``checks.fraud.ok`` enters ``checks``, so every other region's initial state
    too: nothing in ``checks.credit`` is unreachable."""
    checks = _checks()
    doc = make_doc(
        {"start": _leaf_to("checks.fraud.ok", "go"), "checks": checks, "approved": {}},
        "start",
    )
    fraud = checks["parallel"]["fraud"]["states"]
    fraud["ok"] = {"transitions": [on("redo", "run"), on("close", "closed")]}
    fraud["closed"] = {}

    await store.register(doc)


async def test_reachability_of_regions_does_not_depend_on_transition_order(
    store: ProcedureStore,
) -> None:
    """The parallel state is also entered by its own name; declaring the dotted target first
    must not hide that."""
    checks = _checks()
    doc = make_doc(
        {
            "start": {"transitions": [on("go", "checks.fraud.ok"), on("enter", "checks")]},
            "checks": checks,
            "approved": {},
        },
        "start",
    )

    await store.register(doc)


# --- state names ---------------------------------------------------------------------------------


async def test_a_top_level_state_name_with_a_dot_is_rejected(store: ProcedureStore) -> None:
    doc = make_doc({"a.b": {}}, "a.b")

    problems = await problems_by_path(store, doc)

    assert '$.definition.states["a.b"]' in problems


async def test_a_nested_state_name_with_a_dot_is_rejected(store: ProcedureStore) -> None:
    top = {
        "initial_state": "pick",
        "states": {"pick": _leaf_to("x.y"), "x.y": {}},
        "transitions": [on("done", "approved")],
    }

    problems = await problems_by_path(store, _doc({"top": top}))

    assert '$.definition.states.top.states["x.y"]' in problems


async def test_a_region_name_with_a_dot_is_rejected(store: ProcedureStore) -> None:
    top = _checks()
    top["parallel"]["cre.dit"] = top["parallel"].pop("credit")

    problems = await problems_by_path(store, _doc({"top": top}))

    assert '$.definition.states.top.parallel["cre.dit"]' in problems


async def test_every_problem_of_a_chart_is_reported_at_once(store: ProcedureStore) -> None:
    fulfilment = _fulfilment(action={"type": "noop"})
    fulfilment["states"]["orphan"] = {}
    checks = _checks(retry={"max_attempts": 2})
    del checks["parallel"]["fraud"]
    doc = make_doc(
        {
            "top": {**fulfilment, "transitions": [on("done", "checks")]},
            "checks": checks,
            "approved": {},
        },
        "top",
    )

    problems = await problems_by_path(store, doc)

    assert {
        "$.definition.states.top.action",
        "$.definition.states.top.states.orphan",
        "$.definition.states.checks.retry",
        "$.definition.states.checks.parallel",
    } <= set(problems)


# --- flat documents ------------------------------------------------------------------------------


def _deploy_doc() -> dict[str, Any]:
    action = {"type": "function", "module": SPEC_MODULE}
    return make_doc(
        {
            "validate": {
                "action": {**action, "function": "validate", "result": "validation"},
                "transitions": [on("success", "build"), on("error", "failed")],
            },
            "build": {
                "action": {**action, "function": "build"},
                "transitions": [on("success", "done")],
            },
            "failed": {"outcome": "failure"},
            "done": {},
        },
        "validate",
        name="deploy_workflow",
    )


async def test_a_flat_document_is_still_valid_and_unchanged(store: ProcedureStore) -> None:
    doc = _deploy_doc()
    original = copy.deepcopy(doc)

    procedure = await store.register(doc)

    assert doc == original  # registration does not touch the document
    dumped = procedure.definition.model_dump(mode="json", exclude_defaults=True)
    assert dumped == original["definition"]
    assert procedure.definition.is_flat


async def test_a_flat_document_runs_as_before(store: ProcedureStore) -> None:
    await store.register(_deploy_doc())
    ex = await within(store.start("deploy_workflow", "1.0", {"env": "staging"}))
    final = await within(ex.run_to_completion())

    assert final.status is Status.COMPLETED
    assert final.current == "done"
    assert list(final.active) == ["done"]
    assert [r.state for r in final.history if r.kind == "entered"] == ["validate", "build", "done"]
    assert [(r.state, r.target) for r in final.history if r.kind == "transition"] == [
        ("validate", "build"),
        ("build", "done"),
    ]


async def test_a_flat_document_compiles_to_the_flat_machine(store: ProcedureStore) -> None:
    """The hierarchical machine is slower: flat definitions must not pay for it."""
    from transitions.extensions.asyncio import HierarchicalAsyncMachine

    await store.register(_deploy_doc())
    await store.register(_doc({"top": _fulfilment()}))

    flat = store._compiled("deploy_workflow", "1.0")
    nested = store._compiled("p", "1.0")
    assert flat.flat and not isinstance(flat.machine, HierarchicalAsyncMachine)
    assert not nested.flat and isinstance(nested.machine, HierarchicalAsyncMachine)


async def test_a_dotted_target_in_a_flat_document_is_rejected(store: ProcedureStore) -> None:
    problems = await problems_by_path(store, make_doc({"a": _leaf_to("a.b"), "b": {}}, "a"))

    assert "$.definition.states.a.transitions[0].target" in problems
