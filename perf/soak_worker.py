"""The child process of the crash soak test (``perf/soak_crash.py``), one *generation* per run.

    python perf/soak_worker.py DB LOG GENERATION TARGET SEED [--pace S] [--final]

Each run opens the store ``sqlite:///DB``, registers the procedures below (a no-op once they
are stored), calls ``recover()``, then starts new executions, one every ``--pace`` seconds,
until the database holds ``TARGET`` of them (counted from the database, so the executions a
killed generation started and committed count). Every execution is started with
``auto=True``; the worker follows each one with ``watch()`` and plays the outside world:
it ``send()``s the event an execution waits for, and rolls back or cancels on purpose the
executions that wait for that, each after a random delay.

Every action and compensation first appends one line to the file LOG and fsyncs it, before it
does anything else::

    <generation> <execution id> act <state> <attempt>
    <generation> <execution id> undo <state> <attempt>

so the parent can tell, for each step, in which generations it ran. The parent kills this
process with SIGKILL at a random moment; the last generation (``--final``) is not killed and
exits once every execution in the database has finished.

Lines on stdout (flushed at once): ``ready <n recovered>``, ``started <index> <id>``,
``worker-error <id> <error>`` (the parent counts these as violations), ``finished <n>``.

The actions are public functions of this module, which the store allows by name
(``allowed_modules=["soak_worker"]``): run as a script, the module imports itself as
``soak_worker`` (``perf/`` is ``sys.path[0]``) and runs there, so the actions and the module
state they read (the log and the generation) are one and the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: use this checkout's procstore
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from procstore import ActionInfo, Execution, InvalidEvent, ProcedureStore, Status

MODULE = "soak_worker"
VERSION = "1.0"

STEP_SLEEP = (0.01, 0.3)
"""Seconds an ordinary action or compensation sleeps (uniform): long enough for kills to land
mid-step, short enough for an execution to move on between kills."""

RETRY: dict[str, Any] = {
    "max_attempts": 4,
    "interval_ms": 50,
    "backoff_rate": 2.0,
    "errors": ["ConnectionError", "Timeout"],
}
"""The retrying step's policy: 4 attempts, 50, 100 then 200 ms apart."""

ACTION_TIMEOUT_MS = 1000
"""Per attempt of the retrying step: a hanging attempt fails with ``Timeout`` (an ordinary one
takes at most 300 ms, far below it even on a loaded machine)."""

HANG_SECONDS = 30.0
"""How long a hanging attempt sleeps: only its action timeout ends it."""

SLOW_TIMEOUT_MS = 600
"""State timeout of the ``timed`` procedure's slow state (its action sleeps 100-1200 ms)."""

WAIT_TIMEOUT_MS = 1500
"""State timeout of the ``event`` procedure's waiting state (the event comes after 50-1200 ms
of a worker's life, or not before a kill)."""

EVENT_DELAY = (0.05, 1.2)
"""Seconds the worker waits before it sends an event, rolls back or cancels."""

# -- module state, set by main() -------------------------------------------------------------

_log_fd: int | None = None
_generation = -1


def _append(kind: str, info: ActionInfo) -> None:
    """Log that this action or compensation is running, durably, before it does anything else.

    One ``write`` on an ``O_APPEND`` descriptor: a line is never torn or interleaved."""
    assert _log_fd is not None, "the log is opened by main()"
    line = f"{_generation} {info.execution_id} {kind} {info.state} {info.attempt}\n"
    os.write(_log_fd, line.encode())
    os.fsync(_log_fd)


async def _nap() -> None:
    await asyncio.sleep(random.uniform(*STEP_SLEEP))


# -- actions ------------------------------------------------------------------------------------


async def step(context: dict[str, Any], info: ActionInfo) -> str:
    """An ordinary step: log, sleep a little, succeed."""
    _append("act", info)
    await _nap()
    return f"{info.state} done"


async def flaky(context: dict[str, Any], info: ActionInfo) -> str:
    """The retrying step: attempt ``n`` does what ``context["faults"][n - 1]`` says (``raise``:
    a ConnectionError; ``hang``: sleep until its action timeout cuts it off), and succeeds once
    the faults are used up. The same attempt number behaves the same when it runs again."""
    _append("act", info)
    faults = context["faults"]
    await _nap()
    if info.attempt <= len(faults):
        if faults[info.attempt - 1] == "hang":
            await asyncio.sleep(HANG_SECONDS)
        raise ConnectionError(f"attempt {info.attempt} of {info.state} failed")
    return f"{info.state} done"


