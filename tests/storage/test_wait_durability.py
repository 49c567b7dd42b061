"""A wait state's end is stored with its entry: after a crash (``store.close()`` while it
waits, which detaches it as a kill would) the reopened store waits until that stored instant —
at once when it passed meanwhile — and never starts the wait over. On SQLite."""

from __future__ import annotations

from pathlib import Path

from procstore import ProcedureStore, Status
from tests.builders import on
from tests.clock import ManualClock
from tests.conftest import make_doc, records, wait_until, within

TEN_SECONDS = make_doc(
    {
        "w": {"wait": {"seconds_path": "$.delay"}, "transitions": [on("success", "done")]},
        "done": {},
    },
    "w",
)


async def start_and_crash(url: str, clock: ManualClock, closed_after: float) -> str:
    """Start a driven 10 s wait, let ``closed_after`` seconds pass, close the store."""
    async with ProcedureStore(url, clock=clock) as store:
        await store.register(TEN_SECONDS)
        execution = await within(store.start("p", "1.0", {"delay": 10}, auto=True))
        await wait_until(lambda: 10.0 in clock.pending())
        await clock.advance(closed_after)
    assert clock.pending() == [], "the closed store still waits"
    return execution.id


async def test_a_wait_resumed_after_a_crash_ends_at_its_stored_instant(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'procstore.db'}"
    execution_id = await start_and_crash(url, clock, closed_after=4)
    await clock.advance(3)  # closed for a while: a fresh 10 s wait would end at 17 s

    async with ProcedureStore(url, clock=clock) as store:
        (resumed,) = await store.recover()
        assert resumed.id == execution_id
        await wait_until(lambda: bool(clock.pending()) and clock.pending()[0] < 30)
        assert clock.pending()[0] == 10.0, "the wait is not armed for its stored end"
        await clock.advance(2.999)
        assert resumed.current == "w"
        await clock.advance(0.001)
        final = await within(resumed.run_to_completion())
    (left,) = records(final.history, "transition", state="w")
    assert clock.instant(left.at) == 10.0
    assert len(records(final.history, "wait")) == 1, "the wait started over"


async def test_a_wait_whose_end_passed_while_closed_ends_at_once_on_reopening(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'procstore.db'}"
    await start_and_crash(url, clock, closed_after=1)
    await clock.advance(60)

    async with ProcedureStore(url, clock=clock) as store:
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())  # no time passes: at once
    assert final.status is Status.COMPLETED
    (left,) = records(final.history, "transition", state="w")
    assert clock.instant(left.at) == 61.0
