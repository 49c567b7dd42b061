"""SPEC-007 validation report: run the acceptance criteria and write docs/validation.md.

Run from the repository root (``make report`` does)::

    .venv/bin/python perf/report.py --out docs/validation.md
    .venv/bin/python perf/report.py --quick --out /tmp/validation.md   # benchmark smoke sizes

Every criterion is measured for real on this machine, now: the test groups run under pytest in
a subprocess (their "N passed, M failed" summary line is parsed) and the benchmarks come from
``perf/bench_procstore.py --json``. The page written is generated output: it carries a "do not
edit" banner and is rewritten by every run.

The page ends with a record of what it was generated from (``perf/report_inputs.py``): the
scripts that make its figures and every test each criterion counted. ``make check-report``
compares that record with the checkout, so CI notices a stale report without regenerating it.

The exit code is 0 when every required criterion (SPEC-007 "Must Pass") passes, 1 otherwise;
the page is written either way. Optional criteria (persistence, distribution, diagram export)
are reported but never change the exit code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import report_inputs  # perf/report_inputs.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DOCS = ROOT / "docs"

PYTEST_TIMEOUT = 240.0  # seconds allowed to one pytest group
BENCH_TIMEOUT = 240.0  # seconds allowed to perf/bench_procstore.py
PERSISTENCE_BENCH_TIMEOUT = 60.0  # seconds allowed to perf/bench_persistence.py --quick

PASS, FAIL, WARN = "PASS", "FAIL", "⚠️"


# --------------------------------------------------------------------------- results


@dataclass
class Criterion:
    ident: str  # "1", "3a", ...
    name: str
    measured_how: str
    figure: str
    target: str
    status: str  # PASS, FAIL or WARN
    required: bool
    detail: str = ""  # one line for the recommendation when the criterion is not PASS


@dataclass
class TestRun:
    files: list[str]
    missing: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    returncode: int | None = None
    seconds: float = 0.0
    summary: str = ""
    failures: list[str] = field(default_factory=list)  # the "FAILED ..." / "ERROR ..." lines
    passed_ids: list[str] = field(default_factory=list)  # node ids of the tests that passed
    error: str = ""  # timed out, could not run, no summary line

    @property
    def passed(self) -> int:
        return self.counts.get("passed", 0)

    @property
    def bad(self) -> int:
        return self.counts.get("failed", 0) + self.counts.get("error", 0)

    @property
    def ok(self) -> bool:
        return not self.error and self.returncode == 0 and self.passed > 0 and self.bad == 0

    def figure(self) -> str:
        if self.error:
            return self.error
        total = self.passed + self.bad
        text = f"{self.passed}/{total} passed"
        extra = [
            f"{self.counts[k]} {k}"
            for k in ("failed", "error", "skipped", "xfailed", "xpassed")
            if self.counts.get(k)
        ]
        if extra:
            text += " (" + ", ".join(extra) + ")"
        return text


@dataclass
class Step:
    what: str
    seconds: float


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no raw '<', no newlines)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def code_list(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} with uncommitted changes" if dirty else head


def git_commit() -> str:
    """The full hash of HEAD, for the report's record of its inputs ("unknown" outside git)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def test_files(*patterns: str, exclude: Sequence[str] = ()) -> list[str]:
    """Test files whose names match the glob patterns, in tests/ or one of its area folders
    (tests/runtime/, tests/storage/, ...), as paths relative to the repository root."""
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in TESTS.rglob(pattern) if p.is_file() and p.name not in exclude)
    return sorted(str(p.relative_to(ROOT)) for p in found)


def find_test(name: str) -> str | None:
    """The test file called ``name`` (its path from the repository root), wherever it is in
    tests/; None if there is none."""
    found = test_files(name)
    return found[0] if found else None


# --------------------------------------------------------------------------- pytest

_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")
_SUMMARY = re.compile(r"\bin [\d.]+s\b")


