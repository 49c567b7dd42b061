"""Every code sample of README.md, docs/*.md and examples/*.md runs, and shows what really happens.

The fenced blocks of each page are read in order (``tests/doc_samples.py``), as a reader who
follows the page would meet them, in one working directory per page: a fresh temporary
directory holding a copy of ``examples/`` and a ``.venv`` link to this interpreter's
environment, where ``procstore`` is the command on ``PATH`` and ``./procstore.db`` the default
store. The pages run concurrently, each in its own directory.

- ``python``: the block is a program; it runs in a subprocess (``python block.py`` with that
  working directory) and must exit with 0.
- ``console``: each ``$ `` line is a command, run with ``bash -c``; the lines after it are its
  output (stdout and stderr, as a terminal shows them) and must be the real output. A command
  must exit with 0 unless the next command is ``echo $?``, whose shown output is the exit
  code it must have. In shown output, an execution id stands for the real id at that place
  (the first time a shown id meets a real one they are bound; a later command that uses the
  shown id gets the real one), a timestamp for any timestamp of that form, ``/home/me`` for
  the working directory and ``/usr/lib/python3.11`` for the Python installation's standard
  library.
- ``sh``: each line is a command (``\\`` continues a line); every one must exit with 0.
- ``json``/``yaml``: a procedure document, registered into a fresh ``ProcedureStore`` that
  allows the examples' actions modules: registration must succeed.
- ``text``/``mermaid``: not code (command synopses, output excerpts, diagrams): not run.

A marker on the last non-blank line before a block, ``<!-- sample: KIND[; KIND...] -->``,
changes that:

- ``fragment: WHY`` -- a piece of a program or document, not a whole one: a python fragment is
  compiled (top-level ``await`` allowed), a json fragment (states, or a state's fields) is
  parsed and its states checked against the schema;
- ``continues`` -- a python block run together with the page's python blocks before it;
- ``output`` -- a text block: what the page's previous python block prints;
- ``excerpt: COMMAND`` -- a text block: lines that ``COMMAND``, run like a console command at
  that point of the page, prints one after the other;
- ``file NAME`` -- the block is written to ``NAME`` in the page's directory, for the samples
  after it (which must name it); a document used this way is checked by the sample using it;
- ``invalid`` -- a json/yaml document that registration must reject;
- ``not run: WHY`` -- an sh/console block that is not executed (``make``, long benchmarks).

Each test id is the page and line of its block (``docs/cli.md:139``).
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from procstore import InvalidProcedure, ProcedureStore
from procstore.definition import StateDef
from tests.doc_samples import (
    DOCUMENTS,
    LANGUAGES,
    Block,
    Ids,
    MarkerError,
    blocks_of,
    console_commands,
    excerpt_mismatch,
    output_mismatch,
    sh_commands,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES += sorted(EXAMPLES.glob("*.md"))
#: The modules documents may name in function actions: the examples' actions modules.
EXAMPLE_MODULES = sorted(p.stem for p in EXAMPLES.glob("*_actions.py"))

COMMAND_TIMEOUT = 120.0  # seconds for one command or program: only to catch a hang
#: Pages run at once. More would starve the examples' short timeouts (data_import's fetch may
#: stay 200 ms) on a small machine; each page's samples run one after the other anyway.
PAGES_AT_ONCE = max(2, os.cpu_count() or 1)

BLOCKS = [block for page in PAGES for block in blocks_of(page, ROOT)]


def _blocks(
    *, lang: Iterable[str], marked: str = "", unmarked: tuple[str, ...] = ()
) -> pytest.MarkDecorator:
    """Parametrize a test with the blocks in these languages, with or without these markers."""
    chosen = [
        b
        for b in BLOCKS
        if b.lang in lang and (not marked or b.marked(marked)) and not b.marked(*unmarked)
    ]
    return pytest.mark.parametrize("block", chosen, ids=lambda b: b.where)


# --------------------------------------------------------------------------- running a page


@dataclass
class PageRun:
    """What happened to each block of one page, run in order in one working directory."""

    directory: Path
    failures: dict[int, str | None] = field(default_factory=dict)  # block line -> problem
    ids: Ids = field(default_factory=Ids)
    stdout: dict[int, str] = field(default_factory=dict)  # python block line -> what it printed

    @property
    def replacements(self) -> dict[str, str]:
        return {
            str(self.directory.resolve()): "/home/me",
            str(self.directory): "/home/me",
            sysconfig.get_paths()["stdlib"]: "/usr/lib/python3.11",
        }


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROCSTORE_DB", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(COLUMNS="80", NO_COLOR="1", TERM="dumb", PYTHONDONTWRITEBYTECODE="1")
    return env


def _shell(command: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=directory,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _python_program(block: Block, page_blocks: list[Block]) -> str:
    """The block's code, after the python blocks it continues."""
    before = [b for b in page_blocks if b.lang == "python" and b.line < block.line]
    if block.marked("continues") and before:
        return _python_program(before[-1], page_blocks) + block.text
    return block.text


