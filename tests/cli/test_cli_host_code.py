"""The host code the command line trusts: which modules a definition's function actions may
name, that only `run` and `resume` import them (every other command reads their source), and
how `resume` finds the modules `run` found beside FILE."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from procstore import ProcedureStore
from tests.cli.test_cli import execution_id_of, invoke, leave_unfinished, write_json


class Marked:
    """A definition with a function action whose module lies beside it and, when imported,
    appends a line to ``marker``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.module = f"marker_actions_{uuid.uuid4().hex}"
        self.marker = directory / "imported.txt"
        self.module_file = directory / f"{self.module}.py"
        self.module_file.write_text(
            f"open({str(self.marker)!r}, 'a').write('imported\\n')\n"
            "def work(context):\n"
            "    return 'worked'\n",
            encoding="utf-8",
        )
        self.doc: dict[str, Any] = {
            "name": "marked",
            "version": "1.0",
            "definition": {
                "initial_state": "work",
                "states": {
                    "work": {
                        "action": {"type": "function", "module": self.module, "function": "work"},
                        "transitions": [{"event": "success", "target": "done"}],
                    },
                    "done": {},
                },
            },
        }
        self.file = write_json(directory / "marked.json", self.doc)

    def imported(self) -> bool:
        return self.marker.exists()


# --------------------------------------------------------------------------------------------
# only run and resume import


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["validate"], id="validate"),
        pytest.param(["diagram", "--format", "mermaid"], id="diagram"),
    ],
)
def test_a_command_that_reads_the_module_beside_the_file_does_not_import_it(
    tmp_path: Path, command: list[str]
) -> None:
    marked = Marked(tmp_path / "flows")

    result = invoke(command[0], str(marked.file), *command[1:])

    assert result.exit_code == 0, result.output
    assert not marked.imported()


def test_validate_still_finds_a_function_the_module_does_not_define(tmp_path: Path) -> None:
    marked = Marked(tmp_path / "flows")
    marked.doc["definition"]["states"]["work"]["action"]["function"] = "missing"
    write_json(marked.file, marked.doc)

    result = invoke("validate", str(marked.file))

    assert result.exit_code == 1, result.output
    assert "$.definition.states.work.action.function:" in result.output
    assert "defines no public function 'missing'" in result.output
    assert not marked.imported()


def test_show_of_a_stored_procedure_does_not_import_its_module(tmp_path: Path, db: str) -> None:
    marked = Marked(tmp_path / "flows")
    sys.path.append(str(marked.module_file.parent))

    async def register() -> None:
        async with ProcedureStore(db, allowed_module_files=[marked.module_file]) as store:
            await store.register(marked.doc)

    asyncio.run(register())

    result = invoke("show", "marked", "--db", db)

    assert result.exit_code == 0, result.output
    assert f"action function {marked.module}.work" in result.output
    assert not marked.imported()


def test_run_imports_the_module_when_the_action_runs(tmp_path: Path, db: str) -> None:
    marked = Marked(tmp_path / "flows")

    result = invoke("run", str(marked.file), "--db", db)

    assert result.exit_code == 0, result.output
    assert marked.marker.read_text(encoding="utf-8") == "imported\n"


# --------------------------------------------------------------------------------------------
# what is allowed, said once


def test_a_module_not_allowed_is_refused_with_one_hint_naming_what_is_allowed(
    tmp_path: Path,
) -> None:
    marked = Marked(tmp_path / "flows")
    marked.doc["definition"]["states"]["work"]["action"]["module"] = "elsewhere"
    marked.doc["definition"]["states"]["work"]["compensate"] = {
        "type": "function",
        "module": "elsewhere",
        "function": "undo",
    }
    write_json(marked.file, marked.doc)

    result = invoke("validate", str(marked.file), "--allow-module", "json")

    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"{marked.file}: $.definition.states.work.action.module: module 'elsewhere' is not allowed",
        f"{marked.file}: $.definition.states.work.compensate.module: "
        "module 'elsewhere' is not allowed",
        f"{marked.file}: hint: function actions may name the modules beside {marked.file} "
        f"({marked.module_file.name}) and the --allow-module modules (json); "
        "--allow-module MODULE would let the document call every public function of MODULE",
    ]


def test_without_local_modules_the_hint_says_the_modules_beside_file_are_not_allowed(
    tmp_path: Path, db: str
) -> None:
    marked = Marked(tmp_path / "flows")

    result = invoke("run", str(marked.file), "--db", db, "--no-local-modules")

    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        f"{marked.file}: hint: function actions may name only the --allow-module modules "
        f"(none), not the modules beside {marked.file} (--no-local-modules); "
        "--allow-module MODULE would let the document call every public function of MODULE"
    )


# --------------------------------------------------------------------------------------------
# resume finds what run found


def napping(marked: Marked, ms: float = 400) -> Marked:
    """``marked`` with a first state that sleeps ``ms``: a run cut short stops there, before
    the module's action."""
    states = marked.doc["definition"]["states"]
    states["nap"] = {
        "action": {"type": "sleep", "ms": ms},
        "transitions": [{"event": "success", "target": "work"}],
    }
    marked.doc["definition"]["initial_state"] = "nap"
    write_json(marked.file, marked.doc)
    return marked


