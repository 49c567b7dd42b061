"""Checkpoints written by an earlier procstore still restore and carry on.

tests/fixtures/checkpoints/v0_*.json are executions as procstore stored them before checkpoints
carried a format version (written by tools/make_checkpoint_fixtures.py at that time): a retry
waiting for its delay, a stepped execution with an outcome waiting for send(), a parallel state
with one region done and a state timeout pending in the other, and a saga whose rollback had
begun. Each is stored as it was, recovered by today's store and run to its end.

Their deadlines are wall-clock instants shortly after they were written: each is moved into the
past first, as if the process had been down for longer than that.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.conftest import records, wait_until, within

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "checkpoints").glob("v*_*.json"))


def _due_now(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` with every stored deadline passed."""
    due = dict(snapshot)
    for key in ("retry_at", "deadlines"):
        if key in due:
            due[key] = {path: 0.0 for path in due[key]}
    return due


def test_there_are_fixtures_of_the_first_format() -> None:
    assert [path.stem for path in FIXTURES if path.stem.startswith("v0_")]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.stem)
async def test_a_stored_checkpoint_of_an_earlier_format_restores_and_runs_to_its_end(
    tmp_path: Path, fixture: Path
) -> None:
    stored = json.loads(fixture.read_text())
    document, expect = stored["document"], stored["expect"]
    async with ProcedureStore(f"sqlite:///{tmp_path / 'old.db'}") as store:
        await store.register(document)
        backend = store._backend
        assert backend is not None
        await backend.create_execution(
            stored["id"],
            document["name"],
            document["version"],
            stored["status"],
            _due_now(stored["snapshot"]),
            stored["records"],
        )
        [execution] = await within(store.recover())
        running = asyncio.get_running_loop().create_task(execution.run_to_completion())
        if "send" in expect:  # driven, it then waits for an event
            await wait_until(lambda: execution.current == expect["waits_in"])
            await within(execution.send(expect["send"]))
        final = await within(running)

    assert (final.status, final.current) == (Status(expect["status"]), expect["current"])
    written = [(r["kind"], r.get("state")) for r in stored["records"]]
    assert [(r.kind, r.state) for r in final.history[: len(written)]] == written
    if "attempts" in expect:
        assert len(records(final.history, "action", state="fetch")) == expect["attempts"]
    if "compensations" in expect:
        assert [r.state for r in records(final.history, "compensation")] == expect["compensations"]
