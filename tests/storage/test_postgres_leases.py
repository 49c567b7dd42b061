"""The leases through which PostgreSQL workers share executions, at the backend (``Leasing``):
claims that never take one execution twice, fencing tokens that make a worker that lost its
lease commit nothing, renewals, releases and the notifications that wake idle workers.

A lease "expires" here by setting its ``lease_expires_at`` in the past, as the server's clock
would after ``lease_seconds`` without a renewal; the workers that take over from processes that
really died are in tests/storage/test_worker_takeover.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
import pytest

from procstore.errors import LeaseLost, StoreError
from procstore.storage.postgres import PostgresBackend
from tests.conftest import within

Workers = Callable[[int], Awaitable[list[PostgresBackend]]]


@pytest.fixture
async def workers(postgres_url: str) -> AsyncIterator[Workers]:
    """Open ``n`` backends on the test's database, each a worker; all closed afterwards."""
    async with AsyncExitStack() as stack:

        async def open_workers(count: int) -> list[PostgresBackend]:
            opened = []
            for _ in range(count):
                backend = await stack.enter_async_context(await PostgresBackend.open(postgres_url))
                await backend.acquire_runner_lock()
                opened.append(backend)
            return opened

        yield open_workers


async def unleased(url: str, *ids: str) -> None:
    """Create executions as a client does: held by no worker."""
    async with await PostgresBackend.open(url) as client:
        for execution_id in ids:
            await client.create_execution(execution_id, "p", "1", "running", {"n": 0}, [])


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


