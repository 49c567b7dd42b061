"""Durable executions through the public API: ``ProcedureStore("sqlite:///...")``.

What a persisted store does with files that are not its own, reopening (snapshots and history
equal to the live ones, ``auto``, events, nested and parallel configurations), trusted stored
procedures, the runner lock beside read-only use, ``ActionInfo``, and 1,000 concurrent
executions. The SIGKILL crash tests are in tests/storage/test_crash_recovery.py.

A "crash" here is ``store.close()`` while actions run: it detaches the running executions
without recording anything, so they stay ``running`` in the database as after a kill.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from procstore import (
    ActionInfo,
    Event,
    ExecutionNotFound,
    InvalidProcedure,
    ProcedureStore,
    ProcstoreError,
    Status,
    StoreError,
)
from procstore.clock import SYSTEM, Clock
from tests.builders import fn
from tests.clock import ManualClock
from tests.conftest import Gate, fingerprint, make_doc, wait_until, within

WORKER = Path(__file__).parents[1] / "crash_worker.py"


@pytest.fixture
async def persisted(url: str) -> AsyncIterator[ProcedureStore]:
    async with ProcedureStore(url) as store:
        yield store


def dumps(history: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [record.model_dump() for record in history]


def chain_doc(name: str = "chain", n: int = 3, action: dict[str, Any] | None = None) -> Any:
    """``a0 -> a1 -> ... -> a{n-1}`` on ``success``, each with ``action`` (default noop)."""
    states: dict[str, Any] = {}
    for i in range(n):
        states[f"a{i}"] = {"action": action or {"type": "noop"}}
        if i + 1 < n:
            states[f"a{i}"]["transitions"] = [{"event": "success", "target": f"a{i + 1}"}]
    return make_doc(states, "a0", name=name)


def gated_doc(name: str = "gated") -> Any:
    """``work`` (action ``app.work``) -> ``next`` (noop) -> ``end``."""
    return make_doc(
        {
            "work": {
                "action": fn("app.work"),
                "transitions": [{"event": "success", "target": "next"}],
            },
            "next": {
                "action": {"type": "noop"},
                "transitions": [{"event": "success", "target": "end"}],
            },
            "end": {},
        },
        "work",
        name=name,
    )


WAITING = make_doc(
    {
        "wait": {"transitions": [{"event": "approve", "target": "review"}]},
        "review": {"transitions": [{"event": "ok", "target": "done"}]},
        "done": {},
    },
    "wait",
    name="waiting",
)


# -- files that are not procstore databases ----------------------------------------------------


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(5).randbytes(8192))


def _text(path: Path) -> None:
    path.write_text("name,amount\nalice,10\n")


def _corrupt_sqlite(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + random.Random(6).randbytes(4080))


def _other_application(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
    connection.commit()
    connection.close()


def _other_application_id(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA application_id = 1234567")
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    connection.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    "make",
    [_random_bytes, _text, _corrupt_sqlite, _other_application, _other_application_id],
)
async def test_a_file_that_is_not_a_procstore_database_is_refused_unchanged(
    db: Path, url: str, make: Any
) -> None:
    make(db)
    before = fingerprint(db)
    with pytest.raises(StoreError, match="is not a procstore database") as caught:
        async with ProcedureStore(url):
            pass
    assert str(db) in str(caught.value)
    assert fingerprint(db) == before


async def test_a_store_that_opens_lazily_refuses_a_foreign_file_unchanged(
    db: Path, url: str
) -> None:
    _other_application(db)
    before = fingerprint(db)
    store = ProcedureStore(url)
    with pytest.raises(StoreError, match="is not a procstore database"):
        await store.register(chain_doc())
    assert fingerprint(db) == before


async def test_a_missing_file_is_initialised(db: Path, url: str) -> None:
    assert not db.exists()
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
    async with ProcedureStore(url) as store:
        assert [p.name for p in await store.list()] == ["chain"]


async def test_an_empty_file_is_initialised(db: Path, url: str) -> None:
    db.touch()
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
    assert db.stat().st_size > 0
    async with ProcedureStore(url) as store:
        assert [p.name for p in await store.list()] == ["chain"]


async def test_a_database_written_by_a_newer_procstore_is_refused_unchanged(
    db: Path, url: str
) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
    connection = sqlite3.connect(db)
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    before = fingerprint(db)
    with pytest.raises(StoreError, match="newer procstore") as caught:
        await ProcedureStore(url).open()
    assert str(db) in str(caught.value)
    assert fingerprint(db) == before


def _damage_pages(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with random bytes (a damaged disk sector)."""
    connection = sqlite3.connect(db)
    (root,) = connection.execute(
        "SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)
    ).fetchone()
    (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    with open(db, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(random.Random(7).randbytes(page_size))


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_database_with_damaged_pages_is_refused_at_open_unchanged(
    db: Path, url: str, read_only: bool
) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
        for _ in range(5):
            await (await store.start("chain", auto=True)).run_to_completion()
    _damage_pages(db, "journal")
    before = fingerprint(db)
    with pytest.raises(StoreError, match="is damaged") as caught:
        await ProcedureStore(url, read_only=read_only).open()
    assert str(db) in str(caught.value)
    assert fingerprint(db) == before  # no -wal, -shm beside it


READER = """
import asyncio, json, sys
from procstore import ProcedureStore

async def main(path):
    try:
        open(path + ".probe", "w")
    except OSError as exc:
        print("cannot write beside it:", type(exc).__name__, flush=True)
    async with ProcedureStore("sqlite:///" + path, read_only=True) as store:
        summaries = await store.executions()
        execution = await store.get_execution(summaries[0].id)
        print(json.dumps([[s.status.value for s in summaries], len(execution.history)]))

asyncio.run(main(sys.argv[1]))
"""


def test_a_read_only_store_reads_a_database_on_a_file_system_it_cannot_write(
    tmp_path: Path,
) -> None:
    db = tmp_path / "data" / "procstore.db"
    db.parent.mkdir()

    async def fill() -> None:
        async with ProcedureStore(f"sqlite:///{db}") as store:
            await store.register(chain_doc())
            await (await store.start("chain", auto=True)).run_to_completion()
            await store.start("chain")

    asyncio.run(fill())
    before = fingerprint(db)
    db.chmod(0o444)
    db.parent.chmod(0o555)
    try:
        # Tests run as root, which writes anywhere: the reader runs as root without any
        # capability, so the permission bits hold for it as for any user.
        without_capabilities = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
        reader = subprocess.run(
            [*without_capabilities, sys.executable, "-c", READER, str(db)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        db.parent.chmod(0o755)
        db.chmod(0o644)
    assert reader.returncode == 0, reader.stderr
    probe, listing = reader.stdout.splitlines()
    assert probe == "cannot write beside it: PermissionError"
    assert listing == '[["completed", "running"], 9]'
    assert fingerprint(db) == before


# -- many executions ----------------------------------------------------------------------------


async def test_1000_concurrent_persisted_executions_lose_and_duplicate_no_record(
    db: Path, url: str
) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc(n=3))
        executions = await asyncio.gather(
            *(store.start("chain", context={"n": n}, auto=True) for n in range(1000))
        )
        finals = await within(asyncio.gather(*(e.run_to_completion() for e in executions)), 30)
        assert {f.status for f in finals} == {Status.COMPLETED}
        live = {e.id: dumps(e.state.history) for e in executions}
    assert len(live) == 1000

    connection = sqlite3.connect(db)  # every journal is numbered 1..n without gap or repeat
    counts = connection.execute(
        "SELECT execution_id, count(*), min(seq), max(seq) FROM journal GROUP BY execution_id"
    ).fetchall()
    connection.close()
    assert len(counts) == 1000
    assert all(count == high and low == 1 for _, count, low, high in counts)

    async with ProcedureStore(url) as reopened:
        assert len(await reopened.executions(status="completed")) == 1000
        for execution_id, history in live.items():
            stored = await reopened.get_execution(execution_id)
            assert dumps(stored.state.history) == history


# -- reopening ----------------------------------------------------------------------------------


async def test_after_reopening_the_state_equals_the_live_one_record_for_record(url: str) -> None:
    calls = {"n": 0}

    def charge(context: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("gateway busy")
        return {"charged": context["amount"], "when": "now"}

    doc = make_doc(
        {
            "note": {
                "action": {"type": "log", "message": "starting"},
                "transitions": [{"event": "success", "target": "charge"}],
            },
            "charge": {
                "action": fn("pay.charge", result="receipt"),
                "retry": {"max_attempts": 3, "interval_ms": 1},
                "transitions": [
                    {"event": "success", "target": "big", "guard": "amount >= 100"},
                    {"event": "success", "target": "decide"},
                ],
            },
            "big": {},
            "decide": {
                "action": fn("pay.decide"),
                "transitions": [{"event": "ship", "target": "done"}],
            },
            "done": {"outcome": "failure"},
        },
        "note",
        name="pay",
    )
    async with ProcedureStore(url) as store:
        store.register_action("pay.charge", charge)
        store.register_action("pay.decide", lambda c: Event("ship"))
        await store.register(doc)
        execution = await store.start("pay", context={"amount": 5, "items": ["a", "é"]})
        live = await within(execution.run_to_completion())
    assert live.status is Status.FAILED  # through log, retry, guard, Event, failure outcome
    assert {r.kind for r in live.history} >= {"log", "retry", "action", "transition", "finished"}

    async with ProcedureStore(url) as store:
        reopened = (await store.get_execution(live.id)).state
    assert dumps(reopened.history) == dumps(live.history)
    assert reopened.model_dump() == live.model_dump()


async def test_get_execution_of_a_finished_execution_returns_its_final_snapshot(
    url: str,
) -> None:
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: "first run")
        await store.register(gated_doc())
        final = await within((await store.start("gated")).run_to_completion())

    ran = []
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: ran.append(c))
        handle = await store.get_execution(final.id)
        assert handle.state.model_dump() == final.model_dump()
        assert (await within(handle.run_to_completion())).model_dump() == final.model_dump()
    assert ran == []  # a finished execution does not run again


async def test_get_execution_of_an_unknown_id_raises_execution_not_found(
    persisted: ProcedureStore,
) -> None:
    with pytest.raises(ExecutionNotFound, match="no-such-id"):
        await persisted.get_execution("no-such-id")


async def test_executions_filters_by_status_and_procedure(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc("alpha"))
        await store.register(chain_doc("beta", action={"type": "fail"}))
        await store.register(WAITING)
        a1 = await within((await store.start("alpha")).run_to_completion())
        b1 = await within((await store.start("beta")).run_to_completion())
        w1 = await store.start("waiting")
        a2 = await within((await store.start("alpha")).run_to_completion())

    def ids(summaries: list[Any]) -> list[str]:
        return [s.id for s in summaries]

    async with ProcedureStore(url) as store:
        assert ids(await store.executions()) == [a1.id, b1.id, w1.id, a2.id]
        assert ids(await store.executions(status="completed")) == [a1.id, a2.id]
        assert ids(await store.executions(status=Status.FAILED)) == [b1.id]
        assert ids(await store.executions(status="running")) == [w1.id]
        assert ids(await store.executions(procedure="alpha")) == [a1.id, a2.id]
        assert ids(await store.executions(status="running", procedure="alpha")) == []
        assert ids(await store.executions(procedure="nothing")) == []
        (summary,) = await store.executions(procedure="beta")
    assert (summary.procedure, summary.version, summary.status) == ("beta", "1.0", Status.FAILED)
    assert summary.created_at <= summary.updated_at


async def test_close_leaves_an_unfinished_execution_running_in_the_database(url: str) -> None:
    gate = Gate()
    async with ProcedureStore(url) as store:
        store.register_action("app.work", gate.action)
        await store.register(gated_doc())
        execution = await store.start("gated", auto=True)
        await within(gate.started.wait())
    assert gate.cancelled  # close() stopped the action in this process
    async with ProcedureStore(url, read_only=True) as reader:
        (summary,) = await reader.executions()
        handle = await reader.get_execution(execution.id)
    assert summary.status is Status.RUNNING
    assert handle.current == "work"
    assert not any(r.kind == "action" for r in handle.state.history)  # nothing invented


async def test_close_keeps_every_record_the_live_executions_already_show(url: str) -> None:
    # Undriven: each execution stops once work's action has completed (its outcome waits).
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: "done")
        await store.register(gated_doc())
        executions = await asyncio.gather(*(store.start("gated") for _ in range(300)))
        await wait_until(
            lambda: all(any(r.kind == "action" for r in e.history) for e in executions),
            timeout=10,
            interval=0,
        )
        live = {e.id: dumps(e.history) for e in executions}
    async with ProcedureStore(url, read_only=True) as reader:
        lost = [i for i, h in live.items() if dumps((await reader.get_execution(i)).history) != h]
    assert lost == [], (
        f"{len(lost)} of 300 stored histories lack records (a completed action's result) that "
        "the live execution had when close() was called; recover() would run those actions again"
    )


# -- recovery -----------------------------------------------------------------------------------


async def crash_in_work(url: str, *, auto: bool, doc: Any = None, clock: Clock = SYSTEM) -> str:
    """Start ``gated`` (on ``clock``) and close the store while ``work``'s action runs; return
    the id."""
    gate = Gate()
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", gate.action)
        await store.register(doc or gated_doc())
        execution = await store.start("gated", auto=auto)
        await within(gate.started.wait())
    return execution.id


async def test_auto_true_holds_after_recovery(url: str) -> None:
    execution_id = await crash_in_work(url, auto=True)
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: "done")
        (execution,) = await store.recover()
        assert execution.id == execution_id and execution.auto
        await wait_until(lambda: execution.status is not Status.RUNNING)  # nobody drives it
        assert execution.status is Status.COMPLETED
        assert execution.current == "end"


