"""The ``procstore`` command line: every command, its output and its exit codes.

Every test uses its own database under ``tmp_path`` (``--db sqlite:///<tmp>/x.db``: ``sqlite:///``
and an absolute path make four slashes) and runs in ``tmp_path``, so nothing writes
``./procstore.db``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from procstore import ProcedureStore, Status
from procstore.cli import app
from procstore.cli.drive import Session as _Session
from procstore.cli.exits import EXIT_CODES
from procstore.cli.options import DEFAULT_DB
from procstore.cli.progress import LiveOutput as _LiveOutput
from procstore.cli.progress import Tracker
from procstore.cli.run import run_file as _run
from procstore.describe import TIMES
from tests.builders import on
from tests.conftest import Gate, within

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEPLOY = EXAMPLES / "deploy_workflow.json"
ALLOW = ["--allow-module", "deploy_actions"]

runner = CliRunner()


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def entered(output: str) -> list[str]:
    """The states from the ``entered`` lines, in order."""
    return re.findall(r"^entered\s+(\S+)", output, flags=re.MULTILINE)


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def simple_doc(name: str = "tiny", **states: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0",
        "definition": {
            "initial_state": "start",
            "states": states
            or {
                "start": {
                    "action": {"type": "log", "message": "hello"},
                    "transitions": [{"event": "success", "target": "done"}],
                },
                "done": {},
            },
        },
    }


# --------------------------------------------------------------------------------------------
# run


def test_run_deploy_example_completes_printing_each_state_in_order(db: str) -> None:
    result = invoke("run", "--db", db, str(DEPLOY), "--context", '{"env": "staging"}', *ALLOW)
    assert result.exit_code == 0, result.output
    assert entered(result.output) == ["validate", "build", "deploy", "done"]
    lines = result.output.splitlines()
    # Each state's action and outgoing transition come after its "entered" line, in order.
    transitions = [line.split(None, 1)[1] for line in lines if line.startswith("transition")]
    assert transitions == [
        "validate --success--> build",
        "build --success--> deploy",
        "deploy --success--> done",
    ]
    assert [line.split()[1] for line in lines if line.startswith("action")] == [
        "validate",
        "build",
        "deploy",
    ]
    assert re.search(r"^status\s+completed \(state: done\)$", result.output, re.MULTILINE)
    # The action results land in the context under each action's "result" key.
    context_line = next(line for line in lines if line.startswith("context"))
    context = json.loads(context_line.split(None, 1)[1])
    assert context["env"] == "staging"
    assert context["validation"] == "validated"
    assert context["deployment"] == "deployed"


def test_run_with_an_unknown_env_fails_at_validate_with_exit_1(db: str) -> None:
    result = invoke("run", "--db", db, str(DEPLOY), "--context", '{"env": "nowhere"}', *ALLOW)
    assert result.exit_code == 1, result.output
    assert entered(result.output) == ["validate", "failed"]
    assert re.search(r"^action\s+validate #1 error: ValueError: invalid env", result.output, re.M)
    assert re.search(r"^status\s+failed \(state: failed\)$", result.output, re.MULTILINE)


def test_run_with_a_failing_build_rolls_back(db: str) -> None:
    context = '{"env": "staging", "fail_step": "build"}'
    result = invoke("run", "--db", db, str(DEPLOY), "--context", context, *ALLOW)
    assert result.exit_code == 1, result.output
    assert entered(result.output) == ["validate", "build", "rollback", "failed"]
    assert re.search(r"^status\s+failed \(state: failed\)$", result.output, re.MULTILINE)


def test_run_reads_the_context_from_a_file(tmp_path: Path, db: str) -> None:
    context_file = write_json(tmp_path / "ctx.json", {"env": "prod"})
    result = invoke("run", "--db", db, str(DEPLOY), "--context", f"@{context_file}", *ALLOW)
    assert result.exit_code == 0, result.output
    assert entered(result.output) == ["validate", "build", "deploy", "done"]


def test_run_without_a_context_starts_with_an_empty_one(tmp_path: Path, db: str) -> None:
    path = write_json(tmp_path / "tiny.json", simple_doc())
    result = invoke("run", "--db", db, str(path))
    assert result.exit_code == 0, result.output
    assert entered(result.output) == ["start", "done"]
    assert re.search(r"^log\s+start: hello$", result.output, re.MULTILINE)


def test_run_yaml_file(tmp_path: Path, db: str) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny_yaml\nversion: '1.0'\ndefinition:\n  initial_state: a\n  states:\n"
        "    a:\n      action: {type: sleep, ms: 1}\n"
        "      transitions: [{event: success, target: b}]\n    b: {}\n",
        encoding="utf-8",
    )
    result = invoke("run", "--db", db, str(path))
    assert result.exit_code == 0, result.output
    assert entered(result.output) == ["a", "b"]


@pytest.mark.parametrize(
    ("context", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("@/nonexistent/ctx.json", "cannot read"),
    ],
)
def test_run_rejects_a_bad_context_with_exit_2(context: str, needle: str, db: str) -> None:
    result = invoke("run", "--db", db, str(DEPLOY), "--context", context, *ALLOW)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_run_allows_the_modules_beside_the_file_by_default(db: str) -> None:
    result = invoke("run", "--db", db, str(DEPLOY), "--context", '{"env": "staging"}')
    assert result.exit_code == 0, result.output
    assert "completed" in result.output


def test_validate_allows_the_modules_beside_the_file_by_default() -> None:
    result = invoke("validate", str(DEPLOY))
    assert result.exit_code == 0, result.output


def test_a_file_beside_the_definition_does_not_allow_the_module_its_name_imports(
    tmp_path: Path, db: str
) -> None:
    # An empty subprocess.py beside the file must not allow the standard library's subprocess:
    # the noop puts the command in the context as a key, getoutput(context) would run it.
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "subprocess.py").write_text("", encoding="utf-8")
    marker = tmp_path / "pwned"
    exploit = simple_doc(
        start={
            "action": {"type": "noop", "result": f"touch {marker}"},
            "transitions": [{"event": "success", "target": "shell"}],
        },
        shell={
            "action": {"type": "function", "module": "subprocess", "function": "getoutput"},
            "transitions": [{"event": "success", "target": "end"}],
        },
        end={},
    )
    path = write_json(flows / "exploit.json", exploit)

    ran = invoke("run", "--db", db, str(path))
    validated = invoke("validate", str(path))

    assert ran.exit_code == 2, ran.output
    assert f"{path}: $.definition.states.shell.action.module:" in ran.output
    assert "allowed only as the file" in ran.output
    assert validated.exit_code == 1, validated.output
    assert f"{path}: $.definition.states.shell.action.module:" in validated.output
    assert not marker.exists()


def test_a_module_beside_the_definition_does_not_shadow_the_standard_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # colorsys: a standard module nothing here imports; any later import must get the real one.
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    (tmp_path / "colorsys.py").write_text("SHADOWED = True\n", encoding="utf-8")
    path = write_json(tmp_path / "tiny.json", simple_doc())

    assert invoke("validate", str(path)).exit_code == 0

    import colorsys

    assert not hasattr(colorsys, "SHADOWED")


def test_run_rejects_a_module_that_is_not_allowed_with_exit_2(db: str) -> None:
    result = invoke(
        "run", "--db", db, str(DEPLOY), "--context", '{"env": "staging"}', "--no-local-modules"
    )
    assert result.exit_code == 2, result.output
    assert f"{DEPLOY}: $.definition.states.validate.action.module:" in result.output
    assert "--allow-module" in result.output
    assert "entered" not in result.output


def test_run_invalid_procedure_exits_2(tmp_path: Path, db: str) -> None:
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "nowhere"}]})
    path = write_json(tmp_path / "bad.json", doc)
    result = invoke("run", "--db", db, str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}: $.definition.states.start.transitions[0].target:" in result.output


def test_run_missing_file_exits_2(tmp_path: Path, db: str) -> None:
    result = invoke("run", "--db", db, str(tmp_path / "missing.json"))
    assert result.exit_code == 2, result.output


def test_run_of_an_invalid_file_creates_no_database(tmp_path: Path) -> None:
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "nowhere"}]})
    path = write_json(tmp_path / "bad.json", doc)

    result = invoke("run", str(path))  # the default store: ./procstore.db

    assert result.exit_code == 2, result.output
    assert not (tmp_path / "procstore.db").exists()


def test_run_of_a_missing_file_creates_no_database(tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path / "missing.json"))

    assert result.exit_code == 2, result.output
    assert not (tmp_path / "procstore.db").exists()


def test_run_that_does_not_finish_in_time_exits_3(tmp_path: Path, db: str) -> None:
    # "start" has no action, so no outcome event: it waits for an event nothing sends.
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "done"}]}, done={})
    path = write_json(tmp_path / "waits.json", doc)
    result = invoke("run", "--db", db, str(path), "--timeout", "0.2")
    assert result.exit_code == 3, result.output
    assert entered(result.output) == ["start"]
    assert "timeout" in result.output
    # It stays running in the database, and the output says how to carry on.
    execution_id = execution_id_of(result.output)
    assert f"procstore resume {execution_id} --db {db}" in result.output
    listed = invoke("list", "--db", db, "--status", "running")
    assert execution_id in listed.output


LONG = {"notes": "n" * 1000}


def test_run_cuts_a_long_final_context_and_says_how_to_print_it_whole(
    tmp_path: Path, db: str
) -> None:
    path = write_json(tmp_path / "tiny.json", simple_doc())

    result = invoke("run", "--db", db, str(path), "--context", json.dumps(LONG))

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("context")]
    assert line.endswith("... (cut from 1013 characters: --full prints it whole)")


def test_run_full_prints_the_final_context_whole(tmp_path: Path, db: str) -> None:
    path = write_json(tmp_path / "tiny.json", simple_doc())

    result = invoke("run", "--db", db, str(path), "--context", json.dumps(LONG), "--full")

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("context")]
    assert json.loads(line.split(None, 1)[1]) == LONG


def test_history_full_prints_the_action_results_whole(tmp_path: Path, db: str) -> None:
    module = f"long_result_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text("def long(context):\n    return 'r' * 200\n")
    doc = simple_doc(
        start={
            "action": {"type": "function", "module": module, "function": "long"},
            "transitions": [{"event": "success", "target": "done"}],
        },
        done={},
    )
    ran = invoke("run", "--db", db, str(write_json(tmp_path / "long.json", doc)))
    execution_id = execution_id_of(ran.output)

    cut = invoke("history", execution_id, "--db", db)
    whole = invoke("history", execution_id, "--db", db, "--full")

    assert f"action      start #1 ok -> {json.dumps('r' * 200)[:77]}..." in cut.output
    assert f"action      start #1 ok -> {json.dumps('r' * 200)}" in whole.output


# --------------------------------------------------------------------------------------------
# run: the store


def execution_id_of(output: str) -> str:
    match = re.search(r"^execution\s+([0-9a-f]{32})$", output, flags=re.MULTILINE)
    assert match, output
    return match.group(1)


def record_lines(output: str) -> list[str]:
    """The history record lines of run/resume/history output (between the header and the
    context line)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("execution")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("context"))
    return lines[start:end]


