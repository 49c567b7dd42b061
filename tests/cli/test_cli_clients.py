"""``procstore send``, ``cancel``, ``status`` and ``wait``: an execution that one process runs
(``procstore run``, ``resume``), driven and watched from other processes; and what they say
when no process runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from procstore import ExecutionState, ProcedureStore
from procstore.cli import app
from procstore.eventdata import MAX_EVENT_DATA_BYTES
from tests.conftest import CHILD_TIMEOUT_S, python_child, read_line, records

APPROVAL = {
    "name": "approval",
    "version": "1.0",
    "definition": {
        "initial_state": "wait",
        "states": {
            "wait": {
                "transitions": [
                    {"event": "approve", "target": "approved"},
                    {"event": "reject", "target": "rejected"},
                ]
            },
            "approved": {},
            "rejected": {"outcome": "failure"},
        },
    },
}

runner = CliRunner()


def invoke(*args: str) -> Result:
    """The command line in this process, with stderr apart."""
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def procstore(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own."""
    return python_child("-m", "procstore", *args)


@pytest.fixture
def approval(tmp_path: Path) -> Path:
    path = tmp_path / "approval.json"
    path.write_text(json.dumps(APPROVAL), encoding="utf-8")
    return path


@contextmanager
def running(db: str, approval: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``procstore run`` of the approval procedure in a process of its own, waiting in ``wait``
    for an event: the process and the execution's id."""
    child = subprocess.Popen(
        [sys.executable, "-m", "procstore", "run", str(approval), "--db", db, "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each line as it is printed
    )
    try:
        line = ""
        while not line.startswith("execution"):  # stored: events for it may be queued
            line = read_line(child, 30)
        yield child, line.split()[1]
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=CHILD_TIMEOUT_S)


def finished(child: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit code and the rest of the output of a ``running`` process."""
    out, _ = child.communicate(timeout=CHILD_TIMEOUT_S)
    return child.returncode, out


def stored(db: str, approval: Path) -> str:
    """A new execution of the approval procedure, left waiting in ``wait`` with no process
    running it: its id."""
    result = invoke("run", str(approval), "--db", db, "--timeout", "0")
    assert result.exit_code == 3, result.output
    match = re.search(r"^execution\s+(\S+)$", result.output, re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_an_event_sent_from_another_process_reaches_the_execution_run_waits_on(
    db: str, approval: Path
) -> None:
    with running(db, approval) as (run, execution_id):
        sent = procstore("send", execution_id, "approve", "--db", db)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout == f"queued      approve for execution {execution_id} (in wait)\n"
        assert sent.stderr == ""  # a process runs it: nothing to add
        waited = procstore("wait", execution_id, "--db", db, "--timeout", "30")
        code, out = finished(run)
    assert (waited.returncode, waited.stdout.splitlines()[-1]) == (
        0,
        "status      completed (state: approved)",
    )
    assert code == 0
    lines = out.splitlines()
    received = lines.index("received    approve (in wait)")
    assert lines[received + 1 : received + 3] == [
        "transition  wait --approve--> approved",
        "entered     approved (on approve)",
    ]


def test_a_cancel_from_another_process_ends_the_execution_run_waits_on(
    db: str, approval: Path
) -> None:
    with running(db, approval) as (run, execution_id):
        result = invoke("cancel", execution_id, "--db", db)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"queued      cancel for execution {execution_id} (in wait)\n"
        code, out = finished(run)
    assert code == 1
    assert "received    cancel (in wait)" in out
    assert re.search(r"^status\s+cancelled \(state: wait\)$", out, re.MULTILINE)


def test_an_event_sent_while_no_process_runs_it_waits_for_resume(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    result = invoke("send", execution_id, "approve", "--db", db)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("note: no process runs the executions of ")
    assert f"procstore resume {execution_id} --db {db}" in result.stderr
    assert "status      running (state: wait)" in invoke("status", execution_id, "--db", db).stdout
    resumed = invoke("resume", execution_id, "--db", db, "--timeout", "30")
    assert resumed.exit_code == 0, resumed.output
    assert "received    approve (in wait)" in resumed.stdout


@pytest.mark.parametrize(
    ("event", "why"),
    [
        ("aprove", "no state of approval@1.0 has a transition on 'aprove' (they accept: "),
        ("done", "'done' is raised by procstore itself"),
    ],
)
def test_an_event_the_execution_can_never_take_is_refused_with_exit_6(
    db: str, approval: Path, event: str, why: str
) -> None:
    execution_id = stored(db, approval)
    result = invoke("send", execution_id, event, "--db", db)
    assert result.exit_code == 6
    assert result.stderr.startswith(f"error: {why}")
    assert result.stdout == ""


def test_an_event_to_a_finished_execution_is_refused_with_exit_6(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    assert invoke("cancel", execution_id, "--db", db).exit_code == 0
    assert invoke("resume", execution_id, "--db", db).exit_code == 1  # applies the cancel
    result = invoke("send", execution_id, "approve", "--db", db)
    assert result.exit_code == 6
    assert result.stderr == f"error: execution {execution_id} has finished; it accepts no events\n"
    again = invoke("cancel", execution_id, "--db", db)
    assert again.exit_code == 0
    assert "has already ended: cancelled; nothing to cancel" in again.stdout


def test_send_with_data_queues_it_with_the_event_and_history_shows_it(
    db: str, approval: Path
) -> None:
    execution_id = stored(db, approval)
    result = invoke("send", execution_id, "approve", "--data", '{"by": "ana"}', "--db", db)
    assert result.exit_code == 0, result.output
    assert invoke("resume", execution_id, "--db", db, "--timeout", "30").exit_code == 0
    history = invoke("history", execution_id, "--db", db).stdout
    assert 'received    approve (in wait) data={"by": "ana"}' in history
    assert 'transition  wait --approve--> approved data={"by": "ana"}' in history


def test_send_with_data_from_a_file(db: str, approval: Path, tmp_path: Path) -> None:
    execution_id = stored(db, approval)
    (tmp_path / "data.json").write_text("[1, 2]", encoding="utf-8")
    data = f"@{tmp_path / 'data.json'}"
    assert invoke("send", execution_id, "approve", "--data", data, "--db", db).exit_code == 0
    assert invoke("resume", execution_id, "--db", db, "--timeout", "30").exit_code == 0
    assert "data=[1, 2]" in invoke("history", execution_id, "--db", db).stdout


def test_send_with_data_that_is_not_json_exits_2_in_one_line(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    result = invoke("send", execution_id, "approve", "--data", "{not json", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --data: $: not valid JSON")
    assert result.stderr.count("\n") == 1
    assert "queued" not in result.stdout


def test_send_with_data_over_the_limit_is_refused_with_exit_6(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    data = json.dumps("x" * MAX_EVENT_DATA_BYTES)
    result = invoke("send", execution_id, "approve", "--data", data, "--db", db)
    assert result.exit_code == 6
    assert "MAX_EVENT_DATA_BYTES" in result.stderr


def test_status_shows_what_is_committed_as_text_and_json(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    text = invoke("status", execution_id, "--db", db)
    assert text.exit_code == 0
    assert text.stdout.splitlines() == [
        "procedure   approval 1.0",
        f"execution   {execution_id}",
        "context     {}",
        "status      running (state: wait)",
    ]
    assert "no process runs the executions" in text.stderr
    document: dict[str, Any] = json.loads(
        invoke("status", execution_id, "--db", db, "--json").stdout
    )
    assert document == {
        "id": execution_id,
        "procedure": "approval",
        "version": "1.0",
        "current": "wait",
        "active": ["wait"],
        "status": "running",
        "context": {},
        "error": None,
        "runner": False,
    }


def test_wait_gives_up_after_its_timeout_with_exit_3(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    result = invoke("wait", execution_id, "--db", db, "--timeout", "0.05")
    assert result.exit_code == 3
    assert result.stdout == "timeout     still running in state wait after 0.05s\n"


def test_wait_exits_1_for_an_execution_that_failed(db: str, approval: Path) -> None:
    execution_id = stored(db, approval)
    assert invoke("send", execution_id, "reject", "--db", db).exit_code == 0
    assert invoke("resume", execution_id, "--db", db).exit_code == 1
    result = invoke("wait", execution_id, "--db", db)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "status      failed (state: rejected)"


@pytest.mark.parametrize(
    "command",
    [["send", "ghost", "go"], ["cancel", "ghost"], ["status", "ghost"], ["wait", "ghost"]],
)
def test_an_unknown_execution_or_database_is_not_found_with_exit_4(
    db: str, approval: Path, command: list[str]
) -> None:
    missing = invoke(*command, "--db", db)
    assert missing.exit_code == 4
    assert (
        missing.stderr == f"error: no execution 'ghost': no database at {db[len('sqlite:///') :]}\n"
    )
    stored(db, approval)
    unknown = invoke(*command, "--db", db)
    assert unknown.exit_code == 4
    assert unknown.stderr.startswith("error: no execution 'ghost' in ")


def test_run_and_status_say_why_an_execution_failed(db: str, tmp_path: Path) -> None:
    declined = {
        "name": "charge",
        "version": "1.0",
        "definition": {
            "initial_state": "declined",
            "states": {
                "declined": {
                    "outcome": "failure",
                    "error": "PaymentDeclined",
                    "cause": "the card was refused",
                }
            },
        },
    }
    path = tmp_path / "charge.json"
    path.write_text(json.dumps(declined), encoding="utf-8")
    ran = invoke("run", str(path), "--db", db)
    assert "error       PaymentDeclined: the card was refused" in ran.stdout.splitlines()
    execution_id = re.search(r"^execution\s+(\S+)$", ran.stdout, re.MULTILINE)
    assert execution_id is not None

    status = invoke("status", execution_id.group(1), "--db", db)
    assert status.stdout.splitlines()[-2:] == [
        "status      failed (state: declined)",
        "error       PaymentDeclined: the card was refused",
    ]
    document = json.loads(invoke("status", execution_id.group(1), "--db", db, "--json").stdout)
    assert document["error"] == {"type": "PaymentDeclined", "message": "the card was refused"}


# --- callback -----------------------------------------------------------------------------------

ASK = {
    "name": "ask",
    "version": "1.0",
    "definition": {
        "initial_state": "ask",
        "states": {
            "ask": {
                "action": {"type": "function", "function": "mail.ask"},
                "callback": True,
                "transitions": [
                    {"event": "success", "target": "approved", "assign": {"a.$": "$$.event.data"}},
                    {"event": "error", "target": "declined"},
                ],
            },
            "approved": {},
            "declined": {"outcome": "failure"},
        },
    },
}


def _asking_store(db: str, tokens: list[str]) -> ProcedureStore:
    store = ProcedureStore(db)
    store.register_action("mail.ask", lambda context, info: tokens.append(info.token))
    return store


def asked(db: str) -> str:
    """An execution of ``ask`` waiting for its callback, with no process running it: the
    token its action handed out."""
    tokens: list[str] = []

    async def start() -> None:
        async with _asking_store(db, tokens) as store:
            await store.register(ASK)
            execution = await store.start("ask", auto=True)
            while not records(execution.history, "action"):
                await asyncio.sleep(0.01)

    asyncio.run(start())
    return tokens[0]


def finish(db: str) -> ExecutionState:
    """Run what is queued, and return the execution's final state."""

    async def run() -> ExecutionState:
        async with _asking_store(db, []) as store:
            [execution] = await store.recover()
            return await asyncio.wait_for(execution.run_to_completion(), 10)

    return asyncio.run(run())


def test_callback_completes_a_token_with_data(db: str) -> None:
    token = asked(db)
    result = invoke("callback", token, "--data", '{"ok": true}', "--db", db)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("queued      success for the callback of execution ")
    final = finish(db)
    assert (final.status, final.context) == ("completed", {"a": {"ok": True}})


def test_callback_fails_a_token(db: str) -> None:
    token = asked(db)
    result = invoke("callback", token, "--fail", "Declined", "--cause", "no", "--db", db)
    assert result.exit_code == 0, result.output
    assert finish(db).current == "declined"


def test_callback_refuses_what_is_not_a_token_with_exit_6(db: str) -> None:
    asked(db)
    result = invoke("callback", "not-a-token", "--db", db)
    assert result.exit_code == 6
    assert result.stderr == "error: that is not a callback token\n"


def test_callback_of_an_unknown_execution_exits_4(db: str) -> None:
    asked(db)
    result = invoke("callback", "0123.secret", "--db", db)
    assert result.exit_code == 4
    assert "no execution '0123'" in result.stderr


def test_callback_with_data_and_fail_is_a_usage_error(db: str) -> None:
    token = asked(db)
    result = invoke("callback", token, "--data", "1", "--fail", "E", "--db", db)
    assert result.exit_code == 2