async def test_an_undriven_execution_stays_undriven_after_recovery(url: str) -> None:
    await crash_in_work(url, auto=False)
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: "done")
        (execution,) = await store.recover()
        assert not execution.auto
        await wait_until(lambda: any(r.kind == "action" for r in execution.state.history))
        await asyncio.sleep(0.05)
        assert (execution.current, execution.status) == ("work", Status.RUNNING)  # waits
        assert await execution.send("success")
        assert (await within(execution.run_to_completion())).status is Status.COMPLETED


async def test_recover_returns_only_unfinished_executions(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
        await within((await store.start("chain")).run_to_completion())
    execution_id = await crash_in_work(url, auto=True)
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: None)
        assert [e.id for e in await store.recover()] == [execution_id]


async def test_get_execution_resumes_an_unfinished_execution_here(url: str) -> None:
    execution_id = await crash_in_work(url, auto=True)
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c: "done")
        execution = await store.get_execution(execution_id)  # no recover() call
        await wait_until(lambda: execution.status is not Status.RUNNING)
        assert execution.status is Status.COMPLETED
        assert await store.get_execution(execution_id) is execution


async def test_an_interrupted_retry_attempt_runs_again_with_its_number(url: str) -> None:
    gate = Gate()

    async def work(context: dict[str, Any], info: ActionInfo) -> Any:
        if info.attempt == 1:
            raise ConnectionError("first attempt fails")
        return await gate.action(context)  # attempt 2 hangs until the "crash"

    doc = gated_doc()
    doc["definition"]["states"]["work"]["retry"] = {"max_attempts": 3, "interval_ms": 1}
    async with ProcedureStore(url) as store:
        store.register_action("app.work", work)
        await store.register(doc)
        execution = await store.start("gated", auto=True)
        await within(gate.started.wait())

    attempts: list[int] = []
    async with ProcedureStore(url) as store:
        store.register_action("app.work", lambda c, info: attempts.append(info.attempt))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())
    assert attempts == [2]
    assert final.status is Status.COMPLETED and final.id == execution.id
    work_records = [
        (r.kind, r.attempt, r.error is None) for r in final.history if r.state == "work"
    ]
    assert work_records == [
        ("entered", None, True),
        ("action", 1, False),
        ("retry", 2, True),
        ("action", 2, True),
        ("transition", None, True),
    ]