def nap_doc(name: str = "nap", version: str = "1.0", ms: float = 300) -> dict[str, Any]:
    """First state sleeps ``ms``, then done: a run cut short is left mid-action."""
    return {
        "name": name,
        "version": version,
        "definition": {
            "initial_state": "nap",
            "states": {
                "nap": {
                    "action": {"type": "sleep", "ms": ms},
                    "transitions": [{"event": "success", "target": "done"}],
                },
                "done": {},
            },
        },
    }


def test_run_persists_into_the_db_and_prints_the_execution_id_first(
    tmp_path: Path, db: str
) -> None:
    result = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "procedure   deploy_workflow 1.0"
    assert lines[1].startswith("execution   ")
    execution_id = execution_id_of(result.output)
    assert (tmp_path / "x.db").is_file()
    assert not (tmp_path / "procstore.db").exists()

    async def stored() -> tuple[list[str], Status]:
        async with ProcedureStore(db, read_only=True) as store:
            names = [f"{p.name}@{p.version}" for p in await store.list()]
            state = (await store.get_execution(execution_id)).state
            return names, state.status

    assert asyncio.run(stored()) == (["deploy_workflow@1.0"], Status.COMPLETED)


def test_run_again_reuses_the_registered_procedure(db: str) -> None:
    first = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    second = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "prod"}', *ALLOW)
    assert first.exit_code == second.exit_code == 0, second.output
    assert execution_id_of(first.output) != execution_id_of(second.output)
    listed = invoke("list", "--db", db)
    assert listed.output.count("deploy_workflow@1.0") == 2
    assert re.search(r"^deploy_workflow\s+1\.0$", listed.output, re.MULTILINE)


def test_run_changed_content_under_the_same_version_exits_2(tmp_path: Path, db: str) -> None:
    path = write_json(tmp_path / "tiny.json", simple_doc())
    assert invoke("run", "--db", db, str(path)).exit_code == 0
    changed = simple_doc(
        start={
            "action": {"type": "log", "message": "changed"},
            "transitions": [{"event": "success", "target": "done"}],
        },
        done={},
    )
    write_json(path, changed)
    result = invoke("run", "--db", db, str(path))
    assert result.exit_code == 2, result.output
    assert "already registered with different content" in result.output
    assert "bump the version" in result.output
    assert "entered" not in result.output
    # With a new version it runs, and both versions are stored.
    changed["version"] = "1.1"
    write_json(path, changed)
    assert invoke("run", "--db", db, str(path)).exit_code == 0
    assert re.search(r"^tiny\s+1\.0, 1\.1$", invoke("list", "--db", db).output, re.MULTILINE)


