"""Guards, retry, timeouts, compensation and cancellation inside compound and
parallel states; deep charts; nothing left running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from procstore.runtime.steps import CANCEL_GRACE_SECONDS
from tests.builders import fn, on, region, step_region
from tests.clock import ManualClock
from tests.conftest import (
    Gate,
    assert_no_new_tasks,
    make_doc,
    records,
    slow_cleanup,
    transitions_on,
    wait_until,
    within,
)

# --- guards --------------------------------------------------------------------------------------


def _guarded_doc() -> dict[str, Any]:
    return make_doc(
        {
            "order": {
                "initial_state": "review",
                "states": {
                    "review": {
                        "transitions": [
                            on("go", "manual", guard="amount > 100"),
                            on("go", "auto"),
                        ]
                    },
                    "manual": {},
                    "auto": {},
                },
                "transitions": [
                    on("done", "closed"),
                    on("cancel", "cancelled", guard="cancellable"),
                ],
            },
            "closed": {},
            "cancelled": {},
        },
        "order",
    )


@pytest.mark.parametrize(("amount", "expected"), [(500, "order.manual"), (5, "order.auto")])
async def test_a_guard_on_a_nested_transition_chooses_the_target(
    store: ProcedureStore, amount: int, expected: str
) -> None:
    await store.register(_guarded_doc())
    ex = await within(store.start("p", "1.0", {"amount": amount, "cancellable": False}))

    await within(ex.send("go"))

    assert records(ex.state.history, "entered", state=expected, event="go")
    assert transitions_on(ex.state.history, "go") == [("order.review", expected)]
    assert ex.state.current == "closed"


async def test_a_guard_on_an_ancestors_transition_can_block_it(store: ProcedureStore) -> None:
    await store.register(_guarded_doc())
    ex = await within(store.start("p", "1.0", {"amount": 5, "cancellable": False}))

    assert await within(ex.send("cancel")) is False

    assert ex.state.current == "order.review"
    assert records(ex.state.history, "blocked", event="cancel")


async def test_a_guard_on_an_ancestors_transition_lets_it_fire(store: ProcedureStore) -> None:
    await store.register(_guarded_doc())
    ex = await within(store.start("p", "1.0", {"amount": 5, "cancellable": True}))

    assert await within(ex.send("cancel")) is True
    assert ex.state.current == "cancelled"


async def test_a_nested_guard_sees_its_leafs_action_result(store: ProcedureStore) -> None:
    store.register_action("score", lambda context: 7)
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "score",
                    "states": {
                        "score": {
                            "action": fn("score"),
                            "transitions": [
                                on("success", "high", guard="result > 5"),
                                on("success", "low"),
                            ],
                        },
                        "high": {},
                        "low": {},
                    },
                }
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert transitions_on(final.history, "success") == [("phase.score", "phase.high")]


# --- retry and timeouts --------------------------------------------------------------------------


async def test_retry_inside_a_region(store: ProcedureStore) -> None:
    calls = {"n": 0}

    def flaky(context: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("dropped")
        return "ok"

    store.register_action("flaky", flaky)
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": step_region(
                            fn("flaky"), retry={"max_attempts": 3, "interval_ms": 5}
                        ),
                        "fraud": step_region({"type": "noop"}),
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

    assert final.current == "approved"
    attempts = records(final.history, "action", state="checks.credit.run")
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert [a.error is None for a in attempts] == [False, False, True]
    assert [r.delay_ms for r in records(final.history, "retry", state="checks.credit.run")] == [
        5,
        10,
    ]


async def test_an_action_timeout_inside_a_compound_fails_the_attempt_and_bubbles_error(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    timed_store.register_action("hang", gate.action)
    await timed_store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "work",
                    "states": {
                        "work": {
                            "action": fn("hang", timeout_ms=20),
                            "transitions": [on("success", "fin")],
                        },
                        "fin": {},
                    },
                    "transitions": [on("done", "after"), on("error", "timed_out")],
                },
                "after": {},
                "timed_out": {},
            },
            "phase",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.advance(0.019)
    assert ex.state.current == "phase.work" and not gate.cancelled
    await clock.advance(0.001)
    final = await within(ex.run_to_completion())

    assert final.current == "timed_out"
    [attempt] = records(final.history, "action", state="phase.work")
    assert attempt.error is not None and attempt.error.type == "Timeout"
    assert clock.instant(attempt.at) == 0.02
    assert gate.cancelled


async def test_a_compound_states_timeout_covers_the_whole_stay_inside_it(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    """``phase`` may take 100 ms: 60 ms in ``first``, then ``second`` retries a failing action
    every 10 ms. The compound's timer is not restarted by moving between its children; its
    ``timeout`` fires to the compound's own transition while the child is retrying."""

    def broken(context: dict[str, Any]) -> None:
        raise ConnectionError("still down")

    timed_store.register_action("broken", broken)
    await timed_store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "first",
                    "timeout_ms": 100,
                    "states": {
                        "first": {
                            "action": {"type": "sleep", "ms": 60},
                            "transitions": [on("success", "second")],
                        },
                        "second": {
                            "action": fn("broken"),
                            "retry": {"max_attempts": 1000, "interval_ms": 10, "backoff_rate": 1},
                            "transitions": [on("success", "fin")],
                        },
                        "fin": {},
                    },
                    "transitions": [on("done", "after"), on("timeout", "late")],
                },
                "after": {},
                "late": {},
            },
            "phase",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.advance(0.099)
    assert ex.current == "phase.second", "the compound timed out before its 100 ms"
    await clock.advance(0.001)
    final = await within(ex.run_to_completion())

    assert final.current == "late"
    assert records(final.history, "timeout", state="phase")
    assert transitions_on(final.history, "timeout") == [("phase", "late")]
    assert len(records(final.history, "action", state="phase.second")) >= 2  # it was retrying
    (fired,) = records(final.history, "timeout", state="phase")
    assert clock.instant(fired.at) == 0.1, "not at 100 ms exactly"
    attempts_then = len(records(final.history, "action"))
    await clock.advance(0.03)
    assert len(records(ex.state.history, "action")) == attempts_then, "retries went on"


