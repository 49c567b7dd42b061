"""Callbacks with a token (Step Functions' ``.waitForTaskToken``): a state with
``"callback": true`` waits for an outside system to report success (with data) or failure,
naming only a token — not the execution, not the state.

Entering such a state makes a token, kept in the leaf's record of the run state (so it is in
every checkpoint, and survives a crash and a takeover) and handed out as ``$$.token`` and the
action's ``info.token``. Leaving the state drops it: a token is good for one visit. It is
committed before the action runs (a step commits what led to it first), so no action hands out
a token the database does not hold, and an attempt run again after a crash gets the same one.

A token is ``<execution id>.<secret>``: the store finds the execution from the id part with one
read (no index, no schema change), and the secret part, ``TOKEN_SECRET_BYTES`` random bytes
from `secrets`, must equal the stored one (compared in constant time). Knowing an execution's
id is not enough to complete its callbacks; the token is never written to the history.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Any, Final

import procstore.runtime.hibernation as hibernation
import procstore.runtime.steps as steps
from procstore.errors import InvalidEvent
from procstore.runtime.events import ERROR, SUCCESS
from procstore.snapshot import RecordKind

if TYPE_CHECKING:
    from procstore.runtime.run import Run
    from procstore.runtime.state import RunState

__all__ = [
    "MAX_CAUSE_CHARS",
    "MAX_ERROR_NAME_CHARS",
    "MAX_TOKEN_CHARS",
    "TOKEN_SECRET_BYTES",
    "check_failure",
    "execution_of",
    "new_token",
    "settle",
    "token_of",
]

TOKEN_SECRET_BYTES: Final = 32
"""Random bytes in a token's secret part (256 bits: not guessable)."""
MAX_TOKEN_CHARS: Final = 200
"""The longest string accepted as a token (a real one is about 76 characters)."""
MAX_ERROR_NAME_CHARS: Final = 256
"""The longest error name a failed callback may give (Step Functions' limit)."""
MAX_CAUSE_CHARS: Final = 32_768
"""The longest cause a failed callback may give (Step Functions' limit)."""

_SEPARATOR: Final = "."


def new_token(execution_id: str) -> str:
    """A fresh token for a callback of execution ``execution_id``."""
    return f"{execution_id}{_SEPARATOR}{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"


def execution_of(token: str) -> str:
    """The id of the execution ``token`` belongs to.

    Raises:
        InvalidEvent: ``token`` is not a callback token.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidEvent("that is not a callback token")
    execution_id, separator, secret = token.rpartition(_SEPARATOR)
    if not separator or not execution_id or not secret:
        raise InvalidEvent("that is not a callback token")
    return execution_id


def check_failure(error: str, cause: str) -> None:
    """Refuse a failure report whose ``error`` or ``cause`` is not a string of the allowed size.

    Raises:
        InvalidEvent: what is wrong.
    """
    if not isinstance(error, str) or not error or len(error) > MAX_ERROR_NAME_CHARS:
        raise InvalidEvent(
            f"a callback's error is a name of 1 to {MAX_ERROR_NAME_CHARS} characters "
            "(MAX_ERROR_NAME_CHARS)"
        )
    if not isinstance(cause, str) or len(cause) > MAX_CAUSE_CHARS:
        raise InvalidEvent(
            f"a callback's cause is a string of at most {MAX_CAUSE_CHARS} characters "
            "(MAX_CAUSE_CHARS)"
        )


def token_of(state: RunState, path: str) -> str | None:
    """The token of the callback ``path`` waits for, if it waits for one."""
    leaf = state.leaves.get(path)
    return leaf.token if leaf is not None else None


def _waiting(state: RunState, token: str) -> str | None:
    """The active leaf whose callback ``token`` is, if any."""
    given = token.encode()
    for path, leaf in state.leaves.items():
        stored = leaf.token
        waiting = stored is not None and path in state.active
        if waiting and hmac.compare_digest(str(stored).encode(), given):
            return path
    return None


def _unknown(run: Run) -> InvalidEvent:
    return InvalidEvent(
        f"no state of execution {run.id} waits for that callback token (it was completed "
        "already, or its state was left)"
    )


async def settle(
    run: Run,
    token: str,
    *,
    data: Any = None,
    failure: tuple[str, str] | None = None,
    command: int | None = None,
) -> bool:
    """Complete the callback ``token`` of ``run``: ``success`` carrying ``data`` from its
    state, or with ``failure`` (error name, cause) ``error`` from its state, as an action's
    failure (its ``error`` transitions, else the execution fails; guards see the error as
    ``error``, its ``type`` the name and ``message`` the cause). It waits for the state's
    running action first, as ``send`` does. With ``command``, it is inbox command
    ``command`` (see `procstore.runtime.received`).

    Returns:
        Whether a transition fired (``success`` may be blocked by guards or have no
        transition: the state then still waits, with the same token).

    Raises:
        InvalidEvent: no active state waits for ``token``, or the execution has finished.
    """
    run.check_writable()
    hibernation.wake(run)  # parked since it was looked up (the inbox applies later)
    async with run.sending():  # touched once released: it may be parked now
        while True:
            run.refuse_if_finished()
            path = _waiting(run.state, token)
            if path is None:
                raise _unknown(run)
            step = run.tasks.get(path)
            if step is None:
                break
            await steps.wait_for([step])
        async with run.fire_lock:
            run.refuse_if_finished()  # a cancel() may have got in first
            path = _waiting(run.state, token)
            if path is None:
                raise _unknown(run)
            event = SUCCESS if failure is None else ERROR
            if failure is not None:
                data = {"error": failure[0], "cause": failure[1]}
            if command is not None:
                extra = {"data": data} if data is not None else {}
                run.receive(command, event=event, message="callback", **extra)
            router = run.router
            if failure is not None:
                error = {"type": failure[0], "message": failure[1]}
                leaf = run.state.leaves[path]
                # An outside system's error name: an Exception, as Step Functions'
                # States.TaskFailed matches SendTaskFailure.
                leaf.error, leaf.error_types = error, [failure[0], "Exception"]
                before = router.transitions
                await router.raise_event(ERROR, path, leaf.error_types, error, data=data)
                fired = router.transitions > before
            elif router.handled_within(path, SUCCESS):
                fired = await router.trigger(SUCCESS, path, data=data)
            else:
                run.log(RecordKind.IGNORED, state=path, event=SUCCESS)
                fired = False
            await router.drain()
        if run.exited:
            await steps.settle_exited(run)
        await run.flush()
    return fired