def test_run_on_a_file_that_is_not_a_procstore_database_exits_5(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"not a database at all" * 100)
    before = other.read_bytes()
    result = invoke("run", "--db", f"sqlite:///{other}", str(DEPLOY), *ALLOW)
    assert result.exit_code == 5, result.output
    assert "not a procstore database" in result.output
    assert other.read_bytes() == before


@pytest.mark.parametrize("url", ["mysql://localhost/x", "sqlite:///", "procstore.db"])
def test_a_bad_db_url_is_a_usage_error(url: str) -> None:
    for command in (["run", str(DEPLOY)], ["list"], ["history", "x"], ["show", "x"]):
        result = invoke(*command, "--db", url)
        assert result.exit_code == 2, result.output
        assert "--db" in result.output


def test_the_db_defaults_to_procstore_db_in_the_working_directory(tmp_path: Path) -> None:
    assert DEFAULT_DB == "sqlite:///procstore.db"
    path = write_json(tmp_path / "tiny.json", simple_doc())
    result = invoke("run", str(path))  # the fixture made tmp_path the working directory
    assert result.exit_code == 0, result.output
    assert (tmp_path / "procstore.db").is_file()
    assert execution_id_of(result.output) in invoke("list").output


def test_the_db_comes_from_procstore_db_when_set(
    tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCSTORE_DB", db)
    path = write_json(tmp_path / "tiny.json", simple_doc())
    assert invoke("run", str(path)).exit_code == 0
    assert (tmp_path / "x.db").is_file()
    assert not (tmp_path / "procstore.db").exists()


def test_run_is_refused_while_another_process_runs_the_store(tmp_path: Path, db: str) -> None:
    holder = tmp_path / "holder.py"
    holder.write_text(
        "import asyncio, sys\n"
        "from procstore import ProcedureStore\n"
        "async def main():\n"
        "    async with ProcedureStore(sys.argv[1]) as store:\n"
        f"        await store.register({json.dumps(nap_doc('holder', ms=60_000))!r})\n"
        "        await store.start('holder')\n"
        "        print('ready', flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(holder), db],
        stdout=subprocess.PIPE,
        text=True,
        env=_subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        path = write_json(tmp_path / "tiny.json", simple_doc())
        result = invoke("run", "--db", db, str(path))
        assert result.exit_code == 5, result.output
        assert re.search(r"^error: .*x\.db is already used by process", result.output, re.M)
        assert "entered" not in result.output
        # Reading works beside it.
        listed = invoke("list", "--db", db)
        assert listed.exit_code == 0, listed.output
        assert "holder@1.0" in listed.output
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_run_shows_a_live_status_line_on_a_terminal(tmp_path: Path, db: str) -> None:
    # On a TTY the records scroll above a status line (state, attempt, elapsed); the plain
    # lines are only for pipes. Render to a fake terminal.
    path = write_json(tmp_path / "nap.json", nap_doc(ms=400))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    code = await _run(path, {}, [], 10.0, db, _LiveOutput(console), _Session(db))
    assert code == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert "nap@1.0" in text
    assert "nap (attempt 1)" in text
    assert re.search(r"\d+\.\ds", text)  # elapsed
    assert "entered     done (on success)" in text
    assert "status      completed (state: done)" in text


@pytest.mark.parametrize(
    "command",
    [["history", "f" * 32], ["resume", "f" * 32], ["show", "nothing"], ["diagram", "-e", "f" * 32]],
    ids=["history", "resume", "show", "diagram"],
)
def test_not_found_names_the_store_by_its_file(tmp_path: Path, db: str, command: list[str]) -> None:
    assert (
        invoke("run", "--db", db, str(write_json(tmp_path / "t.json", simple_doc()))).exit_code == 0
    )

    result = invoke(*command, "--db", db)

    assert result.exit_code == 4, result.output
    assert result.output.rstrip().endswith(f" in {tmp_path}/x.db"), result.output


@pytest.mark.parametrize(
    "command",
    [["history", "f" * 32], ["resume", "f" * 32], ["show", "nothing"], ["diagram", "-e", "f" * 32]],
    ids=["history", "resume", "show", "diagram"],
)
def test_no_database_names_the_store_by_its_file(
    tmp_path: Path, db: str, command: list[str]
) -> None:
    result = invoke(*command, "--db", db)

    assert result.exit_code == 4, result.output
    assert result.output.rstrip().endswith(f": no database at {tmp_path}/x.db"), result.output


# --------------------------------------------------------------------------------------------
# history


def test_history_after_run_shows_the_same_records(db: str) -> None:
    context = '{"env": "staging", "fail_step": "deploy"}'
    ran = invoke("run", "--db", db, str(DEPLOY), "-c", context, *ALLOW)
    assert ran.exit_code == 1, ran.output
    execution_id = execution_id_of(ran.output)
    result = invoke("history", execution_id, "--db", db)
    assert result.exit_code == 0, result.output
    assert record_lines(result.output) == record_lines(ran.output)
    assert entered(result.output) == ["validate", "build", "deploy", "rollback", "failed"]
    assert result.output.splitlines()[-1] == "status      failed (state: failed)"


def test_history_json_and_timestamps(db: str) -> None:
    ran = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    execution_id = execution_id_of(ran.output)
    result = invoke("history", execution_id, "--db", db, "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)
    assert state["id"] == execution_id
    assert state["status"] == "completed"
    assert [r["state"] for r in state["history"] if r["kind"] == "entered"] == [
        "validate",
        "build",
        "deploy",
        "done",
    ]
    stamped = invoke("history", execution_id, "--db", db, "-T")
    assert re.search(r"^\d{4}-\d\d-\d\dT\S+  entered     validate$", stamped.output, re.M)


def test_history_of_an_unknown_execution_exits_4(db: str) -> None:
    invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    result = invoke("history", "0" * 32, "--db", db)
    assert result.exit_code == 4, result.output
    assert "no execution" in result.output


@pytest.mark.parametrize(
    ("command", "exit_code", "says"),
    [
        pytest.param(["history", "abc"], 4, "no database", id="history exits 4"),
        pytest.param(["resume"], 0, "nothing to resume", id="resume has nothing to do"),
        pytest.param(["list"], 0, "nothing registered", id="list lists nothing"),
    ],
)
def test_a_command_without_a_database_creates_none(
    tmp_path: Path, db: str, command: list[str], exit_code: int, says: str
) -> None:
    result = invoke(*command, "--db", db)
    assert result.exit_code == exit_code, result.output
    assert says in result.output
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# resume


def leave_unfinished(db: str, doc: dict[str, Any], allowed: list[str] | None = None) -> str:
    """Start ``doc`` with the Python API and close the store mid-run: the execution is left
    ``running`` in the database, as if its process had died."""

    async def go() -> str:
        store = ProcedureStore(db, allowed_modules=allowed or [])
        await store.register(doc)
        execution = await store.start(doc["name"], auto=True)
        await store.close()  # detaches: stays running in the db
        return execution.id

    return asyncio.run(go())


def test_resume_finishes_an_execution_left_unfinished(db: str) -> None:
    execution_id = leave_unfinished(db, nap_doc())
    assert execution_id in invoke("list", "--db", db, "--status", "running").output
    result = invoke("resume", "--db", db)
    assert result.exit_code == 0, result.output
    assert f"resumed     {execution_id} nap 1.0 in nap" in result.output
    # Only what happened after resuming is printed: the interrupted action ran again.
    assert entered(result.output) == ["done"]
    assert re.search(r"^action\s+nap #1 ok$", result.output, re.MULTILINE)
    assert result.output.splitlines()[-1] == "status      completed (state: done)"
    # The history is continuous: start, the action once, done.
    history = invoke("history", execution_id, "--db", db)
    assert entered(history.output) == ["nap", "done"]
    assert invoke("list", "--db", db, "--status", "running").output.endswith("no executions\n")
    # Nothing is left to resume.
    again = invoke("resume", "--db", db)
    assert again.exit_code == 0, again.output
    assert "nothing to resume" in again.output


def test_resume_quarantines_what_it_cannot_restore_and_resumes_the_rest(
    tmp_path: Path, db: str
) -> None:
    healthy = leave_unfinished(db, nap_doc())
    broken = leave_unfinished(db, nap_doc(name="broken"))
    connection = sqlite3.connect(tmp_path / "x.db")
    connection.execute("UPDATE procedures SET document = '{' WHERE name = 'broken'")
    connection.commit()
    connection.close()
    result = invoke("resume", "--db", db)
    assert result.exit_code == 0, result.output
    assert f"resumed     {healthy} nap 1.0 in nap" in result.output
    assert result.output.splitlines()[-1] == "status      completed (state: done)"
    listed = invoke("list", "--db", db, "--status", "quarantined").output
    assert broken in listed and "its procedure 'broken' version '1.0' cannot be loaded" in listed


def test_resume_one_execution_by_id(db: str) -> None:
    first = leave_unfinished(db, nap_doc())
    second = leave_unfinished(db, nap_doc())
    result = invoke("resume", first, "--db", db)
    assert result.exit_code == 0, result.output
    assert first in result.output and second not in result.output
    running = invoke("list", "--db", db, "--status", "running").output
    assert second in running and first not in running


def test_resume_several_prefixes_each_line_with_the_execution(db: str) -> None:
    ids = [leave_unfinished(db, nap_doc()) for _ in range(2)]
    result = invoke("resume", "--db", db)
    assert result.exit_code == 0, result.output
    for execution_id in ids:
        assert f"{execution_id[:8]}  entered     done (on success)" in result.output
        assert f"status      {execution_id} completed (state: done)" in result.output


def test_run_cut_short_by_timeout_then_resume(tmp_path: Path, db: str) -> None:
    path = write_json(tmp_path / "nap.json", nap_doc(ms=500))
    ran = invoke("run", "--db", db, str(path), "--timeout", "0.05")
    assert ran.exit_code == 3, ran.output
    execution_id = execution_id_of(ran.output)
    result = invoke("resume", execution_id, "--db", db)
    assert result.exit_code == 0, result.output
    assert entered(invoke("history", execution_id, "--db", db).output) == ["nap", "done"]


def test_resume_that_times_out_exits_3(db: str) -> None:
    execution_id = leave_unfinished(db, nap_doc(ms=5_000))
    result = invoke("resume", "--db", db, "--timeout", "0.1")
    assert result.exit_code == 3, result.output
    assert f"procstore resume {execution_id} --db {db}" in result.output


def test_resume_an_execution_that_fails_exits_1(db: str) -> None:
    # Left in "nap"; once resumed, "boom" fails and nothing handles its error.
    doc = {
        "name": "doomed",
        "version": "1.0",
        "definition": {
            "initial_state": "nap",
            "states": {
                "nap": {
                    "action": {"type": "sleep", "ms": 200},
                    "transitions": [{"event": "success", "target": "boom"}],
                },
                "boom": {
                    "action": {"type": "fail", "message": "no"},
                    "transitions": [{"event": "success", "target": "done"}],
                },
                "done": {},
            },
        },
    }
    leave_unfinished(db, doc)
    result = invoke("resume", "--db", db)
    assert result.exit_code == 1, result.output
    assert "status      failed (state: boom)" in result.output


def test_resume_unknown_or_finished_executions(db: str) -> None:
    assert invoke("resume", "nope", "--db", db).exit_code == 4  # no database yet
    ran = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    unknown = invoke("resume", "0" * 32, "--db", db)
    assert unknown.exit_code == 4, unknown.output
    done = invoke("resume", execution_id_of(ran.output), "--db", db)
    assert done.exit_code == 0, done.output
    assert "has already ended: completed" in done.output
    failed = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "nowhere"}', *ALLOW)
    ended = invoke("resume", execution_id_of(failed.output), "--db", db)
    assert ended.exit_code == 1, ended.output


def _module_doc(module: str) -> dict[str, Any]:
    return {
        "name": "modular",
        "version": "1.0",
        "definition": {
            "initial_state": "nap",
            "states": {
                "nap": {
                    "action": {"type": "sleep", "ms": 200},
                    "transitions": [{"event": "success", "target": "work"}],
                },
                "work": {
                    "action": {"type": "function", "module": module, "function": "work"},
                    "transitions": [{"event": "success", "target": "done"}],
                },
                "done": {},
            },
        },
    }


def test_resume_needs_the_actions_module_allowed_and_importable(tmp_path: Path, db: str) -> None:
    module = f"cli_resume_actions_{os.getpid()}_{time.monotonic_ns()}"
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / f"{module}.py").write_text(
        "def work(context):\n    return 'worked'\n", encoding="utf-8"
    )
    sys.path.insert(0, str(modules))
    execution_id = leave_unfinished(db, _module_doc(module), allowed=[module])
    sys.path.remove(str(modules))
    sys.modules.pop(module, None)

    refused = invoke("resume", "--db", db)
    assert refused.exit_code == 2, refused.output
    assert f"pass --path DIR (DIR: the directory that holds {module}.py)" in refused.output
    assert "nothing was resumed" in refused.output
    not_importable = invoke("resume", "--db", db, "--allow-module", module)
    assert not_importable.exit_code == 2, not_importable.output
    assert "--path DIR" in not_importable.output
    # Refusing changed nothing: it is still running, and resumes once it can.
    assert execution_id in invoke("list", "--db", db, "--status", "running").output
    result = invoke("resume", "--db", db, "--path", str(modules))
    assert result.exit_code == 0, result.output
    assert 'action      work #1 ok -> "worked"' in result.output


def test_resume_refuses_actions_registered_by_name(db: str) -> None:
    doc = _module_doc("unused")
    doc["definition"]["states"]["work"]["action"] = {"type": "function", "function": "app.work"}

    async def go() -> str:
        store = ProcedureStore(db)
        store.register_action("app.work", lambda context: "worked")
        await store.register(doc)
        execution = await store.start("modular", auto=True)
        await store.close()
        return execution.id

    execution_id = asyncio.run(go())
    result = invoke("resume", "--db", db)
    assert result.exit_code == 2, result.output
    assert "'app.work' is registered by name in an application" in result.output
    assert execution_id in invoke("list", "--db", db, "--status", "running").output


def test_resume_checks_the_actions_modules_without_running_them(tmp_path: Path, db: str) -> None:
    module = f"cli_resume_marker_{os.getpid()}_{time.monotonic_ns()}"
    modules = tmp_path / "mods"
    modules.mkdir()
    marker = tmp_path / "imported.txt"
    (modules / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'a').close()\ndef work(context):\n    return 'worked'\n",
        encoding="utf-8",
    )
    doc = _module_doc(module)
    # Something resume cannot provide, so it refuses after checking the module's action.
    doc["definition"]["states"]["work"]["compensate"] = {"type": "function", "function": "app.undo"}

    async def go() -> None:
        store = ProcedureStore(db, allowed_modules=[module])
        store.register_action("app.undo", lambda context: None)
        await store.register(doc)
        await store.start("modular", auto=True)
        await store.close()  # during the nap: the module's action has not run

    sys.path.insert(0, str(modules))
    asyncio.run(go())
    sys.path.remove(str(modules))
    sys.modules.pop(module, None)
    marker.unlink(missing_ok=True)

    result = invoke("resume", "--db", db, "--allow-module", module, "--path", str(modules))

    assert result.exit_code == 2, result.output
    assert "nothing was resumed" in result.output
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# list


