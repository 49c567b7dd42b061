"""Wait states: a state with ``wait`` waits a fixed duration, until a timestamp, or for a
duration or timestamp read from the context, then raises ``success``; what cannot be worked
out fails the state with ``error``. (That a wait survives a crash without starting over:
tests/storage/test_wait_durability.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import on
from tests.clock import ManualClock
from tests.conftest import make_doc, records, within


def waiting(wait: dict[str, Any], **state: Any) -> dict[str, Any]:
    """A document whose state ``w`` waits as ``wait`` says, then goes to ``done`` (``failed``
    on error)."""
    return make_doc(
        {
            "w": {
                "wait": wait,
                "transitions": [on("success", "done"), on("error", "failed")],
                **state,
            },
            "done": {},
            "failed": {},
        },
        "w",
    )


def iso(clock: ManualClock, seconds_from_now: float) -> str:
    """The RFC 3339 timestamp of ``seconds_from_now`` on ``clock``."""
    return datetime.fromtimestamp(clock.time() + seconds_from_now, UTC).isoformat()


async def ends_at(store: ProcedureStore, clock: ManualClock, context: dict[str, Any]) -> float:
    """Start ``p`` driven with ``context`` and advance time until it has ended; return when
    it left the wait state (seconds on ``clock``)."""
    execution = await within(store.start("p", "1.0", context, auto=True))
    for _ in range(100):
        if execution.status is not Status.RUNNING:
            break
        await clock.advance(1)
    (left,) = records(execution.history, "transition", state="w")
    return clock.instant(left.at)


@pytest.mark.parametrize(
    "wait", [{"seconds": 5}, {"ms": 5000}, {"seconds_path": "$.delay"}], ids=str
)
async def test_a_wait_for_a_duration_ends_with_success_after_exactly_that_long(
    timed_store: ProcedureStore, clock: ManualClock, wait: dict[str, Any]
) -> None:
    await timed_store.register(waiting(wait))
    execution = await within(timed_store.start("p", "1.0", {"delay": 5}, auto=True))
    await clock.advance(4.999)
    assert execution.current == "w", "the wait ended early"
    await clock.advance(0.001)
    assert execution.current == "done"
    (left,) = records(execution.history, "transition", state="w")
    assert (left.event, clock.instant(left.at)) == ("success", 5.0)


async def test_a_wait_until_a_timestamp_ends_at_that_instant(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(waiting({"timestamp": iso(clock, 30)}))
    assert await ends_at(timed_store, clock, {}) == 30.0


async def test_a_wait_until_a_timestamp_read_from_the_context_ends_at_that_instant(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(waiting({"timestamp_path": "$.order.ship_at"}))
    in_paris = timezone(timedelta(hours=1))  # any offset: the instant is what counts
    ship_at = datetime.fromtimestamp(clock.time() + 12, UTC).astimezone(in_paris)
    assert await ends_at(timed_store, clock, {"order": {"ship_at": ship_at.isoformat()}}) == 12.0


async def test_a_timestamp_already_past_ends_the_wait_at_once(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(waiting({"timestamp": "2001-01-01T00:00:00Z"}))
    execution = await within(timed_store.start("p", "1.0", {}))
    final = await clock.instantly(execution.run_to_completion())
    assert final.current == "done"


async def test_the_wait_record_says_until_when(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(waiting({"seconds": 90}))
    execution = await within(timed_store.start("p", "1.0", {}))
    (wait,) = records(execution.history, "wait", state="w")
    assert wait.message == iso(clock, 90)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({}, "seconds_path $.delay: nothing at $.delay"),
        ({"delay": "ten"}, "expected a number of seconds, got the string 'ten'"),
        ({"delay": True}, "expected a number of seconds, got true"),
        ({"delay": -1}, "-1 seconds is not between 0 and"),
    ],
    ids=["missing", "a string", "a boolean", "negative"],
)
async def test_a_duration_path_that_names_no_duration_fails_the_state_with_a_wait_error(
    timed_store: ProcedureStore, context: dict[str, Any], message: str
) -> None:
    await timed_store.register(waiting({"seconds_path": "$.delay"}))
    execution = await within(timed_store.start("p", "1.0", context))
    final = await within(execution.run_to_completion())
    assert final.current == "failed"
    (wait,) = records(final.history, "wait", state="w")
    assert wait.error is not None and wait.error.type == "WaitError"
    assert message in wait.error.message
    assert records(final.history, "transition", state="w")[0].event == "error"


@pytest.mark.parametrize("value", [None, 12, "next tuesday", "2026-12-24T18:00:00"], ids=str)
async def test_a_timestamp_path_that_names_no_timestamp_fails_the_state_with_a_wait_error(
    timed_store: ProcedureStore, value: Any
) -> None:
    await timed_store.register(waiting({"timestamp_path": "$.at"}))
    execution = await within(timed_store.start("p", "1.0", {"at": value}))
    final = await within(execution.run_to_completion())
    assert final.current == "failed"
    (wait,) = records(final.history, "wait", state="w")
    assert wait.error is not None and wait.error.type == "WaitError"
    assert "timestamp_path $.at" in wait.error.message


async def test_a_wait_error_is_seen_by_guards_as_the_states_error(
    timed_store: ProcedureStore,
) -> None:
    doc = waiting({"seconds_path": "$.delay"})
    doc["definition"]["states"]["w"]["transitions"] = [
        on("success", "done"),
        on("error", "done", guard="error['type'] == 'WaitError'"),
        on("error", "failed"),
    ]
    await timed_store.register(doc)
    execution = await within(timed_store.start("p", "1.0", {}))
    assert (await within(execution.run_to_completion())).current == "done"


async def test_an_undriven_wait_waits_for_send_of_success_like_an_action(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(waiting({"seconds": 1}))
    execution = await within(timed_store.start("p", "1.0", {}))
    await clock.advance(2)
    assert execution.current == "w"
    assert records(execution.history, "ignored") == []
    final = await clock.instantly(execution.run_to_completion())
    assert final.current == "done"


async def test_an_event_that_leaves_a_wait_state_ends_its_wait(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    doc = waiting({"seconds": 10})
    doc["definition"]["states"]["w"]["transitions"].append(on("skip", "failed"))
    await timed_store.register(doc)
    execution = await within(timed_store.start("p", "1.0", {}, auto=True))
    assert await execution.send("skip")
    await clock.advance(20)
    assert execution.current == "failed"
    assert clock.pending() == [], "the wait's timer outlived its state"


async def test_a_state_timeout_shorter_than_the_wait_cuts_it_short(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    doc = waiting({"seconds": 10}, timeout_ms=2000)
    doc["definition"]["states"]["w"]["transitions"].append(on("timeout", "failed"))
    await timed_store.register(doc)
    execution = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.advance(2)
    assert execution.current == "failed"
    (left,) = records(execution.history, "transition", state="w")
    assert (left.event, clock.instant(left.at)) == ("timeout", 2.0)


async def test_a_terminal_wait_state_ends_the_execution_when_the_wait_is_over(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    await timed_store.register(make_doc({"w": {"wait": {"ms": 250}}}, "w"))
    execution = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.advance(0.25)
    assert execution.status is Status.COMPLETED
