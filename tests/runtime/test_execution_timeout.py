"""The definition's `timeout_ms` bounds the whole execution (Step Functions' TimeoutSeconds):
when it runs out, what runs is cancelled and the execution fails with `Timeout`, compensating
what completed like any failure; its deadline is stored and kept across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.clock import ManualClock
from tests.conftest import Gate, make_doc, records, wait_until, within


def _doc(timeout_ms: float = 1000, compensate: bool = False) -> dict[str, Any]:
    reserve: dict[str, Any] = {"action": {"type": "noop"}, "transitions": [on("success", "work")]}
    if compensate:
        reserve["compensate"] = fn("undo")
    doc = make_doc(
        {
            "reserve": reserve,
            "work": {"action": fn("work"), "transitions": [on("success", "wait")]},
            "wait": {"transitions": [on("go", "done")]},
            "done": {},
        },
        "reserve",
    )
    doc["definition"]["timeout_ms"] = timeout_ms
    return doc


async def _start(store: ProcedureStore, work: Any, **doc: Any) -> Any:
    store.register_action("work", work)
    await store.register(_doc(**doc))
    return await store.start("p", "1.0", {}, auto=True)


async def test_the_execution_fails_with_timeout_when_its_time_runs_out(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    execution = await _start(timed_store, lambda c: "ok")
    await wait_until(lambda: execution.current == "wait")  # waiting for an event
    await clock.advance(0.999)
    assert execution.status is Status.RUNNING
    await clock.advance(0.001)
    final = await within(execution.run_to_completion())

    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "Timeout"
    assert clock.instant(records(final.history, "finished")[0].at) == 1.0
    (timeout,) = records(final.history, "timeout")
    assert timeout.state is None and "1000 ms" in (timeout.message or "")


async def test_a_running_action_is_cancelled_when_the_execution_times_out(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    gate = Gate()
    execution = await _start(timed_store, gate.action)
    await within(gate.started.wait())
    await clock.advance(1.0)
    final = await within(execution.run_to_completion())

    assert gate.cancelled and gate.finished.is_set()
    assert final.status is Status.FAILED
    (attempt,) = records(final.history, "action", state="work")
    assert attempt.error is not None and attempt.error.type == "Cancelled"


async def test_what_completed_is_compensated_when_the_execution_times_out(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    undone: list[str] = []
    timed_store.register_action("undo", lambda c: undone.append("reserve"))
    execution = await _start(timed_store, lambda c: "ok", compensate=True)
    await wait_until(lambda: execution.current == "wait")
    await clock.advance(1.0)
    final = await within(execution.run_to_completion())

    assert undone == ["reserve"]
    assert final.status is Status.ROLLED_BACK
    assert final.error is not None and final.error.type == "Timeout"


async def test_an_execution_that_ends_in_time_is_not_touched(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    execution = await _start(timed_store, lambda c: "ok")
    await wait_until(lambda: execution.current == "wait")
    await execution.send("go")
    await clock.advance(5.0)

    assert execution.status is Status.COMPLETED
    assert records(execution.history, "timeout") == []
    assert clock.pending() == []


async def test_a_reset_starts_the_executions_time_again(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    execution = await _start(timed_store, lambda c: "ok")
    await wait_until(lambda: execution.current == "wait")
    await clock.advance(0.6)
    await execution.reset()
    await wait_until(lambda: execution.current == "wait")
    await clock.advance(0.6)
    assert execution.status is Status.RUNNING
    await clock.advance(0.4)
    final = await within(execution.run_to_completion())
    assert final.status is Status.FAILED
    assert clock.instant(records(final.history, "finished")[0].at) == 1.6


async def test_the_deadline_is_kept_across_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with ProcedureStore(url, clock=clock) as store:
        execution = await _start(store, lambda c: "ok")
        await wait_until(lambda: execution.current == "wait")
    await clock.advance(0.7)  # closed for a while: a fresh second would end at 1.7

    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("work", lambda c: "ok")
        (resumed,) = await store.recover()
        await clock.advance(0.3)
        final = await within(resumed.run_to_completion())

    assert final.status is Status.FAILED
    assert clock.instant(records(final.history, "finished")[0].at) == 1.0


async def test_a_deadline_passed_while_nothing_ran_fails_at_once_without_running_more(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    gate = Gate()
    async with ProcedureStore(url, clock=clock) as store:
        execution = await _start(store, gate.action)
        await within(gate.started.wait())
    await clock.advance(5.0)

    ran: list[int] = []
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("work", lambda c: ran.append(1))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())

    assert ran == []
    assert final.status is Status.FAILED and final.id == execution.id
    assert final.error is not None and final.error.type == "Timeout"