def test_list_shows_procedures_and_executions(tmp_path: Path, db: str) -> None:
    ok = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    failed = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "nowhere"}', *ALLOW)
    tiny = invoke("run", "--db", db, str(write_json(tmp_path / "tiny.json", simple_doc())))
    result = invoke("list", "--db", db)
    assert result.exit_code == 0, result.output
    procedures, executions = result.output.split("\n\n")
    assert procedures.splitlines() == [
        "PROCEDURE        VERSIONS",
        "deploy_workflow  1.0",
        "tiny             1.0",
    ]
    rows = executions.splitlines()
    assert rows[0].split() == ["EXECUTION", "PROCEDURE", "STATUS", "UPDATED"]
    assert [row.split()[:3] for row in rows[1:]] == [
        [execution_id_of(ok.output), "deploy_workflow@1.0", "completed"],
        [execution_id_of(failed.output), "deploy_workflow@1.0", "failed"],
        [execution_id_of(tiny.output), "tiny@1.0", "completed"],
    ]


def test_list_filters(db: str, tmp_path: Path) -> None:
    invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    failed = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "nowhere"}', *ALLOW)
    invoke("run", "--db", db, str(write_json(tmp_path / "tiny.json", simple_doc())))
    by_status = invoke("list", "--db", db, "--status", "failed")
    assert by_status.output.count("@1.0") == 1
    assert execution_id_of_row(by_status.output) == execution_id_of(failed.output)
    by_name = invoke("list", "--db", db, "--procedure", "tiny")
    assert "deploy_workflow" not in by_name.output
    assert by_name.output.count("tiny@1.0") == 1
    limited = invoke("list", "--db", db, "--limit", "1")
    assert limited.output.count("@1.0") == 1
    assert "and 2 older" in limited.output
    assert invoke("list", "--db", db, "--status", "sleeping").exit_code == 2