def parse_summary(output: str) -> tuple[str, dict[str, int]]:
    """The last pytest summary line ("3 failed, 187 passed in 6.5s") and its counts."""
    for line in reversed(output.splitlines()):
        text = line.strip().strip("=").strip()
        if not _SUMMARY.search(text):
            continue
        counts: dict[str, int] = {}
        for number, kind in _COUNT.findall(text):
            key = "error" if kind.startswith("error") else kind
            counts[key] = counts.get(key, 0) + int(number)
        if counts or "no tests ran" in text:
            return text, counts
    return "", {}


def run_pytest(files: list[str], missing: Sequence[str] = ()) -> TestRun:
    run = TestRun(files=files, missing=list(missing))
    if not files:
        run.error = "no test files present"
        return run
    # -rA lists every test with its outcome ("PASSED tests/test_a.py::test_b"): the report
    # records the ones that passed, for `make check-report`.
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *files]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=PYTEST_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        run.seconds = time.perf_counter() - t0
        run.error = f"timed out after {PYTEST_TIMEOUT:.0f} s"
        return run
    run.seconds = time.perf_counter() - t0
    run.returncode = proc.returncode
    output = proc.stdout + "\n" + proc.stderr
    run.summary, run.counts = parse_summary(output)
    run.failures = [
        line.strip() for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))
    ]
    run.passed_ids = [
        line.removeprefix("PASSED ").strip()
        for line in output.splitlines()
        if line.startswith("PASSED ")
    ]
    if not run.summary:
        run.error = f"pytest exited {proc.returncode} without a summary line"
    elif run.passed == 0 and run.bad == 0:
        run.error = "no tests ran"
    return run


def tests_criterion(
    ident: str,
    name: str,
    run: TestRun,
    target: str,
    *,
    required: bool = True,
) -> Criterion:
    how = f"pytest: {code_list(Path(f).name for f in run.files)}" if run.files else "pytest"
    if run.missing:
        how += f"; missing: {code_list(Path(f).name for f in run.missing)}"
    ok = run.ok and not (required and run.missing)
    figure = run.figure()
    if run.seconds:
        figure += f" in {run.seconds:.1f} s"
    detail = ""
    if not ok:
        reasons = []
        if run.error:
            reasons.append(run.error)
        elif run.bad:
            bad = [
                f"{run.counts[k]} {label}"
                for k, label in (("failed", "failed"), ("error", "errors"))
                if run.counts.get(k)
            ]
            reasons.append(f"{', '.join(bad)} of {run.passed + run.bad} tests")
        if required and run.missing:
            reasons.append("missing " + ", ".join(Path(f).name for f in run.missing))
        detail = "; ".join(reasons)
    return Criterion(ident, name, how, figure, target, PASS if ok else FAIL, required, detail)


# --------------------------------------------------------------------------- benchmarks