async def test_a_jittered_retry_resumes_at_its_stored_deadline(
    url: str, clock: ManualClock
) -> None:
    async def work(context: dict[str, Any], info: ActionInfo) -> str:
        if info.attempt == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    doc = gated_doc()
    doc["definition"]["states"]["work"]["retry"] = {
        "max_attempts": 2,
        "interval_ms": 400,
        "jitter": "full",
    }
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", work)
        await store.register(doc)
        execution = await store.start("gated", auto=True)
        await wait_until(lambda: bool(clock.pending()))  # waiting to retry
    assert clock.pending() == [], "the closed store still waits"
    retry = next(r for r in execution.history if r.kind == "retry")
    assert retry.delay_ms is not None and 0 < retry.delay_ms <= 400
    delay = retry.delay_ms / 1000
    deadline = clock.instant(retry.at) + delay
    await clock.advance(delay / 2)  # closed for half the delay

    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", work)
        (resumed,) = await store.recover()
        await wait_until(lambda: bool(clock.pending()))  # waiting to retry again
        await clock.advance(0.4)
        final = await within(resumed.run_to_completion())
    second = next(r for r in final.history if r.kind == "action" and r.attempt == 2)
    # At the stored deadline: not a fresh (or freshly drawn) delay from the reopening.
    assert clock.instant(second.at) == pytest.approx(deadline, abs=1e-6)