def execution_id_of_row(output: str) -> str:
    match = re.search(r"^([0-9a-f]{32})\s", output, flags=re.MULTILINE)
    assert match, output
    return match.group(1)


def test_list_json(db: str) -> None:
    ran = invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    document = json.loads(invoke("list", "--db", db, "--json").output)
    assert document["procedures"] == [{"name": "deploy_workflow", "versions": ["1.0"]}]
    [summary] = document["executions"]
    assert summary["id"] == execution_id_of(ran.output)
    assert summary["status"] == "completed"


def test_list_shows_quarantined_executions_with_their_reason(tmp_path: Path, db: str) -> None:
    waiting = simple_doc("waiting", start={"transitions": [{"event": "go", "target": "done"}]})
    waiting["definition"]["states"]["done"] = {}

    async def start_two() -> list[str]:
        async with ProcedureStore(db) as store:
            await store.register(waiting)
            return [(await store.start("waiting")).id for _ in range(2)]

    damaged, renamed = asyncio.run(start_two())
    connection = sqlite3.connect(tmp_path / "x.db")
    connection.execute("UPDATE executions SET snapshot = '{' WHERE id = ?", (damaged,))
    connection.execute("UPDATE executions SET status = 'paused' WHERE id = ?", (renamed,))
    connection.commit()
    connection.close()

    async def recover() -> None:
        async with ProcedureStore(db) as store:
            assert await store.recover() == []  # the damaged one is quarantined

    asyncio.run(recover())

    result = invoke("list", "--db", db)

    assert result.exit_code == 0, result.output
    rows = result.output.split("\n\n")[1].splitlines()
    assert rows[0].split() == ["EXECUTION", "PROCEDURE", "STATUS", "UPDATED", "REASON"]
    assert [row.split()[:3] for row in rows[1:]] == [
        [damaged, "waiting@1.0", "quarantined"],
        [renamed, "waiting@1.0", "quarantined"],
    ]
    assert "its stored snapshot is not valid JSON" in rows[1]
    assert "its stored status 'paused' is unknown to this procstore" in rows[2]


# --------------------------------------------------------------------------------------------
# show


GUARDED = {
    "name": "guarded",
    "version": "2.0",
    "description": "Routes by amount.",
    "definition": {
        "initial_state": "check",
        "states": {
            "check": {
                "action": {"type": "noop", "result": "checked"},
                "retry": {"max_attempts": 3, "interval_ms": 100},
                "timeout_ms": 5000,
                "compensate": {"type": "log", "message": "undo"},
                "transitions": [
                    {"event": "success", "target": "small", "guard": "amount < 1000"},
                    {"event": "success", "target": "large"},
                ],
            },
            "small": {},
            "large": {"outcome": "failure"},
        },
    },
}


