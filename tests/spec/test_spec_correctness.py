"""SPEC-007's correctness table, one scenario per test.

| scenario                  | what is checked here                                          |
|---------------------------|---------------------------------------------------------------|
| happy path                | every state entered and completed, status completed           |
| error in the middle       | the failing state takes its `error` transition                |
| retry with backoff        | delays from the "retry" records, attempts' virtual instants   |
| guard conditions          | transitions blocked when their guards fail                    |
| timeout handling          | a state times out gracefully to its `timeout` transition      |
"""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import SPEC_MODULE, index_of, make_doc, records, wait_until, within


def _spec(name: str) -> dict[str, Any]:
    return {"type": "function", "module": SPEC_MODULE, "function": name}


def _pipeline(middle: dict[str, Any]) -> dict[str, Any]:
    """validate -> build (``middle``) -> deploy -> done, errors -> failed."""
    return make_doc(
        {
            "validate": {
                "action": _spec("validate"),
                "transitions": [on("success", "build"), on("error", "failed")],
            },
            "build": {**middle, "transitions": [on("success", "deploy"), on("error", "failed")]},
            "deploy": {
                "action": _spec("deploy"),
                "transitions": [on("success", "done"), on("error", "failed")],
            },
            "done": {},
            "failed": {"outcome": "failure"},
        },
        "validate",
    )


async def test_happy_path_every_state_completes(store: ProcedureStore) -> None:
    await store.register(_pipeline({"action": _spec("build")}))
    ex = await within(store.start("p", "1.0", {"env": "staging"}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.status == Status.COMPLETED
    assert final.current == "done"
    entered = [r.state for r in records(final.history, "entered")]
    assert entered == ["validate", "build", "deploy", "done"]
    results = {r.state: r.result for r in records(final.history, "action")}
    assert results == {"validate": "validated", "build": "built", "deploy": "deployed"}
    assert all(r.error is None for r in records(final.history, "action"))
    assert records(final.history, "retry") == []
    assert records(final.history, "timeout") == []
    assert records(final.history, "blocked") == []


async def test_error_in_the_middle_takes_the_error_transition(store: ProcedureStore) -> None:
    def build(context: dict[str, Any]) -> None:
        raise RuntimeError("compiler crashed")

    store.register_action("build", build)
    await store.register(_pipeline({"action": fn("build")}))
    ex = await within(store.start("p", "1.0", {"env": "prod"}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.current == "failed"
    assert final.status == Status.FAILED
    attempt = records(final.history, "action", state="build")
    assert len(attempt) == 1
    assert attempt[0].error is not None
    assert attempt[0].error.type == "RuntimeError"
    assert attempt[0].error.message == "compiler crashed"
    assert records(final.history, "transition", event="error", state="build", target="failed")
    assert records(final.history, "entered", state="deploy") == []
    assert index_of(final.history, "action", state="build") < index_of(
        final.history, "entered", state="failed"
    )


async def test_retry_on_failure_with_configurable_backoff(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    calls = 0

    def build(context: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("registry unavailable")
        return "built"

    timed_store.register_action("build", build)
    await timed_store.register(
        _pipeline(
            {
                "action": fn("build"),
                "retry": {"max_attempts": 3, "interval_ms": 20, "backoff_rate": 2},
            }
        )
    )
    ex = await within(timed_store.start("p", "1.0", {"env": "staging"}, auto=True))
    await clock.advance(0.059)
    assert calls == 2, "the third attempt did not wait its 40 ms"
    await clock.advance(0.001)
    final = await within(ex.run_to_completion())

    assert final.status == Status.COMPLETED
    assert final.current == "done"
    retries = records(final.history, "retry", state="build")
    assert [(r.attempt, r.delay_ms) for r in retries] == [(2, 20), (3, 40)]
    build_attempts = records(final.history, "action", state="build")
    assert [r.attempt for r in build_attempts] == [1, 2, 3]
    assert [r.error is not None for r in build_attempts] == [True, True, False]
    assert [clock.instant(r.at) for r in build_attempts] == [0.0, 0.02, 0.06]


@pytest.mark.parametrize(("env", "expected"), [("staging", "deploy_staging"), ("prod", "approval")])
async def test_guard_conditions_block_transitions_when_they_fail(
    store: ProcedureStore, env: str, expected: str
) -> None:
    await store.register(
        make_doc(
            {
                "validate": {
                    "action": _spec("validate"),
                    "transitions": [
                        on("success", "deploy_staging", guard='env == "staging"'),
                        on("success", "approval", guard='env == "prod"'),
                    ],
                },
                "deploy_staging": {},
                "approval": {},
            },
            "validate",
        )
    )
    ex = await within(store.start("p", "1.0", {"env": env}))
    assert await within(ex.send("success")) is True
    assert ex.state.current == expected
    other = {"deploy_staging", "approval"} - {expected}
    assert records(ex.state.history, "entered", state=other.pop()) == []


async def test_guard_conditions_all_failing_block_the_event(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "validate": {
                    "action": _spec("validate"),
                    "transitions": [on("success", "deploy", guard="approved")],
                },
                "deploy": {},
            },
            "validate",
        )
    )
    ex = await within(store.start("p", "1.0", {"env": "prod", "approved": False}))

    assert await within(ex.send("success")) is False
    assert ex.state.current == "validate"
    assert ex.state.status == Status.RUNNING
    assert records(ex.state.history, "blocked", state="validate", event="success")
    with pytest.raises(TimeoutError):
        await ex.run_to_completion(timeout=0.05)
    assert ex.state.current == "validate"


async def test_timeout_handling_states_time_out_gracefully(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(
        make_doc(
            {
                "deploy": {
                    "action": {"type": "sleep", "ms": 5_000},
                    "timeout_ms": 30,
                    "transitions": [on("success", "done"), on("timeout", "timed_out")],
                },
                "done": {},
                "timed_out": {},
            },
            "deploy",
        )
    )
    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(0.029)
    assert ex.state.current == "deploy", "timed out before its 30 ms"
    await clock.advance(0.001)
    final = await within(ex.run_to_completion())

    assert final.current == "timed_out"
    assert final.status == Status.COMPLETED
    (fired,) = records(final.history, "timeout", state="deploy")
    assert clock.instant(fired.at) == 0.03
    assert records(final.history, "transition", event="timeout", state="deploy")


async def test_timeout_handling_of_a_waiting_state_without_a_driver(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "await_approval": {
                    "timeout_ms": 30,
                    "transitions": [on("approve", "deploy"), on("timeout", "expired")],
                },
                "deploy": {},
                "expired": {"outcome": "failure"},
            },
            "await_approval",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await wait_until(lambda: ex.status != Status.RUNNING, timeout=1.0)

    assert ex.state.current == "expired"
    assert ex.state.status == Status.FAILED
