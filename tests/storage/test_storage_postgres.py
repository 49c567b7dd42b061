"""What only the PostgreSQL backend does: the database it recognises as its own (and the ones it
refuses, unchanged), its schema version and migrations, any number of workers beside each other,
read-only use, and one clear error for a server it cannot use.

What every backend does is in tests/storage/test_backend_contract.py; the leases workers share
executions through are in tests/storage/test_postgres_leases.py. Each test here gets a new
database on the test server (``postgres_url``).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from procstore.errors import StoreError
from procstore.storage.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresBackend
from procstore.storage.urls import describe_postgres
from tests.conftest import within


@asynccontextmanager
async def sql(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the database, to look at it or set it up as someone else would."""
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


async def tables(url: str) -> list[str]:
    async with sql(url) as db:
        rows = await db.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    return [row[0] for row in rows]


#: procstore's tables, by name.
TABLES = ["claims", "executions", "inbox", "journal", "meta", "procedures"]


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens on it once the probe is closed


# -- the database it recognises --------------------------------------------------------------


async def test_an_empty_database_is_initialised_at_the_current_schema(postgres_url: str) -> None:
    async with await PostgresBackend.open(postgres_url):
        pass
    assert await tables(postgres_url) == TABLES
    async with sql(postgres_url) as db:
        meta = {row["key"]: row["value"] for row in await db.fetch("SELECT key, value FROM meta")}
    assert meta == {"application": "procstore", "schema_version": str(SCHEMA_VERSION)}


async def test_reopening_keeps_what_is_stored(postgres_url: str) -> None:
    async with await PostgresBackend.open(postgres_url) as backend:
        await backend.save_procedure("p", "1.0", {"name": "p"})
    async with await PostgresBackend.open(postgres_url) as backend:
        assert [p.document for p in await backend.load_procedures()] == [{"name": "p"}]


async def test_stores_opening_an_empty_database_at_once_create_the_tables_once(
    postgres_url: str,
) -> None:
    backends = await within(
        asyncio.gather(*(PostgresBackend.open(postgres_url) for _ in range(5))), 30
    )
    for backend in backends:
        await backend.close()
    assert await tables(postgres_url) == TABLES


async def test_a_database_with_other_tables_is_refused_unchanged(postgres_url: str) -> None:
    async with sql(postgres_url) as db:
        await db.execute("CREATE TABLE invoices (id serial PRIMARY KEY, total numeric)")
        await db.execute("INSERT INTO invoices (total) VALUES (12.5)")

    with pytest.raises(StoreError, match=r"not a procstore database \(.*other tables: invoices\)"):
        await PostgresBackend.open(postgres_url)

    assert await tables(postgres_url) == ["invoices"]
    async with sql(postgres_url) as db:
        assert await db.fetchval("SELECT total::text FROM invoices") == "12.5"


async def test_another_applications_meta_table_is_not_taken_for_procstores(
    postgres_url: str,
) -> None:
    async with sql(postgres_url) as db:
        await db.execute("CREATE TABLE meta (key text PRIMARY KEY, value text)")
        await db.execute("INSERT INTO meta VALUES ('schema_version', '1')")

    with pytest.raises(StoreError, match="not a procstore database"):
        await PostgresBackend.open(postgres_url)
    assert await tables(postgres_url) == ["meta"]


async def test_a_database_written_by_a_newer_procstore_is_refused_unchanged(
    postgres_url: str,
) -> None:
    async with await PostgresBackend.open(postgres_url):
        pass
    async with sql(postgres_url) as db:
        await db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")

    with pytest.raises(StoreError, match=r"newer procstore \(schema 99\)"):
        await PostgresBackend.open(postgres_url)
    async with sql(postgres_url) as db:
        assert await db.fetchval("SELECT value FROM meta WHERE key = 'schema_version'") == "99"


async def test_a_user_who_may_not_create_tables_gets_one_error_and_no_tables(
    postgres_url: str,
) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    async with sql(postgres_url) as db:
        await db.execute(f"CREATE ROLE {role} LOGIN")  # PostgreSQL 15: no CREATE on public
    try:
        parts = urlsplit(postgres_url)
        url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
        with pytest.raises(StoreError) as raised:
            await PostgresBackend.open(url)
        assert str(raised.value) == (
            f"cannot create procstore's tables in {describe_postgres(url)}: "
            "permission denied for schema public"
        )
        assert await tables(postgres_url) == []
    finally:
        async with sql(postgres_url) as db:
            await db.execute(f"DROP ROLE {role}")


async def test_a_damaged_row_is_reported_and_leaves_the_others_readable(postgres_url: str) -> None:
    async with await PostgresBackend.open(postgres_url) as backend:
        for execution_id in ("good", "bad"):
            await backend.create_execution(
                execution_id, "p", "1", "running", {"state": "a"}, [{"n": 1}]
            )
        async with sql(postgres_url) as db:
            await db.execute("UPDATE executions SET snapshot = '[1, 2]' WHERE id = 'bad'")
        good, bad = await backend.load_unfinished()
    assert (good.id, good.snapshot, good.reason) == ("good", {"state": "a"}, None)
    assert bad.id == "bad"
    assert bad.reason == "its stored snapshot is not a JSON object but list"
    assert bad.records == [{"n": 1}]