async def test_a_state_timeout_fires_at_its_stored_deadline_after_reopening(
    url: str, clock: ManualClock
) -> None:
    doc = gated_doc()
    doc["definition"]["states"]["work"]["timeout_ms"] = 400
    doc["definition"]["states"]["work"]["transitions"].append({"event": "timeout", "target": "end"})
    execution_id = await crash_in_work(url, auto=True, doc=doc, clock=clock)
    await clock.advance(0.15)  # closed for a while: a fresh 400 ms would end at 550 ms

    never = asyncio.Event()
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", lambda c: never.wait())
        (resumed,) = await store.recover()
        assert clock.pending() == [0.4], "the timer is not armed for the stored deadline"
        await clock.advance(0.249)
        assert resumed.current == "work"
        await clock.advance(0.001)
        final = await within(resumed.run_to_completion())
    entered = next(r for r in final.history if r.kind == "entered" and r.state == "work")
    timeout = next(r for r in final.history if r.kind == "timeout")
    assert final.id == execution_id and final.current == "end"
    assert clock.instant(entered.at) == 0.0
    assert clock.instant(timeout.at) == 0.4


async def test_a_state_that_timed_out_while_closed_does_not_start_its_action_again(
    url: str, clock: ManualClock
) -> None:
    doc = gated_doc()
    doc["definition"]["states"]["work"]["timeout_ms"] = 100
    doc["definition"]["states"]["work"]["transitions"].append({"event": "timeout", "target": "end"})
    await crash_in_work(url, auto=True, doc=doc, clock=clock)
    await clock.advance(0.2)  # the state's whole stay ran out while nothing ran

    started: list[int] = []
    async with ProcedureStore(url, clock=clock) as store:
        store.register_action("app.work", lambda c, info: started.append(info.attempt))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())
    assert final.current == "end"
    assert started == [], "the action of a state whose timeout had passed ran again"
    assert [r.kind for r in final.history if r.state == "work"] == [
        "entered",
        "timeout",
        "transition",
    ]


