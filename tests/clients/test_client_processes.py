"""A runner and a client in separate processes (the runner is tests/clients/runner_process.py,
the client this test), on SQLite and PostgreSQL: what the client queues reaches the runner's
executions, and each command is applied exactly once even when the runner is killed (SIGKILL)
before or after applying it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.clients.runner_process import MODULE
from tests.conftest import CHILD_TIMEOUT_S, make_doc, read_line, records, within

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("runner_process.py")

APPROVAL = make_doc(
    {"wait": {"transitions": [on("approve", "done")]}, "done": {}}, "wait", name="approval"
)
# The approve event must wait for wait's action, which hangs in the first runner.
BUSY_THEN_APPROVE = make_doc(
    {
        "wait": {"action": fn("hold", module=MODULE), "transitions": [on("approve", "done")]},
        "done": {},
    },
    "wait",
    name="busy",
)
# approve leads to after, whose action hangs in the first runner.
APPROVE_THEN_BUSY = make_doc(
    {
        "wait": {"transitions": [on("approve", "after")]},
        "after": {"action": fn("hold", module=MODULE), "transitions": [on("success", "done")]},
        "done": {},
    },
    "wait",
    name="after",
)


@contextmanager
def runner(url: str) -> Iterator[subprocess.Popen[str]]:
    """A runner process on ``url``, ready (it has recovered and reads the inbox); closed (its
    stdin) and waited for afterwards unless the test killed it."""
    child = subprocess.Popen(
        [sys.executable, str(RUNNER), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert read_line(child, 30) == "ready"
        yield child
    finally:
        if child.poll() is None:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(CHILD_TIMEOUT_S)


def sigkill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(CHILD_TIMEOUT_S)


def client(url: str) -> ProcedureStore[Any]:
    return ProcedureStore(url, worker=False, allowed_modules=[MODULE])


def logged(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def until_logged(log: Path, line: str) -> None:
    while line not in logged(log):
        await asyncio.sleep(0.01)


async def test_a_client_process_sends_the_event_a_runner_process_waits_for(url: str) -> None:
    with runner(url):
        async with client(url) as store:
            await store.register(APPROVAL)
            execution = await store.start("approval")
            await execution.send("approve")
            final = await within(execution.run_to_completion(), 30)
    assert (final.status, final.current) == (Status.COMPLETED, "done")


async def test_a_command_the_killed_runner_had_not_applied_is_applied_once_after(
    url: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    with runner(url) as first:
        async with client(url) as store:
            await store.register(BUSY_THEN_APPROVE)
            execution = await store.start("busy", context={"log": str(log)}, auto=True)
            await within(until_logged(log, "wait 1"), 30)
            await execution.send("approve")  # taken, waiting for wait's action
            sigkill(first)
            assert (await execution.refresh()).current == "wait"
            with runner(url):
                final = await within(execution.run_to_completion(), 30)
    assert (final.status, final.current) == (Status.COMPLETED, "done")
    assert [r.event for r in records(final.history, "received")] == ["approve"]
    assert logged(log) == ["wait 1", "wait 1"]  # the action in flight ran again, no more


async def test_a_command_the_killed_runner_had_applied_is_not_applied_again(
    url: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    with runner(url) as first:
        async with client(url) as store:
            await store.register(APPROVE_THEN_BUSY)
            execution = await store.start("after", context={"log": str(log)}, auto=True)
            await execution.send("approve")
            await within(until_logged(log, "after 1"), 30)  # approve's effect is committed
            sigkill(first)
            with runner(url):
                final = await within(execution.run_to_completion(), 30)
    assert (final.status, final.current) == (Status.COMPLETED, "done")
    assert [(r.kind, r.event) for r in final.history if r.event == "approve"] == [
        ("received", "approve"),
        ("transition", "approve"),
        ("entered", "approve"),
    ]
    assert logged(log) == ["after 1", "after 1"]
