"""Races at the edges of an execution's life, each of which once lost or duplicated work or hung:
an outcome pending while a send is blocked or a rollback runs, a crash between two commits of a
timeout or a rollback, a caller cancelled while its commit is written, a store closed during an
async guard, and an action that swallows its cancellation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from procstore.clock import SYSTEM, Clock
from tests.clock import ManualClock
from tests.conftest import Gate, make_doc, records, wait_until, within

# -- helpers -----------------------------------------------------------------------------------


def _snapshot_db(src: Path, dst: Path) -> None:
    """A consistent copy of what is committed in ``src`` now (what a crash would leave)."""
    source = sqlite3.connect(src)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _crash_copy_when(
    monkeypatch: pytest.MonkeyPatch, store: ProcedureStore, db: Path, copy: Path, predicate: Any
) -> list[bool]:
    """After each commit, copy the database to ``copy`` the first time ``predicate(snapshot)``
    holds: a crash right after that commit leaves exactly that file."""
    backend = store._backend
    assert backend is not None
    real = backend.commit
    copied: list[bool] = []

    async def commit(
        execution_id: str, status: str, snapshot: dict[str, Any], recs: list[dict[str, Any]]
    ) -> None:
        await real(execution_id, status, snapshot, recs)
        if not copied and predicate(snapshot):
            _snapshot_db(db, copy)
            copied.append(True)

    monkeypatch.setattr(backend, "commit", commit)
    return copied


async def _recover_copy(copy: Path, register: Any, clock: Clock = SYSTEM) -> Any:
    other = ProcedureStore(f"sqlite:///{copy}", clock=clock)
    register(other)
    resumed = await other.recover()
    assert len(resumed) == 1
    return other, resumed[0]


# -- races ------------------------------------------------------------------------------------


async def test_blocked_send_does_not_drop_pending_outcome(store: ProcedureStore) -> None:
    # Contract §3 + guards: a blocked send leaves the state unchanged; the action's `success`
    # outcome still waits and fires once the execution is driven (run_to_completion returns).
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "transitions": [
                        {"event": "success", "target": "done"},
                        {"event": "skip", "target": "done", "guard": "may_skip"},
                    ],
                },
                "done": {},
            },
            "a",
        )
    )
    ex = await store.start("p", context={"may_skip": False})
    await wait_until(lambda: bool(records(ex.history, "action", state="a")))
    assert await ex.send("skip") is False  # blocked by its guard: state unchanged
    final = await ex.run_to_completion(timeout=1.0)
    assert final.status is Status.COMPLETED


async def test_state_timeout_survives_crash_after_expiry_write_ahead(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # State timeouts store wall-clock deadlines and fire on resume; a crash while the
    # timeout is being handled must not lose it (the execution still reaches `late`).
    doc = make_doc(
        {
            "wait": {
                "action": {"type": "sleep", "ms": 5000},
                "timeout_ms": 50,
                "transitions": [
                    {"event": "timeout", "target": "late"},
                    {"event": "go", "target": "late"},
                ],
            },
            "late": {},
        },
        "wait",
    )
    db, copy = tmp_path / "x.db", tmp_path / "copy.db"
    store = ProcedureStore(f"sqlite:///{db}", clock=clock)
    await store.register(doc)
    ex = await store.start("p", auto=True)
    copied = _crash_copy_when(
        monkeypatch,
        store,
        db,
        copy,
        lambda s: s["active"] == ["wait"] and s["deadlines"].get("wait", 1e18) <= clock.time(),
    )
    await clock.advance(0.05)  # the deadline; the sleep action has 4.95 s to go
    await within(ex.run_to_completion())
    await store.close()
    assert copied, "no commit with 'wait' active after its deadline passed"
    other, resumed = await _recover_copy(copy, lambda s: None, clock)
    try:
        final = await within(resumed.run_to_completion())  # no time passes: it is overdue
        assert final.current == "late"
    finally:
        await other.close()


async def test_failure_with_compensation_survives_crash_before_rollback_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failing execution is compensated (rolled_back); a crash between
    # the failure being committed and the rollback record must still end rolled_back on resume.
    doc = make_doc(
        {
            "a": {
                "action": {"type": "noop"},
                "compensate": {"type": "noop"},
                "transitions": [{"event": "success", "target": "bad"}],
            },
            "bad": {"outcome": "failure"},
        },
        "a",
    )
    db, copy = tmp_path / "x.db", tmp_path / "copy.db"
    store = ProcedureStore(f"sqlite:///{db}")
    await store.register(doc)
    ex = await store.start("p", auto=True)
    copied = _crash_copy_when(
        monkeypatch, store, db, copy, lambda s: s["closing"] and s["completed"]
    )
    final = await ex.run_to_completion(timeout=2.0)
    assert final.status is Status.ROLLED_BACK
    await store.close()
    assert copied, "no commit of the failure before the first compensation"
    other, resumed = await _recover_copy(copy, lambda s: None)
    try:
        final = await resumed.run_to_completion(timeout=1.0)
        assert final.status is Status.ROLLED_BACK
    finally:
        await other.close()


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ("failure", Status.ROLLED_BACK),
        ("rollback", Status.ROLLED_BACK),
        ("cancel", Status.ROLLED_BACK),
    ],
)
async def test_a_crash_after_the_last_compensation_still_ends_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str, expected: Status
) -> None:
    # Found by perf/soak_crash.py: killed after the last compensation was committed but before
    # the end was, a saga resumed with an empty compensation stack and ended as if there had
    # been nothing to undo (failed, or cancelled) although every compensation had succeeded.
    doc = make_doc(
        {
            "a": {
                "action": {"type": "noop"},
                "compensate": {"type": "noop"},
                "transitions": [{"event": "success", "target": "b"}],
            },
            "b": {
                "action": {"type": "noop"},
                "compensate": {"type": "noop"},
                "transitions": [{"event": "success", "target": "wait"}],
            },
            "wait": {"transitions": [{"event": "fail", "target": "bad"}]},
            "bad": {"outcome": "failure"},
        },
        "a",
    )
    db, copy = tmp_path / "x.db", tmp_path / "copy.db"
    store = ProcedureStore(f"sqlite:///{db}")
    await store.register(doc)
    ex = await store.start("p", auto=True)
    await wait_until(lambda: ex.current == "wait")
    copied = _crash_copy_when(
        monkeypatch, store, db, copy, lambda s: s["rollback"] is not None and not s["completed"]
    )
    if end == "failure":
        await ex.send("fail")
        final = await ex.run_to_completion(timeout=2.0)
    elif end == "rollback":
        final = await ex.rollback()
    else:
        final = await ex.cancel(rollback=True)
    assert final.status is expected
    await store.close()
    assert copied, "no commit after the last compensation and before the end"
    other, resumed = await _recover_copy(copy, lambda s: None)
    try:
        final = await resumed.run_to_completion(timeout=1.0)
        assert final.status is expected
        assert len(records(final.history, "compensation")) == 2
    finally:
        await other.close()


async def test_cancelled_caller_does_not_duplicate_journal_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # History after reopening equals the live history record for record, even when a
    # send() caller gives up (is cancelled) while its commit is already being written.
    doc = make_doc(
        {
            "a": {"transitions": [{"event": "go", "target": "b"}]},
            "b": {"transitions": [{"event": "go", "target": "c"}]},
            "c": {},
        },
        "a",
    )
    db = tmp_path / "x.db"
    store = ProcedureStore(f"sqlite:///{db}")
    await store.register(doc)
    ex = await store.start("p")
    backend = store._backend
    assert backend is not None
    real = backend.commit
    writing = asyncio.Event()

    async def commit(*args: Any) -> None:
        # The writer has taken the write: it commits whether or not the caller still waits.
        inner = asyncio.ensure_future(real(*args))
        writing.set()
        await asyncio.shield(inner)

    monkeypatch.setattr(backend, "commit", commit)
    task = asyncio.create_task(ex.send("go"))
    await within(writing.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # the write lands
    backend.commit = real  # type: ignore[method-assign]
    await ex.send("go")
    live = [(r.kind, r.state, r.event) for r in ex.history]
    await store.close()
    async with ProcedureStore(f"sqlite:///{db}") as reopened:
        stored = await reopened.get_execution(ex.id)
        assert [(r.kind, r.state, r.event) for r in stored.history] == live


async def test_a_send_right_after_a_cancelled_one_whose_commit_just_landed_adds_no_duplicate(
    tmp_path: Path,
) -> None:
    # The cancelled caller lets go of the journal in the very iteration its commit lands,
    # before the commit's done callback counts it; the next send in that iteration must still
    # count it, or it commits the same records again. Whether the commit lands in that
    # iteration depends on the writer's thread being idle (the store's inbox watcher uses it
    # now and then), so the race is run on several executions.
    doc = make_doc(
        {
            "a": {"transitions": [{"event": "go", "target": "b"}]},
            "b": {"transitions": [{"event": "on", "target": "c"}]},
            "c": {},
        },
        "a",
    )
    db = tmp_path / "x.db"
    store = ProcedureStore(f"sqlite:///{db}")
    await store.register(doc)
    live = {}
    for _ in range(10):
        ex = await store.start("p")
        first = asyncio.create_task(ex.send("go"))
        await asyncio.sleep(0)  # first has queued its commit; the writer runs next
        first.cancel()  # first resumes after the writer has committed, before it counts
        second = asyncio.create_task(ex.send("on"))  # runs right after first lets go
        with pytest.raises(asyncio.CancelledError):
            await first
        await within(second)
        live[ex.id] = [(r.kind, r.state, r.event) for r in ex.history]
    await store.close()
    async with ProcedureStore(f"sqlite:///{db}") as reopened:
        for execution_id, history in live.items():
            stored = await reopened.get_execution(execution_id)
            assert [(r.kind, r.state, r.event) for r in stored.history] == history


async def test_outcome_survives_close_during_async_guard(tmp_path: Path) -> None:
    # close() detaches; recover() resumes. A completed action's outcome must not be
    # lost: after recovery the auto execution carries on to `done` (or the action re-runs).
    doc = make_doc(
        {
            "a": {
                "action": {"type": "noop"},
                "transitions": [{"event": "success", "target": "done", "conditions": ["slow"]}],
            },
            "done": {},
        },
        "a",
    )
    db = tmp_path / "x.db"
    evaluating = asyncio.Event()

    async def slow(context: dict[str, Any]) -> bool:
        evaluating.set()
        await asyncio.sleep(0.2)
        return True

    store = ProcedureStore(f"sqlite:///{db}")
    store.register_guard("slow", slow)
    await store.register(doc)
    await store.start("p", auto=True)
    await within(evaluating.wait())
    await store.close()  # the guard is still being evaluated

    other = ProcedureStore(f"sqlite:///{db}")
    other.register_guard("slow", slow)
    try:
        (resumed,) = await other.recover()
        final = await resumed.run_to_completion(timeout=1.0)
        assert final.status is Status.COMPLETED
    finally:
        await other.close()


async def test_pending_outcome_not_fired_during_compensation(store: ProcedureStore) -> None:
    # Compensation: while compensating no event fires (send raises InvalidEvent); a driver
    # starting meanwhile must not fire an outcome left pending before the rollback.
    gate = Gate()
    ran_b: list[bool] = []
    store.register_action("undo", gate.action)
    store.register_action("b_action", lambda context: ran_b.append(True))
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "compensate": {"type": "function", "function": "undo"},
                    "transitions": [{"event": "success", "target": "b"}],
                },
                "b": {
                    "action": {"type": "function", "function": "b_action"},
                    "transitions": [{"event": "success", "target": "c"}],
                },
                "c": {},
            },
            "a",
        )
    )
    ex = await store.start("p")
    await wait_until(lambda: bool(records(ex.history, "action", state="a")))
    rolling = asyncio.create_task(ex.rollback())
    await within(gate.started.wait())
    driving = asyncio.create_task(ex.run_to_completion(timeout=2.0))
    await asyncio.sleep(0.05)
    gate.release.set()
    final = await within(rolling)
    await within(driving)
    assert records(final.history, "entered", state="b") == []
    assert ran_b == []
    assert final.status is Status.ROLLED_BACK


async def test_an_action_that_swallows_cancellation_does_not_complete(
    store: ProcedureStore,
) -> None:
    # Cancellation: cancel() ends the execution; an action that catches CancelledError and
    # returns must not be recorded as a success (after "finished") nor become compensable.
    gate = asyncio.Event()

    async def stubborn(context: dict[str, Any]) -> str:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            return "swallowed"
        return "ok"

    store.register_action("stubborn", stubborn)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "function", "function": "stubborn"},
                    "compensate": {"type": "noop"},
                    "transitions": [{"event": "success", "target": "b"}],
                },
                "b": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    await asyncio.sleep(0.01)
    final = await within(ex.cancel(rollback=True))
    await asyncio.sleep(0.05)
    assert final.status is Status.CANCELLED
    kinds = [r.kind for r in ex.state.history]
    assert kinds[-1] == "finished"
    assert not [r for r in ex.state.history if r.kind == "action" and r.error is None]
