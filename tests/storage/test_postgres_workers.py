"""PostgreSQL stores as workers, through the public API: several stores share one database's
executions (each runs those it holds), an idle worker runs the executions a client creates, no
more than ``concurrency`` at once, and a worker whose lease another took commits nothing more.

Each test gets a new database (``postgres_url``). The workers that are separate processes,
killed or frozen, are in tests/storage/test_worker_takeover.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from procstore import ActionInfo, LeaseLost, ProcedureStore, Status, StoreError
from procstore.storage.leasing import Claim
from procstore.storage.postgres import PostgresBackend
from tests.builders import fn, on
from tests.conftest import Gate, make_doc, within
from tests.workers import chain, enqueue, ran, statuses, until

WAITING = make_doc(
    {"wait": {"transitions": [on("approve", "done")]}, "done": {}}, "wait", name="waiting"
)

# One step running the application's action ``app.step``.
ONE_STEP = make_doc(
    {"work": {"action": fn("app.step"), "transitions": [on("success", "done")]}, "done": {}},
    "work",
    name="one",
)


async def lease_owner(url: str, execution_id: str) -> str | None:
    connection = await asyncpg.connect(url)
    try:
        owner: str | None = await connection.fetchval(
            "SELECT lease_owner FROM executions WHERE id = $1", execution_id
        )
        return owner
    finally:
        await connection.close()


async def expire(url: str, execution_id: str) -> None:
    """Put the execution's lease in the past, as the clock does without renewals."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "UPDATE executions SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            execution_id,
        )
    finally:
        await connection.close()


async def completed(url: str, ids: list[str]) -> bool:
    stored = await statuses(url)
    return all(stored[execution_id] == "completed" for execution_id in ids)


async def test_two_stores_on_one_database_each_run_the_executions_they_start(
    postgres_url: str,
) -> None:
    async with ProcedureStore(postgres_url) as first, ProcedureStore(postgres_url) as second:
        await first.register(WAITING)
        await second.register(WAITING)
        mine = await first.start("waiting")
        theirs = await second.start("waiting")

        seen = await second.get_execution(mine.id)  # read, not resumed: first runs it
        assert seen.detached and seen.current == "wait"
        with pytest.raises(StoreError, match="another worker runs it"):
            await seen.send("approve")
        assert [e.id for e in await second.recover()] == [theirs.id]

        assert await mine.send("approve")
        assert mine.status is Status.COMPLETED