def test_show_summarises_a_procedure(tmp_path: Path, db: str) -> None:
    invoke("run", "--db", db, str(write_json(tmp_path / "g.json", GUARDED)), "-c", '{"amount": 5}')
    result = invoke("show", "guarded", "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "procedure    guarded 2.0"
    assert "description  Routes by amount." in lines
    assert "initial      check" in lines
    assert "states       3" in lines
    assert "transitions  2" in lines
    for needle in (
        "    action noop → checked",
        f"    retry 3x 100ms{TIMES}2",
        "    timeout 5000ms",
        "    compensate log “undo”",
        "    on success [amount < 1000] -> small",
        "    on success -> large",
        "small  (terminal)",
        "large  (terminal, failure)",
    ):
        assert needle in lines, (needle, result.output)


def test_show_lists_the_error_handling_of_each_state(tmp_path: Path, db: str) -> None:
    doc = {
        "name": "charging",
        "version": "1.0",
        "definition": {
            "initial_state": "charge",
            "states": {
                "charge": {
                    "action": {"type": "noop"},
                    "retry": [{"errors": ["ValueError"], "max_attempts": 1}, {"max_attempts": 2}],
                    "compensate": {"type": "noop"},
                    "compensate_retry": {"max_attempts": 4},
                    "transitions": [
                        {"event": "success", "target": "done"},
                        {"event": "error", "errors": ["Timeout"], "target": "declined"},
                    ],
                },
                "done": {},
                "declined": {"outcome": "failure", "error": "Declined", "cause": "no money"},
            },
        },
    }
    invoke("run", "--db", db, str(write_json(tmp_path / "c.json", doc)))
    lines = invoke("show", "charging", "--db", db).output.splitlines()
    for needle in (
        f"    retry 1x 1s{TIMES}2 on ValueError; retry 2x 1s{TIMES}2",
        f"    compensate retry 4x 1s{TIMES}2",
        "    on error (Timeout) -> declined",
        "declined  (terminal, failure Declined: no money)",
    ):
        assert needle in lines, (needle, lines)


def test_show_lists_a_choice_states_rules_in_order_and_a_waits_length(
    tmp_path: Path, db: str
) -> None:
    doc = {
        "name": "routed",
        "version": "1.0",
        "definition": {
            "initial_state": "pause",
            "states": {
                "pause": {
                    "wait": {"ms": 0},
                    "transitions": [{"event": "success", "target": "pick"}],
                },
                "pick": {
                    "choice": [{"guard": "amount > 10", "target": "large"}],
                    "default": "small",
                },
                "large": {},
                "small": {},
            },
        },
    }
    invoke("run", "--db", db, str(write_json(tmp_path / "r.json", doc)), "-c", '{"amount": 5}')
    result = invoke("show", "routed", "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for needle in (
        "    wait 0ms",
        "pick  (choice)",
        "    (1) [amount > 10] -> large",
        "    default -> small",
    ):
        assert needle in lines, (needle, result.output)


def test_show_versions_and_json(tmp_path: Path, db: str) -> None:
    path = tmp_path / "g.json"
    invoke("run", "--db", db, str(write_json(path, GUARDED)), "-c", '{"amount": 5}')
    newer = json.loads(json.dumps(GUARDED))
    newer["version"] = "10.0"
    newer["description"] = "Newer."
    invoke("run", "--db", db, str(write_json(path, newer)), "-c", '{"amount": 5}')
    latest = invoke("show", "guarded", "--db", db)
    assert latest.output.splitlines()[0] == "procedure    guarded 10.0"  # 10.0 > 2.0
    assert "versions     2.0, 10.0" in latest.output
    pinned = invoke("show", "guarded@2.0", "--db", db, "--json")
    assert pinned.exit_code == 0, pinned.output
    assert json.loads(pinned.output) == GUARDED


def test_show_unknown_procedure_exits_4(db: str) -> None:
    assert invoke("show", "guarded", "--db", db).exit_code == 4  # no database
    invoke("run", "--db", db, str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW)
    for spec in ("guarded", "deploy_workflow@9.9", "deploy_workflow@not-a-version"):
        result = invoke("show", spec, "--db", db)
        assert result.exit_code == 4, (spec, result.output)
    assert invoke("show", "@1.0", "--db", db).exit_code == 2


# --------------------------------------------------------------------------------------------
# diagram


@pytest.mark.parametrize(
    ("suffix", "check"),
    [
        (".svg", lambda data: b"<svg" in data and data.rstrip().endswith(b"</svg>")),
        (".png", lambda data: data.startswith(b"\x89PNG\r\n\x1a\n")),
        (".dot", lambda data: data.startswith(b"digraph")),
        (".gv", lambda data: data.startswith(b"digraph")),
        (".mmd", lambda data: b"stateDiagram-v2" in data),
    ],
)
def test_diagram_writes_each_format_from_the_suffix(
    tmp_path: Path, suffix: str, check: Any
) -> None:
    out = tmp_path / f"deploy{suffix}"
    result = invoke("diagram", str(DEPLOY), "-o", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert check(data), data[:200]
    for state in (b"validate", b"build", b"deploy", b"rollback", b"done", b"failed"):
        if suffix != ".png":
            assert state in data


def test_diagram_svg_root_element(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    out = tmp_path / "d.svg"
    assert invoke("diagram", str(DEPLOY), "-o", str(out)).exit_code == 0
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_diagram_to_stdout(tmp_path: Path) -> None:
    dot = invoke("diagram", str(DEPLOY))  # no -o, no --format: DOT
    assert dot.exit_code == 0, dot.output
    assert dot.stdout.startswith("digraph")
    mermaid = invoke("diagram", str(DEPLOY), "--format", "mermaid")
    assert "stateDiagram-v2" in mermaid.stdout
    png = invoke("diagram", str(DEPLOY), "-f", "png")  # stdout is not a terminal here
    assert png.exit_code == 0
    assert png.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    # --format wins over the suffix.
    out = tmp_path / "d.txt"
    assert invoke("diagram", str(DEPLOY), "-o", str(out), "-f", "mermaid").exit_code == 0
    assert "stateDiagram-v2" in out.read_text(encoding="utf-8")


def test_diagram_svg_without_graphviz_says_what_to_install_and_exits_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which no dot program is found
    result = invoke("diagram", str(DEPLOY), "-o", str(tmp_path / "d.svg"))
    assert result.exit_code == 5, result.output
    assert "svg needs Graphviz's dot program, which is not installed" in result.output
    assert not (tmp_path / "d.svg").exists()


def test_diagram_usage_errors(tmp_path: Path, db: str) -> None:
    unknown_suffix = invoke("diagram", str(DEPLOY), "-o", str(tmp_path / "d.txt"))
    assert unknown_suffix.exit_code == 2, unknown_suffix.output
    assert "--format" in unknown_suffix.output
    assert invoke("diagram").exit_code == 2
    assert invoke("diagram", str(tmp_path / "missing.json")).exit_code == 2
    bad = write_json(tmp_path / "bad.json", {"name": "bad", "version": "1.0"})
    invalid = invoke("diagram", str(bad))
    assert invalid.exit_code == 2, invalid.output
    assert f"{bad}: $.definition:" in invalid.output
    assert invoke("diagram", str(DEPLOY), "--execution", "nope", "--db", db).exit_code == 4


def test_diagram_of_an_invalid_file_prints_its_problems_and_draws_nothing(tmp_path: Path) -> None:
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "nowhere"}]})
    path = write_json(tmp_path / "bad.json", doc)

    result = invoke("diagram", str(path))

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert f"{path}: $.definition.states.start.transitions[0].target:" in result.stderr
    assert f"{path}: hint: --allow-invalid draws it all the same" in result.stderr


