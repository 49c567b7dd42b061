"""Shared fixtures and helpers.

Every test builds its own :class:`procstore.ProcedureStore` (the ``store`` fixture): there is no
global registry to leak between tests.  Helpers are imported by the test modules as
``from tests.conftest import ...``; the builders of procedure documents are in
``tests.builders``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from procstore import ActionInfo, InvalidProcedure, ProcedureStore
from procstore.storage import Backend
from tests import postgres
from tests.clock import ManualClock

SPEC_MODULE = "tests.spec_actions"

T = TypeVar("T")


#: How the ``--hibernate-after`` run tells the tests' child processes (tests/crash_worker.py).
HIBERNATE_AFTER_ENV = "PROCSTORE_TEST_HIBERNATE_AFTER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hibernate-after",
        type=float,
        default=None,
        help="open every store with this hibernate_after unless a test says otherwise "
        "(make test runs the durability and crash tests again with 0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # pyproject runs pytest with --strict-markers; SPEC-007's @moduletag :integration.
    config.addinivalue_line("markers", "integration: SPEC-007 Task 3 integration tests")
    seconds = config.getoption("--hibernate-after")
    if seconds is not None:
        # The default of ProcedureStore(hibernate_after=...), for this test process and, through
        # the environment, for the stores the tests' child processes open.
        defaults = ProcedureStore.__init__.__kwdefaults__
        assert defaults is not None and "hibernate_after" in defaults
        defaults["hibernate_after"] = seconds
        os.environ[HIBERNATE_AFTER_ENV] = str(seconds)


@pytest.fixture
def store() -> ProcedureStore:
    """A fresh in-memory store allowed to call the SPEC-007 test actions."""
    return ProcedureStore(allowed_modules=[SPEC_MODULE])


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test advances it (see ``tests.clock``)."""
    return ManualClock()


@pytest.fixture
def timed_store(clock: ManualClock) -> ProcedureStore:
    """Like ``store``, but its executions run on ``clock``: a timing test advances time and
    asserts exact instants instead of wall-clock windows."""
    return ProcedureStore(allowed_modules=[SPEC_MODULE], clock=clock)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The path of this test's SQLite database (not created yet)."""
    return tmp_path / "procstore.db"


@pytest.fixture
def url(db: Path) -> str:
    """The URL of ``db``, for ``ProcedureStore(url)``."""
    return f"sqlite:///{db}"


async def within(awaitable: Awaitable[T], timeout: float = 2.0) -> T:
    """Await with a short timeout, so that a hang fails the test instead of hanging the suite."""
    return await asyncio.wait_for(awaitable, timeout)


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 2.0, interval: float = 0.002
) -> None:
    """Poll ``predicate`` until it holds; fail the test if it does not within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def make_doc(
    states: dict[str, Any],
    initial: str,
    name: str = "p",
    version: str = "1.0",
    **extra: Any,
) -> dict[str, Any]:
    """A procedure document."""
    doc: dict[str, Any] = {
        "name": name,
        "version": version,
        "definition": {"initial_state": initial, "states": states},
    }
    doc.update(extra)
    return doc


def records(history: Iterable[Any], kind: str, **fields: Any) -> list[Any]:
    """The history records of ``kind`` whose attributes equal ``fields``."""
    return [
        r for r in history if r.kind == kind and all(getattr(r, k) == v for k, v in fields.items())
    ]


def index_of(history: Iterable[Any], kind: str, **fields: Any) -> int:
    """Index of the first record of ``kind`` matching ``fields``; fails the test if none."""
    for i, r in enumerate(history):
        if r.kind == kind and all(getattr(r, k) == v for k, v in fields.items()):
            return i
    raise AssertionError(f"no {kind!r} record with {fields!r} in history")


def slow_cleanup(
    store: ProcedureStore, clock: ManualClock, seconds: float, name: str = "slow"
) -> list[str]:
    """Register action ``name``: it waits until cancelled, then its cleanup (``finally``)
    takes ``seconds`` on ``clock``. The returned list gets ``"cleaned"`` when it is done."""
    cleaned: list[str] = []

    async def slow(context: dict[str, Any]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await clock.sleep(seconds)
            cleaned.append("cleaned")

    store.register_action(name, slow)
    return cleaned


class FailsThen:
    """An action (or compensation) that raises ``errors[i]`` on attempt ``i + 1``, then
    returns ``result``; ``attempts`` lists the attempt numbers it was called with."""

    def __init__(self, result: Any, *errors: BaseException) -> None:
        self.result = result
        self.errors = list(errors)
        self.attempts: list[int] = []

    async def __call__(self, context: dict[str, Any], info: ActionInfo) -> Any:
        self.attempts.append(info.attempt)
        if len(self.attempts) <= len(self.errors):
            raise self.errors[len(self.attempts) - 1]
        return self.result


class Gate:
    """An async action blocked on an :class:`asyncio.Event` until ``release`` is set.

    Register ``gate.action`` (a bound coroutine method) with the store.
    """

    def __init__(self, result: Any = "released") -> None:
        self.result = result
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = asyncio.Event()
        self.calls = 0
        self.cancelled = False
        self.returned = False

    async def action(self, context: dict[str, Any]) -> Any:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
            self.returned = True
            return self.result
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.finished.set()


# -- refused documents ----------------------------------------------------------------------------


async def problems_by_path(store: ProcedureStore, doc: Any) -> dict[str, list[str]]:
    """Register ``doc``, which must be refused: the messages of its problems by JSON path.

    Every problem has a path and a non-empty list of them, and the error's text names each path.
    """
    with pytest.raises(InvalidProcedure) as info:
        await store.register(doc)
    assert info.value.errors, "InvalidProcedure without any problem"
    found: dict[str, list[str]] = {}
    for problem in info.value.errors:
        assert isinstance(problem.path, str)
        assert isinstance(problem.message, str)
        found.setdefault(problem.path, []).append(problem.message)
    text = str(info.value)
    for path in found:
        assert path in text
    return found


async def problem_lines(store: ProcedureStore, doc: Any) -> list[str]:
    """Register ``doc``, which must be refused: its problems as they print (``path: message``)."""
    with pytest.raises(InvalidProcedure) as info:
        await store.register(doc)
    return [str(problem) for problem in info.value.errors]


# -- histories and tasks --------------------------------------------------------------------------


def transitions_on(history: Iterable[Any], event: str) -> list[tuple[str | None, str | None]]:
    """(state, target) of each ``transition`` record of ``event``, in order."""
    return [(r.state, r.target) for r in history if r.kind == "transition" and r.event == event]


async def assert_no_new_tasks(baseline: set[asyncio.Task[Any]], settle: float = 0.0) -> None:
    """Let finished tasks complete their last step (a few turns of the loop, then ``settle``
    seconds), then fail if a task not in ``baseline`` is still running."""
    for _ in range(5):
        await asyncio.sleep(0)
    if settle:
        await asyncio.sleep(settle)
    leftover = {t for t in asyncio.all_tasks() if t not in baseline and not t.done()}
    assert not leftover, f"tasks survived the execution: {leftover}"


# -- storage --------------------------------------------------------------------------------------


def fingerprint(path: Path) -> tuple[str, list[str]]:
    """The file's SHA-256 and its directory's listing (a -wal, -shm or .lock file shows)."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(os.listdir(path.parent))