async def sleepy(context: dict[str, Any], info: ActionInfo) -> str:
    """The ``timed`` procedure's slow step: sleeps ``context["slow_ms"]``, which may outlast the
    state's timeout."""
    _append("act", info)
    await asyncio.sleep(context["slow_ms"] / 1000)
    return f"{info.state} done"


async def fail(context: dict[str, Any], info: ActionInfo) -> str:
    """The saga's failing step: log, sleep, raise."""
    _append("act", info)
    await _nap()
    raise RuntimeError(f"{info.state} failed")


async def undo(context: dict[str, Any], info: ActionInfo) -> str:
    """A compensation: log, sleep a little, succeed."""
    _append("undo", info)
    await _nap()
    return f"{info.state} undone"


# -- procedures ---------------------------------------------------------------------------------


def _call(function: str, **fields: Any) -> dict[str, Any]:
    return {"type": "function", "module": MODULE, "function": function, **fields}


def _on(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"event": event, "target": target} for event, target in pairs]


def _procedure(name: str, initial: str, states: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "version": VERSION,
        "definition": {"initial_state": initial, "states": states},
    }


COMPENSATED = {"action": _call("step"), "compensate": _call("undo")}

PROCEDURES: dict[str, dict[str, Any]] = {
    # Retries with backoff, action timeouts; exhausted retries take the error transition to a
    # failure state, which rolls back the first step.
    "retrying": _procedure(
        "retrying",
        "reserve",
        {
            "reserve": {**COMPENSATED, "transitions": _on(("success", "fetch"))},
            "fetch": {
                "action": _call("flaky", timeout_ms=ACTION_TIMEOUT_MS),
                "retry": RETRY,
                "transitions": _on(("success", "save"), ("error", "gave_up")),
            },
            "save": {"action": _call("step"), "transitions": _on(("success", "done"))},
            "done": {},
            "gave_up": {"outcome": "failure"},
        },
    ),
    # A state timeout on an action that may be slower than it.
    "timed": _procedure(
        "timed",
        "prep",
        {
            "prep": {"action": _call("step"), "transitions": _on(("success", "slow"))},
            "slow": {
                "action": _call("sleepy"),
                "timeout_ms": SLOW_TIMEOUT_MS,
                "transitions": _on(("success", "fast"), ("timeout", "late")),
            },
            "fast": {"action": _call("step")},
            "late": {"action": _call("step")},
        },
    ),
    # An external event (the worker sends it), bounded by a state timeout.
    "event": _procedure(
        "event",
        "prep",
        {
            "prep": {"action": _call("step"), "transitions": _on(("success", "wait"))},
            "wait": {
                "timeout_ms": WAIT_TIMEOUT_MS,
                "transitions": _on(("go", "got"), ("timeout", "late")),
            },
            "got": {"action": _call("step"), "transitions": _on(("success", "end"))},
            "end": {},
            "late": {"action": _call("step")},
        },
    ),
    # A saga through a parallel state and a compound state: five compensated steps, then a
    # failing one with no error transition: rollback, newest first.
    "saga": _procedure(
        "saga",
        "flight",
        {
            "flight": {**COMPENSATED, "transitions": _on(("success", "lodging"))},
            "lodging": {
                "parallel": {
                    region: {
                        "initial_state": "book",
                        "states": {
                            "book": {**COMPENSATED, "transitions": _on(("success", "booked"))},
                            "booked": {},
                        },
                    }
                    for region in ("hotel", "car")
                },
                "transitions": _on(("done", "pay")),
            },
            "pay": {
                "initial_state": "charge",
                "states": {
                    "charge": {**COMPENSATED, "transitions": _on(("success", "receipt"))},
                    "receipt": {**COMPENSATED, "transitions": _on(("success", "confirm"))},
                    "confirm": {"action": _call("fail")},
                },
            },
        },
    ),
    # Waits in `hold` until the worker rolls it back or cancels it (with or without rollback),
    # as context["end_by"] says. (`go` is never sent: without a transition `hold` would be
    # terminal.)
    "manual": _procedure(
        "manual",
        "s1",
        {
            "s1": {**COMPENSATED, "transitions": _on(("success", "s2"))},
            "s2": {**COMPENSATED, "transitions": _on(("success", "hold"))},
            "hold": {"transitions": _on(("go", "s3"))},
            "s3": {"action": _call("step")},
        },
    ),
}

