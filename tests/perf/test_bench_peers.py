"""perf/bench_peers.py runs procstore beside its peers; its ``--quick`` run is a smoke run.

The peers come with the ``bench`` extra, which the ``dev`` extra includes, so the quick run
measures every workload on every side here: a peer that fails to install or to run fails these
tests instead of leaving an empty row. The figures themselves are not asserted (a benchmark is a
report, and a shared machine's timings are noise at these sizes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "perf" / "bench_peers.py"

#: Only to detect a hang: the quick run takes about 15 s on an idle 2-core machine.
QUICK_RUN_TIMEOUT_S = 300

#: Every workload's sides, by the row keys --json writes.
EXPECTED_SIDES = {
    "transition_us": {"procstore", "stock", "python-statemachine", "sismic"},
    "concurrent_send_s": {"procstore", "stock", "python-statemachine"},
    "concurrent_send_rss": {"procstore", "stock", "python-statemachine"},
    "concurrent_auto_s": {"procstore", "stock"},
    "concurrent_auto_rss": {"procstore", "stock"},
    "waiting_bytes": {"procstore", "stock", "python-statemachine", "sismic"},
    "steps_sequential_normal": {"procstore-NORMAL", "dbos", "dbos-wal"},
    "steps_sequential_full": {"procstore-FULL", "dbos"},
    "steps_concurrent_normal": {"procstore-NORMAL", "dbos", "dbos-wal"},
    "steps_concurrent_full": {"procstore-FULL", "dbos"},
}


def run_script(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """The script with ``args``; with ``code``, run after it in the same interpreter first."""
    if code is None:
        command = [sys.executable, str(SCRIPT), *args]
    else:
        runner = f"{code}\nimport runpy, sys\nsys.argv = {[str(SCRIPT), *args]!r}\n"
        runner += f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        command = [sys.executable, "-c", runner]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=QUICK_RUN_TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Any]:
    """One quick run of every workload, with its JSON."""
    where = tmp_path_factory.mktemp("peers")
    out = where / "peers.json"
    done = run_script("--quick", "--json", str(out), "--dir", str(where))
    return done, json.loads(out.read_text()) if out.exists() else None


def test_the_quick_run_exits_0_and_writes_its_json(
    quick: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    done, document = quick
    assert done.returncode == 0, done.stderr
    assert document is not None


def test_every_peer_is_installed_and_its_version_printed(
    quick: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    done, document = quick
    assert document["environment"]["missing"] == []
    for distribution in ("transitions", "python-statemachine", "sismic", "dbos"):
        assert f"{distribution} {document['environment']['versions'][distribution]}" in done.stdout


def test_every_workload_runs_on_its_sides(
    quick: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    _, document = quick
    sides: dict[str, set[str]] = {}
    for row in document["rows"]:
        sides.setdefault(row["key"], set()).add(row["side"])
    assert sides == EXPECTED_SIDES


def test_every_side_has_a_figure_and_no_error(
    quick: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    _, document = quick
    failed = [r for r in document["rows"] if r["error"] or not r["value"] or r["value"] <= 0]
    assert failed == []


def test_each_ratio_is_procstores_figure_over_the_sides(
    quick: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    _, document = quick
    for row in document["rows"]:
        ours = next(
            r["value"]
            for r in document["rows"]
            if r["key"] == row["key"] and r["side"].startswith("procstore")
        )
        expected = None if row["side"].startswith("procstore") else ours / row["value"]
        assert row["ratio"] == pytest.approx(expected), row


def test_a_peer_that_cannot_be_imported_is_named_and_its_row_says_so() -> None:
    hide_sismic = textwrap.dedent(
        """
        import sys

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "sismic":
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Hide())
        """
    )
    done = run_script("--quick", "--workloads", "a", code=hide_sismic)
    assert done.returncode == 0, done.stderr
    assert "NOT INSTALLED, their rows are empty: sismic" in done.stdout
    sismic_row = next(line for line in done.stdout.splitlines() if "sismic (sync" in line)
    assert "error" in sismic_row
    assert "not installed: sismic" in done.stdout