async def lease_of(url: str, execution_id: str) -> tuple[str | None, int]:
    """``(lease_owner, fence)`` as stored."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT lease_owner, fence FROM executions WHERE id = $1", execution_id
        )
    finally:
        await connection.close()
    assert row is not None
    return row[0], row[1]


async def test_a_workers_new_execution_is_leased_to_it_and_no_other_worker_claims_it(
    postgres_url: str, workers: Workers
) -> None:
    first, second = await workers(2)
    await first.create_execution("e", "p", "1", "running", {}, [])

    assert await second.claim(10) == []
    assert first.held() == {"e": 1}
    assert await lease_of(postgres_url, "e") == (first.worker_id, 1)


async def test_many_workers_claiming_at_once_take_each_execution_exactly_once(
    postgres_url: str, workers: Workers
) -> None:
    ids = [f"e{n:02}" for n in range(40)]
    await unleased(postgres_url, *ids)
    claimers = await workers(4)

    async def claim_all(backend: PostgresBackend) -> list[str]:
        taken: list[str] = []
        while claims := await backend.claim(3):
            taken += [claim.execution_id for claim in claims]
        return taken

    taken = await within(asyncio.gather(*(claim_all(backend) for backend in claimers)), 30)

    everything = [execution_id for batch in taken for execution_id in batch]
    assert sorted(everything) == ids  # each once, none left
    for backend, batch in zip(claimers, taken, strict=True):
        assert set(backend.held()) == set(batch)


async def test_a_claim_takes_the_oldest_executions_first_and_no_more_than_asked(
    postgres_url: str, workers: Workers
) -> None:
    await unleased(postgres_url, "old", "middle", "new")
    (worker,) = await workers(1)

    claims = await worker.claim(2)

    assert [(c.execution_id, c.fence, c.previous_owner) for c in claims] == [
        ("old", 1, None),
        ("middle", 1, None),
    ]


async def test_an_expired_lease_is_taken_over_under_the_next_fence(
    postgres_url: str, workers: Workers
) -> None:
    dead, alive = await workers(2)
    await dead.create_execution("e", "p", "1", "running", {}, [])
    await expire(postgres_url, "e")

    (claim,) = await alive.claim(10)

    assert (claim.execution_id, claim.fence, claim.previous_owner) == ("e", 2, dead.worker_id)
    assert await lease_of(postgres_url, "e") == (alive.worker_id, 2)


async def test_a_commit_under_a_lease_taken_over_is_refused_and_changes_nothing(
    postgres_url: str, workers: Workers
) -> None:
    paused, taker = await workers(2)
    await paused.create_execution("e", "p", "1", "running", {"n": 0}, [{"kind": "started"}])
    await expire(postgres_url, "e")
    await taker.claim(10)

    with pytest.raises(LeaseLost, match=f"fence 1 < 2: it is held by {taker.worker_id}"):
        await paused.commit("e", "running", {"n": 1}, [{"kind": "late"}])

    stored = await taker.load_execution("e")
    assert stored is not None
    assert (stored.snapshot, stored.records) == ({"n": 0}, [{"kind": "started"}])
    assert paused.held() == {}  # it let go


async def test_a_commit_under_an_expired_lease_nobody_took_is_applied(
    postgres_url: str, workers: Workers
) -> None:
    (slow,) = await workers(1)
    await slow.create_execution("e", "p", "1", "running", {"n": 0}, [])
    await expire(postgres_url, "e")

    await slow.commit("e", "running", {"n": 1}, [])  # the fence is still its own

    stored = await slow.load_execution("e")
    assert stored is not None and stored.snapshot == {"n": 1}


async def test_a_worker_commits_only_executions_it_holds(
    postgres_url: str, workers: Workers
) -> None:
    await unleased(postgres_url, "free")
    (worker,) = await workers(1)

    with pytest.raises(LeaseLost, match="holds no lease on it"):
        await worker.commit("free", "running", {"n": 1}, [])


async def test_a_renewal_extends_the_held_leases_and_names_those_taken_over(
    postgres_url: str, workers: Workers
) -> None:
    holder, taker = await workers(2)
    await holder.create_execution("kept", "p", "1", "running", {}, [])
    await holder.create_execution("lost", "p", "1", "running", {}, [])
    await expire(postgres_url, "kept")
    await expire(postgres_url, "lost")
    await taker.claim(1, "lost")

    assert await holder.renew() == ["lost"]

    assert holder.held() == {"kept": 1}
    assert await taker.claim(10) == []  # "kept" is live again


async def test_a_final_commit_ends_the_lease(postgres_url: str, workers: Workers) -> None:
    (worker,) = await workers(1)
    await worker.create_execution("e", "p", "1", "running", {}, [])

    await worker.commit("e", "completed", {}, [{"kind": "finished"}])

    assert worker.held() == {}
    assert await lease_of(postgres_url, "e") == (None, 1)


async def test_only_one_worker_records_a_command_to_a_finished_execution(
    postgres_url: str, workers: Workers
) -> None:
    first, second = await workers(2)
    await first.create_execution("e", "p", "1", "running", {"inbox": 0}, [])
    await first.commit("e", "completed", {"inbox": 0}, [{"kind": "finished"}])
    refused = [{"kind": "received", "command": 7}]

    await first.commit("e", "completed", {"inbox": 7}, refused)
    with pytest.raises(LeaseLost, match="another worker wrote to it first"):
        await second.commit("e", "completed", {"inbox": 7}, refused)  # read before the first's

    stored = await second.load_execution("e")
    assert stored is not None and [r["kind"] for r in stored.records] == ["finished", "received"]


async def test_quarantining_under_a_lease_taken_over_changes_nothing(
    postgres_url: str, workers: Workers
) -> None:
    paused, taker = await workers(2)
    await paused.create_execution("e", "p", "1", "running", {}, [])
    await expire(postgres_url, "e")
    await taker.claim(10)

    with pytest.raises(LeaseLost):
        await paused.quarantine_execution("e", "damaged")

    stored = await taker.load_execution("e")
    assert stored is not None and (stored.status, stored.reason) == ("running", None)


async def test_a_released_execution_wakes_an_idle_worker_and_is_claimable_at_once(
    postgres_url: str, workers: Workers
) -> None:
    stopping, idle = await workers(2)
    await stopping.create_execution("e", "p", "1", "running", {}, [])
    await idle.wait_for_work(0)  # listening from now on
    waiting = asyncio.ensure_future(idle.wait_for_work(3600))

    await stopping.release()

    await within(waiting, 30)  # woken: not after its hour
    assert [claim.execution_id for claim in await idle.claim(10)] == ["e"]


async def test_an_execution_created_without_a_lease_wakes_an_idle_worker(
    postgres_url: str, workers: Workers
) -> None:
    (idle,) = await workers(1)
    await idle.wait_for_work(0)
    waiting = asyncio.ensure_future(idle.wait_for_work(3600))

    await unleased(postgres_url, "new")

    await within(waiting, 30)
    assert [claim.execution_id for claim in await idle.claim(10)] == ["new"]


async def test_closing_a_worker_releases_its_leases(postgres_url: str, workers: Workers) -> None:
    closing, other = await workers(2)
    await closing.create_execution("e", "p", "1", "running", {}, [])

    await closing.close()

    assert await lease_of(postgres_url, "e") == (None, 1)
    assert [claim.previous_owner for claim in await other.claim(10)] == [None]


async def test_every_claim_is_in_the_lease_history(postgres_url: str, workers: Workers) -> None:
    first, second = await workers(2)
    await first.create_execution("e", "p", "1", "running", {}, [])
    await expire(postgres_url, "e")
    await second.claim(10)

    connection = await asyncpg.connect(postgres_url)
    try:
        rows = await connection.fetch(
            "SELECT fence, owner, previous_owner FROM claims WHERE execution_id = 'e'"
            " ORDER BY fence"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [
        (1, first.worker_id, None),
        (2, second.worker_id, first.worker_id),
    ]


async def test_an_execution_whose_commit_failed_is_released_at_the_next_renewal(
    postgres_url: str, workers: Workers
) -> None:
    stopped, other = await workers(2)
    await stopped.create_execution("e", "p", "1", "running", {}, [])
    connection = await asyncpg.connect(postgres_url)
    try:  # a write the server refuses, as a full disk or a cut connection would make it fail
        await connection.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'refused'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON journal FOR EACH ROW"
            " WHEN (NEW.record->>'kind' = 'refused') EXECUTE FUNCTION refuse()"
        )
    finally:
        await connection.close()
    with pytest.raises(StoreError, match="refused"):
        await stopped.commit("e", "running", {}, [{"kind": "refused"}])

    assert stopped.held() == {}  # the store stops the execution: the worker holds it no more
    await stopped.renew()

    assert await lease_of(postgres_url, "e") == (None, 1)
    assert [claim.execution_id for claim in await other.claim(10)] == ["e"]
