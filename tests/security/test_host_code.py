"""Host code a definition may name: registering a procedure checks its function actions without
running any host code; the code runs (is imported) only when an action does."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procstore import InvalidProcedure, ProcedureStore, Status
from tests.conftest import make_doc, records, within

# Every module of the package appends its name to the marker file when it is imported, so the
# marker exists exactly when some of the package's code ran.
_RECORD_IMPORT = (
    "import pathlib\n"
    "with open(pathlib.Path(__file__).parent.parent / 'imported.txt', 'a') as _marker:\n"
    "    _marker.write(__name__ + '\\n')\n"
)
_MODULES = {
    "__init__.py": _RECORD_IMPORT + "def setup(context):\n    return 'init'\n",
    "__main__.py": _RECORD_IMPORT + "def main(context):\n    return 'main'\n",
    "script.py": _RECORD_IMPORT + "def work(context):\n    return 'worked'\n",
    "_private.py": _RECORD_IMPORT + "def work(context):\n    return 'private'\n",
    "broken.py": "def work(context:\n    return 'never'\n",
    "raises.py": "raise RuntimeError('boom at import')\ndef work(context):\n    return 1\n",
    "reexport.py": _RECORD_IMPORT + "from subprocess import getoutput\n",
    "rebound.py": _RECORD_IMPORT + "def work(context):\n    return 1\nwork = print\n",
}


class Package:
    """A throwaway package on sys.path whose modules record being imported."""

    def __init__(self, root: Path) -> None:
        self.name = f"hostpkg_{uuid.uuid4().hex}"
        self.marker = root / "imported.txt"
        directory = root / self.name
        directory.mkdir()
        for file, source in _MODULES.items():
            (directory / file).write_text(source, encoding="utf-8")

    def imported(self) -> list[str]:
        """The package's modules that were imported, in order."""
        if not self.marker.exists():
            return []
        return self.marker.read_text(encoding="utf-8").split()


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Package]:
    package = Package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [n for n in sys.modules if n.split(".")[0] == package.name]:
        del sys.modules[name]


def _doc(module: str, function: str) -> dict[str, Any]:
    return make_doc(
        {
            "s": {
                "action": {"type": "function", "module": module, "function": function},
                "transitions": [{"event": "success", "target": "end"}],
            },
            "end": {},
        },
        "s",
    )


async def _problem_paths(store: ProcedureStore, doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidProcedure) as info:
        await store.register(doc)
    return {problem.path: problem.message for problem in info.value.errors}


ACTION = "$.definition.states.s.action"


@pytest.mark.parametrize(
    ("submodule", "function"),
    [("__main__", "main"), ("__init__", "setup"), ("_private", "work")],
)
async def test_a_private_or_dunder_module_is_refused_without_importing_it(
    package: Package, submodule: str, function: str
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])

    problems = await _problem_paths(store, _doc(f"{package.name}.{submodule}", function))

    assert f"{ACTION}.module" in problems
    assert package.imported() == []


async def test_registering_a_function_of_an_allowed_module_runs_none_of_its_code(
    package: Package,
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])

    await store.register(_doc(f"{package.name}.script", "work"))

    assert package.imported() == []


async def test_a_function_the_module_does_not_define_is_refused_without_importing_it(
    package: Package,
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])

    problems = await _problem_paths(store, _doc(f"{package.name}.script", "missing"))

    assert "defines no public function 'missing'" in problems[f"{ACTION}.function"]
    assert package.imported() == []


async def test_a_function_of_the_allowed_package_itself_is_checked_without_importing_it(
    package: Package,
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])

    await store.register(_doc(package.name, "setup"))

    assert package.imported() == []


@pytest.mark.parametrize("submodule", ["reexport", "rebound"])
async def test_a_name_not_bound_to_a_def_of_the_module_is_refused(
    package: Package, submodule: str
) -> None:
    # reexport imports getoutput from subprocess; rebound defines work, then rebinds it.
    function = "getoutput" if submodule == "reexport" else "work"
    store = ProcedureStore(allowed_modules=[package.name])

    problems = await _problem_paths(store, _doc(f"{package.name}.{submodule}", function))

    assert f"{ACTION}.function" in problems
    assert package.imported() == []