def _run_python(block: Block, page_blocks: list[Block], run: PageRun) -> str | None:
    script = run.directory / f"sample-line-{block.line}.py"  # not a module name
    script.write_text(_python_program(block, page_blocks), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, script.name],
        cwd=run.directory,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    run.stdout[block.line] = proc.stdout
    if proc.returncode != 0:
        return f"exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return None


def _run_console(block: Block, run: PageRun) -> str | None:
    returncode = 0
    commands = console_commands(block)
    for n, command in enumerate(commands):
        where = f"{block.page}:{command.line}: $ {command.text}"
        if command.text == "echo $?":
            actual, returncode = f"{returncode}\n", 0
        else:
            try:
                proc = _shell(run.ids.substitute(command.text), run.directory)
            except LookupError as exc:
                return f"{where}: {exc}"
            actual, returncode = proc.stdout, proc.returncode
            checked = n + 1 < len(commands) and commands[n + 1].text == "echo $?"
            if returncode != 0 and not checked:
                return f"{where}: exited with {returncode} (show `$ echo $?`):\n{actual}"
        assert command.shown is not None
        diff = output_mismatch(command.shown, actual, run.ids, run.replacements)
        if diff is not None:
            return f"{where}: the output differs\n{diff}"
    return None


def _run_sh(block: Block, run: PageRun) -> str | None:
    for command in sh_commands(block):
        proc = _shell(command.text, run.directory)
        if proc.returncode != 0:
            return (
                f"{block.page}:{command.line}: {command.text}\n"
                f"exited with {proc.returncode}:\n{proc.stdout}"
            )
    return None


def _check_output(block: Block, page_blocks: list[Block], run: PageRun) -> str | None:
    before = [b for b in page_blocks if b.lang == "python" and b.line < block.line]
    if not before or before[-1].line not in run.stdout:
        return "an output block must follow a python block that runs"
    printed = run.stdout[before[-1].line]
    diff = output_mismatch(block.text.splitlines(), printed, run.ids, run.replacements)
    return None if diff is None else f"{before[-1].where} prints something else:\n{diff}"


def _runs(block: Block) -> bool:
    """Whether the page run executes this block (or checks it against what a program printed)."""
    if block.marked("not run", "fragment", "file"):
        return False
    return block.lang in ("python", "console", "sh") or block.marked("output", "excerpt")


def _check_excerpt(block: Block, run: PageRun) -> str | None:
    command = block.markers["excerpt"]
    proc = _shell(run.ids.substitute(command), run.directory)
    problem = excerpt_mismatch(block.text.splitlines(), proc.stdout, run.ids, run.replacements)
    return None if problem is None else f"$ {command}: {problem}"


def run_page(page: str, directory: Path) -> PageRun:
    """Run the page's samples in order in ``directory``; what failed, by block line."""
    page_blocks = [b for b in BLOCKS if b.page == page]
    shutil.copytree(EXAMPLES, directory / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (directory / ".venv").symlink_to(sys.prefix)
    run = PageRun(directory)
    for block in page_blocks:
        if block.marked("file"):
            target = directory / block.markers["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
        if not _runs(block):
            continue
        try:
            run.failures[block.line] = _run_block(block, page_blocks, run)
        except (MarkerError, OSError, subprocess.SubprocessError) as exc:
            run.failures[block.line] = f"could not run: {type(exc).__name__}: {exc}"
    return run


def _run_block(block: Block, page_blocks: list[Block], run: PageRun) -> str | None:
    """Run one block; None if it did what the page shows, else what went wrong."""
    if block.lang == "python":
        return _run_python(block, page_blocks, run)
    if block.lang == "console":
        return _run_console(block, run)
    if block.lang == "sh":
        return _run_sh(block, run)
    if block.marked("excerpt"):
        return _check_excerpt(block, run)
    return _check_output(block, page_blocks, run)


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[PageRun]]]:
    """Every page that a selected test needs, run concurrently (each page in order)."""
    selected = [getattr(item, "callspec", None) for item in request.session.items]
    blocks = [spec.params.get("block") for spec in selected if spec is not None]
    pages = {b.page for b in blocks if isinstance(b, Block)}
    runnable = {page: sum(_runs(b) for b in BLOCKS if b.page == page) for page in pages}
    with ThreadPoolExecutor(max_workers=PAGES_AT_ONCE) as pool:
        yield {
            page: pool.submit(run_page, page, tmp_path_factory.mktemp(page.replace("/", "_")))
            for page in sorted(pages, key=runnable.__getitem__, reverse=True)  # longest first
        }


