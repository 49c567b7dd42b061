"""Applying a command from the store's inbox to an execution, exactly once.

A client (a process that does not run the execution) queues an event or a cancel in the store's
inbox; the process that runs the execution applies it here. Exactly once rests on the run
state's ``inbox`` cursor, the id of the last command applied: applying a command moves the
cursor and records a ``received`` record under the fire lock, together with what the command
does, so the commit that stores the effect stores the cursor too. After a crash, a command
whose effect was committed is at or below the stored cursor and is skipped; one whose effect
was not is applied again. Commands must be given in id order, one at a time per execution
(`procstore.inbox` does that).

A command that cannot be applied (an event no active state accepts, an execution that has
finished) is *refused*: its ``received`` record says why, and is committed with the cursor.
"""

from __future__ import annotations

from typing import Any

import procstore.runtime.callbacks as callbacks
import procstore.runtime.hibernation as hibernation
from procstore.errors import InvalidEvent
from procstore.eventdata import event_data
from procstore.runtime.events import ERROR, SUCCESS
from procstore.runtime.execution import Execution
from procstore.snapshot import Status

__all__ = [
    "applied",
    "firing_now",
    "receive_callback",
    "receive_cancel",
    "receive_event",
    "refuse",
]


def applied(execution: Execution, command: int) -> bool:
    """Whether inbox command ``command`` was applied to ``execution`` already."""
    return command <= execution._run.state.inbox


def firing_now(execution: Execution) -> bool:
    """Whether something moves ``execution`` at this moment (its fire lock is held): a
    command being applied should then not be cut short."""
    return execution._run.fire_lock.locked()


async def receive_event(execution: Execution, command: int, event: str, data: Any = None) -> None:
    """Apply inbox command ``command``, which sends ``event`` carrying ``data``: as ``send``
    does (waiting for
    the actions of the states that handle it themselves), or refused if ``send`` would raise
    ``InvalidEvent``. A command applied already does nothing.

    Raises:
        StoreError: the commit failed (the execution stopped; the command is applied again
            once it is recovered).
    """
    if applied(execution, command):
        return
    try:
        data = event_data(data, event)  # queued by another process: checked again here
    except InvalidEvent as refused:  # not recorded: it may be anything, of any size
        await refuse(execution, command, str(refused), event=event)
        return
    try:
        await execution._send(event, command, data)
    except InvalidEvent as refused:
        extra = {"data": data} if data is not None else {}
        await refuse(execution, command, str(refused), event=event, **extra)


async def receive_callback(execution: Execution, command: int, payload: dict[str, Any]) -> None:
    """Apply inbox command ``command``, which completes the callback ``payload["token"]``
    (``payload["event"]`` ``success`` with ``payload["data"]``, or ``error`` with
    ``payload["error"]`` and ``payload["cause"]``) as ``store.complete_callback`` /
    ``fail_callback`` do; refused (the token not recorded) when no state waits for it. A
    command applied already does nothing.

    Raises:
        StoreError: the commit failed (as for ``receive_event``).
    """
    if applied(execution, command):
        return
    token, event = payload.get("token"), payload.get("event")
    try:
        if not isinstance(token, str) or event not in (SUCCESS, ERROR):
            raise InvalidEvent(f"its payload is not a callback ({event!r})")
        if event == SUCCESS:
            data = event_data(payload.get("data"), SUCCESS)
            await callbacks.settle(execution._run, token, data=data, command=command)
        else:
            error, cause = payload.get("error"), payload.get("cause", "")
            callbacks.check_failure(error, cause)  # type: ignore[arg-type]
            failure = (str(error), str(cause))
            await callbacks.settle(execution._run, token, failure=failure, command=command)
    except InvalidEvent as refused:
        await refuse(execution, command, f"callback {refused}", event=str(event))


async def receive_cancel(execution: Execution, command: int, rollback: bool) -> None:
    """Apply inbox command ``command``, which cancels the execution (compensating what it did
    with ``rollback``) as ``cancel`` does; refused when the execution has finished or is
    already ending. A command applied already does nothing.

    Raises:
        StoreError: the commit failed (as for ``receive_event``).
    """
    if applied(execution, command):
        return
    state = execution._run.state
    if state.status is not Status.RUNNING:
        await refuse(execution, command, f"the execution has finished ({state.status.value})")
    elif state.closing:
        await refuse(execution, command, "the execution is already ending (compensating)")
    else:
        await execution._cancel(rollback, command)


async def refuse(execution: Execution, command: int, reason: str, **fields: Any) -> None:
    """Record that inbox command ``command`` was refused, and commit that with the cursor."""
    run = execution._run
    run.check_writable()
    hibernation.wake(run)  # parked since the inbox looked it up: it records nothing parked
    async with run.fire_lock:
        run.receive(command, message=f"refused: {reason}", **fields)
    await run.flush()
