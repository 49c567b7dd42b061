"""The ``procstore`` command line: ``run``, ``validate``, help and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from procstore.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEPLOY = EXAMPLES / "deploy_workflow.json"
ALLOW = ["--allow-module", "deploy_actions"]

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_sys_path() -> Iterator[None]:
    """The CLI puts each FILE's directory on sys.path: undo that after every test."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


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


def test_run_deploy_example_completes_printing_each_state_in_order() -> None:
    result = invoke("run", str(DEPLOY), "--context", '{"env": "staging"}', *ALLOW)
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


def test_run_with_an_unknown_env_fails_at_validate_with_exit_1() -> None:
    result = invoke("run", str(DEPLOY), "--context", '{"env": "nowhere"}', *ALLOW)
    assert result.exit_code == 1, result.output
    assert entered(result.output) == ["validate", "failed"]
    assert re.search(r"^action\s+validate #1 error: ValueError: invalid env", result.output, re.M)
    assert re.search(r"^status\s+failed \(state: failed\)$", result.output, re.MULTILINE)


def test_run_with_a_failing_build_rolls_back() -> None:
    context = '{"env": "staging", "fail_step": "build"}'
    result = invoke("run", str(DEPLOY), "--context", context, *ALLOW)
    assert result.exit_code == 1, result.output
    assert entered(result.output) == ["validate", "build", "rollback", "failed"]
    assert re.search(r"^status\s+failed \(state: failed\)$", result.output, re.MULTILINE)


def test_run_reads_the_context_from_a_file(tmp_path: Path) -> None:
    context_file = write_json(tmp_path / "ctx.json", {"env": "prod"})
    result = invoke("run", str(DEPLOY), "--context", f"@{context_file}", *ALLOW)
    assert result.exit_code == 0, result.output
    assert entered(result.output) == ["validate", "build", "deploy", "done"]


def test_run_without_a_context_starts_with_an_empty_one(tmp_path: Path) -> None:
    path = write_json(tmp_path / "tiny.json", simple_doc())
    result = invoke("run", str(path))
    assert result.exit_code == 0, result.output
    assert entered(result.output) == ["start", "done"]
    assert re.search(r"^log\s+start: hello$", result.output, re.MULTILINE)


def test_run_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny_yaml\nversion: '1.0'\ndefinition:\n  initial_state: a\n  states:\n"
        "    a:\n      action: {type: sleep, ms: 1}\n"
        "      transitions: [{event: success, target: b}]\n    b: {}\n",
        encoding="utf-8",
    )
    result = invoke("run", str(path))
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
def test_run_rejects_a_bad_context_with_exit_2(context: str, needle: str) -> None:
    result = invoke("run", str(DEPLOY), "--context", context, *ALLOW)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_run_rejects_a_module_that_is_not_allowed_with_exit_2() -> None:
    result = invoke("run", str(DEPLOY), "--context", '{"env": "staging"}')
    assert result.exit_code == 2, result.output
    assert f"{DEPLOY}: $.definition.states.validate.action.module:" in result.output
    assert "--allow-module" in result.output
    assert "entered" not in result.output


def test_run_invalid_procedure_exits_2(tmp_path: Path) -> None:
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "nowhere"}]})
    path = write_json(tmp_path / "bad.json", doc)
    result = invoke("run", str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}: $.definition.states.start.transitions[0].target:" in result.output


def test_run_missing_file_exits_2(tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path / "missing.json"))
    assert result.exit_code == 2, result.output


def test_run_that_does_not_finish_in_time_exits_3(tmp_path: Path) -> None:
    # "start" has no action, so no outcome event: it waits for an event nothing sends.
    doc = simple_doc(start={"transitions": [{"event": "go", "target": "done"}]}, done={})
    path = write_json(tmp_path / "waits.json", doc)
    result = invoke("run", str(path), "--timeout", "0.2")
    assert result.exit_code == 3, result.output
    assert entered(result.output) == ["start"]
    assert "timeout" in result.output


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


def test_help_documents_the_commands_and_exit_codes() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for needle in ("run", "validate", "Exit codes", "usage error"):
        assert needle in result.output


@pytest.mark.parametrize("command", ["run", "validate"])
def test_each_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "--allow-module" in result.output
    assert "Exit codes" in result.output
    if command == "run":
        assert "--context" in result.output
        assert "--timeout" in result.output


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "run" in result.output
    assert "validate" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("procstore ")


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_python_dash_m_procstore_runs_the_demo() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "procstore", "run", str(DEPLOY), "-c", '{"env": "staging"}', *ALLOW],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
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
