"""Checkpoints written by an earlier procstore still restore and carry on.

tests/fixtures/checkpoints/vN_*.json are executions as procstore stored them in checkpoint
format N (written by tools/make_checkpoint_fixtures.py at that time): v0 before checkpoints
carried a format version, v1 before they carried the inbox cursor, v2 before the per-policy
retry counts and the execution's deadline and error. Each format has the same
four: a retry waiting for its delay, a stepped execution with an outcome waiting for send(), a
parallel state with one region done and a state timeout pending in the other, and a saga whose
rollback had begun. Each is stored as it was, recovered by today's store and run to its end.

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
from procstore.runtime.state import CHECKPOINT_FORMAT, RunState
from tests.conftest import records, wait_until, within

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "checkpoints").glob("v*_*.json"))


def _due_now(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` with every stored deadline passed (format 0 kept retry deadlines in a map of
    their own, format 1 in each leaf's record)."""
    due = dict(snapshot)
    for key in ("retry_at", "deadlines"):
        if key in due:
            due[key] = {path: 0.0 for path in due[key]}
    if "leaves" in due:
        due["leaves"] = {
            path: {**leaf, "retry_at": 0.0} if "retry_at" in leaf else leaf
            for path, leaf in due["leaves"].items()
        }
    return due


@pytest.mark.parametrize("version", [0, 1, 2])
def test_there_are_fixtures_of_every_earlier_format(version: int) -> None:
    assert [path.stem for path in FIXTURES if path.stem.startswith(f"v{version}_")]


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


@pytest.mark.parametrize(
    "fixture", [path for path in FIXTURES if path.stem.endswith("_waiting")], ids=lambda p: p.stem
)
def test_a_checkpoint_from_before_the_inbox_has_applied_no_command(fixture: Path) -> None:
    snapshot = json.loads(fixture.read_text())["snapshot"]
    state, configuration = RunState.restore(snapshot, {"build", "ship", "done"})
    assert state.inbox == 0
    written = state.checkpoint(configuration, {"build": 0, "ship": 1, "done": 2})
    assert (written["format"], written["inbox"]) == (CHECKPOINT_FORMAT, 0)


def test_the_inbox_cursor_is_written_and_read_back() -> None:
    state = RunState.fresh({}, auto=False)
    state.active, state.inbox = {"wait"}, 42
    restored, _ = RunState.restore(state.checkpoint("wait", {"wait": 0}), {"wait"})
    assert restored.inbox == 42