async def test_an_idle_worker_runs_the_executions_a_client_creates(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "actions.log"
    async with ProcedureStore(postgres_url, allowed_modules=["tests.worker_actions"]) as worker:
        await worker.work()  # before the procedure exists: the worker loads it when it claims
        ids = await enqueue(postgres_url, chain(3), [{"log": str(log)} for _ in range(5)])

        await until(lambda: completed(postgres_url, ids), 30)

    assert sorted((r.execution_id, r.state) for r in ran(log)) == sorted(
        (execution_id, state) for execution_id in ids for state in ("s1", "s2", "s3")
    )


async def test_a_worker_runs_no_more_than_concurrency_executions_at_once(
    postgres_url: str,
) -> None:
    running = peak = 0

    async def step(context: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    async with ProcedureStore(postgres_url, concurrency=2) as worker:
        worker.register_action("app.step", step)
        await worker.work()
        ids = await enqueue(postgres_url, ONE_STEP, [{} for _ in range(6)])

        await until(lambda: completed(postgres_url, ids), 30)

    assert peak == 2


async def test_get_execution_resumes_an_execution_no_worker_holds(postgres_url: str) -> None:
    async with ProcedureStore(postgres_url, concurrency=0) as store:
        store.register_action("app.step", lambda context: "done")
        (execution_id,) = await enqueue(postgres_url, ONE_STEP, [{}])

        execution = await store.get_execution(execution_id)

        assert not execution.detached
        final = await within(execution.run_to_completion(), 30)
    assert final.status is Status.COMPLETED


async def test_get_execution_during_the_claim_loops_claim_of_it_returns_the_live_handle(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    step, loop_claimed, answer_loop = Gate(), asyncio.Event(), asyncio.Event()
    claim = PostgresBackend.claim

    async def answered_late(
        backend: PostgresBackend, limit: int, execution_id: str | None = None
    ) -> list[Claim]:
        claims = await claim(backend, limit, execution_id)
        if execution_id is None and claims:  # the claim loop's: taken, not yet answered
            loop_claimed.set()
            await answer_loop.wait()
        return claims

    monkeypatch.setattr(PostgresBackend, "claim", answered_late)
    async with ProcedureStore(postgres_url, concurrency=1) as worker:
        worker.register_action("app.step", step.action)
        (execution_id,) = await enqueue(postgres_url, ONE_STEP, [{}])
        await worker.work()
        await within(loop_claimed.wait(), 30)

        getting = asyncio.ensure_future(worker.get_execution(execution_id))
        await asyncio.wait([getting], timeout=0.5)  # before the fix it answered by now
        answer_loop.set()
        execution = await within(getting, 30)

        assert not execution.detached  # not "read-only here: another worker runs it"
        await within(step.started.wait(), 30)
        step.release.set()
        final = await within(execution.run_to_completion(), 30)
    assert final.status is Status.COMPLETED and step.calls == 1


async def test_a_worker_never_takes_over_an_execution_it_runs_whose_lease_expired(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    step, claim_sent, run_claim = Gate(), asyncio.Event(), asyncio.Event()
    claim_ran: list[list[asyncpg.Record]] = []
    fetch = asyncpg.pool.Pool.fetch

    async def claim_delayed(pool: asyncpg.pool.Pool, query: str, *args: Any) -> Any:
        if "INSERT INTO claims" in query and not claim_ran:  # it lists nothing held yet
            claim_sent.set()
            await run_claim.wait()
            claim_ran.append(await fetch(pool, query, *args))
            return claim_ran[0]
        return await fetch(pool, query, *args)

    monkeypatch.setattr(asyncpg.pool.Pool, "fetch", claim_delayed)
    async with ProcedureStore(postgres_url) as worker:
        worker.register_action("app.step", step.action)
        await worker.register(ONE_STEP)
        await worker.work()
        await within(claim_sent.wait(), 30)
        execution = await worker.start("one", auto=True)  # not on the claim's list
        await within(step.started.wait(), 30)
        await expire(postgres_url, execution.id)  # its renewal is late

        run_claim.set()
        await until(lambda: bool(claim_ran), 30)
        step.release.set()
        final = await within(execution.run_to_completion(), 30)

    assert claim_ran == [[]] and step.calls == 1
    assert final.status is Status.COMPLETED and not execution.detached


async def test_a_command_for_a_finished_execution_is_refused_once_by_all_the_workers(
    postgres_url: str,
) -> None:
    async with (
        ProcedureStore(postgres_url) as first,
        ProcedureStore(postgres_url) as second,
        ProcedureStore(postgres_url) as third,
    ):
        for worker in (first, second, third):
            await worker.register(WAITING)
            await worker.work()  # each reads the inbox
        execution = await first.start("waiting")
        assert await execution.send("approve")  # completed
        async with await PostgresBackend.open(postgres_url) as client:  # sent before it ended
            await client.post_command(execution.id, "event", {"event": "approve"})
            await until(lambda: _inbox_empty(client), 30)

        final = await second.get_execution(execution.id)
    (refusal,) = [r for r in final.history if r.kind == "received"]
    assert (
        refusal.message == f"refused: execution {execution.id} has finished; it accepts no events"
    )


async def _inbox_empty(backend: PostgresBackend) -> bool:
    return not await backend.commands_after(0)


async def test_a_worker_whose_lease_was_taken_over_commits_nothing_more_and_lets_go(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    paused_step, taker_attempts = Gate(), []

    async def taker_step(context: dict[str, Any], info: ActionInfo) -> str:
        taker_attempts.append(info.attempt)
        return "taker's"

    async with (
        ProcedureStore(postgres_url) as paused,
        ProcedureStore(postgres_url, concurrency=1) as taker,
    ):
        paused.register_action("app.step", paused_step.action)
        taker.register_action("app.step", taker_step)
        await paused.register(ONE_STEP)
        execution = await paused.start("one", auto=True)
        await within(paused_step.started.wait(), 30)
        await expire(postgres_url, execution.id)  # as if `paused` had not renewed in time

        await taker.work()  # takes it over, and runs the step under way again
        taken = await within(taker.get_execution(execution.id), 30)
        final = await within(taken.run_to_completion(), 30)
        paused_step.release.set()  # the paused one's attempt ends: its commit is refused

        with pytest.raises(LeaseLost, match="this worker lost its lease"):
            await within(execution.run_to_completion(), 30)

    assert execution.detached
    assert final.status is Status.COMPLETED and taker_attempts == [1]
    actions = [r for r in final.history if r.kind == "action"]
    assert [(r.state, r.attempt, r.result) for r in actions] == [("work", 1, "taker's")]
    (dropped,) = [r for r in caplog.records if "dropped here" in r.getMessage()]
    assert dropped.levelno == logging.WARNING


async def test_a_worker_whose_connections_are_cut_carries_on_and_repeats_no_committed_step(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "actions.log"
    store = ProcedureStore(postgres_url, allowed_modules=["tests.worker_actions"], lease_seconds=1)
    async with store:
        await store.work()
        contexts = [{"log": str(log), "step_s": 0.05} for _ in range(10)]
        ids = await enqueue(postgres_url, chain(5), contexts)
        await until(lambda: len(ran(log)) >= 10, 30)

        admin = await asyncpg.connect(postgres_url)
        try:  # as a server restart or a network cut does to every connection of the worker
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()

        await until(lambda: completed(postgres_url, ids), 60)

    lines = ran(log)
    for execution_id in ids:
        states = [line.state for line in lines if line.execution_id == execution_id]
        # A step ran again only right after itself: it was in flight when its commit failed.
        assert [s for n, s in enumerate(states) if n == 0 or states[n - 1] != s] == [
            f"s{n}" for n in range(1, 6)
        ]


async def test_a_busy_worker_with_short_leases_drops_and_repeats_nothing(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Renewals every 1/6 s among a thousand executions finishing: none of them may be taken
    # for one that no longer runs here while its last commit is under way.
    log = tmp_path / "actions.log"
    store = ProcedureStore(
        postgres_url, allowed_modules=["tests.worker_actions"], lease_seconds=0.5
    )
    async with store:
        await store.work()
        ids = await enqueue(postgres_url, chain(1), [{"log": str(log)} for _ in range(1000)])
        await until(lambda: completed(postgres_url, ids), 120)

    assert sorted(line.execution_id for line in ran(log)) == sorted(ids)  # each step once
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_finished_execution_reset_runs_again_under_a_new_lease(postgres_url: str) -> None:
    async with ProcedureStore(postgres_url) as store:
        store.register_action("app.step", lambda context: "done")
        await store.register(ONE_STEP)
        execution = await store.start("one", auto=True)
        await within(execution.run_to_completion(), 30)
        assert await lease_owner(postgres_url, execution.id) is None  # its final commit

        await execution.reset()  # running again: this worker holds it again
        final = await within(execution.run_to_completion(), 30)

    assert final.status is Status.COMPLETED and not execution.detached
    kinds = [r.kind for r in final.history]
    assert kinds.count("reset") == 1 and kinds[-1] == "finished"


async def test_recover_on_a_worker_claims_past_the_executions_it_quarantines(
    postgres_url: str,
) -> None:
    async with await PostgresBackend.open(postgres_url) as client:  # as clients left them
        for n in range(12):  # a full claim batch of damaged ones first
            await client.create_execution(f"gone{n:02}", "gone", "1.0", "running", {}, [])
    healthy = await enqueue(postgres_url, ONE_STEP, [{}, {}])

    async with ProcedureStore(postgres_url, concurrency=0) as store:
        store.register_action("app.step", lambda context: "done")
        resumed = await store.recover()

        assert sorted(e.id for e in resumed) == sorted(healthy)
        assert len(await store.executions(status=Status.QUARANTINED)) == 12
