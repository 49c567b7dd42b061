"""Helpers of the tests where several PostgreSQL workers share executions: procedures whose
actions log each step (``tests.worker_actions``), executions created with no lease (as a
client creates them: idle workers claim them), ``procstore worker`` processes, and what the
log and the lease history say.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from procstore.actions import ActionRegistry
from procstore.compiler import compile_procedure
from procstore.definition import Procedure
from procstore.guards import GuardRegistry
from procstore.runtime import start_execution
from procstore.storage.postgres import PostgresBackend

ROOT = Path(__file__).resolve().parent.parent
MODULE = "tests.worker_actions"


def chain(steps: int, name: str = "chain", **first: Any) -> dict[str, Any]:
    """A procedure of ``steps`` states ``s1 -> s2 -> ...``, each running
    ``tests.worker_actions.step`` (``first``: more fields of ``s1``)."""
    names = [f"s{n}" for n in range(1, steps + 1)]
    states: dict[str, Any] = {}
    for here, after in zip(names, [*names[1:], None], strict=True):
        state: dict[str, Any] = {
            "action": {"type": "function", "module": MODULE, "function": "step"}
        }
        if after is not None:
            state["transitions"] = [{"event": "success", "target": after}]
        states[here] = state
    states["s1"].update(first)
    return {"name": name, "version": "1.0", "definition": {"initial_state": "s1", "states": states}}


class _Captured(Exception):
    """The first write of an execution, caught before anything of it ran."""


class _FirstWrite:
    """A journal that keeps a new execution's first write and refuses it: the runtime then
    stops the execution before any of its steps runs (see ``start_execution``)."""

    row: tuple[str, dict[str, Any], list[dict[str, Any]]] | None = None

    async def create(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        self.row = (status, snapshot, records)
        raise _Captured

    async def commit(
        self, status: str, snapshot: dict[str, Any], records: list[dict[str, Any]]
    ) -> None:
        raise AssertionError("an enqueued execution never commits here")


class Client:
    """Creates executions of one procedure as a client process does: each held by no worker
    (the database notifies the idle workers), nothing of it run here. Use it as an async
    context manager (it holds a backend that is not a worker)."""

    def __init__(self, url: str, doc: dict[str, Any]) -> None:
        self._url = url
        self._doc = doc
        self._procedure = Procedure.model_validate(doc)
        self._compiled = compile_procedure(
            self._procedure, ActionRegistry([MODULE]), GuardRegistry()
        )
        self._backend: PostgresBackend | None = None

    async def __aenter__(self) -> Client:
        self._backend = await PostgresBackend.open(self._url)
        procedure = self._procedure
        await self._backend.save_procedure(procedure.name, procedure.version, self._doc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._backend is not None:
            await self._backend.close()

    async def start(self, context: dict[str, Any]) -> str:
        """A new ``auto`` execution with ``context``; its id.

        Its initial state is entered in memory and its first write (snapshot and records) is
        stored as it is, by a backend that is not a worker."""
        assert self._backend is not None, "use Client as an async context manager"
        execution_id, journal = uuid.uuid4().hex, _FirstWrite()
        with contextlib.suppress(_Captured):
            await start_execution(self._compiled, execution_id, context, auto=True, journal=journal)
        assert journal.row is not None
        status, snapshot, records = journal.row
        procedure = self._procedure
        await self._backend.create_execution(
            execution_id, procedure.name, procedure.version, status, snapshot, records
        )
        return execution_id


async def enqueue(url: str, doc: dict[str, Any], contexts: Iterable[dict[str, Any]]) -> list[str]:
    """Store ``doc`` and one new execution of it per context, as a ``Client``; their ids."""
    async with Client(url, doc) as client:
        return [await client.start(context) for context in contexts]


# -- worker processes ---------------------------------------------------------------------------


@contextlib.contextmanager
def workers(
    url: str, log_dir: Path, count: int, *options: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``procstore worker`` processes on ``url`` allowing ``tests.worker_actions``,
    each logging to ``log_dir/worker-N.log``; killed (if still running) afterwards."""
    processes = [start_worker(url, log_dir / f"worker-{n}.log", *options) for n in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)


def start_worker(url: str, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """One ``procstore worker`` process (its stderr, the log lines, into ``log``)."""
    command = [sys.executable, "-m", "procstore", "worker", "--db", url, "--allow-module", MODULE]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*command, *options], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


# -- what happened --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """One line of the actions' log: an attempt of a step, by a process, when it started."""

    execution_id: str
    state: str
    attempt: int
    pid: int
    at: float


def ran(log: Path) -> list[Ran]:
    """The actions' log, in the order the lines were written."""
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").splitlines()
    return [
        Ran(e, s, int(a), int(p), float(t)) for e, s, a, p, t in (line.split() for line in lines)
    ]


@dataclass(frozen=True)
class Claimed:
    """One row of the lease history."""

    execution_id: str
    fence: int
    owner_pid: int
    previous_pid: int | None


def pid_of(worker_id: str) -> int:
    """The process id in a worker id (``host:pid:suffix``)."""
    return int(worker_id.rsplit(":", 2)[1])


async def lease_history(url: str) -> list[Claimed]:
    """Every claim, by execution and fence."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT execution_id, fence, owner, previous_owner FROM claims"
            " ORDER BY execution_id, fence"
        )
    finally:
        await connection.close()
    return [Claimed(e, f, pid_of(o), pid_of(p) if p is not None else None) for e, f, o, p in rows]


async def statuses(url: str) -> dict[str, str]:
    """Every execution's stored status, by id."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT id, status FROM executions")
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float) -> None:
    """Poll ``predicate`` (a plain or a coroutine function) every 50 ms until it is true; fail
    the test if it is not within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = predicate()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)
