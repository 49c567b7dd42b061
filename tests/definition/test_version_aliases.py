"""A procedure version has one spelling: ``1.0`` and ``1.0.0`` are one version (PEP 440), to the
registry and to the database alike, so an execution always resumes on exactly the version it
started on."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore, Status, VersionConflict
from procstore.storage import MIGRATIONS, SCHEMA_VERSION
from procstore.storage.sqlite import APPLICATION_ID
from tests.conftest import make_doc, within


def waiting(version: str, first: str = "wait") -> dict[str, Any]:
    """``first`` waits for ``go``, then ``done``: two spellings may differ in their states."""
    return make_doc(
        {first: {"transitions": [{"event": "go", "target": "done"}]}, "done": {}},
        first,
        name="p",
        version=version,
    )


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, url: str) -> AsyncIterator[ProcedureStore]:
    async with ProcedureStore(None if request.param == "memory" else url) as opened:
        yield opened


async def test_registering_an_alias_of_a_registered_version_names_its_spelling(
    store: ProcedureStore,
) -> None:
    await store.register(waiting("1.0"))
    with pytest.raises(VersionConflict) as caught:
        await store.register(waiting("1.0.0"))
    assert str(caught.value) == (
        "p version '1.0.0' is the same version as the registered '1.0': "
        "register it as '1.0', or under a new version"
    )
    assert [p.version for p in await store.list()] == ["1.0"]


async def test_two_stores_open_at_once_cannot_register_two_spellings(url: str) -> None:
    async with ProcedureStore(url) as first, ProcedureStore(url) as second:
        await first.register(waiting("1.0"))
        with pytest.raises(
            VersionConflict, match=re.escape("'p' version '1.0.0' is the same version as '1.0'")
        ):
            await second.register(waiting("1.0.0"))
    async with ProcedureStore(url) as reopened:
        assert [p.version for p in await reopened.list()] == ["1.0"]


async def test_an_execution_never_resumes_on_another_spelling_of_its_version(
    db: Path, url: str
) -> None:
    async with ProcedureStore(url) as store:
        await store.register(waiting("1.0"))
        started = await store.start("p")
    connection = sqlite3.connect(db)  # as if it had started on a 1.0.0 that is gone
    connection.execute("UPDATE executions SET version = '1.0.0'")
    connection.commit()
    connection.close()
    async with ProcedureStore(url) as store:
        assert await store.recover() == []
        [quarantined] = await store.executions(status=Status.QUARANTINED)
    assert quarantined.id == started.id
    assert quarantined.reason == "its procedure 'p' version '1.0.0' is not in the store"


# -- a database that already holds both spellings ----------------------------------------------


async def stored_rows(directory: Path, doc: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a store writes for ``doc`` and one execution of it left waiting."""
    path = directory / f"rows-{doc['version']}.db"
    async with ProcedureStore(f"sqlite:///{path}") as store:
        await store.register(doc)
        await store.start("p")
    connection = sqlite3.connect(path)
    try:
        return {
            "procedures": connection.execute(
                "SELECT name, version, document, saved_at FROM procedures"
            ).fetchall(),
            "executions": connection.execute(
                "SELECT id, procedure, version, status, snapshot, created_at, updated_at"
                " FROM executions"
            ).fetchall(),
            "journal": connection.execute(
                "SELECT execution_id, seq, record FROM journal"
            ).fetchall(),
        }
    finally:
        connection.close()


def write_schema_1(path: Path, *parts: dict[str, list[tuple[Any, ...]]]) -> None:
    """A database as procstore's schema 1 (``MIGRATIONS[0]``) wrote it, holding ``parts``."""
    connection = sqlite3.connect(path)
    connection.executescript(MIGRATIONS[0])
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    for part in parts:
        connection.executemany(
            "INSERT INTO procedures (name, version, document, saved_at) VALUES (?, ?, ?, ?)",
            part["procedures"],
        )
        connection.executemany(
            "INSERT INTO executions (id, procedure, version, status, snapshot, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            part["executions"],
        )
        connection.executemany("INSERT INTO journal VALUES (?, ?, ?)", part["journal"])
    connection.commit()
    connection.close()


async def test_a_schema_1_database_holding_both_spellings_keeps_the_first(
    tmp_path: Path, db: Path, url: str
) -> None:
    # Schema 1 let two stores open at once store 1.0 and 1.0.0 (here with different states).
    first = await stored_rows(tmp_path, waiting("1.0", first="wait"))
    alias = await stored_rows(tmp_path, waiting("1.0.0", first="hold"))
    write_schema_1(db, first, alias)
    [(on_first, *_)] = first["executions"]
    [(on_alias, *_)] = alias["executions"]

    async with ProcedureStore(url) as store:
        assert [p.version for p in await store.list()] == ["1.0"]
        [resumed] = await store.recover()
        assert (resumed.id, resumed.version, resumed.current) == (on_first, "1.0", "wait")
        assert await within(resumed.send("go"))
        [quarantined] = await store.executions(status=Status.QUARANTINED)
        with pytest.raises(
            VersionConflict, match=re.escape("the same version as the registered '1.0'")
        ):
            await store.register(waiting("1.0.0", first="hold"))

    assert quarantined.id == on_alias
    assert quarantined.reason == (
        "its procedure 'p' version '1.0.0' cannot be loaded: it is an alias of version '1.0', "
        "stored before it (they are one version)"
    )
    connection = sqlite3.connect(db)
    schema = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    versions = connection.execute("SELECT version FROM procedures ORDER BY seq").fetchall()
    connection.close()
    assert schema == (str(SCHEMA_VERSION),)
    assert versions == [("1.0",), ("1.0.0",)]  # the alias's document is kept, for inspection
