"""Wait states: a leaf that waits (``wait``), then raises ``success`` as a completed action does.

The instant the wait ends is worked out once, when the state is entered (a fixed duration, a
timestamp, or either read from the context), and kept in the leaf's record (``wait_until``),
so it is committed with the entry before the wait begins. After a crash or a takeover the wait
goes on to that stored instant — at once if it passed meanwhile — and never starts over. A
duration or timestamp that cannot be worked out (a path that names nothing, a value of the
wrong type, an instant too far ahead) fails the state with a `WaitError`: its ``error`` event.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import procstore.runtime.steps as steps
from procstore.compiler import StatePlan
from procstore.datapaths import PathNotFound, parse_path
from procstore.definition import MAX_WAIT_SECONDS, WaitDef, parse_timestamp
from procstore.runtime.events import ERROR, SUCCESS
from procstore.runtime.history import error_fields
from procstore.runtime.state import LeafState
from procstore.snapshot import RecordKind

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["WaitError", "begin", "deadline", "resume"]


class WaitError(Exception):
    """How long a wait state waits could not be worked out from the context (the error
    type its ``error`` event carries)."""


def deadline(wait: WaitDef, context: dict[str, Any], now: float) -> float:
    """When a wait entered at ``now`` (wall-clock seconds) ends.

    Raises:
        WaitError: a path names nothing or a value of the wrong type, or the wait would be
            longer than `MAX_WAIT_SECONDS`.
    """
    if wait.seconds is not None:
        return now + wait.seconds
    if wait.ms is not None:
        return now + wait.ms / 1000
    if wait.timestamp is not None:
        return _until(wait.timestamp, now, "timestamp")
    if wait.seconds_path is not None:
        value = _read(wait.seconds_path, context, "seconds_path")
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise WaitError(
                f"seconds_path {wait.seconds_path}: expected a number of seconds, "
                f"got {_kind(value)}"
            )
        if not 0 <= value <= MAX_WAIT_SECONDS:
            raise WaitError(
                f"seconds_path {wait.seconds_path}: {value!r} seconds is not between 0 and "
                f"{MAX_WAIT_SECONDS} (MAX_WAIT_SECONDS)"
            )
        return now + value
    assert wait.timestamp_path is not None  # validated: exactly one is given
    value = _read(wait.timestamp_path, context, "timestamp_path")
    if not isinstance(value, str):
        raise WaitError(
            f"timestamp_path {wait.timestamp_path}: expected an RFC 3339 timestamp, "
            f"got {_kind(value)}"
        )
    return _until(value, now, f"timestamp_path {wait.timestamp_path}")


def _read(path: str, context: dict[str, Any], field: str) -> Any:
    try:
        return parse_path(path).get(context)
    except PathNotFound as exc:
        raise WaitError(f"{field} {exc}") from None


def _until(text: str, now: float, what: str) -> float:
    try:
        instant = parse_timestamp(text).timestamp()
    except ValueError as exc:
        raise WaitError(f"{what}: {exc}") from None
    if instant - now > MAX_WAIT_SECONDS:
        raise WaitError(
            f"{what}: {text} is more than {MAX_WAIT_SECONDS} seconds ahead (MAX_WAIT_SECONDS)"
        )
    return instant


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a value of type {type(value).__name__}"


def begin(run: Run, plan: StatePlan) -> None:
    """``plan``'s wait state was entered: work out its end, record it, and wait (or fail the
    state when its end cannot be worked out)."""
    assert plan.wait is not None
    leaf = run.state.leaves.setdefault(plan.path, LeafState())
    try:
        leaf.wait_until = deadline(plan.wait, run.state.context, run.clock.time())
    except WaitError as exc:
        leaf.error, leaf.outcome = error_fields(exc), (ERROR, True)
        leaf.error_types = steps.error_types(exc)  # what transitions' errors match
        run.log(RecordKind.WAIT, state=plan.path, error=leaf.error)
        steps.start(run, plan.path, steps.deliver, run, plan, leaf, ERROR, True)
        return
    until = datetime.fromtimestamp(leaf.wait_until, UTC).isoformat()
    run.log(RecordKind.WAIT, state=plan.path, message=until)
    steps.start(run, plan.path, _wait, run, plan, leaf)


def resume(run: Run, plan: StatePlan, leaf: LeafState) -> None:
    """Carry on a wait after a restart: to its stored end, at once if that has passed."""
    steps.start(run, plan.path, _wait, run, plan, leaf)


async def _wait(run: Run, plan: StatePlan, leaf: LeafState) -> None:
    assert leaf.wait_until is not None
    await run.clock.sleep(leaf.wait_until - run.clock.time())
    leaf.acted, leaf.outcome = True, (SUCCESS, False)
    await steps.deliver(run, plan, leaf, SUCCESS, False)