async def test_a_module_with_a_syntax_error_is_a_problem_on_the_module_field(
    package: Package,
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])

    problems = await _problem_paths(store, _doc(f"{package.name}.broken", "work"))

    assert "cannot be parsed" in problems[f"{ACTION}.module"]
    assert "line 1" in problems[f"{ACTION}.module"]


async def test_a_module_that_does_not_exist_is_a_problem_on_the_module_field(
    package: Package,
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])

    problems = await _problem_paths(store, _doc(f"{package.name}.nowhere", "work"))

    assert "no module named" in problems[f"{ACTION}.module"]


async def test_the_module_is_imported_when_the_action_runs(package: Package) -> None:
    store = ProcedureStore(allowed_modules=[package.name])
    await store.register(_doc(f"{package.name}.script", "work"))

    execution = await within(store.start("p", "1.0", {}, auto=True))
    final = await within(execution.run_to_completion(timeout=2.0))

    assert final.status == Status.COMPLETED
    [attempt] = records(final.history, "action", state="s")
    assert attempt.result == "worked"
    assert package.imported() == [package.name, f"{package.name}.script"]


async def test_a_module_that_fails_to_import_fails_the_attempt_with_a_clear_error(
    package: Package,
) -> None:
    store = ProcedureStore(allowed_modules=[package.name])
    await store.register(_doc(f"{package.name}.raises", "work"))

    execution = await within(store.start("p", "1.0", {}, auto=True))
    final = await within(execution.run_to_completion(timeout=2.0))

    assert final.status == Status.FAILED
    [attempt] = records(final.history, "action", state="s")
    assert attempt.error is not None
    assert f"cannot import module '{package.name}.raises'" in attempt.error.message
    assert "RuntimeError: boom at import" in attempt.error.message


# -- modules allowed by file ------------------------------------------------------------------


async def test_a_module_allowed_by_file_is_refused_when_its_name_imports_another_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty subprocess.py does not make the standard library's subprocess callable.
    local = tmp_path / "subprocess.py"
    local.write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # even first on sys.path: already imported
    store = ProcedureStore(allowed_module_files=[local])

    problems = await _problem_paths(store, _doc("subprocess", "getoutput"))

    assert "allowed only as the file" in problems[f"{ACTION}.module"]


async def test_a_module_allowed_by_file_runs_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"local_{uuid.uuid4().hex}"
    local = tmp_path / f"{name}.py"
    local.write_text("def work(context):\n    return 'local'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)  # undone after the test
    store = ProcedureStore(allowed_module_files=[local])
    await store.register(_doc(name, "work"))

    execution = await within(store.start("p", "1.0", {}, auto=True))
    final = await within(execution.run_to_completion(timeout=2.0))

    assert final.status == Status.COMPLETED
    assert sys.modules[name].__file__ == str(local)


async def test_a_module_allowed_by_file_is_not_imported_from_another_file_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"local_{uuid.uuid4().hex}"
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    local = allowed / f"{name}.py"
    local.write_text("def work(context):\n    return 'local'\n", encoding="utf-8")
    marker = tmp_path / "other-ran.txt"
    (other / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef work(context):\n    return 'other'\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(allowed))
    monkeypatch.delitem(sys.modules, name, raising=False)
    store = ProcedureStore(allowed_module_files=[local])
    await store.register(_doc(name, "work"))
    monkeypatch.syspath_prepend(str(other))  # now the name answers to another file

    execution = await within(store.start("p", "1.0", {}, auto=True))
    final = await within(execution.run_to_completion(timeout=2.0))

    assert final.status == Status.FAILED
    [attempt] = records(final.history, "action", state="s")
    assert attempt.error is not None
    assert "allowed only as the file" in attempt.error.message
    assert not marker.exists()
