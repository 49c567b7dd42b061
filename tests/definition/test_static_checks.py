"""The static checks at registration (procstore/checks.py): what would leave an execution
waiting forever is refused, what cannot be meant is warned about.

Once, ``"event": "sucess"`` after an action passed validation; at run time the action's
``success`` was ignored and the execution waited until the CLI's ``--timeout``, then stayed
``running`` for every later ``resume`` to pick up again.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from procstore import ProcedureNotFound, ProcedureStore, ProcedureWarning
from tests.builders import fn, on
from tests.conftest import make_doc, problem_lines


async def _warnings(store: ProcedureStore, doc: dict[str, Any]) -> list[str]:
    with pytest.warns(ProcedureWarning) as caught:
        await store.register(doc)
    [warning] = caught
    assert isinstance(warning.message, ProcedureWarning)
    return [str(problem) for problem in warning.message.problems]


# -- misspelt outcomes ------------------------------------------------------------------------


async def test_a_misspelt_success_is_refused_with_the_nearest_event(store: ProcedureStore) -> None:
    doc = make_doc(
        {"work": {"action": {"type": "noop"}, "transitions": [on("sucess", "done")]}, "done": {}},
        "work",
    )
    assert await problem_lines(store, doc) == [
        "$.definition.states.work.transitions[0].event: 'sucess' is no event procstore raises "
        "and no transition here handles 'success': did you mean 'success'?"
    ]


async def test_a_misspelt_timeout_is_refused(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "wait": {
                "timeout_ms": 1000,
                "transitions": [on("approve", "done"), on("timout", "late")],
            },
            "done": {},
            "late": {},
        },
        "wait",
    )
    [problem] = await problem_lines(store, doc)
    assert problem.startswith("$.definition.states.wait.transitions[1].event: 'timout'")
    assert problem.endswith("did you mean 'timeout'?")


async def test_an_event_unlike_any_outcome_is_a_host_event(store: ProcedureStore) -> None:
    doc = make_doc(
        {"wait": {"transitions": [on("approve", "done"), on("stop", "done")]}, "done": {}}, "wait"
    )
    await store.register(doc)  # no problem, no warning (warnings are errors in this suite)


# -- waiting forever ----------------------------------------------------------------------------


async def test_an_action_whose_success_nothing_handles_and_nothing_else_moves_is_refused(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {
            "work": {"action": {"type": "noop"}, "transitions": [on("error", "failed")]},
            "failed": {},
        },
        "work",
    )
    [problem] = await problem_lines(store, doc)
    assert problem.startswith("$.definition.states.work.transitions: its action's success is")
    assert "it would wait in 'work' forever" in problem


@pytest.mark.parametrize(
    "waiting",
    [
        {"transitions": [on("approve", "done")]},  # a host's event moves it on
        {"timeout_ms": 1000, "transitions": [on("timeout", "done")]},  # or its timeout
    ],
    ids=["host event", "timeout"],
)
async def test_an_action_followed_by_a_wait_is_a_design(
    store: ProcedureStore, waiting: dict[str, Any]
) -> None:
    store.register_action("notify", lambda context: None)
    doc = make_doc({"notify": {"action": fn("notify"), **waiting}, "done": {}}, "notify")
    await store.register(doc)


async def test_a_compound_state_whose_completion_nothing_handles_is_refused(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {
            "phase": {
                "initial_state": "work",
                "states": {"work": {"action": {"type": "noop"}}},
                "transitions": [on("error", "failed")],
            },
            "failed": {},
        },
        "phase",
    )
    [problem] = await problem_lines(store, doc)
    assert problem.startswith("$.definition.states.phase.transitions: its completion ('done')")


# -- traps ---------------------------------------------------------------------------------------


async def test_a_state_from_which_no_end_can_be_reached_is_refused(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "a": {"transitions": [on("go", "b")]},
            "b": {"transitions": [on("again", "b")]},
            "end": {"transitions": []},
        },
        "a",
    )
    doc["definition"]["states"]["a"]["transitions"].append(on("finish", "end"))
    problems = await problem_lines(store, doc)
    assert problems == [
        "$.definition.states.b: no end can be reached from 'b': whatever happens there, the "
        "execution never gets to a terminal state (an endless loop); add a transition to a "
        "terminal state, e.g. on an event that stops it"
    ]


async def test_a_loop_with_a_way_out_is_no_trap(store: ProcedureStore) -> None:
    doc = make_doc({"b": {"transitions": [on("again", "b"), on("stop", "end")]}, "end": {}}, "b")
    await store.register(doc)


async def test_a_loop_through_an_action_that_can_fail_is_no_trap(store: ProcedureStore) -> None:
    store.register_action("poll", lambda context: None)
    doc = make_doc({"poll": {"action": fn("poll"), "transitions": [on("success", "poll")]}}, "poll")
    await store.register(doc)  # a failure ends it


async def test_every_region_must_be_able_to_end(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "both": {
                "parallel": {
                    "a": {"initial_state": "x", "states": {"x": {}}},
                    "b": {
                        "initial_state": "y",
                        "states": {"y": {"transitions": [on("spin", "y")]}},
                    },
                },
                "transitions": [on("done", "end")],
            },
            "end": {},
        },
        "both",
    )
    [problem] = await problem_lines(store, doc)
    assert problem.startswith("$.definition.states.both.parallel.b.states.y: no end can be")


# -- warnings ------------------------------------------------------------------------------------


async def test_transitions_that_can_never_fire_are_warned_about(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "phase": {
                "initial_state": "wait",
                "states": {
                    "wait": {"transitions": [on("go", "end"), on("done", "end")]},
                    "end": {},
                },
                "transitions": [on("done", "after"), on("timeout", "after"), on("error", "after")],
            },
            "after": {},
        },
        "phase",
    )
    assert await _warnings(store, doc) == [
        "$.definition.states.phase.transitions[1].event: this transition on 'timeout' can "
        "never fire: no timeout_ms applies here or inside",
        "$.definition.states.phase.transitions[2].event: this transition on 'error' can never "
        "fire: nothing inside can fail, and a host cannot send error to it",
        "$.definition.states.phase.states.wait.transitions[1].event: this transition on 'done' "
        "can never fire: done is raised only for compound and parallel states",
    ]


@pytest.mark.parametrize(
    ("guard", "warning"),
    [
        ("1 > 2", "the guard '1 > 2' is always false: this transition never fires"),
        ("False and amount > 5", "the guard 'False and amount > 5' is always false"),
        ("len('abc') == 3", "the guard \"len('abc') == 3\" is always true: the transitions "),
    ],
)
async def test_constant_guards_are_warned_about(
    store: ProcedureStore, guard: str, warning: str
) -> None:
    doc = make_doc(
        {
            "wait": {"transitions": [on("go", "a", guard=guard), on("go", "b")]},
            "a": {},
            "b": {},
        },
        "wait",
    )
    [found] = await _warnings(store, doc)
    assert found.startswith(f"$.definition.states.wait.transitions[0].guard: {warning}")


async def test_a_guard_that_reads_the_context_is_not_constant(store: ProcedureStore) -> None:
    doc = make_doc(
        {"wait": {"transitions": [on("go", "a", guard="amount > 1 and 1 > 2")]}, "a": {}}, "wait"
    )
    await store.register(doc)  # `amount` is read first: its value is not known in advance


async def test_a_procedure_with_warnings_is_registered(store: ProcedureStore) -> None:
    doc = make_doc(
        {"wait": {"transitions": [on("go", "a", guard="1 > 2"), on("x", "a")]}, "a": {}}, "wait"
    )
    with pytest.warns(ProcedureWarning):
        procedure = await store.register(doc)
    assert await store.get("p") == procedure


async def test_warnings_made_errors_register_nothing(store: ProcedureStore) -> None:
    doc = make_doc(
        {"wait": {"transitions": [on("go", "a", guard="1 > 2"), on("x", "a")]}, "a": {}}, "wait"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProcedureWarning)
        with pytest.raises(ProcedureWarning):
            await store.register(doc)
    with pytest.raises(ProcedureNotFound):
        await store.get("p")


async def test_a_state_that_waits_forever_is_reported_once(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "start": {"action": {"type": "noop"}, "transitions": [on("success", "work")]},
            "work": {"action": {"type": "noop"}, "transitions": [on("error", "failed")]},
            "failed": {},
        },
        "start",
    )
    [problem] = await problem_lines(store, doc)
    assert "it would wait in 'work' forever" in problem


async def test_an_error_transition_around_a_callback_state_can_fire(store: ProcedureStore) -> None:
    # fail_callback() fails the state, whatever its action.
    doc = make_doc(
        {
            "o": {
                "initial_state": "ask",
                "states": {
                    "ask": {
                        "action": {"type": "noop"},
                        "callback": True,
                        "transitions": [on("success", "ok")],
                    },
                    "ok": {},
                },
                "transitions": [on("done", "end"), on("error", "declined")],
            },
            "end": {},
            "declined": {},
        },
        "o",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProcedureWarning)
        await store.register(doc)
