"""Write tests/fixtures/checkpoints/vN_*.json: checkpoints of format N as the procstore running
this stores them, so that tests/runtime/test_checkpoint_formats.py can prove that every later
procstore still restores them. v0 was written before checkpoints carried a format version
(commit 0e01bbe), v1 by the last procstore of format 1 (before the inbox cursor of format 2),
v2 by the last of format 2 (before the per-policy retry counts of format 3).

Each fixture is one execution stopped at an interesting moment, as its store committed it:
``{"document", "id", "status", "snapshot", "records", "expect"}``. Run it with the procstore
whose format the fixtures are meant to freeze; never regenerate existing fixtures with a newer
one (that would test nothing).

    .venv/bin/python tools/make_checkpoint_fixtures.py tests/fixtures/checkpoints
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from procstore import Execution, ProcedureStore
from procstore.runtime import state

#: The format of the checkpoints this procstore writes (0 before the constant existed).
FORMAT = getattr(state, "CHECKPOINT_FORMAT", 0)


def _doc(name: str, states: dict[str, Any], initial: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0",
        "definition": {"initial_state": initial, "states": states},
    }


RETRYING = _doc(
    "retrying",
    {
        "fetch": {
            "action": {"type": "fail", "message": "down"},
            "retry": {"max_attempts": 3, "interval_ms": 500, "backoff_rate": 1},
            "transitions": [
                {"event": "success", "target": "done"},
                {"event": "error", "target": "gave_up"},
            ],
        },
        "done": {},
        "gave_up": {},
    },
    "fetch",
)
WAITING = _doc(
    "waiting",
    {
        "build": {
            "action": {"type": "noop", "result": "built"},
            "transitions": [{"event": "success", "target": "ship"}],
        },
        "ship": {"transitions": [{"event": "go", "target": "done"}]},
        "done": {},
    },
    "build",
)
STATECHART = _doc(
    "statechart",
    {
        "checks": {
            "parallel": {
                "credit": {
                    "initial_state": "run",
                    "states": {
                        "run": {
                            "action": {"type": "noop"},
                            "transitions": [{"event": "success", "target": "ok"}],
                        },
                        "ok": {},
                    },
                },
                "fraud": {
                    "initial_state": "wait",
                    "states": {
                        "wait": {
                            "timeout_ms": 60_000,
                            "transitions": [
                                {"event": "timeout", "target": "late"},
                                {"event": "clear", "target": "ok"},
                            ],
                        },
                        "late": {},
                        "ok": {},
                    },
                },
            },
            "transitions": [{"event": "done", "target": "approved"}],
        },
        "approved": {},
    },
    "checks",
)
SAGA = _doc(
    "saga",
    {
        "a": {
            "action": {"type": "noop"},
            "compensate": {"type": "log", "message": "undo a"},
            "transitions": [{"event": "success", "target": "b"}],
        },
        "b": {
            "action": {"type": "noop"},
            "compensate": {"type": "sleep", "ms": 200},
            "transitions": [{"event": "success", "target": "c"}],
        },
        "c": {"action": {"type": "fail"}, "transitions": [{"event": "success", "target": "end"}]},
        "end": {},
    },
    "a",
)


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise SystemExit("the scenario never reached its moment")


async def retrying(store: ProcedureStore) -> Execution:
    ex = await store.start("retrying", auto=True)
    await _until(lambda: sum(r.kind == "retry" for r in ex.history) == 1)
    return ex


async def waiting(store: ProcedureStore) -> Execution:
    ex = await store.start("waiting")  # stepped: build's success waits for send()
    await _until(lambda: any(r.kind == "action" for r in ex.history))
    return ex


async def statechart(store: ProcedureStore) -> Execution:
    ex = await store.start("statechart", auto=True)
    await _until(lambda: "checks.credit.ok" in ex.active)
    return ex


async def saga(store: ProcedureStore) -> Execution:
    ex = await store.start("saga", auto=True)
    # Closed right after the rollback was decided: its compensations have not run yet.
    await _until(lambda: any(r.kind == "rollback" for r in ex.history))
    return ex


SCENARIOS: dict[
    str, tuple[dict[str, Any], Callable[[ProcedureStore], Awaitable[Execution]], dict[str, Any]]
] = {
    "retrying": (RETRYING, retrying, {"status": "completed", "current": "gave_up", "attempts": 3}),
    "waiting": (
        WAITING,
        waiting,
        {"status": "completed", "current": "done", "waits_in": "ship", "send": "go"},
    ),
    "statechart": (STATECHART, statechart, {"status": "completed", "current": "approved"}),
    "saga": (SAGA, saga, {"status": "rolled_back", "current": "c", "compensations": ["b", "a"]}),
}


async def capture(name: str, out: Path) -> None:
    document, scenario, expect = SCENARIOS[name]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "x.db"
        store = ProcedureStore(f"sqlite:///{db}")
        await store.register(document)
        ex = await scenario(store)
        await store.close()  # detaches: the database keeps the execution as committed
        connection = sqlite3.connect(db)
        try:
            [(status, snapshot)] = connection.execute(
                "SELECT status, snapshot FROM executions WHERE id = ?", (ex.id,)
            ).fetchall()
            records = [
                json.loads(row[0])
                for row in connection.execute(
                    "SELECT record FROM journal WHERE execution_id = ? ORDER BY seq", (ex.id,)
                )
            ]
        finally:
            connection.close()
    fixture = {
        "document": document,
        "id": ex.id,
        "status": status,
        "snapshot": json.loads(snapshot),
        "records": records,
        "expect": expect,
    }
    (out / f"v{FORMAT}_{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")


def main(out: str) -> None:
    for name in SCENARIOS:
        asyncio.run(capture(name, Path(out)))


if __name__ == "__main__":
    main(sys.argv[1])