def resume_line(output: str) -> list[str]:
    """The arguments of the ``procstore resume ...`` command that ``output`` suggests."""
    [line] = [line for line in output.splitlines() if line.startswith("resume ")]
    words = shlex.split(line.split(None, 1)[1])
    assert words[:2] == ["procstore", "resume"], line
    return words[1:]


def test_the_resume_command_run_prints_on_timeout_has_every_option_it_needs(
    tmp_path: Path, db: str
) -> None:
    marked = napping(Marked(tmp_path / "flows"))

    ran = invoke("run", str(marked.file), "--db", db, "-m", "json", "--timeout", "0.05")

    assert ran.exit_code == 3, ran.output
    execution_id = execution_id_of(ran.output)
    directory = str(marked.file.parent)
    assert resume_line(ran.output) == [
        *("resume", execution_id, "--db", db),
        *("--path", directory, "--allow-module", "json"),
    ]


def test_the_resume_command_run_prints_on_timeout_resumes_it(tmp_path: Path, db: str) -> None:
    marked = napping(Marked(tmp_path / "flows"))
    ran = invoke("run", str(marked.file), "--db", db, "--timeout", "0.05")
    assert ran.exit_code == 3, ran.output
    sys.modules.pop(marked.module, None)
    sys.path.remove(str(marked.file.parent.resolve()))  # a new process: nothing from run

    resumed = invoke(*resume_line(ran.output))

    assert resumed.exit_code == 0, resumed.output
    assert 'action      work #1 ok -> "worked"' in resumed.output


def test_the_resume_command_printed_on_ctrl_c_has_every_option_it_needs(
    tmp_path: Path, db: str
) -> None:
    marked = napping(Marked(tmp_path / "flows"), ms=60_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "procstore", "run", str(marked.file), "--db", db, "-m", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until it runs the nap
            if line.startswith("entered"):
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()

    assert proc.returncode == 130, stderr
    [hint] = [line for line in stderr.splitlines() if "stays running" in line]
    command = shlex.split(hint.split(": ", 1)[1])
    assert command[:3] == ["procstore", "resume", command[2]]
    assert command[3:] == ["--db", db, "--path", str(marked.file.parent), "--allow-module", "json"]


def test_resume_path_allows_the_modules_in_dir_as_run_allows_those_beside_file(
    tmp_path: Path, db: str
) -> None:
    marked = napping(Marked(tmp_path / "flows"))
    assert invoke("run", str(marked.file), "--db", db, "--timeout", "0.05").exit_code == 3
    sys.modules.pop(marked.module, None)

    resumed = invoke("resume", "--db", db, "--path", str(marked.file.parent))

    assert resumed.exit_code == 0, resumed.output
    assert 'action      work #1 ok -> "worked"' in resumed.output


def test_resume_path_does_not_allow_the_module_a_file_in_dir_is_named_like(
    tmp_path: Path, db: str
) -> None:
    # Registered by an application that allowed subprocess by name: an empty subprocess.py
    # in --path DIR must not allow it to the CLI.
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "subprocess.py").write_text("", encoding="utf-8")
    marked = napping(Marked(tmp_path / "elsewhere"))
    marked.doc["definition"]["states"]["work"]["action"] = {
        "type": "function",
        "module": "subprocess",
        "function": "getoutput",
    }
    execution_id = leave_unfinished(db, marked.doc, allowed=["subprocess"])

    resumed = invoke("resume", "--db", db, "--path", str(flows))

    assert resumed.exit_code == 2, resumed.output
    assert "module 'subprocess' is allowed only as the file" in resumed.output
    assert execution_id in invoke("list", "--db", db, "--status", "running").output


def test_resume_says_in_one_line_per_procedure_version_what_to_pass(
    tmp_path: Path, db: str
) -> None:
    marked = napping(Marked(tmp_path / "flows"))
    states = marked.doc["definition"]["states"]
    for name in ("more", "still_more"):  # a saga: several actions, each with a compensation
        states[name] = {
            "action": {"type": "function", "module": marked.module, "function": "work"},
            "compensate": {"type": "function", "module": marked.module, "function": "work"},
            "transitions": [{"event": "success", "target": "done"}],
        }
    states["work"]["transitions"] = [{"event": "success", "target": "more"}]
    states["more"]["transitions"] = [{"event": "success", "target": "still_more"}]
    sys.path.append(str(marked.file.parent))
    first = leave_unfinished(db, marked.doc, allowed=[marked.module])
    second = leave_unfinished(db, marked.doc, allowed=[marked.module])
    sys.path.remove(str(marked.file.parent))

    refused = invoke("resume", "--db", db)

    assert refused.exit_code == 2, refused.output
    assert refused.output.splitlines() == [
        f"cannot resume 2 executions of marked@1.0 ({first}, {second}): its actions need "
        f"module '{marked.module}': pass --path DIR (DIR: the directory that holds "
        f"{marked.module}.py)",
        "nothing was resumed",
    ]