async def test_concurrent_commits_to_one_execution_number_every_record_once(
    postgres_url: str,
) -> None:
    async with await PostgresBackend.open(postgres_url) as backend:
        await backend.create_execution("e", "p", "1", "running", {}, [{"n": 0}])
        await within(
            asyncio.gather(
                *(backend.commit("e", "running", {}, [{"n": n}, {"n": n}]) for n in range(1, 41))
            ),
            30,
        )
        stored = await backend.load_execution("e")
    assert stored is not None and len(stored.records) == 81
    async with sql(postgres_url) as db:
        seqs = [row[0] for row in await db.fetch("SELECT seq FROM journal ORDER BY seq")]
        length = await db.fetchval("SELECT journal_length FROM executions")
    assert seqs == list(range(1, 82)) and length == 81


# -- workers ------------------------------------------------------------------------------------


async def test_any_number_of_backends_are_workers_of_one_database(postgres_url: str) -> None:
    first = await PostgresBackend.open(postgres_url)
    second = await PostgresBackend.open(postgres_url)
    try:
        await first.acquire_runner_lock()
        await first.acquire_runner_lock()  # again: a no-op
        await second.acquire_runner_lock()
        assert first.holds_runner_lock and second.holds_runner_lock
        assert first.worker_id != second.worker_id
    finally:
        await first.close()
        await second.close()


async def test_a_schema_1_database_migrates_keeping_its_executions_free_to_claim(
    postgres_url: str,
) -> None:
    async with sql(postgres_url) as db:
        await db.execute(MIGRATIONS[0])
        await db.execute(
            "INSERT INTO meta VALUES ('application', 'procstore'), ('schema_version', '1')"
        )
        await db.execute(
            "INSERT INTO executions (id, procedure, version, status, snapshot, journal_length,"
            " created_at, updated_at) VALUES ('old', 'p', '1', 'running', '{}', 0, now(), now())"
        )

    async with await PostgresBackend.open(postgres_url) as backend:
        await backend.acquire_runner_lock()
        (claim,) = await backend.claim(10)
        stored = await backend.load_execution("old")

    assert (claim.execution_id, claim.fence, claim.previous_owner) == ("old", 1, None)
    assert stored is not None and stored.status == "running"
    async with sql(postgres_url) as db:
        assert await db.fetchval("SELECT value FROM meta WHERE key = 'schema_version'") == str(
            SCHEMA_VERSION
        )


# -- read-only use -----------------------------------------------------------------------------


async def test_a_read_only_backend_reads_beside_the_runner_and_writes_nothing(
    postgres_url: str,
) -> None:
    async with await PostgresBackend.open(postgres_url) as runner:
        await runner.acquire_runner_lock()
        await runner.create_execution("e", "p", "1", "running", {}, [])
        async with await PostgresBackend.open(postgres_url, read_only=True) as reader:
            assert [s.id for s in await reader.list_executions()] == ["e"]
            with pytest.raises(StoreError, match="opened read-only"):
                await reader.commit("e", "failed", {}, [])
            with pytest.raises(StoreError, match="read-only: it cannot run executions"):
                await reader.acquire_runner_lock()
        stored = await runner.load_execution("e")
    assert stored is not None and stored.status == "running"


async def test_a_read_only_backend_refuses_a_database_without_procstores_tables(
    postgres_url: str,
) -> None:
    with pytest.raises(StoreError, match="not a procstore database yet: nothing to read"):
        await PostgresBackend.open(postgres_url, read_only=True)
    assert await tables(postgres_url) == []


# -- a server it cannot use ----------------------------------------------------------------------


async def test_a_closed_port_is_one_error_naming_host_port_and_database() -> None:
    port = closed_port()
    url = f"postgresql://someone:s3cret@127.0.0.1:{port}/orders"
    with pytest.raises(StoreError) as raised:
        await PostgresBackend.open(url)
    message = str(raised.value)
    assert message == (
        f"cannot connect to postgresql://127.0.0.1:{port}/orders: connection refused: "
        "is the server running and listening there?"
    )
    assert "s3cret" not in message


async def test_a_missing_database_is_one_error_naming_it(postgres_server: str) -> None:
    url = with_database(postgres_server, "no_such_db")
    with pytest.raises(StoreError, match='database "no_such_db" does not exist') as raised:
        await PostgresBackend.open(url)
    assert str(raised.value).startswith(f"cannot connect to {describe_postgres(url)}: ")
    assert "\n" not in str(raised.value)


async def test_an_unknown_user_is_one_error_naming_it(postgres_server: str) -> None:
    parts = urlsplit(postgres_server)
    url = urlunsplit(parts._replace(netloc=f"nobody@{parts.hostname}:{parts.port}"))
    with pytest.raises(StoreError, match='role "nobody" does not exist'):
        await PostgresBackend.open(url)


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("postgresql://u:pw@db.example:6000/orders", "postgresql://db.example:6000/orders"),
        ("postgres://u@db.example/orders", "postgresql://db.example:5432/orders"),
        ("postgresql://u@db.example", "postgresql://db.example:5432/u"),
        ("postgresql:///orders?host=/run/postgresql", "postgresql:///run/postgresql/orders"),
        ("postgresql://[bad", "postgresql://(a URL that cannot be parsed)"),
    ],
)
def test_messages_name_the_database_without_user_or_password(url: str, described: str) -> None:
    assert describe_postgres(url) == described