@pytest.mark.parametrize(
    ("event", "target"),
    [
        pytest.param("timeout", "late", id="its timeout transition"),
        pytest.param("error", "broken", id="its error transition when it has no timeout one"),
    ],
)
async def test_a_state_timeout_is_handled_by_an_ancestors_transition(
    store: ProcedureStore, event: str, target: str
) -> None:
    gate = Gate()
    store.register_action("hang", gate.action)
    await store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "work",
                    "states": {
                        "work": {
                            "action": fn("hang"),
                            "timeout_ms": 20,
                            "transitions": [on("success", "fin")],
                        },
                        "fin": {},
                    },
                    "transitions": [on("done", "after"), on(event, target)],
                },
                "after": {},
                target: {},
            },
            "phase",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.current == target
    assert records(final.history, "timeout", state="phase.work")
    assert transitions_on(final.history, event) == [("phase", target)]
    assert gate.cancelled


def _error_levels_doc(handlers: set[str]) -> dict[str, Any]:
    """outer > inner > work (fails); each level in ``handlers`` has an error transition to its
    own top-level state ``by_<level>``."""
    work: dict[str, Any] = {"action": {"type": "fail"}, "transitions": [on("success", "fin")]}
    inner: dict[str, Any] = {"initial_state": "work", "states": {"work": work, "fin": {}}}
    outer: dict[str, Any] = {
        "initial_state": "inner",
        "states": {"inner": inner},
        "transitions": [on("done", "after")],
    }
    states: dict[str, Any] = {"outer": outer, "after": {}}
    for level, state in (("work", work), ("inner", inner), ("outer", outer)):
        if level in handlers:
            state.setdefault("transitions", []).append(on("error", f"by_{level}"))
            states[f"by_{level}"] = {}
    if "transitions" in inner:  # no longer terminal in outer: its completion needs a handler
        inner["transitions"].append(on("done", "after"))
    return make_doc(states, "outer")


@pytest.mark.parametrize(
    ("handlers", "expected"),
    [
        ({"work", "inner", "outer"}, "by_work"),
        ({"inner", "outer"}, "by_inner"),
        ({"outer"}, "by_outer"),
    ],
)
async def test_error_is_tried_on_the_state_then_its_ancestors_innermost_first(
    store: ProcedureStore, handlers: set[str], expected: str
) -> None:
    await store.register(_error_levels_doc(handlers))
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.current == expected
    assert len(transitions_on(final.history, "error")) == 1


