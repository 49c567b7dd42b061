"""Damaged rows in a persisted store: the execution they belong to is quarantined (status
``quarantined``, with the reason), and every other one recovers.

Each test stores a few executions through the public API, damages one row of the SQLite file
with a plain ``sqlite3`` connection (as a bad disk, a bad migration or a hand edit would), and
reopens the store.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from procstore import ExecutionDamaged, ProcedureNotFound, ProcedureStore, Status, VersionConflict
from tests.conftest import make_doc, within

WAITING = make_doc(
    {"wait": {"transitions": [{"event": "go", "target": "done"}]}, "done": {}},
    "wait",
    name="waiting",
)
OTHER = make_doc(
    {"hold": {"transitions": [{"event": "go", "target": "done"}]}, "done": {}},
    "hold",
    name="other",
)


async def store_waiting(url: str, count: int = 3, doc: dict[str, Any] = WAITING) -> list[str]:
    """Start ``count`` executions of ``doc`` that wait for an event; return their ids."""
    async with ProcedureStore(url) as store:
        await store.register(WAITING)
        await store.register(OTHER)
        return [(await store.start(doc["name"])).id for _ in range(count)]


def damage(db: Path, sql: str, *parameters: Any) -> None:
    connection = sqlite3.connect(db)
    try:
        connection.execute(sql, parameters)
        connection.commit()
    finally:
        connection.close()


def rows_of(db: Path, execution_id: str) -> tuple[Any, ...]:
    """The stored snapshot and journal of an execution, as they are in the file."""
    connection = sqlite3.connect(db)
    try:
        snapshot = connection.execute(
            "SELECT snapshot FROM executions WHERE id = ?", (execution_id,)
        ).fetchall()
        journal = connection.execute(
            "SELECT seq, record FROM journal WHERE execution_id = ? ORDER BY seq", (execution_id,)
        ).fetchall()
    finally:
        connection.close()
    return snapshot, journal


DAMAGES = {
    "truncated snapshot": (
        "UPDATE executions SET snapshot = substr(snapshot, 1, 40) WHERE id = ?",
        "its stored snapshot is not valid JSON",
    ),
    "snapshot missing a key": (
        "UPDATE executions SET snapshot = json_remove(snapshot, '$.auto') WHERE id = ?",
        "its stored state cannot be restored (KeyError: 'auto')",
    ),
    "snapshot naming a state the procedure lacks": (
        "UPDATE executions SET snapshot = json_set(snapshot, '$.completed', json('[\"gone\"]'))"
        " WHERE id = ?",
        "its stored state cannot be restored (ValueError: its snapshot names states the "
        "procedure does not have: ['gone'])",
    ),
    "snapshot whose active state the procedure lacks": (
        "UPDATE executions SET snapshot = json_set(snapshot, '$.active', json('[\"gone\"]'),"
        " '$.fsm_state', 'gone') WHERE id = ?",
        "its stored state cannot be restored (ValueError: its snapshot names states the "
        "procedure does not have: ['gone'])",
    ),
    "journal record that is not JSON": (
        "UPDATE journal SET record = '{\"kind\": ' WHERE execution_id = ? AND seq = 1",
        "its journal record 1 is not valid JSON",
    ),
    "unknown procedure": (
        "UPDATE executions SET procedure = 'gone' WHERE id = ?",
        "its procedure 'gone' version '1.0' is not in the store",
    ),
}


@pytest.mark.parametrize("kind", list(DAMAGES))
async def test_recover_quarantines_a_damaged_execution_and_resumes_the_others(
    db: Path, url: str, kind: str
) -> None:
    sql, reason = DAMAGES[kind]
    healthy_1, damaged, healthy_2 = await store_waiting(url)
    damage(db, sql, damaged)
    stored_before = rows_of(db, damaged)

    async with ProcedureStore(url) as store:
        resumed = await store.recover()
        assert sorted(e.id for e in resumed) == sorted([healthy_1, healthy_2])
        assert await within(resumed[0].send("go"))
        assert resumed[0].status is Status.COMPLETED
        [summary] = await store.executions(status=Status.QUARANTINED)
    assert summary.id == damaged
    assert summary.reason is not None and summary.reason.startswith(reason)
    assert rows_of(db, damaged) == stored_before  # kept as it was, for whoever repairs it


async def test_a_quarantined_execution_stays_quarantined_after_reopening(
    db: Path, url: str
) -> None:
    _, damaged, _ = await store_waiting(url)
    damage(db, DAMAGES["truncated snapshot"][0], damaged)
    async with ProcedureStore(url) as store:
        await store.recover()
    async with ProcedureStore(url) as store:
        assert len(await store.recover()) == 2
        statuses = {s.id: s.status for s in await store.executions()}
    assert statuses[damaged] is Status.QUARANTINED


async def test_recover_logs_a_warning_naming_each_quarantined_execution(
    db: Path, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, damaged, _ = await store_waiting(url)
    damage(db, DAMAGES["unknown procedure"][0], damaged)
    with caplog.at_level(logging.WARNING, logger="procstore"):
        async with ProcedureStore(url) as store:
            await store.recover()
    [warning] = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert f"execution {damaged} is quarantined: its procedure 'gone'" in warning.getMessage()


async def test_get_execution_of_a_quarantined_execution_raises_with_the_reason(
    db: Path, url: str
) -> None:
    _, damaged, _ = await store_waiting(url)
    damage(db, DAMAGES["truncated snapshot"][0], damaged)
    async with ProcedureStore(url) as store:
        await store.recover()
        with pytest.raises(ExecutionDamaged, match="is quarantined: its stored snapshot") as e:
            await store.get_execution(damaged)
    assert (e.value.execution_id, e.value.reason.split(" (")[0]) == (
        damaged,
        "its stored snapshot is not valid JSON",
    )


async def test_get_execution_of_a_damaged_unfinished_execution_quarantines_it(
    db: Path, url: str
) -> None:
    _, damaged, _ = await store_waiting(url)
    damage(db, DAMAGES["snapshot missing a key"][0], damaged)
    async with ProcedureStore(url) as store:
        with pytest.raises(ExecutionDamaged, match="cannot be restored: its stored state"):
            await store.get_execution(damaged)
        assert [s.id for s in await store.executions(status="quarantined")] == [damaged]
        assert len(await store.recover()) == 2


async def test_a_read_only_store_reports_a_damaged_execution_and_changes_nothing(
    db: Path, url: str
) -> None:
    _, damaged, _ = await store_waiting(url)
    damage(db, DAMAGES["snapshot missing a key"][0], damaged)
    async with ProcedureStore(url, read_only=True) as store:
        with pytest.raises(ExecutionDamaged, match="KeyError: 'auto'"):
            await store.get_execution(damaged)
        statuses = {s.id: s.status for s in await store.executions()}
    assert statuses[damaged] is Status.RUNNING


async def test_an_unknown_stored_status_is_listed_as_quarantined(db: Path, url: str) -> None:
    _, damaged, _ = await store_waiting(url)
    damage(db, "UPDATE executions SET status = 'paused' WHERE id = ?", damaged)
    async with ProcedureStore(url, read_only=True) as store:
        summaries = {s.id: s for s in await store.executions()}
        quarantined = await store.executions(status=Status.QUARANTINED)
        with pytest.raises(ExecutionDamaged, match="status 'paused' is unknown"):
            await store.get_execution(damaged)
    assert summaries[damaged].status is Status.QUARANTINED
    assert summaries[damaged].reason == "its stored status 'paused' is unknown to this procstore"
    assert [s.id for s in quarantined] == [damaged]


# -- damaged procedure documents ---------------------------------------------------------------

BAD_DOCUMENTS = {
    "not JSON": ('\'{"name": "waiting"\'', "its stored document is not valid JSON"),
    "not a procedure": (
        "json_remove(document, '$.definition')",
        "its stored document is not a valid procedure",
    ),
    "another procedure's": (
        "json_set(document, '$.name', 'other')",
        "its stored document is for procedure 'other' version '1.0'",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_DOCUMENTS))
async def test_a_damaged_procedure_document_quarantines_that_version_and_its_executions(
    db: Path, url: str, kind: str
) -> None:
    document, reason = BAD_DOCUMENTS[kind]
    waiting = await store_waiting(url, count=2)
    [other] = await store_waiting(url, count=1, doc=OTHER)
    damage(db, f"UPDATE procedures SET document = {document} WHERE name = 'waiting'")

    async with ProcedureStore(url) as store:
        assert [p.name for p in await store.list()] == ["other"]
        assert [e.id for e in await store.recover()] == [other]
        quarantined = await store.executions(status=Status.QUARANTINED)
        with pytest.raises(
            ProcedureNotFound, match=f"'waiting' version '1.0' is quarantined: {reason}"
        ):
            await store.get("waiting", "1.0")
        with pytest.raises(VersionConflict, match="cannot be loaded"):
            await store.register(WAITING)
    assert [s.id for s in quarantined] == waiting
    expected = f"its procedure 'waiting' version '1.0' cannot be loaded: {reason}"
    assert all(s.reason is not None and s.reason.startswith(expected) for s in quarantined)
