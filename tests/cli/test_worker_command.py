"""``procstore worker`` as a real process: SIGTERM lets the step under way finish, commits it,
starts no other, releases the lease and exits 0; each claim is one log line; an SQLite file has
one worker, which resumes its unfinished executions; a server it cannot use is one error line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg

from procstore import ProcedureStore, Status
from tests.conftest import within
from tests.workers import MODULE, ROOT, chain, enqueue, ran, start_worker, statuses, until

#: Generous: how long a scenario may take before the test counts it as hung.
HANG_S = 120


def log_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def started(log: Path) -> Callable[[], bool]:
    """Whether the worker logging to ``log`` is working (and handles signals)."""
    return lambda: "working on" in log_text(log)


async def test_sigterm_lets_the_step_under_way_finish_releases_its_lease_and_exits_0(
    postgres_url: str, tmp_path: Path
) -> None:
    actions, out = tmp_path / "actions.log", tmp_path / "worker.log"
    worker = start_worker(postgres_url, out, "--lease-seconds", "1")
    try:
        # s1 takes 2 s: the worker is stopped in the middle of it.
        (execution_id,) = await enqueue(
            postgres_url, chain(3), [{"log": str(actions), "step_s": 2}]
        )
        await until(lambda: len(ran(actions)) == 1, HANG_S)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=HANG_S) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert [(line.state, line.pid) for line in ran(actions)] == [("s1", worker.pid)]
    connection = await asyncpg.connect(postgres_url)
    try:
        row = await connection.fetchrow(
            "SELECT status, lease_owner, snapshot::json->'active' AS active FROM executions"
            " WHERE id = $1",
            execution_id,
        )
    finally:
        await connection.close()
    assert row is not None
    assert (row["status"], row["lease_owner"], row["active"]) == ("running", None, '["s2"]')
    lines = log_text(out).splitlines()
    (claimed,) = [line for line in lines if "claimed execution" in line]
    assert f"claimed execution {execution_id} (fence 1)" in claimed
    assert lines[-1].endswith("INFO stopped")


async def test_an_sqlite_worker_resumes_the_unfinished_executions_and_is_the_only_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'procstore.db'}"
    actions = tmp_path / "actions.log"
    async with ProcedureStore(url, allowed_modules=[MODULE]) as store:
        await store.register(chain(2))
        context = {"log": str(actions), "step_s": 0.5}
        execution = await store.start("chain", context=context, auto=True)
        await until(lambda: len(ran(actions)) == 1, HANG_S)
    # Closed while s1 ran: it stays running, as after a crash.
    worker = start_worker(url, tmp_path / "worker.log")
    try:

        async def ended() -> bool:
            async with ProcedureStore(url, read_only=True) as reader:
                return (await reader.get_execution(execution.id)).status is not Status.RUNNING

        await until(ended, HANG_S)
        second = start_worker(url, tmp_path / "second.log")
        assert second.wait(timeout=HANG_S) == 5
        assert "already used by process" in log_text(tmp_path / "second.log")
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=HANG_S) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert [(line.state, line.pid) for line in ran(actions)] == [
        ("s1", os.getpid()),
        ("s1", worker.pid),  # in flight when the first store stopped: again, with attempt 1
        ("s2", worker.pid),
    ]


def test_a_server_it_cannot_reach_is_one_error_line_and_exit_5(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "procstore", "worker", "--db", "postgresql://u:pw@127.0.0.1:1/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )
    assert result.returncode == 5
    assert result.stderr.splitlines() == [
        "error: cannot connect to postgresql://127.0.0.1:1/x: connection refused: "
        "is the server running and listening there?"
    ]
    assert "pw" not in result.stderr


async def test_two_workers_claim_each_new_execution_once_one_log_line_each(
    postgres_url: str, tmp_path: Path
) -> None:
    actions = tmp_path / "actions.log"
    first = start_worker(postgres_url, tmp_path / "first.log", "--lease-seconds", "1")
    second = start_worker(postgres_url, tmp_path / "second.log", "--lease-seconds", "1")
    try:
        for name in ("first", "second"):  # both handle signals from now on
            await until(started(tmp_path / f"{name}.log"), HANG_S)
        ids = await enqueue(postgres_url, chain(2), [{"log": str(actions)} for _ in range(20)])

        async def all_done() -> bool:
            stored = await statuses(postgres_url)
            return all(stored[execution_id] == "completed" for execution_id in ids)

        await until(all_done, HANG_S)
        for worker in (first, second):
            worker.send_signal(signal.SIGTERM)
        assert [first.wait(timeout=HANG_S), second.wait(timeout=HANG_S)] == [0, 0]
    finally:
        for worker in (first, second):
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    claimed = log_text(tmp_path / "first.log") + log_text(tmp_path / "second.log")
    assert sorted(ids) == sorted(
        line.split("claimed execution ")[1].split()[0]
        for line in claimed.splitlines()
        if "claimed execution" in line
    )


async def test_on_a_terminal_a_live_line_counts_the_claims(
    postgres_url: str, tmp_path: Path
) -> None:
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "procstore", "worker", "--db", postgres_url]
    worker = subprocess.Popen(
        [*command, "--allow-module", MODULE],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    shown = bytearray()

    def read() -> None:  # everything the terminal gets, until the worker has exited
        with contextlib.suppress(OSError):  # EIO: the terminal's other end is closed
            while chunk := os.read(controller, 4096):
                shown.extend(chunk)

    reader = asyncio.get_running_loop().run_in_executor(None, read)
    try:
        await until(lambda: b"0 claimed" in shown, HANG_S)
        await enqueue(postgres_url, chain(1), [{"log": str(tmp_path / "actions.log")}])
        await until(lambda: b"1 claimed (0 taken over)" in shown, HANG_S)
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=HANG_S) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await within(reader, 30)
        os.close(controller)
    assert b"claimed execution" not in shown  # the live line counts them instead
