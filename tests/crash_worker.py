"""The child process of the crash tests (tests/storage/test_crash_recovery.py) and of the
runner-lock test in tests/storage/test_durability.py.

Run it as ``python tests/crash_worker.py MODE DB ...`` (the crash tests do, with
``sys.executable``; the parent kills it with SIGKILL). Its actions are public functions of this
module (``"module": "tests.crash_worker"``, an allowed module), so a store in the parent or in
another child resolves them the same way. Each one appends ``"<state> <attempt>"`` (a
compensation: ``"undo:<state> <attempt>"``) to the file ``context["log"]`` — opened in append
mode, flushed and fsynced before the action goes on — so the parent can see from that file how
far the child got and how many times each step ran. The configuration of a run lives in the
execution's context, so it is stored with the execution and a recovering process sees the same.

Modes:

``run DB SCENARIO DRIVE CONTEXT_JSON``
    Register the SCENARIO procedure (see :func:`procedure`), start it with the context, print
    ``started <id>``, then drive it: ``auto`` starts it with ``auto=True`` and waits for its end;
    ``pause-after-s2`` starts it undriven, sends ``success`` once (s1 -> s2) and leaves s2's
    outcome pending. Either way the process then waits to be killed (it prints ``finished
    <status>`` if the execution ends first).
``recover DB``
    Open the store, print ``recovering <wall clock>``, call ``recover()``, print ``recovered
    <n>``, drive each handle to its end and print one JSON line ``{id: status}``.
``hold DB``
    Start one execution that waits in a state without an action (this takes the store's runner
    lock), print ``ready`` and wait to be killed.
``crash DB``
    Start one execution that waits, print ``started <id>``, then raise ``RuntimeError`` out of
    ``asyncio.run`` without closing the store (a program that crashed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procstore import ActionInfo, ProcedureStore
from tests.builders import fn

MODULE = "tests.crash_worker"
STEPS = ("s1", "s2", "s3", "s4", "s5")
RETRY_INTERVAL_MS = 300
STATE_TIMEOUT_MS = 500


# -- actions ------------------------------------------------------------------------------------


def append(context: dict[str, Any], line: str) -> bool:
    """Append ``line`` to the run's log file, durably, before anything else happens; return
    whether it is there for the first time (a re-run after a crash appends it again)."""
    path = Path(context["log"])
    first = not path.exists() or line not in path.read_text(encoding="utf-8").splitlines()
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())
    return first


async def step(context: dict[str, Any], info: ActionInfo) -> str:
    """One step: log, then sleep ``context["sleep"][state]`` seconds the first time it runs
    (long enough to be killed in), ``default_sleep`` otherwise."""
    first = append(context, f"{info.state} {info.attempt}")
    pause = context.get("default_sleep", 0)
    if first:
        pause = context.get("sleep", {}).get(info.state, pause)
    await asyncio.sleep(float(pause))
    return f"{info.state} done"


async def flaky(context: dict[str, Any], info: ActionInfo) -> str:
    """Log, then fail with ConnectionError until attempt ``context["succeed_at"]``."""
    append(context, f"{info.state} {info.attempt}")
    if info.attempt < int(context["succeed_at"]):
        raise ConnectionError(f"attempt {info.attempt} of {info.state} failed")
    return f"{info.state} done"


async def fail(context: dict[str, Any], info: ActionInfo) -> str:
    """Log, then fail (no retry): the saga's failing step."""
    append(context, f"{info.state} {info.attempt}")
    raise RuntimeError(f"{info.state} failed")


async def undo(context: dict[str, Any], info: ActionInfo) -> str:
    """A compensation: log ``undo:<state> <attempt>``, then the first time sleep
    ``context["undo_sleep"][state]`` seconds."""
    if append(context, f"undo:{info.state} {info.attempt}"):
        await asyncio.sleep(float(context.get("undo_sleep", {}).get(info.state, 0)))
    return f"{info.state} undone"


# -- procedures ---------------------------------------------------------------------------------


