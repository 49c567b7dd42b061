"""The actions of the worker tests (tests/storage/test_postgres_workers.py,
tests/cli/test_worker_command.py) and of perf/bench_workers.py, run by ``procstore worker``
processes that allow this module (``--allow-module tests.worker_actions``).

Every action first appends one line, ``<execution id> <state> <attempt> <pid> <time>``, to the
file ``context["log"]`` (one ``write`` on a file opened for appending: the lines of several
processes never mix), so the test can see from that file which process ran which step how many
times, in what order (and the benchmark when it started: ``time.time()``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from procstore import ActionInfo

__all__ = ["flaky", "log_step", "step"]


def log_step(context: dict[str, Any], info: ActionInfo) -> None:
    """Append this attempt's line to ``context["log"]``."""
    fields = (info.execution_id, info.state, info.attempt, os.getpid(), repr(time.time()))
    line = (" ".join(map(str, fields)) + "\n").encode()
    fd = os.open(context["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def step(context: dict[str, Any], info: ActionInfo) -> str:
    """Log, then take ``context["step_s"]`` seconds (0 by default)."""
    log_step(context, info)
    await asyncio.sleep(float(context.get("step_s", 0)))
    return f"{info.state} done"


async def flaky(context: dict[str, Any], info: ActionInfo) -> str:
    """Log, then fail with ``ConnectionError`` on the first attempt (a retry policy brings the
    second)."""
    log_step(context, info)
    if info.attempt == 1:
        raise ConnectionError(f"attempt {info.attempt} of {info.state} failed")
    return f"{info.state} done"