def test_diagram_allow_invalid_draws_it_and_warns_of_its_problems(tmp_path: Path) -> None:
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "nowhere"}]})
    path = write_json(tmp_path / "bad.json", doc)

    result = invoke("diagram", str(path), "--allow-invalid", "--format", "mermaid")

    assert result.exit_code == 0, result.output
    assert "no such state" in result.stdout
    assert (
        f"warning: {path}: $.definition.states.start.transitions[0].target: 'nowhere' is not "
        "among the states reachable by name from 'start'"
    ) in result.stderr.splitlines()


def test_diagram_says_the_problems_of_a_file_as_validate_does(tmp_path: Path) -> None:
    doc = simple_doc(
        start={
            "transitions": {"event": "go", "target": "done"},
            "retry": {"max_attempts": 2, "errors": "Timeout"},
            "colour": "blue",
        },
        done={"parallel": {"only": {"initial_state": "x", "states": {"x": {}}}}},
    )
    path = write_json(tmp_path / "bad.json", doc)

    drawn = invoke("diagram", str(path))
    validated = invoke("validate", str(path))

    assert drawn.exit_code == 2, drawn.output
    assert drawn.stderr.splitlines()[:-1] == validated.stdout.splitlines()
    assert f"{path}: $.definition.states.start.transitions: expected a list, got an object" in (
        validated.stdout.splitlines()
    )


def test_diagram_draws_a_procedure_whose_host_code_is_not_here(tmp_path: Path) -> None:
    # An action and a guard predicate an application registers by name: validate refuses
    # them here, diagram draws the procedure before it runs anywhere.
    doc = simple_doc(
        start={
            "action": {"type": "function", "function": "app.work"},
            "transitions": [{"event": "success", "target": "done", "conditions": ["is_vip"]}],
        },
        done={},
    )
    path = write_json(tmp_path / "app.json", doc)

    result = invoke("diagram", str(path), "--format", "mermaid")

    assert result.exit_code == 0, result.output
    assert "function app.work" in result.stdout


def test_diagram_overlays_a_stored_execution(tmp_path: Path, db: str) -> None:
    context = '{"env": "staging", "fail_step": "deploy"}'
    ran = invoke("run", "--db", db, str(DEPLOY), "-c", context, *ALLOW)
    execution_id = execution_id_of(ran.output)
    plain = invoke("diagram", str(DEPLOY), "-f", "dot").stdout
    overlaid = invoke("diagram", str(DEPLOY), "-f", "dot", "--execution", execution_id, "--db", db)
    assert overlaid.exit_code == 0, overlaid.output
    assert overlaid.stdout != plain
    # Without FILE, the stored procedure is drawn: the same picture.
    stored = invoke("diagram", "-f", "dot", "--execution", execution_id, "--db", db)
    assert stored.exit_code == 0, stored.output
    assert stored.stdout == overlaid.stdout
    out = tmp_path / "live.svg"
    assert invoke("diagram", "-o", str(out), "-e", execution_id, "--db", db).exit_code == 0
    assert b"<svg" in out.read_bytes()
    # A FILE that is not the execution's procedure is refused.
    other = write_json(tmp_path / "tiny.json", simple_doc())
    mismatch = invoke("diagram", str(other), "--execution", execution_id, "--db", db)
    assert mismatch.exit_code == 2, mismatch.output
    assert "runs deploy_workflow 1.0" in mismatch.output


# --------------------------------------------------------------------------------------------
# schema


