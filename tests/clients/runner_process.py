"""The child process of tests/clients/test_client_processes.py: a process that runs a store's
executions while the test, as a client in another process, drives them through the inbox.

Run it as ``python tests/clients/runner_process.py URL``: it opens ``ProcedureStore(URL)``
allowed to call this module's actions, calls ``recover()`` (which takes the runner lock and
starts reading the inbox), prints ``ready``, and runs until its standard input closes (then it
closes the store and prints ``closed``) or it is killed.

Its one action, :func:`hold`, appends ``"<state> <attempt>"`` to the file ``context["log"]``
(durably, see ``tests.crash_worker.append``) and, the first time that line is written, hangs
until the process dies; when it runs again (after a crash) it returns at once.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from procstore import ActionInfo, ProcedureStore
from tests.crash_worker import append

MODULE = "tests.clients.runner_process"


async def hold(context: dict[str, Any], info: ActionInfo) -> str:
    """Log, then hang the first time (until the process is killed)."""
    if append(context, f"{info.state} {info.attempt}"):
        await asyncio.Event().wait()
    return f"{info.state} done"


# On PostgreSQL the runner is a worker: the executions of one that was killed are taken over
# once its lease expires, so the tests that kill it keep the lease short.
LEASE_SECONDS = 1.0


async def main(url: str) -> None:
    async with ProcedureStore(url, allowed_modules=[MODULE], lease_seconds=LEASE_SECONDS) as store:
        await store.recover()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