def outcome(page_runs: dict[str, Future[PageRun]], block: Block) -> str | None:
    run = page_runs[block.page].result(timeout=600)
    assert block.line in run.failures, f"{block.where} was not run"
    return run.failures[block.line]


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_every_block_is_a_known_language_with_markers_that_fit_it(block: Block) -> None:
    assert not block.marker_error, f"{block.where}: {block.marker_error}"
    assert block.lang in LANGUAGES, (
        f"{block.where}: ```{block.lang} is neither run nor known as prose; "
        f"use one of {', '.join(sorted(LANGUAGES))}"
    )
    allowed = {
        "python": {"fragment", "continues", "file"},
        "console": {"not run"},
        "sh": {"not run"},
        "json": {"fragment", "file", "invalid"},
        "yaml": {"fragment", "file", "invalid"},
        "text": {"output", "excerpt", "file"},
        "mermaid": set(),
    }[block.lang]
    assert set(block.markers) <= allowed, f"{block.where}: {sorted(block.markers)} on {block.lang}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marked("file")], ids=lambda b: b.where)
def test_a_file_sample_is_used_by_the_samples_after_it(block: Block) -> None:
    name = block.markers["file"]
    names = {name}
    if name.endswith(".py"):  # a module: named by its dotted path, or beside a FILE by its stem
        names |= {name.removesuffix(".py").replace("/", "."), Path(name).stem}
    page = [b for b in BLOCKS if b.page == block.page and b is not block]
    assert any(n in b.text for b in page for n in names), f"{block.where}: no sample uses {name}"
    assert any(b.line > block.line and _runs(b) for b in page), f"{block.where}: nothing runs after"


@_blocks(lang={"python"}, unmarked=("fragment", "file"))
def test_python_sample_runs(block: Block, page_runs: dict[str, Future[PageRun]]) -> None:
    problem = outcome(page_runs, block)
    assert problem is None, f"{block.where}: {problem}"


@_blocks(lang={"text"}, marked="excerpt")
def test_output_excerpt_is_in_the_real_output(
    block: Block, page_runs: dict[str, Future[PageRun]]
) -> None:
    problem = outcome(page_runs, block)
    assert problem is None, f"{block.where}: {problem}"


@_blocks(lang={"text"}, marked="output")
def test_python_sample_prints_what_the_page_shows(
    block: Block, page_runs: dict[str, Future[PageRun]]
) -> None:
    problem = outcome(page_runs, block)
    assert problem is None, f"{block.where}: {problem}"


@_blocks(lang={"python"}, marked="fragment")
def test_python_fragment_compiles(block: Block) -> None:
    compile(block.text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@_blocks(lang={"console"}, unmarked=("not run",))
def test_console_sample_shows_the_real_output(
    block: Block, page_runs: dict[str, Future[PageRun]]
) -> None:
    problem = outcome(page_runs, block)
    assert problem is None, problem


@_blocks(lang={"sh"}, unmarked=("not run",))
def test_shell_sample_succeeds(block: Block, page_runs: dict[str, Future[PageRun]]) -> None:
    problem = outcome(page_runs, block)
    assert problem is None, problem


@_blocks(lang={"sh", "console"}, marked="not run")
def test_a_sample_not_run_says_why(block: Block) -> None:
    assert len(block.markers["not run"].split()) >= 3, f"{block.where}: give a reason"


def _document(block: Block) -> Any:
    return yaml.safe_load(block.text) if block.lang == "yaml" else json.loads(block.text)


def _store(monkeypatch: pytest.MonkeyPatch) -> ProcedureStore:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return ProcedureStore(allowed_modules=EXAMPLE_MODULES)


@_blocks(lang=DOCUMENTS, unmarked=("fragment", "invalid", "file"))
async def test_document_sample_registers(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    await asyncio.wait_for(_store(monkeypatch).register(_document(block)), 10)


@_blocks(lang=DOCUMENTS, marked="invalid")
async def test_invalid_document_sample_is_rejected(
    block: Block, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidProcedure):
        await asyncio.wait_for(_store(monkeypatch).register(_document(block)), 10)


@_blocks(lang={"json"}, marked="fragment")
def test_document_fragment_has_valid_states(block: Block) -> None:
    piece = json.loads("{" + block.text + "}")
    fields = set(StateDef.model_fields)
    states = [piece] if set(piece) <= fields else list(piece.values())
    for state in states:
        StateDef.model_validate(state)
