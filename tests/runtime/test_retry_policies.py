"""A list of retry policies (Step Functions' retriers): the first whose `errors` match a failure
decides, each with its own budget and its own count of failures; one policy alone behaves as
it always has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import FailsThen, make_doc, records, wait_until, within


def _doc(retry: Any) -> dict[str, Any]:
    work = {
        "action": fn("work"),
        "retry": retry,
        "transitions": [on("success", "done"), on("error", "failed")],
    }
    return make_doc({"work": work, "done": {}, "failed": {}}, "work")


async def _run(store: ProcedureStore, action: FailsThen, retry: Any) -> Any:
    store.register_action("work", action)
    await store.register(_doc(retry))
    execution = await store.start("p", "1.0", {})
    return await within(execution.run_to_completion(timeout=5.0), 5.0)


def _delays(final: Any) -> list[float | None]:
    return [r.delay_ms for r in records(final.history, "retry")]


VALUE_THEN_CONNECTION = [
    {"errors": ["ValueError"], "max_attempts": 2, "interval_ms": 100},
    {"errors": ["ConnectionError"], "max_attempts": 4, "interval_ms": 10},
]


async def test_the_first_policy_whose_errors_match_decides(store: ProcedureStore) -> None:
    action = FailsThen("ok", *[ConnectionError("down")] * 10)
    final = await _run(store, action, VALUE_THEN_CONNECTION)

    assert action.attempts == [1, 2, 3, 4]  # the second policy's budget, not the first's
    assert _delays(final) == [10, 20, 40]
    assert final.current == "failed"


async def test_policies_match_an_errors_base_classes(store: ProcedureStore) -> None:
    retry = [{"errors": ["OSError"], "max_attempts": 3, "interval_ms": 1}]
    action = FailsThen("ok", *[ConnectionRefusedError("refused")] * 10)
    final = await _run(store, action, retry)

    assert action.attempts == [1, 2, 3]
    assert final.current == "failed"


async def test_each_policy_counts_only_the_failures_it_matched(store: ProcedureStore) -> None:
    # Two policies of 2 attempts each: alternating errors get one retry from each policy, and
    # the state fails when the first policy's error comes back a second time.
    errors = [ValueError("v"), ConnectionError("c"), ValueError("v"), ConnectionError("c")]
    action = FailsThen("ok", *errors)
    final = await _run(store, action, VALUE_THEN_CONNECTION)

    assert action.attempts == [1, 2, 3]
    assert final.current == "failed"
    assert [r.error.type for r in records(final.history, "action")] == [
        "ValueError",
        "ConnectionError",
        "ValueError",
    ]


async def test_each_policy_backs_off_from_its_own_count(store: ProcedureStore) -> None:
    action = FailsThen("ok", ValueError("v"), ConnectionError("c"), ConnectionError("c"))
    final = await _run(store, action, VALUE_THEN_CONNECTION)

    assert _delays(final) == [100, 10, 20]
    assert final.current == "done"


async def test_attempt_numbers_count_every_attempt_of_the_state(store: ProcedureStore) -> None:
    action = FailsThen("ok", ValueError("v"), ConnectionError("c"), ConnectionError("c"))
    final = await _run(store, action, VALUE_THEN_CONNECTION)

    assert action.attempts == [1, 2, 3, 4]
    assert [r.attempt for r in records(final.history, "action")] == [1, 2, 3, 4]
    assert [r.attempt for r in records(final.history, "retry")] == [2, 3, 4]


async def test_an_error_no_policy_matches_fails_the_state_at_once(store: ProcedureStore) -> None:
    action = FailsThen("ok", KeyError("k"))
    final = await _run(store, action, VALUE_THEN_CONNECTION)

    assert action.attempts == [1]
    assert records(final.history, "retry") == []
    assert final.current == "failed"


async def test_a_catch_all_policy_retries_what_the_policies_before_it_do_not_match(
    store: ProcedureStore,
) -> None:
    retry = [
        {"errors": ["ValueError"], "max_attempts": 1},
        {"errors": ["*"], "max_attempts": 3, "interval_ms": 1},
    ]
    action = FailsThen("ok", KeyError("k"), KeyError("k"), ValueError("v"))
    final = await _run(store, action, retry)

    assert action.attempts == [1, 2, 3]  # the ValueError is not retried: max_attempts 1
    assert final.current == "failed"


async def test_a_policy_without_errors_is_a_catch_all(store: ProcedureStore) -> None:
    retry = [{"errors": ["ValueError"], "max_attempts": 1}, {"max_attempts": 2, "interval_ms": 1}]
    action = FailsThen("ok", KeyError("k"))
    final = await _run(store, action, retry)

    assert action.attempts == [1, 2]
    assert final.current == "done"


async def test_a_list_of_one_policy_behaves_like_the_policy_alone(store: ProcedureStore) -> None:
    policy = {"errors": ["ConnectionError"], "max_attempts": 3, "interval_ms": 5}
    alone, listed = (
        FailsThen("ok", *[ConnectionError("c")] * 5),
        FailsThen("ok", *[ConnectionError("c")] * 5),
    )
    final_alone = await _run(store, alone, policy)
    other = ProcedureStore()
    final_listed = await _run(other, listed, [policy])

    assert alone.attempts == listed.attempts == [1, 2, 3]
    assert _delays(final_alone) == _delays(final_listed) == [5, 10]


async def test_the_counts_of_each_policy_survive_a_restart_mid_backoff(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    # The first policy allows one retry of a ValueError: the one after the restart is its
    # second failure, which ends the state, however many attempts came before.
    errors = [ValueError("v"), ConnectionError("c"), ValueError("v")]
    action = FailsThen("ok", *errors)
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("work", action)
        await store.register(_doc(VALUE_THEN_CONNECTION))
        execution = await store.start("p", "1.0", {}, auto=True)
        await wait_until(lambda: bool(clock.pending()))
        await clock.advance(0.1)  # the ValueError's delay: attempt 2 fails
        await wait_until(lambda: len(records(execution.history, "retry")) == 2)
    assert action.attempts == [1, 2]

    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("work", action)
        (resumed,) = await store.recover()
        await wait_until(lambda: bool(clock.pending()))
        await clock.advance(0.01)  # the ConnectionError's delay: attempt 3
        final = await within(resumed.run_to_completion())

    assert action.attempts == [1, 2, 3]
    assert (final.status, final.current) == (Status.COMPLETED, "failed")