MIX = {"retrying": 25, "timed": 20, "event": 20, "saga": 20, "manual": 15}
"""Relative frequency of each procedure among the executions."""

END_BY = ("rollback", "cancel_rollback", "cancel")


def plan(seed: str, index: int) -> tuple[str, dict[str, Any]]:
    """The procedure and start context of the ``index``-th execution: fixed by the seed, so
    every generation (and the parent) agrees on it."""
    rng = random.Random(f"{seed}:{index}")
    name = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    context: dict[str, Any] = {"index": index}
    if name == "retrying":
        failures = rng.choice([0, 0, 1, 2, 3, 3, 4, 5])  # 4 or more: retries exhausted
        context["faults"] = [rng.choice(["raise", "raise", "hang"]) for _ in range(failures)]
    elif name == "timed":
        context["slow_ms"] = rng.randint(100, 1200)
    elif name == "manual":
        context["end_by"] = rng.choice(END_BY)
    return name, context


# -- the worker ---------------------------------------------------------------------------------


def say(*words: object) -> None:
    print(*words, flush=True)


async def _poke(execution: Execution, state: str) -> None:
    """Play the outside world for an execution waiting in ``state``, after a random delay: send
    the event it waits for, or roll it back or cancel it as its context says. A state timeout
    may have moved it on meanwhile: then there is nothing to do."""
    await asyncio.sleep(random.uniform(*EVENT_DELAY))
    if state not in execution.active or execution.status is not Status.RUNNING:
        return
    end_by = execution.state.context.get("end_by")
    try:
        if state == "wait":
            await execution.send("go")
        elif end_by == "rollback":
            await execution.rollback()
        else:
            await execution.cancel(rollback=end_by == "cancel_rollback")
    except InvalidEvent:
        pass  # it moved on (timed out) or finished just before


async def _reporting(execution: Execution, work: Awaitable[object]) -> None:
    """Await ``work``; an exception is a finding: report it and let the other executions go on."""
    try:
        await work
    except Exception as exc:
        say("worker-error", execution.id, repr(exc).replace("\n", " "))


async def follow(execution: Execution) -> None:
    """Follow one execution to its end, poking it where it waits for the outside world."""
    pokes: list[asyncio.Task[None]] = []
    async for record in execution.watch():
        # watch() replays the history first: _poke checks that the state is still active.
        if record.kind == "entered" and record.state in ("wait", "hold"):
            poke = _reporting(execution, _poke(execution, record.state))
            pokes.append(asyncio.create_task(poke))
    await execution.run_to_completion()
    await asyncio.gather(*pokes)


async def run(args: argparse.Namespace) -> None:
    global _log_fd, _generation
    _generation = args.generation
    _log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    store = ProcedureStore(f"sqlite:///{args.db}", allowed_modules=[MODULE])
    await store.open()
    for document in PROCEDURES.values():
        await store.register(document)
    followers = [asyncio.create_task(_reporting(h, follow(h))) for h in await store.recover()]
    say("ready", len(followers))
    stored = len(await store.executions())
    for index in range(stored, args.target):
        name, context = plan(args.seed, index)
        execution = await store.start(name, VERSION, context, auto=True)
        say("started", index, execution.id)
        followers.append(asyncio.create_task(_reporting(execution, follow(execution))))
        await asyncio.sleep(args.pace)
    await asyncio.gather(*followers)
    running = await store.executions(status=Status.RUNNING)
    if running:  # recover() resumed every unfinished one: nothing should be left
        say("worker-error", "-", f"{len(running)} executions still running after their end")
    say("finished", len(followers))
    if args.final:
        await store.close()
        return
    await asyncio.Event().wait()  # all done: wait for the kill, like a long-lived service


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("log")
    parser.add_argument("generation", type=int)
    parser.add_argument("target", type=int, help="executions the database should hold")
    parser.add_argument("seed")
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between two starts")
    parser.add_argument("--final", action="store_true", help="exit once everything finished")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    # Run the module under its own name, so the actions the store resolves ("soak_worker.step")
    # share the module state that main() sets.
    import soak_worker

    soak_worker.main(sys.argv[1:])