def run_bench_script(script: Path, quick: bool, timeout: float) -> tuple[Any, str, float]:
    """Run a benchmark script with --json; its JSON, an error message ('' when fine), seconds."""
    with tempfile.TemporaryDirectory(prefix="procstore-report-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(script.relative_to(ROOT)), "--json", str(out)]
        if quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        try:
            # stderr (the scripts' progress lines) goes straight to ours; stdout is the table.
            proc = subprocess.run(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return [], f"timed out after {timeout:.0f} s", time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            return [], f"exited {proc.returncode}", seconds
        try:
            return json.loads(out.read_text(encoding="utf-8")), "", seconds
        except (OSError, ValueError) as exc:
            return [], f"no JSON output ({type(exc).__name__})", seconds


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.2f}x"
    if v >= 100:
        return f"{v:,.0f} {unit}"
    if v >= 10:
        return f"{v:.1f} {unit}"
    if v >= 1:
        return f"{v:.2f} {unit}"
    return f"{v:.3f} {unit}"


def row_result(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "ERROR"
    passed = row.get("passed")
    return "info" if passed is None else (PASS if passed else FAIL)


def bench_figure(row: dict[str, Any]) -> str:
    """'0.250 ms (bare AsyncMachine 0.015 ms: 16.73x)'."""
    if row.get("error"):
        return f"error: {row['error']}"
    unit = str(row.get("unit", ""))
    text = fmt_value(row.get("value"), unit)
    if row.get("baseline") is not None:
        ratio = row.get("ratio")
        text += f" (bare AsyncMachine {fmt_value(row['baseline'], unit)}"
        text += f": {ratio:.2f}x)" if ratio is not None else ")"
    return text


def bench_criterion(
    ident: str,
    name: str,
    rows: dict[str, dict[str, Any]],
    key: str,
    target: str,
    bench_error: str,
    *,
    extra: str = "",
    completion_figure: bool = False,
) -> Criterion:
    row = rows.get(key)
    if row is None:
        why = bench_error or f"row `{key}` missing from the benchmark output"
        how = "`perf/bench_procstore.py`"
        return Criterion(ident, name, how, f"not measured: {why}", target, FAIL, True, why)
    how = f"`perf/bench_procstore.py` row “{row.get('name', key)}”"
    figure = bench_figure(row)
    if completion_figure and not row.get("error"):
        figure = f"{completion(row)} completed; wall {figure}"
    elif row.get("note"):
        figure += f"; {row['note']}"
    if extra:
        figure += f"; {extra}"
    ok = row.get("passed") is True and not row.get("error")
    detail = "" if ok else f"{row.get('name', key)}: {figure}"
    return Criterion(ident, name, how, figure, target, PASS if ok else FAIL, True, detail)


def concurrent_sizes(rows: dict[str, dict[str, Any]]) -> list[int]:
    sizes = []
    for key in rows:
        m = re.fullmatch(r"concurrent_(\d+)", key)
        if m:
            sizes.append(int(m.group(1)))
    return sorted(sizes)


def completion(row: dict[str, Any]) -> str:
    """'1000/1000' from the row's note 'completed 1000/1000 (bare ...)'."""
    m = re.search(r"completed (\d+/\d+)", str(row.get("note", "")))
    return m.group(1) if m else "?"


# --------------------------------------------------------------------------- optional items


def persistence_criterion(steps: list[Step], runs: dict[str, TestRun]) -> Criterion:
    name = "State persistence across restarts"
    target = "executions survive a restart of the process"
    wanted = [
        "test_backend_contract.py",
        "test_storage_sqlite.py",
        "test_durability.py",
        "test_crash_recovery.py",
    ]
    present = [path for n in wanted if (path := find_test(n))]
    absent = [n for n in wanted if not find_test(n)]
    if not present:
        return Criterion(
            "6a",
            name,
            f"pytest: {code_list(wanted)}",
            "not measured: no persistence test file present",
            target,
            WARN,
            False,
            "not measured (no persistence tests present)",
        )
    log(f"[6a] persistence: pytest {' '.join(present)}")
    run = run_pytest(present)
    steps.append(Step(f"pytest (persistence): {len(present)} files", run.seconds))
    log(f"     {run.figure()} ({run.seconds:.1f} s)")
    runs["6a"] = run
    crit = tests_criterion("6a", name, run, target, required=False)
    notes = [f"`{n}`: not measured (file absent)" for n in absent]

    bench = ROOT / "perf" / "bench_persistence.py"
    if bench.is_file():
        # Always at smoke sizes: the full run takes minutes and has no targets; here it shows
        # that a reopened SQLite store recovers unfinished executions, and how fast.
        log("[6a] persistence benchmark: perf/bench_persistence.py --quick")
        data, err, secs = run_bench_script(bench, True, PERSISTENCE_BENCH_TIMEOUT)
        steps.append(Step("perf/bench_persistence.py --quick", secs))
        crit.measured_how += "; `perf/bench_persistence.py --quick` (no targets)"
        notes.append(persistence_bench_summary(data) if not err else f"benchmark: {err}")
    if notes:
        crit.figure += "; " + "; ".join(notes)
    return crit


def persistence_bench_summary(data: Any) -> str:
    """'recovered 500 waiting for an event in 0.40 s after reopening; ...' from its JSON."""
    try:
        parts = [
            f"{r['count']:,} executions {r['kind']} recovered in "
            f"{r['open_seconds'] + r['recover_seconds']:.2f} s after reopening"
            for r in data["recovery"]
        ]
        memory = {
            t["shape"]: t["per_second"] for t in data["throughput"] if t["backend"] == "memory"
        }
        parts += [
            f"{t['shape']} persisted transitions {t['per_second']:,.0f}/s "
            f"(SQLite NORMAL, {t['per_second'] / memory[t['shape']]:.2f}x in-memory)"
            for t in data["throughput"]
            if t["backend"] == "NORMAL" and memory.get(t["shape"])
        ]
    except (KeyError, TypeError, ZeroDivisionError):
        return "benchmark ran; its JSON was not understood"
    return "benchmark (smoke sizes): " + ", ".join(parts) if parts else "benchmark: no figures"


#: The tests of several worker processes sharing one PostgreSQL database (criterion 6b). Their
#: ``postgres_url`` fixture starts a throwaway server when PROCSTORE_TEST_POSTGRES is not set.
DISTRIBUTED_TESTS = ("test_postgres_workers.py", "test_worker_takeover.py")


def distributed_criterion(steps: list[Step], runs: dict[str, TestRun]) -> Criterion:
    name = "Distributed procedure execution"
    target = "executions shared by several processes"
    present = [path for n in DISTRIBUTED_TESTS if (path := find_test(n))]
    absent = [n for n in DISTRIBUTED_TESTS if not find_test(n)]
    if not present:
        return Criterion(
            "6b",
            name,
            f"pytest: {code_list(DISTRIBUTED_TESTS)}",
            "not measured: no PostgreSQL worker test file present",
            target,
            WARN,
            False,
            "not measured (no PostgreSQL worker tests present)",
        )
    log(f"[6b] distributed: pytest {' '.join(present)}")
    run = run_pytest(present, absent)
    steps.append(Step(f"pytest (PostgreSQL workers): {len(present)} files", run.seconds))
    log(f"     {run.figure()} ({run.seconds:.1f} s)")
    runs["6b"] = run
    crit = tests_criterion("6b", name, run, target, required=False)
    crit.figure += "; PostgreSQL workers claim, lease and take over executions (docs/scaling.md)"
    return crit


def diagrams_criterion(steps: list[Step], runs: dict[str, TestRun]) -> Criterion:
    name = "Visual state diagram export"
    target = "procedures export as DOT/SVG/PNG/Mermaid"
    diagram_tests = find_test("test_diagrams.py")
    if not diagram_tests:
        return Criterion(
            "6c",
            name,
            "pytest: `test_diagrams.py`",
            "not measured: `tests/diagrams/test_diagrams.py` absent",
            target,
            WARN,
            False,
            "not measured (no diagram tests present)",
        )
    log(f"[6c] diagrams: pytest {diagram_tests}")
    run = run_pytest([diagram_tests])
    steps.append(Step("pytest (diagrams): 1 file", run.seconds))
    log(f"     {run.figure()} ({run.seconds:.1f} s)")
    runs["6c"] = run
    return tests_criterion("6c", name, run, target, required=False)


# --------------------------------------------------------------------------- the page


def recommendation(criteria: list[Criterion], quick: bool, other_misses: Sequence[str] = ()) -> str:
    required = [c for c in criteria if c.required]
    failed = [c for c in required if c.status != PASS]
    groups = sorted({c.ident.rstrip("abcdefgh") for c in required}, key=int)
    optional = [c for c in criteria if not c.required]
    distributed = next((c for c in optional if c.ident == "6b"), None)
    single = distributed is not None and distributed.status != PASS

    def opt_phrase(c: Criterion) -> str:
        label = c.name[:1].lower() + c.name[1:]
        if c.status == PASS:
            return f"{label}: measured, passes"
        if c.status == FAIL:
            return f"{label}: measured, **fails** ({c.detail})"
        return f"{label}: {c.detail}"

    parts: list[str] = []
    if failed:
        parts.append(
            f"**Not production ready**: {len(failed)} of the {len(required)} required rows "
            f"(criteria {groups[0]} to {groups[-1]}) fail: "
            + "; ".join(f"{c.ident} {c.name} ({c.detail or c.figure})" for c in failed)
            + "."
        )
        parts.append("Fix these and run `make report` again.")
    else:
        scope = " for single-process deployments" if single else ""
        parts.append(
            f"**Production ready{scope}**: all {len(groups)} required criteria of SPEC-007 pass "
            f"({len(required)} measured rows)."
        )
    if optional:
        parts.append("Optional for v1: " + "; ".join(opt_phrase(c) for c in optional) + ".")
    if other_misses:
        parts.append(
            "Benchmark targets outside SPEC-007 (engine design targets) missed in this run: "
            + "; ".join(other_misses)
            + "."
        )
    if quick:
        parts.append(
            "This was a `--quick` run: the benchmarks ran at smoke sizes, so their figures "
            "do not establish the targets; run `make report` for the full sizes."
        )
    return " ".join(parts)


def render(
    criteria: list[Criterion],
    bench_rows: list[dict[str, Any]],
    bench_error: str,
    steps: list[Step],
    unassigned: list[str],
    failures: dict[str, list[str]],
    other_misses: list[str],
    quick: bool,
    started: dt.datetime,
    total: float,
) -> str:
    date = started.strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (benchmark smoke sizes)" if quick else "full"
    lines = [
        f"<!-- generated by make report on {date}; do not edit -->",
        "",
        "# Validation report",
        "",
        f"*Generated by `make report` (`perf/report.py`) on {date}; do not edit: "
        "run `make report` again to refresh it.*",
        "",
        'SPEC-007 asks for a validation report "with pass/fail status and recommendation". '
        "Each row below is one of its acceptance criteria, measured on the machine and at the "
        "time shown: the test groups ran under pytest and the benchmarks came from "
        "`perf/bench_procstore.py` (see [Performance](performance.md) for what each benchmark "
        'row measures). Criteria 1 to 5 are SPEC-007\'s "Must Pass" list; 6a to 6c are '
        "optional for v1 and marked ⚠️ when not available.",
        "",
        "The page's source ends with a record of what it was generated from: the scripts that "
        "produce it and every test each criterion counted. CI's `make check-report` fails "
        "when one of those scripts changed or one of those tests no longer exists or did not "
        "pass, until `make report` is run again.",
        "",
        "## Run",
        "",
        f"- Date: {date}",
        f"- Machine: {cell(platform.platform())}, {os.cpu_count()} CPUs",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"procstore {version_of('procstore')}, transitions {version_of('transitions')}, "
        f"pydantic {version_of('pydantic')}",
        f"- Source: git {git_revision()}",
        f"- Mode: {mode}; total {total:.0f} s",
        "",
        "## Acceptance criteria",
        "",
        "| # | Criterion | How measured | Measured | Target | Result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in criteria:
        name = c.name if c.required else f"{c.name} (optional)"
        result = {PASS: "✅ PASS", FAIL: "❌ FAIL"}.get(c.status, f"⚠️ {c.detail.split(' (')[0]}")
        lines.append(
            f"| {c.ident} | {cell(name)} | {cell_md(c.measured_how)} "
            f"| {cell_md(c.figure)} | {cell(c.target)} | {result} |"
        )
    lines += ["", "## Recommendation", "", recommendation(criteria, quick, other_misses), ""]

    failing = {k: v for k, v in failures.items() if v}
    if failing:
        lines += ["## Failing tests", ""]
        names_of = {c.ident: c.name for c in criteria}
        for group, names in failing.items():
            lines.append(f"- {group} {cell(names_of.get(group, ''))}:")
            for name in names[:20]:
                quoted = name.replace("`", "'")
                lines.append(f"    - `{quoted}`")
            if len(names) > 20:
                lines.append(f"    - and {len(names) - 20} more")
        lines.append("")

    lines += ["## Benchmark rows", ""]
    if bench_rows:
        lines += [
            "Every row of `perf/bench_procstore.py"
            + (" --quick" if quick else "")
            + "`, each figure the median of its repeats; the ratio is procstore / bare "
            "`AsyncMachine` in the same run.",
            "",
            "| Benchmark | procstore | bare AsyncMachine | Ratio | Target | Result |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for r in bench_rows:
            unit = str(r.get("unit", ""))
            ratio = r.get("ratio")
            lines.append(
                f"| {cell(str(r.get('name', r.get('key', '?'))))} "
                f"| {cell(fmt_value(r.get('value'), unit))} "
                f"| {cell(fmt_value(r.get('baseline'), unit))} "
                f"| {'-' if ratio is None else f'{ratio:.2f}x'} "
                f"| {cell(str(r.get('target') or '-'))} | {row_result(r)} |"
            )
    else:
        lines.append(f"The benchmark did not produce rows: {cell(bench_error or 'no output')}.")
    lines += ["", "## Timings", "", "| Step | Seconds |", "| --- | ---: |"]
    for s in steps:
        lines.append(f"| {cell(s.what)} | {s.seconds:.1f} |")
    lines.append(f"| total | {total:.1f} |")
    lines.append("")
    if unassigned:
        lines += [
            "Test files not part of any criterion above (they run in `make test`): "
            + code_list(unassigned)
            + ".",
            "",
        ]
    return "\n".join(lines)


def cell_md(text: str) -> str:
    """Like cell(), but keeps Markdown links and code spans (text we wrote ourselves)."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--out", default="docs/validation.md", help="page to write (default: docs/validation.md)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="pass --quick to the benchmarks (smoke sizes: the figures do not prove the targets)",
    )
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    steps: list[Step] = []
    criteria: list[Criterion] = []
    runs: dict[str, TestRun] = {}

    # --- test groups of the required criteria
    fsm = test_files(
        "test_spec_*.py",
        "test_execution.py",
        "test_guards*.py",
        "test_statechart_*.py",
        exclude=("test_statechart_resilience.py", "test_statechart_validation.py"),
    )
    fsm_required = ["test_spec_correctness.py", "test_execution.py", "test_guards.py"]
    errors_req = [
        "test_retry.py",
        "test_timeouts.py",
        "test_compensation.py",
        "test_cancellation.py",
    ]
    errors = test_files(*errors_req, "test_error*.py", "test_statechart_resilience.py")
    valid_req = ["test_validation.py", "test_statechart_validation.py", "test_guard_security.py"]
    valid = test_files(*valid_req)
    groups = [
        (
            "1",
            "FSM correctness: all state transitions work as defined",
            fsm,
            fsm_required,
            "all tests pass",
        ),
        (
            "2",
            "Error handling: errors transition to error states properly",
            errors,
            errors_req,
            "all tests pass",
        ),
        (
            "5",
            "Validation: invalid procedures rejected",
            valid,
            valid_req,
            "all tests pass",
        ),
    ]
    by_ident: dict[str, Criterion] = {}
    for ident, name, files, required_names, target in groups:
        missing = [f"tests/{n}" for n in required_names if not find_test(n)]
        log(f"[{ident}] {name.split(':')[0]}: pytest {len(files)} files")
        run = run_pytest(files, missing)
        steps.append(Step(f"pytest (criterion {ident}): {len(files)} files", run.seconds))
        log(f"     {run.figure()} ({run.seconds:.1f} s)")
        runs[ident] = run
        by_ident[ident] = tests_criterion(ident, name, run, target)

    # --- benchmarks
    script = ROOT / "perf" / "bench_procstore.py"
    log(f"[3/4] benchmarks: perf/bench_procstore.py{' --quick' if args.quick else ''}")
    if script.is_file():
        rows_list, bench_error, secs = run_bench_script(script, args.quick, BENCH_TIMEOUT)
        if not bench_error and not (
            isinstance(rows_list, list) and all(isinstance(r, dict) for r in rows_list)
        ):
            rows_list, bench_error = [], "JSON output is not a list of rows"
    else:
        rows_list, bench_error, secs = [], "perf/bench_procstore.py absent", 0.0
    steps.append(Step("perf/bench_procstore.py" + (" --quick" if args.quick else ""), secs))
    log(f"     {len(rows_list)} rows ({secs:.1f} s){f': {bench_error}' if bench_error else ''}")
    rows = {str(r.get("key")): r for r in rows_list}

    perf = [
        bench_criterion(
            "3a",
            "Performance: procedure load (SPEC: load 100 procedures)",
            rows,
            "load",
            "< 10 ms per load",
            bench_error,
        ),
        bench_criterion(
            "3b",
            "Performance: state transition (SPEC: 1000 transitions)",
            rows,
            "send_reset",
            "< 5 ms per transition",
            bench_error,
            extra=(
                f"send alone {bench_figure(rows['send'])}"
                if "send" in rows and not rows["send"].get("error")
                else ""
            ),
        ),
        bench_criterion(
            "3c",
            "Performance: full procedure, 5 states (SPEC: end-to-end execution)",
            rows,
            "full",
            "< 100 ms per execution",
            bench_error,
        ),
        bench_criterion(
            "3d",
            "Performance: concurrent procedures (SPEC: 10 parallel)",
            rows,
            "concurrent_10",
            "10 parallel, no deadlock",
            bench_error,
        ),
        bench_criterion(
            "3e",
            "Performance: per-transition cost against bare AsyncMachine",
            rows,
            "per_transition",
            "≤ 2x bare AsyncMachine",
            bench_error,
        ),
    ]
    sizes = [n for n in concurrent_sizes(rows) if n > 10]
    largest = sizes[-1] if sizes else 1000
    conc = [
        bench_criterion(
            "4a",
            "Concurrency: 10 parallel procedures without issues",
            rows,
            "concurrent_10",
            "all 10 complete, no error or timeout",
            bench_error,
            completion_figure=True,
        ),
        bench_criterion(
            "4b",
            f"Concurrency: {largest} parallel procedures",
            rows,
            f"concurrent_{largest}",
            f"all {largest} complete" + (" (full run: 1000)" if largest != 1000 else ""),
            bench_error,
            completion_figure=True,
        ),
    ]

    # --- optional items
    persistence = persistence_criterion(steps, runs)
    distributed = distributed_criterion(steps, runs)
    diagrams = diagrams_criterion(steps, runs)

    criteria = [by_ident["1"], by_ident["2"], *perf, *conc, by_ident["5"]]
    criteria += [persistence, distributed, diagrams]

    assigned = {Path(f).name for _, _, files, _, _ in groups for f in files}
    assigned |= {"test_backend_contract.py", "test_storage_sqlite.py", "test_durability.py"}
    assigned |= {"test_crash_recovery.py", *DISTRIBUTED_TESTS}
    assigned |= {"test_diagrams.py"}
    unassigned = sorted(p.name for p in TESTS.rglob("test_*.py") if p.name not in assigned)

    judged = {"load", "send_reset", "full", "per_transition"}
    judged |= {k for k in rows if k.startswith("concurrent_")}
    other_misses = [
        f"{r.get('name', key)} ({bench_figure(r)}, target {r.get('target')})"
        for key, r in rows.items()
        if key not in judged and (r.get("passed") is False or r.get("error"))
    ]

    record = report_inputs.Record(
        commit=git_commit(),
        mode="quick" if args.quick else "full",
        inputs=report_inputs.input_digests(ROOT),
        tests={ident: run.passed_ids for ident, run in runs.items()},
    )
    total = time.perf_counter() - t_start
    page = render(
        criteria,
        rows_list,
        bench_error,
        steps,
        unassigned,
        {ident: run.failures for ident, run in runs.items()},
        other_misses,
        args.quick,
        started,
        total,
    )
    page += "\n" + report_inputs.render(record) + "\n"
    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")

    required_failed = [c for c in criteria if c.required and c.status != PASS]
    log("")
    for c in criteria:
        log(f"  {c.status:4}  {c.ident:3} {c.name}: {c.figure}")
    log("")
    log(recommendation(criteria, args.quick, other_misses).replace("**", ""))
    log(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({total:.0f} s)")
    return 1 if required_failed else 0


if __name__ == "__main__":
    sys.exit(main())