def test_schema_prints_the_json_schema(tmp_path: Path) -> None:
    from procstore import Procedure

    result = invoke("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert "$defs" in schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {k: v for k, v in schema.items() if k != "$schema"} == Procedure.model_json_schema()
    assert set(schema["required"]) >= {"name", "version", "definition"}
    out = tmp_path / "procedure.schema.json"
    assert invoke("schema", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == schema


# --------------------------------------------------------------------------------------------
# validate


def test_validate_a_valid_file_prints_ok_and_exits_0() -> None:
    result = invoke("validate", str(DEPLOY), *ALLOW)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{DEPLOY}: ok"


def test_validate_an_invalid_file_prints_each_json_path_and_exits_1(tmp_path: Path) -> None:
    doc = simple_doc(
        start={
            "action": {"type": "teleport"},
            "transitions": [{"event": "success", "target": "done"}],
        },
        done={"colour": "blue"},
    )
    path = write_json(tmp_path / "bad.json", doc)
    result = invoke("validate", str(path))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert all(line.startswith(f"{path}: $") for line in lines), result.output
    paths = {line.removeprefix(f"{path}: ").split(": ", 1)[0] for line in lines}
    assert "$.definition.states.start.action.type" in paths
    assert "$.definition.states.done.colour" in paths


def test_validate_reports_bad_targets_and_unreachable_states(tmp_path: Path) -> None:
    doc = simple_doc(
        start={"transitions": [{"event": "go", "target": "nowhere"}]},
        island={},
    )
    path = write_json(tmp_path / "bad.json", doc)
    result = invoke("validate", str(path))
    assert result.exit_code == 1, result.output
    assert f"{path}: $.definition.states.start.transitions[0].target:" in result.output
    assert f"{path}: $.definition.states.island:" in result.output


def test_validate_reports_a_missing_definition(tmp_path: Path) -> None:
    path = write_json(tmp_path / "nodef.json", {"name": "bad", "version": "1.0"})
    result = invoke("validate", str(path))
    assert result.exit_code == 1, result.output
    assert f"{path}: $.definition:" in result.output


def test_validate_rejects_os_system(tmp_path: Path) -> None:
    doc = simple_doc(
        start={"action": {"type": "function", "module": "os", "function": "system"}},
    )
    path = write_json(tmp_path / "evil.json", doc)
    result = invoke("validate", str(path))
    assert result.exit_code == 1, result.output
    assert f"{path}: $.definition.states.start.action.module:" in result.output


def test_validate_several_files_checks_them_all(tmp_path: Path) -> None:
    good = write_json(tmp_path / "good.json", simple_doc())
    bad = write_json(tmp_path / "bad.json", {"name": "bad", "version": "not a version!"})
    missing = tmp_path / "missing.json"
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json", encoding="utf-8")
    result = invoke("validate", str(good), str(bad), str(missing), str(broken), str(DEPLOY), *ALLOW)
    assert result.exit_code == 1, result.output
    assert f"{good}: ok" in result.output
    assert f"{DEPLOY}: ok" in result.output
    assert f"{bad}: $.version:" in result.output
    assert f"{bad}: $.definition:" in result.output
    assert f"{missing}: $: no such file" in result.output
    assert f"{broken}: $:" in result.output


# --------------------------------------------------------------------------------------------
# help, version, entry points


COMMANDS = [
    "run",
    "resume",
    "worker",
    "send",
    "callback",
    "cancel",
    "status",
    "wait",
    "list",
    "show",
    "history",
    "diagram",
    "schema",
    "validate",
    "mcp",
    "import-asl",
]


def test_help_documents_the_commands_and_exit_codes() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for needle in (*COMMANDS, "Exit codes", "usage error", "--db", "sqlite:///procstore.db"):
        assert needle in result.output
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        assert re.search(rf"^ +{code} +\S", result.output, re.MULTILINE), code


def test_docs_cli_md_lists_the_exit_codes_of_the_cli_table() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = page.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", section, re.MULTILINE)
    assert rows == [(str(code.value), meaning.docs) for code, meaning in EXIT_CODES.items()]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_ends_with_the_exit_codes_of_the_cli_table(command: str) -> None:
    result = invoke(command, "--help")
    codes = [code for code, meaning in EXIT_CODES.items() if command in meaning.commands]
    listed = re.findall(r"^ +(\d+) +\S", result.output.split("Exit codes:\n", 1)[1], re.MULTILINE)
    assert listed == [str(code.value) for code in codes]
    for code in codes:
        for line in EXIT_CODES[code].commands[command]:
            assert line in result.output, (code, line)


def test_the_help_summarises_each_command_in_a_whole_sentence() -> None:
    result = invoke("--help")
    summaries: dict[str, str] = {}
    for line in result.output.split("Commands:\n", 1)[1].splitlines():
        named = re.match(r"^  (\S+)\s+(.*)$", line)
        if named:
            command = named.group(1)
            summaries[command] = named.group(2)
        elif line.strip():  # a summary wrapped onto the next line
            summaries[command] += " " + line.strip()

    assert sorted(summaries) == sorted(COMMANDS)
    for command, summary in summaries.items():
        assert summary[0].isupper() and summary.endswith("."), (command, summary)
        assert "..." not in summary, (command, summary)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Exit codes" in result.output
    if command in ("run", "resume", "list", "show", "history", "diagram"):
        assert "--db URL" in result.output
    if command in ("run", "resume", "validate"):
        assert "--allow-module" in result.output
    if command in ("run", "resume"):
        assert "--timeout" in result.output
    if command == "run":
        assert "--context" in result.output


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    for command in COMMANDS:
        assert command in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("procstore ")


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_python_dash_m_procstore_runs_the_demo(tmp_path: Path, db: str) -> None:
    args = ["run", str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW, "--db", db]
    proc = subprocess.run(
        [sys.executable, "-m", "procstore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_subprocess_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert entered(proc.stdout) == ["validate", "build", "deploy", "done"]


def test_procstore_script_help() -> None:
    script = Path(sys.executable).with_name("procstore")
    if not script.exists():
        pytest.skip("procstore script not installed beside this interpreter")
    proc = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_subprocess_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "validate" in proc.stdout


# -- validate: the static checks' warnings -------------------------------------------------------

_WARNED = {
    "name": "warned",
    "version": "1.0",
    "definition": {
        "initial_state": "wait",
        "states": {
            "wait": {
                "transitions": [
                    {"event": "go", "target": "a", "guard": "1 > 2"},
                    {"event": "x", "target": "a"},
                ]
            },
            "a": {},
        },
    },
}


def test_validate_prints_warnings_and_the_file_stays_valid(tmp_path: Path) -> None:
    file = tmp_path / "warned.json"
    file.write_text(json.dumps(_WARNED))
    result = invoke("validate", str(file))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{file}: warning: $.definition.states.wait.transitions[0].guard: the guard '1 > 2' is "
        "always false: this transition never fires",
        f"{file}: ok (1 warning(s))",
    ]


def test_validate_strict_counts_warnings_as_problems(tmp_path: Path) -> None:
    file = tmp_path / "warned.json"
    file.write_text(json.dumps(_WARNED))
    result = invoke("validate", "--strict", str(file))

    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == f"{file}: invalid: 1 warning(s), and --strict"


def test_run_prints_the_warnings_once_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "warned.json"
    doc = json.loads(json.dumps(_WARNED))
    doc["definition"]["states"]["wait"] = {
        "action": {"type": "noop"},
        "transitions": [
            {"event": "success", "target": "a", "guard": "1 > 2"},
            {"event": "success", "target": "a"},
        ],
    }
    file.write_text(json.dumps(doc))
    result = invoke("run", str(file))

    assert result.exit_code == 0, result.output
    assert result.output.count("warning: $.definition.states.wait.transitions[0].guard") == 1


def test_run_prints_a_line_per_item_of_a_map_state(tmp_path: Path, db: str) -> None:
    item = {
        "items_path": "$.orders",
        "initial_state": "one",
        "states": {"one": {"action": {"type": "noop"}, "transitions": []}},
    }
    doc = simple_doc(
        "fan_out",
        start={"map": item, "transitions": [{"event": "done", "target": "done"}]},
        done={},
    )
    path = write_json(tmp_path / "fan.json", doc)
    result = invoke("run", "--db", db, str(path), "--context", '{"orders": [1, 2]}')
    assert result.exit_code == 0, result.output
    assert re.search(r"^item\s+start\[0\] started: [0-9a-f]{32}$", result.output, re.MULTILINE)
    assert re.search(r"^item\s+start\[\d\] completed \(2/2 done, 0 failed\)$", result.output, re.M)


async def test_the_live_display_says_how_many_items_of_a_map_state_are_done() -> None:
    gate = Gate()
    store = ProcedureStore()
    store.register_action("app.work", lambda c: gate.action(c) if c["item"] == 2 else None)
    item = {
        "items_path": "$.orders",
        "max_concurrency": 1,
        "initial_state": "one",
        "states": {"one": {"action": {"type": "function", "function": "app.work"}}},
    }
    doc = simple_doc("fan", start={"map": item, "transitions": [on("done", "done")]}, done={})
    procedure = await store.register(doc)
    execution = await store.start("fan", context={"orders": [1, 2]}, auto=True)
    await within(gate.started.wait())
    tracker = Tracker(execution, procedure, "fan")
    for record in execution.history:
        tracker.update(record)
    assert tracker.describe() == "start (1/2 items done)"
    gate.release.set()
    await within(execution.run_to_completion())