async def test_a_state_timeout_is_tried_innermost_first(store: ProcedureStore) -> None:
    gate = Gate()
    store.register_action("hang", gate.action)
    await store.register(
        make_doc(
            {
                "outer": {
                    "initial_state": "inner",
                    "states": {
                        "inner": {
                            "initial_state": "work",
                            "states": {
                                "work": {
                                    "action": fn("hang"),
                                    "timeout_ms": 20,
                                    "transitions": [on("success", "fin")],
                                },
                                "fin": {},
                            },
                            "transitions": [on("timeout", "by_inner"), on("done", "by_inner")],
                        },
                        "by_inner": {},
                    },
                    "transitions": [on("timeout", "by_outer"), on("done", "after")],
                },
                "by_outer": {},
                "after": {},
            },
            "outer",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert transitions_on(final.history, "timeout") == [("outer.inner", "outer.by_inner")]
    assert final.current == "after"  # by_inner completed outer


# --- compensation --------------------------------------------------------------------------------


async def test_compensation_undoes_every_completed_action_across_regions_newest_first(
    store: ProcedureStore,
) -> None:
    """prep, then regions a (a1 -> a2) and b (b1 -> b2, which fails). Completion order: prep,
    a1 (1 ms), b1 (10 ms), a2 (~21 ms); b2 fails at ~50 ms with no handler anywhere."""
    undone: list[str] = []

    def sleeper(name: str, seconds: float, fail: bool = False) -> Any:
        async def act(context: dict[str, Any]) -> str:
            await asyncio.sleep(seconds)
            if fail:
                raise RuntimeError(f"{name} failed")
            return name

        return act

    def undo(context: dict[str, Any]) -> None:
        undone.append("undo")

    for name, seconds in (("prep", 0.0), ("a1", 0.001), ("b1", 0.01), ("a2", 0.02)):
        store.register_action(name, sleeper(name, seconds))
    store.register_action("b2", sleeper("b2", 0.05, fail=True))
    store.register_action("undo", undo)

    def leaf(action: str, target: str) -> dict[str, Any]:
        return {
            "action": fn(action),
            "compensate": fn("undo"),
            "transitions": [on("success", target)],
        }

    await store.register(
        make_doc(
            {
                "prep": leaf("prep", "work"),
                "work": {
                    "parallel": {
                        "a": region(
                            "a1", {"a1": leaf("a1", "a2"), "a2": leaf("a2", "fin"), "fin": {}}
                        ),
                        "b": region(
                            "b1",
                            {
                                "b1": leaf("b1", "b2"),
                                "b2": {"action": fn("b2"), "transitions": [on("success", "fin")]},
                                "fin": {},
                            },
                        ),
                    },
                    "transitions": [on("done", "shipped")],
                },
                "shipped": {},
            },
            "prep",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    completed = [r.state for r in final.history if r.kind == "action" and r.error is None]
    assert completed == ["prep", "work.a.a1", "work.b.b1", "work.a.a2"]
    compensated = [r.state for r in final.history if r.kind == "compensation"]
    assert compensated == ["work.a.a2", "work.b.b1", "work.a.a1", "prep"]
    assert undone == ["undo"] * 4
    assert final.status is Status.ROLLED_BACK


# --- deep charts and cancellation of subtrees ----------------------------------------------------


def _deep_doc() -> dict[str, Any]:
    """outer (parallel) > r1 > phase (compound) > inner (parallel) > x, y."""
    work = {"action": {"type": "sleep", "ms": 5}, "transitions": [on("success", "fin")]}
    inner = {
        "parallel": {
            "x": region("work", {"work": work, "fin": {}}),
            "y": region("work", {"work": work, "fin": {}}),
        },
        "transitions": [on("done", "wrapup")],
    }
    phase = {
        "initial_state": "prep",
        "states": {
            "prep": {"action": {"type": "noop"}, "transitions": [on("success", "inner")]},
            "inner": inner,
            "wrapup": {"action": {"type": "noop"}},
        },
    }
    return make_doc(
        {
            "outer": {
                "parallel": {
                    "r1": region("phase", {"phase": phase}),
                    "r2": region("side", {"side": {"action": {"type": "sleep", "ms": 5}}}),
                },
                "transitions": [on("done", "end")],
            },
            "end": {},
        },
        "outer",
    )


async def test_a_parallel_state_inside_a_compound_inside_a_parallel_state_runs_to_completion(
    store: ProcedureStore,
) -> None:
    await store.register(_deep_doc())
    ex = await within(store.start("p", "1.0", {}))
    assert ex.state.current == "outer"
    final = await within(ex.run_to_completion())

    assert final.status is Status.COMPLETED
    assert final.current == "end"
    entered = [r.state for r in final.history if r.kind == "entered"]
    for path in (
        "outer.r1.phase.prep",
        "outer.r1.phase.inner",
        "outer.r1.phase.inner.x.fin",
        "outer.r1.phase.inner.y.fin",
        "outer.r1.phase.wrapup",
        "outer.r2.side",
        "end",
    ):
        assert path in entered, path
    assert transitions_on(final.history, "done") == [
        ("outer.r1.phase.inner", "outer.r1.phase.wrapup"),
        ("outer", "end"),
    ]


async def test_leaving_a_compound_cancels_everything_inside_it_nested_regions_included(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    x, y = Gate(), Gate()
    timed_store.register_action("x", x.action)
    timed_store.register_action("y", y.action)
    await timed_store.register(
        make_doc(
            {
                "fulfilment": {
                    "initial_state": "prep",
                    "states": {
                        "prep": {
                            "action": {"type": "noop"},
                            "transitions": [on("success", "checks")],
                        },
                        "checks": {
                            "timeout_ms": 60,
                            "parallel": {
                                "x": step_region(fn("x")),
                                "y": step_region(fn("y")),
                            },
                            "transitions": [on("done", "packed"), on("timeout", "late")],
                        },
                        "packed": {},
                        "late": {},
                    },
                    "transitions": [on("done", "shipping"), on("cancel", "cancelled")],
                },
                "shipping": {},
                "cancelled": {"transitions": [on("restart", "fulfilment")]},
            },
            "fulfilment",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await within(x.started.wait())
    await within(y.started.wait())
    assert ex.state.current == "fulfilment.checks"

    # No time passes: the send does not wait for the running actions (nor for the timeout).
    assert await clock.instantly(ex.send("cancel")) is True

    assert ex.state.current == "cancelled"
    assert list(ex.state.active) == ["cancelled"]
    await wait_until(lambda: x.finished.is_set() and y.finished.is_set(), timeout=0.5)
    assert x.cancelled and y.cancelled
    await clock.advance(0.1)  # past the checks state's 60 ms
    assert not records(ex.state.history, "timeout")
    assert ex.state.current == "cancelled"
    assert ex.state.status is Status.RUNNING


async def test_leaving_a_compound_waits_for_a_slow_cleanup_only_its_grace_period(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    cleaned = slow_cleanup(timed_store, clock, 5.0)
    await timed_store.register(
        make_doc(
            {
                "phase": {
                    "initial_state": "work",
                    "states": {
                        "work": {"action": fn("slow"), "transitions": [on("success", "fin")]},
                        "fin": {},
                    },
                    "transitions": [on("stop", "stopped")],
                },
                "stopped": {},
            },
            "phase",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.settle()

    sending = asyncio.create_task(ex.send("stop"))
    await clock.advance(CANCEL_GRACE_SECONDS - 0.001)
    assert not sending.done(), "the send did not give the action's cleanup its grace period"
    await clock.advance(0.001)
    assert sending.done(), "the send waited past the grace period"
    assert sending.result() is True
    assert ex.state.current == "stopped"
    assert cleaned == []
    await clock.advance(4.0)  # the cleanup goes on, and ends, by itself
    assert cleaned == ["cleaned"]


# --- nothing left running ------------------------------------------------------------------------


async def test_no_task_survives_a_completed_chart(store: ProcedureStore) -> None:
    baseline = set(asyncio.all_tasks())
    await store.register(_deep_doc())
    ex = await within(store.start("p", "1.0", {}))
    await within(ex.run_to_completion())

    await assert_no_new_tasks(baseline, settle=0.02)


async def test_no_task_survives_a_chart_whose_region_failed(store: ProcedureStore) -> None:
    gate = Gate()
    store.register_action("hang", gate.action)
    baseline = set(asyncio.all_tasks())
    await store.register(
        make_doc(
            {
                "checks": {
                    "timeout_ms": 500,
                    "parallel": {
                        "a": step_region(
                            {"type": "fail"}, retry={"max_attempts": 2, "interval_ms": 1}
                        ),
                        "b": step_region(fn("hang"), timeout_ms=400),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion())

    assert final.status is Status.FAILED
    await assert_no_new_tasks(baseline, settle=0.02)
    assert gate.cancelled


async def test_no_task_survives_a_cancelled_chart(store: ProcedureStore) -> None:
    x, y = Gate(), Gate()
    store.register_action("x", x.action)
    store.register_action("y", y.action)
    baseline = set(asyncio.all_tasks())
    await store.register(
        make_doc(
            {
                "checks": {
                    "timeout_ms": 500,
                    "parallel": {
                        "x": step_region(fn("x")),
                        "y": step_region(fn("y")),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await within(x.started.wait())
    await within(y.started.wait())

    final = await within(ex.cancel())

    assert final.status is Status.CANCELLED
    assert x.cancelled and y.cancelled
    await assert_no_new_tasks(baseline, settle=0.02)