async def make_execution(
    backend: Backend,
    execution_id: str,
    *,
    procedure: str = "deploy",
    status: str = "running",
    records: int = 1,
) -> None:
    """Create execution ``execution_id`` of ``procedure`` 1.0 in ``backend`` directly, with
    ``records`` history records."""
    await backend.create_execution(
        execution_id,
        procedure,
        "1.0",
        status,
        {"state": "start"},
        [{"kind": "started", "n": n} for n in range(records)],
    )


# -- child processes ------------------------------------------------------------------------------

#: Generous: a child either answers at once or never does.
CHILD_TIMEOUT_S = 60
#: A child that reads /dev/zero into memory, or expands a structure without end, dies of
#: MemoryError long before it hurts the host.
CHILD_MEMORY_BYTES = 2 * 1024**3


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))


def python_child(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with capped memory; a hang fails the test (TimeoutExpired)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=_cap_memory,
        cwd=cwd,
        check=False,
    )


def register_in_child(path: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``ProcedureStore().register(path)`` in a :func:`python_child`: prints the problems of the
    InvalidProcedure and exits 3."""
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from procstore import InvalidProcedure, ProcedureStore
        try:
            asyncio.run(ProcedureStore().register({str(path)!r}))
        except InvalidProcedure as exc:
            print("\\n".join(str(p) for p in exc.errors))
            sys.exit(3)
        """
    )
    return python_child("-c", code, cwd=cwd)


def read_line(process: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """The next line the child prints, stripped; fails the test if it prints no whole line
    within ``timeout`` seconds or exits.

    It reads the pipe a byte at a time, past the text wrapper: a buffered read could take two
    lines printed at once, and select() on the pipe would then not see the second one. Nothing
    is read beyond the line, so ``communicate()`` afterwards still gets the rest."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = bytearray()
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            process.kill()
            raise AssertionError(f"the child printed no whole line within {timeout}s")
        byte = os.read(fd, 1)
        if not byte:  # end of output
            if line:
                break
            _, stderr = process.communicate(timeout=timeout)
            raise AssertionError(f"the child exited with {process.returncode}: {stderr}")
        line += byte
    return line.decode().strip()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the PostgreSQL test server's database (see ``tests.postgres``): a test
    that needs the server fails in CI without one, and skips elsewhere."""
    yield from postgres.server()


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on the PostgreSQL test server, dropped after the
    test."""
    async with postgres.database(postgres_server) as url:
        yield url
