"""docs/validation.md records what it was generated from, and a stale one is caught.

``perf/report.py`` takes minutes (the full benchmark), so CI does not regenerate the report: it
runs ``perf/report_inputs.py --check`` (``make check-report``), which compares the record at
the end of the page with the checkout. These tests give it records and checkouts that differ
in one way each.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "validation.md"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "perf" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


inputs = _load("report_inputs")

TESTS = {
    "1": ["tests/test_execution.py::test_a", "tests/test_guards.py::test_b[1-x]"],
    "5": ["tests/test_validation.py::TestC::test_d"],
}
ALL = [t for ts in TESTS.values() for t in ts]


def record(**changes: object) -> object:
    fields: dict[str, object] = {
        "commit": "0" * 40,
        "mode": "full",
        "inputs": inputs.input_digests(),
        "tests": {k: list(v) for k, v in TESTS.items()},
    }
    fields.update(changes)
    return inputs.Record(**fields)


def test_a_record_survives_the_page_it_ends() -> None:
    page = "# Validation report\n\nsome text\n\n" + inputs.render(record()) + "\n"
    assert inputs.read(page) == record()


def test_a_record_stays_one_html_comment_whatever_a_test_id_holds() -> None:
    odd = "tests/test_x.py::test_y[a-->b--c]"
    text = inputs.render(record(tests={"1": [odd]}))
    assert text.count("-->") == 1 and text.endswith("-->")
    assert "--" not in text.removeprefix("<!--").removesuffix("-->")
    assert inputs.read(text).tests == {"1": [odd]}


def test_a_report_whose_inputs_and_tests_are_unchanged_is_current() -> None:
    verdict = inputs.judge(record(), inputs.input_digests(), ALL, passed=ALL)
    assert verdict.problems == []


def test_a_report_without_a_record_is_stale() -> None:
    verdict = inputs.judge(inputs.read("# Validation report\n"), inputs.input_digests(), ALL)
    assert verdict.problems == ["it has no record of its inputs (an older perf/report.py wrote it)"]


def test_a_quick_report_is_stale() -> None:
    verdict = inputs.judge(record(mode="quick"), inputs.input_digests(), ALL)
    assert verdict.problems == ["it was a --quick run; the committed report must be a full run"]


@pytest.mark.parametrize("changed", inputs.INPUT_FILES)
def test_a_changed_generator_or_benchmark_makes_the_report_stale(changed: str) -> None:
    now = {**inputs.input_digests(), changed: "f" * 64}
    verdict = inputs.judge(record(), now, ALL)
    assert verdict.problems == [f"{changed} changed since the report was generated"]


def test_a_test_removed_since_the_report_makes_it_stale() -> None:
    collected = [t for t in ALL if t != "tests/test_guards.py::test_b[1-x]"]
    verdict = inputs.judge(record(), inputs.input_digests(), collected)
    assert verdict.problems == ["criterion 1: tests/test_guards.py::test_b[1-x] no longer exists"]


def test_a_counted_test_that_did_not_pass_in_this_run_makes_the_report_stale() -> None:
    passed = [t for t in ALL if t != "tests/test_validation.py::TestC::test_d"]
    verdict = inputs.judge(record(), inputs.input_digests(), ALL, passed=passed)
    assert verdict.problems == [
        "criterion 5: tests/test_validation.py::TestC::test_d did not pass in this run"
    ]


def test_tests_added_since_to_a_criterion_file_are_noted_without_making_it_stale() -> None:
    added = ["tests/test_guards.py::test_e", "tests/test_validation.py::test_f"]
    collected = [*ALL, *added, "tests/test_cli.py::test_in_no_criterion"]
    verdict = inputs.judge(record(), inputs.input_digests(), collected, passed=collected)
    assert verdict.problems == []
    assert verdict.notes == ["2 tests were added since to the files the criteria ran (not counted)"]


def test_the_tests_that_passed_are_read_from_pytest_junit_xml(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(
        "import pytest\n\n"
        "class TestGroup:\n"
        "    def test_in_a_class(self):\n        pass\n\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_param(n):\n    assert n == 1\n\n"
        "def test_skipped():\n    pytest.skip('no')\n",
        encoding="utf-8",
    )
    xml = tmp_path / "results.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert inputs.passed_in(xml, root=tmp_path) == {
        "tests/test_sample.py::TestGroup::test_in_a_class",
        "tests/test_sample.py::test_param[1]",
    }


def test_the_committed_report_has_a_record_of_a_full_run() -> None:
    committed = inputs.read(REPORT.read_text(encoding="utf-8"))
    assert committed is not None, f"{REPORT} has no record: run `make report`"
    assert committed.mode == "full"
    assert set(committed.tests) == {"1", "2", "5", "6a", "6b", "6c"}