async def test_a_requested_rollback_in_progress_carries_on_after_reopening(url: str) -> None:
    undone: list[str] = []
    hang = Gate()

    def undo(context: dict[str, Any], info: ActionInfo) -> None:
        undone.append(info.state)

    async def undo_b(context: dict[str, Any]) -> Any:
        undone.append("b")
        return await hang.action(context)  # compensation #1 hangs until the "crash"

    states: dict[str, Any] = {
        "a": {
            "action": {"type": "noop"},
            "compensate": fn("undo.a"),
            "transitions": [{"event": "success", "target": "b"}],
        },
        "b": {
            "action": {"type": "noop"},
            "compensate": fn("undo.b"),
            "transitions": [{"event": "success", "target": "wait"}],
        },
        "wait": {"transitions": [{"event": "go", "target": "end"}]},
        "end": {},
    }
    async with ProcedureStore(url) as store:
        store.register_action("undo.a", undo)
        store.register_action("undo.b", undo_b)
        await store.register(make_doc(states, "a", name="saga"))
        execution = await store.start("saga", auto=True)
        await wait_until(lambda: execution.current == "wait")
        rolling_back = asyncio.create_task(execution.rollback())
        await within(hang.started.wait())
    rolling_back.cancel()
    assert undone == ["b"]

    async with ProcedureStore(url) as store:
        store.register_action("undo.a", undo)
        store.register_action("undo.b", lambda c: undone.append("b again"))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())
    assert undone == ["b", "b again", "a"]
    assert final.status is Status.ROLLED_BACK
    kinds = [(r.kind, r.state) for r in final.history if r.kind in ("rollback", "compensation")]
    assert kinds == [("rollback", "wait"), ("compensation", "b"), ("compensation", "a")]


