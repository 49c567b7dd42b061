"""A compensation's own retry policies (`compensate_retry`): a failed compensation runs again
like a retried action — policies matched in order, each with its own count — and its progress
is stored, so a restart in the middle of a delay goes on from there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import FailsThen, make_doc, records, wait_until, within


def _doc(compensate_retry: Any) -> dict[str, Any]:
    reserve = {
        "action": {"type": "noop"},
        "compensate": fn("undo"),
        "compensate_retry": compensate_retry,
        "transitions": [on("success", "declined")],
    }
    return make_doc({"reserve": reserve, "declined": {"outcome": "failure"}}, "reserve")


async def _roll_back(store: ProcedureStore, undo: FailsThen, retry: Any) -> Any:
    store.register_action("undo", undo)
    await store.register(_doc(retry))
    return await within((await store.start("p", "1.0", {})).run_to_completion())


async def test_a_failed_compensation_is_retried_until_it_succeeds(store: ProcedureStore) -> None:
    undo = FailsThen("undone", ConnectionError("down"), ConnectionError("down"))
    final = await _roll_back(store, undo, {"max_attempts": 3, "interval_ms": 1})

    assert undo.attempts == [1, 2, 3]
    assert final.status is Status.ROLLED_BACK
    (compensation,) = records(final.history, "compensation")
    assert (compensation.result, compensation.attempt) == ("undone", 3)


async def test_each_failed_compensation_attempt_is_recorded_with_its_delay(
    store: ProcedureStore,
) -> None:
    undo = FailsThen("undone", ConnectionError("down"))
    final = await _roll_back(store, undo, {"max_attempts": 3, "interval_ms": 5})

    (retry,) = records(final.history, "retry", state="reserve")
    assert (retry.attempt, retry.delay_ms, retry.message) == (2, 5, "compensation")
    assert retry.error is not None and retry.error.type == "ConnectionError"


async def test_a_compensation_that_fails_every_attempt_ends_the_execution_failed(
    store: ProcedureStore,
) -> None:
    undo = FailsThen("undone", *[ConnectionError("down")] * 10)
    final = await _roll_back(store, undo, {"max_attempts": 2, "interval_ms": 1})

    assert undo.attempts == [1, 2]
    assert final.status is Status.FAILED
    (compensation,) = records(final.history, "compensation")
    assert compensation.error is not None and compensation.attempt == 2


async def test_compensation_policies_are_matched_in_order_like_retry(
    store: ProcedureStore,
) -> None:
    retry = [{"errors": ["ValueError"], "max_attempts": 1}, {"max_attempts": 5, "interval_ms": 1}]
    undo = FailsThen("undone", ConnectionError("down"), ValueError("bad"))
    final = await _roll_back(store, undo, retry)

    assert undo.attempts == [1, 2]  # the ValueError is not retried
    assert final.status is Status.FAILED


async def test_without_compensate_retry_a_compensation_runs_once(store: ProcedureStore) -> None:
    undo = FailsThen("undone", ConnectionError("down"))
    store.register_action("undo", undo)
    doc = _doc(None)
    del doc["definition"]["states"]["reserve"]["compensate_retry"]
    await store.register(doc)
    final = await within((await store.start("p", "1.0", {})).run_to_completion())

    assert undo.attempts == [1]
    assert final.status is Status.FAILED
    assert records(final.history, "compensation")[0].attempt is None


async def test_a_compensation_retry_resumes_at_its_stored_deadline_and_count(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    retry = {"max_attempts": 3, "interval_ms": 100}
    undo = FailsThen(
        "undone", ConnectionError("down"), ConnectionError("down"), ConnectionError("down")
    )
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("undo", undo)
        await store.register(_doc(retry))
        execution = await store.start("p", "1.0", {}, auto=True)
        await wait_until(lambda: 0.1 in clock.pending())  # waiting before attempt 2
    await clock.advance(0.05)  # closed for half the delay

    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("undo", undo)
        (resumed,) = await store.recover()
        await wait_until(lambda: 0.1 in clock.pending())
        await clock.advance(0.05)  # the rest of the first delay: attempt 2
        await wait_until(lambda: len(records(resumed.history, "retry")) == 2)
        await wait_until(lambda: 0.3 in clock.pending())
        await clock.advance(0.2)  # the second delay: attempt 3, the last of the policy
        final = await within(resumed.run_to_completion())

    assert undo.attempts == [1, 2, 3]
    assert final.status is Status.FAILED and final.id == execution.id
    attempt_2 = next(r for r in final.history if r.kind == "retry" and r.attempt == 3)
    assert clock.instant(attempt_2.at) == 0.1  # attempt 2 ran (and failed) at its deadline
