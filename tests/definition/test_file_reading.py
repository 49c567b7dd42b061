"""Reading documents and context files: only regular files, and only up to a size.

A path handed to ``store.register``, ``procstore run|validate|diagram`` or ``--context @FILE``
may name anything: a device that never ends (``/dev/zero``), a FIFO that blocks until someone
writes, a file far larger than any procedure. Each is refused with one line, without reading
it. The hostile cases run in a child process with a memory cap and a timeout, so that a reader
that reads forever, or waits forever, fails the test instead of taking the machine with it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from procstore import InvalidProcedure, ProcedureStore
from procstore.documents import MAX_DOCUMENT_BYTES
from tests.conftest import make_doc, python_child, register_in_child


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return python_child("-m", "procstore", *args, cwd=cwd)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: opening it for reading blocks until a writer comes."""
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


@pytest.fixture
def good_doc(tmp_path: Path) -> Path:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(make_doc({"a": {}}, "a")), encoding="utf-8")
    return path


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_registering_what_is_not_a_regular_file_is_refused_without_reading_it(
    source: str, fifo: Path, tmp_path: Path
) -> None:
    # Reading /dev/zero never ends; opening a FIFO waits for a writer that never comes.
    proc = register_in_child(fifo if source == "fifo" else Path(source), tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "$: not a regular file" in proc.stdout


async def test_a_document_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    doc = make_doc({"a": {}}, "a", description="x" * MAX_DOCUMENT_BYTES)
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InvalidProcedure) as exc:
        await ProcedureStore().register(path)
    [problem] = exc.value.errors
    assert problem.path == "$"
    assert f"larger than {MAX_DOCUMENT_BYTES} bytes" in problem.message


async def test_a_document_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "full.json"
    text = json.dumps(make_doc({"a": {}}, "a", description=""))
    padded = text[:-1] + " " * (MAX_DOCUMENT_BYTES - len(text)) + "}"
    path.write_text(padded, encoding="utf-8")
    assert path.stat().st_size == MAX_DOCUMENT_BYTES
    procedure = await ProcedureStore().register(path)
    assert procedure.name == "p"


@pytest.mark.parametrize("command", ["run", "diagram"])
def test_the_cli_refuses_a_device_as_file_in_one_line(command: str, tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/x.db"] if command == "run" else []
    proc = _cli(command, "/dev/zero", *db, cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    output = proc.stdout + proc.stderr
    assert "/dev/zero: $: not a regular file" in output, output


def test_the_cli_refuses_a_fifo_as_file(fifo: Path, tmp_path: Path) -> None:
    proc = _cli("run", str(fifo), "--db", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{fifo}: $: not a regular file" in proc.stdout + proc.stderr


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_run_refuses_a_context_file_that_is_not_a_regular_file(
    source: str, fifo: Path, good_doc: Path, tmp_path: Path
) -> None:
    context_file = str(fifo) if source == "fifo" else source
    proc = _cli(
        "run",
        str(good_doc),
        "--db",
        f"sqlite:///{tmp_path}/x.db",
        "--context",
        f"@{context_file}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "--context" in proc.stderr
    assert "not a regular file" in proc.stderr


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_run_refuses_a_context_with_nan_or_infinity(
    constant: str, good_doc: Path, tmp_path: Path
) -> None:
    proc = _cli(
        "run",
        str(good_doc),
        "--db",
        f"sqlite:///{tmp_path}/x.db",
        "--context",
        f'{{"x": {constant}}}',
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "$.x" in proc.stderr
    assert "JSON has no NaN or Infinity" in proc.stderr