async def test_a_handle_detached_by_close_accepts_no_more_events(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(WAITING)
        execution = await store.start("waiting")
    # The event could not be stored: it must not look handled.
    with pytest.raises(ProcstoreError):
        await within(execution.send("approve"))
    assert execution.current == "wait"
    async with ProcedureStore(url, read_only=True) as reader:
        assert (await reader.get_execution(execution.id)).current == "wait"


async def test_a_read_only_handle_refuses_events_and_stays_as_stored(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(WAITING)
        execution = await store.start("waiting")
    async with ProcedureStore(url, read_only=True) as reader:
        handle = await reader.get_execution(execution.id)
        with pytest.raises(StoreError, match="read-only"):
            await within(handle.send("approve"))
        assert handle.current == "wait"


async def test_stored_procedures_are_trusted_when_the_store_opens(url: str) -> None:
    execution_id = await crash_in_work(url, auto=True)
    calls: list[dict[str, Any]] = []
    async with ProcedureStore(url) as store:  # app.work is not registered yet: still opens
        assert [p.name for p in await store.list()] == ["gated"]

        def work(context: dict[str, Any]) -> str:
            calls.append(dict(context))
            return "late"

        store.register_action("app.work", work)
        (execution,) = await store.recover()
        final = await within(execution.run_to_completion())
    assert (final.id, final.status) == (execution_id, Status.COMPLETED)
    assert len(calls) == 1


async def test_new_registrations_are_still_validated_in_full(url: str) -> None:
    await crash_in_work(url, auto=True)
    async with ProcedureStore(url) as store:
        with pytest.raises(InvalidProcedure) as caught:
            await store.register(gated_doc("another"))  # app.work is not registered
    assert [p.path for p in caught.value.errors] == ["$.definition.states.work.action.function"]


async def test_an_unknown_action_name_at_run_time_fails_that_action_clearly(url: str) -> None:
    await crash_in_work(url, auto=True)
    async with ProcedureStore(url) as store:  # the application never registers app.work
        (execution,) = await store.recover()
        final = await within(execution.run_to_completion())
    assert final.status is Status.FAILED
    (attempt,) = [r for r in final.history if r.kind == "action"]
    assert attempt.state == "work" and attempt.error is not None
    assert "no action named 'app.work' is registered" in attempt.error.message


async def test_an_event_sent_to_a_waiting_execution_is_durable(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(WAITING)
        execution = await store.start("waiting")
        assert await execution.send("approve")
        # send() returns once the transition is committed: a reader sees it already.
        async with ProcedureStore(url, read_only=True) as reader:
            assert (await reader.get_execution(execution.id)).current == "review"
    async with ProcedureStore(url) as store:
        reopened = await store.get_execution(execution.id)
        assert reopened.current == "review"
        assert [
            (r.state, r.event, r.target) for r in reopened.history if r.kind == "transition"
        ] == [("wait", "approve", "review")]
        assert await reopened.send("ok")
        assert (await within(reopened.run_to_completion())).status is Status.COMPLETED


async def test_run_to_completion_returns_after_the_end_is_committed(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
        final = await within((await store.start("chain")).run_to_completion())
        async with ProcedureStore(url, read_only=True) as reader:
            stored = (await reader.get_execution(final.id)).state
    assert stored.status is Status.COMPLETED
    assert dumps(stored.history) == dumps(final.history)


NESTED = make_doc(
    {
        "prepare": {
            "action": {"type": "noop"},
            "transitions": [{"event": "success", "target": "checks"}],
        },
        "checks": {
            "parallel": {
                "credit": {
                    "initial_state": "run",
                    "states": {
                        "run": {
                            "action": fn("check.credit"),
                            "transitions": [{"event": "success", "target": "ok"}],
                        },
                        "ok": {},
                    },
                },
                "fraud": {
                    "initial_state": "phase",
                    "states": {
                        "phase": {
                            "initial_state": "scan",
                            "states": {
                                "scan": {
                                    "action": fn("check.fraud"),
                                    "transitions": [{"event": "success", "target": "clear"}],
                                },
                                "clear": {},
                            },
                        },
                    },
                },
            },
            "transitions": [{"event": "done", "target": "approved"}],
        },
        "approved": {},
    },
    "prepare",
    name="nested",
)


async def test_nested_and_parallel_configurations_resume_every_region(url: str) -> None:
    credit, fraud = Gate(), Gate()
    async with ProcedureStore(url) as store:
        store.register_action("check.credit", credit.action)
        store.register_action("check.fraud", fraud.action)
        await store.register(NESTED)
        execution = await store.start("nested", auto=True)
        await within(asyncio.gather(credit.started.wait(), fraud.started.wait()))
        active = execution.active
    assert active == ["checks.credit.run", "checks.fraud.phase.scan"]

    infos: list[ActionInfo] = []
    async with ProcedureStore(url) as store:
        store.register_action("check.credit", lambda c, info: infos.append(info))
        store.register_action("check.fraud", lambda c, info: infos.append(info))
        (resumed,) = await store.recover()
        final = await within(resumed.run_to_completion())
    assert sorted(i.state for i in infos) == active  # each region's action ran, once
    assert {(i.execution_id, i.attempt) for i in infos} == {(execution.id, 1)}
    assert (final.status, final.current) == (Status.COMPLETED, "approved")
    entered = [r.state for r in final.history if r.kind == "entered"]
    assert entered.count("checks.credit.run") == entered.count("checks.fraud.phase.scan") == 1


async def test_a_region_that_completed_before_closing_does_not_run_again(url: str) -> None:
    fraud = Gate()
    async with ProcedureStore(url) as store:
        store.register_action("check.credit", lambda c: "credit ok")
        store.register_action("check.fraud", fraud.action)
        await store.register(NESTED)
        execution = await store.start("nested", auto=True)
        await within(fraud.started.wait())
        await wait_until(lambda: "checks.credit.ok" in execution.active)
        await asyncio.sleep(0.05)  # let credit's completion reach the database

    ran: list[str] = []
    async with ProcedureStore(url) as store:
        store.register_action("check.credit", lambda c, info: ran.append(info.state))
        store.register_action("check.fraud", lambda c, info: ran.append(info.state))
        (resumed,) = await store.recover()
        assert resumed.active == ["checks.credit.ok", "checks.fraud.phase.scan"]
        final = await within(resumed.run_to_completion())
    assert ran == ["checks.fraud.phase.scan"]
    assert (final.status, final.current) == (Status.COMPLETED, "approved")


# -- one process runs a store --------------------------------------------------------------------


@pytest.fixture
def runner(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that runs executions of ``db`` (it holds the runner lock)."""
    process = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == "ready", process.stderr.read() if process.stderr else line
        yield process
    finally:
        process.kill()
        process.communicate(timeout=10)


async def test_a_second_process_cannot_run_executions_of_the_same_store(
    url: str, runner: subprocess.Popen[str]
) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
        with pytest.raises(StoreError, match=f"process {runner.pid}"):
            await store.start("chain")
        with pytest.raises(StoreError, match="already used by process"):
            await store.recover()


async def test_read_only_listing_works_beside_the_process_that_runs_the_store(
    url: str, runner: subprocess.Popen[str]
) -> None:
    async with ProcedureStore(url, read_only=True) as reader:
        (summary,) = await reader.executions()
        assert (summary.procedure, summary.status) == ("waiting", Status.RUNNING)
        handle = await reader.get_execution(summary.id)  # read, not resumed
        assert handle.current == "wait"
        assert [r.kind for r in handle.history] == ["entered"]


async def test_a_read_only_store_refuses_to_run_executions(url: str) -> None:
    async with ProcedureStore(url) as store:
        await store.register(chain_doc())
    async with ProcedureStore(url, read_only=True) as reader:
        with pytest.raises(StoreError, match="read-only"):
            await reader.start("chain")


# -- ActionInfo ---------------------------------------------------------------------------------


async def test_an_action_with_a_second_parameter_receives_action_info(
    persisted: ProcedureStore,
) -> None:
    infos: list[ActionInfo] = []

    def act(context: dict[str, Any], info: ActionInfo) -> str:
        infos.append(info)
        if info.attempt == 1:
            raise ConnectionError("try again")
        return "ok"

    persisted.register_action("app.act", act)
    await persisted.register(
        make_doc(
            {
                "charge": {
                    "action": fn("app.act"),
                    "retry": {"max_attempts": 2, "interval_ms": 1},
                }
            },
            "charge",
        )
    )
    final = await within((await persisted.start("p")).run_to_completion())
    assert final.status is Status.COMPLETED
    assert infos == [ActionInfo(final.id, "charge", 1), ActionInfo(final.id, "charge", 2)]


async def test_an_async_action_with_a_second_parameter_receives_action_info(
    persisted: ProcedureStore,
) -> None:
    infos: list[ActionInfo] = []

    async def act(context: dict[str, Any], info: ActionInfo) -> None:
        infos.append(info)

    persisted.register_action("app.act", act)
    await persisted.register(make_doc({"only": {"action": fn("app.act")}}, "only"))
    final = await within((await persisted.start("p")).run_to_completion())
    assert infos == [ActionInfo(execution_id=final.id, state="only", attempt=1)]


async def test_a_lambda_with_a_defaulted_second_parameter_gets_the_context_alone(
    persisted: ProcedureStore,
) -> None:
    seen: list[tuple[Any, Any]] = []
    persisted.register_action("app.act", lambda c, t=1: seen.append((dict(c), t)))
    await persisted.register(make_doc({"only": {"action": fn("app.act")}}, "only"))
    await within((await persisted.start("p", context={"k": "v"})).run_to_completion())
    assert seen == [({"k": "v"}, 1)]
