"""What the validation report was generated from, and whether this checkout still matches it.

``perf/report.py`` ends ``docs/validation.md`` with a record of its inputs, in an HTML comment
(invisible on the site): the commit, the mode (full or ``--quick``), a SHA-256 of each script
that produces the report's figures (``INPUT_FILES``), and the node id of every test that passed
in each criterion's pytest run. Regenerating the report takes minutes (the full benchmark), so
CI checks it instead (``make check-report``, which runs this file)::

    .venv/bin/python perf/report_inputs.py --check docs/validation.md [--results pytest.xml]

The report is **stale**, and the check exits 1 naming why, when:

- it has no record (written by an older ``perf/report.py``), or was a ``--quick`` run;
- one of ``INPUT_FILES`` changed since (the report's generator or a benchmark it quotes);
- a test it counted no longer exists (removed or renamed: a criterion lost a test);
- with ``--results`` (the JUnit XML of the test run of the same CI job), a test it counted did
  not pass in that run (failed, errored, skipped or not run).

Anything else does not make it stale, so unrelated commits never fail the check: a change to
procstore itself (the report says which commit it measured), and tests added since to the
files the criteria ran (the check prints how many, a reason to regenerate the report some
time; new test files are not seen).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The scripts whose output the report is made of: a change to one makes the report stale.
INPUT_FILES = ("perf/report.py", "perf/bench_procstore.py", "perf/bench_persistence.py")

_START = "<!-- report inputs:"
_RECORD = re.compile(re.escape(_START) + r"[^\n]*\n(?P<json>.*?)\n-->", re.DOTALL)
COLLECT_TIMEOUT = 120.0  # seconds for `pytest --collect-only` of the whole suite


@dataclass
class Record:
    """The inputs of one report, as recorded at its end."""

    commit: str
    mode: str  # "full" or "quick"
    inputs: dict[str, str]  # path -> SHA-256 of its content
    tests: dict[str, list[str]] = field(default_factory=dict)  # criterion -> passed node ids


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def input_digests(root: Path = ROOT) -> dict[str, str]:
    """The SHA-256 of each of ``INPUT_FILES`` as they are now ("absent" for a missing one)."""
    return {
        name: digest(root / name) if (root / name).is_file() else "absent" for name in INPUT_FILES
    }


def render(record: Record) -> str:
    """The HTML comment that ends the report: one JSON value per line, so a regenerated report's
    diff shows the tests that came and went."""
    body = json.dumps(
        {
            "commit": record.commit,
            "mode": record.mode,
            "inputs": record.inputs,
            "tests": {k: sorted(v) for k, v in record.tests.items()},
        },
        indent=1,
        ensure_ascii=False,
    )
    body = body.replace("--", "-\\u002d")  # no "--" (let alone "-->") inside an HTML comment
    return f"{_START} what `make check-report` compares with the checkout; do not edit\n{body}\n-->"


def read(text: str) -> Record | None:
    """The record at the end of a report's text, or None if it has none (or a malformed one)."""
    match = _RECORD.search(text)
    if not match:
        return None
    try:
        data = json.loads(match["json"])
        return Record(
            commit=str(data["commit"]),
            mode=str(data["mode"]),
            inputs={str(k): str(v) for k, v in data["inputs"].items()},
            tests={str(k): [str(t) for t in v] for k, v in data["tests"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class Verdict:
    problems: list[str]  # why the report is stale (none: it is current)
    notes: list[str]  # what changed without making it stale


def judge(
    record: Record | None,
    digests: Mapping[str, str],
    collected: Iterable[str],
    passed: Iterable[str] | None = None,
) -> Verdict:
    """Whether a report with ``record`` still describes a checkout whose ``INPUT_FILES`` have
    ``digests`` and whose test suite collects ``collected``; ``passed``, if given, are the tests
    that passed in this run."""
    if record is None:
        return Verdict(["it has no record of its inputs (an older perf/report.py wrote it)"], [])
    problems: list[str] = []
    if record.mode != "full":
        problems.append(f"it was a --{record.mode} run; the committed report must be a full run")
    for name in sorted(set(digests) | set(record.inputs)):
        if record.inputs.get(name) != digests.get(name):
            problems.append(f"{name} changed since the report was generated")
    now = set(collected)
    ok = None if passed is None else set(passed)
    counted: set[str] = set()
    for criterion, tests in record.tests.items():
        counted |= set(tests)
        gone = sorted(t for t in tests if t not in now)
        problems += [f"criterion {criterion}: {t} no longer exists" for t in gone]
        if ok is not None:
            failed = sorted(t for t in tests if t in now and t not in ok)
            problems += [f"criterion {criterion}: {t} did not pass in this run" for t in failed]
    files = {t.split("::")[0] for t in counted}
    added = sum(1 for t in now - counted if t.split("::")[0] in files)
    notes = [f"{added} tests were added since to the files the criteria ran (not counted)"]
    return Verdict(problems, notes if added else [])


def collect(root: Path = ROOT) -> list[str]:
    """The node ids of every test the suite collects now."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=COLLECT_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pytest --collect-only exited {proc.returncode}:\n{proc.stdout}")
    return [line.strip() for line in proc.stdout.splitlines() if "::" in line]


def passed_in(junit_xml: Path, root: Path = ROOT) -> set[str]:
    """The node ids of the tests that passed, from pytest's ``--junitxml`` file.

    pytest writes a test ``tests/test_a.py::TestB::test_c[x]`` as ``classname="tests.test_a.
    TestB"`` and ``name="test_c[x]"``; the node id is rebuilt from the module's file, found by
    the longest prefix of the dotted class name that names a file under ``root``."""
    passed: set[str] = set()
    for case in ET.parse(junit_xml).iter("testcase"):
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        parts = case.get("classname", "").split(".")
        for cut in range(len(parts), 0, -1):
            path = "/".join(parts[:cut]) + ".py"
            if (root / path).is_file():
                passed.add("::".join([path, *parts[cut:], case.get("name", "")]))
                break
    return passed


def commits_since(commit: str) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-list", "--count", f"{commit}..HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{out} commits ago"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--check", type=Path, required=True, metavar="REPORT", help="the report")
    ap.add_argument(
        "--results",
        type=Path,
        help="pytest --junitxml output of this run: every test the report counted must pass",
    )
    args = ap.parse_args(argv)
    record = read(args.check.read_text(encoding="utf-8"))
    passed = passed_in(args.results) if args.results else None
    verdict = judge(record, input_digests(), collect(), passed)
    for note in verdict.notes:
        print(f"{args.check}: note: {note}")
    if verdict.problems:
        for problem in verdict.problems:
            print(f"{args.check}: stale: {problem}", file=sys.stderr)
        print(
            f"{args.check} is out of date: run `make report` (a few minutes) and commit it",
            file=sys.stderr,
        )
        return 1
    assert record is not None
    counted = sum(len(t) for t in record.tests.values())
    when = commits_since(record.commit)
    print(
        f"{args.check}: up to date: its {counted} tests still exist"
        + (" and passed in this run" if passed is not None else "")
        + f"; generated at {record.commit[:12]}{f', {when}' if when else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