def procedure(scenario: str) -> dict[str, Any]:
    """The 5-step procedure of a scenario: ``s1 -> s2 -> s3 -> s4 -> s5`` on ``success``.

    ``chain``: every step is :func:`step`. ``retry``: s3 is :func:`flaky` with retry
    ``{max_attempts 3, interval_ms 300, backoff_rate 1}`` (no ``error`` transition: when the
    last attempt fails the execution fails). ``saga``: s1-s3 are compensated by :func:`undo`,
    s4 is :func:`fail`. ``timeout``: s3 has ``timeout_ms`` 500 and ``timeout -> s4``.
    """
    states: dict[str, Any] = {}
    for n, name in enumerate(STEPS):
        state: dict[str, Any] = {"action": fn("step", module=MODULE)}
        if n + 1 < len(STEPS):
            state["transitions"] = [{"event": "success", "target": STEPS[n + 1]}]
        states[name] = state
    if scenario == "retry":
        states["s3"]["action"] = fn("flaky", module=MODULE)
        states["s3"]["retry"] = {
            "max_attempts": 3,
            "interval_ms": RETRY_INTERVAL_MS,
            "backoff_rate": 1.0,
        }
    elif scenario == "saga":
        for name in ("s1", "s2", "s3"):
            states[name]["compensate"] = fn("undo", module=MODULE)
        states["s4"]["action"] = fn("fail", module=MODULE)
    elif scenario == "timeout":
        states["s3"]["timeout_ms"] = STATE_TIMEOUT_MS
        states["s3"]["transitions"].append({"event": "timeout", "target": "s4"})
    elif scenario != "chain":
        raise ValueError(f"unknown scenario {scenario!r}")
    return {
        "name": scenario,
        "version": "1.0",
        "definition": {"initial_state": "s1", "states": states},
    }


WAITING = {
    "name": "waiting",
    "version": "1.0",
    "definition": {
        "initial_state": "wait",
        "states": {"wait": {"transitions": [{"event": "go", "target": "end"}]}, "end": {}},
    },
}


# -- modes --------------------------------------------------------------------------------------


def say(*words: object) -> None:
    print(*words, flush=True)


def open_store(db: str) -> ProcedureStore:
    # The parent's ``pytest --hibernate-after`` run (see tests/conftest.py) reaches us here.
    after = os.environ.get("PROCSTORE_TEST_HIBERNATE_AFTER")
    if after is not None:
        return ProcedureStore(
            f"sqlite:///{db}", allowed_modules=[MODULE], hibernate_after=float(after)
        )
    return ProcedureStore(f"sqlite:///{db}", allowed_modules=[MODULE])


async def run(db: str, scenario: str, drive: str, context: dict[str, Any]) -> None:
    store = open_store(db)
    await store.register(procedure(scenario))
    execution = await store.start(scenario, "1.0", context, auto=drive == "auto")
    say("started", execution.id)
    if drive == "auto":
        final = await execution.run_to_completion()
        say("finished", final.status.value)
    elif drive == "pause-after-s2":
        await execution.send("success")
        say("in s2")
    else:
        raise ValueError(f"unknown drive {drive!r}")
    await asyncio.Event().wait()  # until killed


async def recover(db: str) -> None:
    store = open_store(db)
    await store.open()
    say("recovering", repr(time.time()))
    handles = await store.recover()
    say("recovered", len(handles))
    statuses = {}
    for handle in handles:
        final = await handle.run_to_completion(timeout=30)
        statuses[handle.id] = final.status.value
    await store.close()
    say(json.dumps(statuses))


async def hold(db: str) -> None:
    store = open_store(db)
    await store.register(WAITING)
    await store.start("waiting")
    say("ready")
    await asyncio.Event().wait()  # hold the runner lock until killed


async def crash(db: str) -> None:
    store = open_store(db)
    await store.register(WAITING)
    execution = await store.start("waiting")
    say("started", execution.id)
    raise RuntimeError("the program crashed with its store open")


def main(argv: list[str]) -> None:
    mode, db, *rest = argv
    if mode == "run":
        scenario, drive, context = rest
        asyncio.run(run(db, scenario, drive, json.loads(context)))
    elif mode == "recover":
        asyncio.run(recover(db))
    elif mode == "hold":
        asyncio.run(hold(db))
    elif mode == "crash":
        asyncio.run(crash(db))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
