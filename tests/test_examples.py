"""Every procedure in examples/ validates and runs to its expected final state; so does the
README's Python example.

A new example needs an entry in ``EXPECTED`` below: the modules its function actions use and, for
one or more start contexts, the states it goes through and how it ends.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from procstore import ProcedureStore, Status
from procstore.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = sorted(
    p for pattern in ("*.json", "*.yaml", "*.yml") for p in EXAMPLES.glob(pattern)
)


@dataclass(frozen=True)
class Run:
    context: dict[str, Any]
    path: list[str]  # every state entered, in order
    status: Status
    context_subset: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> str:
        return self.path[-1]


@dataclass(frozen=True)
class Example:
    allowed_modules: list[str]
    runs: list[Run]


EXPECTED: dict[str, Example] = {
    "deploy_workflow.json": Example(
        allowed_modules=["deploy_actions"],
        runs=[
            Run(
                {"env": "staging"},
                ["validate", "build", "deploy", "done"],
                Status("completed"),
                {"validation": "validated", "deployment": "deployed"},
            ),
            Run({"env": "prod"}, ["validate", "build", "deploy", "done"], Status("completed")),
            Run({"env": "nowhere"}, ["validate", "failed"], Status("failed")),
            Run(
                {"env": "staging", "fail_step": "build"},
                ["validate", "build", "rollback", "failed"],
                Status("failed"),
                {"rollback": "rolled_back"},
            ),
            Run(
                {"env": "staging", "fail_step": "deploy"},
                ["validate", "build", "deploy", "rollback", "failed"],
                Status("failed"),
            ),
        ],
    ),
}

RUNS = [
    pytest.param(path, run, id=f"{path.name}-{i}")
    for path in EXAMPLE_FILES
    for i, run in enumerate(EXPECTED[path.name].runs if path.name in EXPECTED else [])
]


def test_there_are_examples() -> None:
    assert EXAMPLE_FILES, f"no procedure documents in {EXAMPLES}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_has_an_expected_outcome(path: Path) -> None:
    assert path.name in EXPECTED, f"add {path.name} to EXPECTED in {__file__}"
    assert EXPECTED[path.name].runs, f"{path.name}: give at least one run in EXPECTED"


def test_every_expectation_has_its_example() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert set(EXPECTED) <= names, f"EXPECTED names missing examples: {set(EXPECTED) - names}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
async def test_example_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(path.parent))
    example = EXPECTED.get(path.name, Example([], []))
    store = ProcedureStore(allowed_modules=example.allowed_modules)
    procedure = await store.register(path)
    assert procedure.name
    assert await store.get(procedure.name, procedure.version) is not None


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_validates_through_the_cli(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    example = EXPECTED.get(path.name, Example([], []))
    args = ["validate", str(path)]
    for module in example.allowed_modules:
        args += ["--allow-module", module]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: ok"


@pytest.mark.parametrize(("path", "run"), RUNS)
async def test_example_runs_to_its_expected_end(
    path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(path.parent))
    store = ProcedureStore(allowed_modules=EXPECTED[path.name].allowed_modules)
    procedure = await store.register(path)
    execution = await store.start(procedure.name, procedure.version, run.context)
    final = await execution.run_to_completion(timeout=10.0)

    assert final.current == run.final
    assert final.status == run.status
    assert [r.state for r in final.history if r.kind == "entered"] == run.path
    for key, value in run.context_subset.items():
        assert final.context.get(key) == value, key
    # The start context is kept, not replaced.
    for key, value in run.context.items():
        assert final.context[key] == value


def test_readme_python_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "README.md has no python example"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0], encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished done" in proc.stdout
