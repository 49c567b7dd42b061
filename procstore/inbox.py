"""The inbox, on the side of whoever runs executions: delivering the commands that clients queue
(``procstore.storage.base.Command``) to the live executions they are for.

Two pieces, so that a process that holds only some of a database's executions can use the
first alone:

* `Deliveries` applies commands to live executions: for each execution one at a time, in id
  order, by a task of its own (an event waits for the running action of the state that handles
  it, as ``send()`` does, and holds up no other execution); exactly once through the
  execution's cursor (``procstore.runtime.received``). It collects the ids of the commands
  that are done with (applied and committed, or dropped), for ``Backend.delete_commands``.
* `InboxLoop` is a runner's: it waits for a change (``Backend.wait_for_change``), reads the
  whole inbox, finds each command's execution (``adopt``: the live handle, or the stored one
  restored) and hands the commands to its `Deliveries`; it deletes what is done with.

It reads the whole inbox each time, from the first command, rather than after the last one it
saw: on PostgreSQL, commands of different executions may commit out of id order, so a command
with a smaller id can appear after a larger one was read. Applied commands are deleted within a
read or two, so the inbox holds little more than what is waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from procstore.errors import ExecutionDamaged, ExecutionNotFound, StoreError
from procstore.runtime import Execution
from procstore.runtime.received import (
    applied,
    firing_now,
    receive_callback,
    receive_cancel,
    receive_event,
    refuse,
)
from procstore.storage import Backend, Command
from procstore.storage.base import CANCEL, COMMANDS_PAGE, EVENT

__all__ = ["ADOPT_RETRY_S", "IDLE_READ_S", "STOP_GRACE_S", "Adopt", "Deliveries", "InboxLoop"]

logger = logging.getLogger("procstore")

ADOPT_RETRY_S: Final = 1.0
"""How long an execution that ``adopt`` declined (its host code is missing here) is left alone
before its queued commands are tried again."""

IDLE_READ_S: Final = 5.0
"""Longest time between two reads of the inbox when no change is noticed: a safety net (a
notification lost with a connection); commands are normally picked up when they commit."""

STOP_GRACE_S: Final = 1.0
"""How long stopping waits for a command being applied at that moment (its execution's fire
lock held) to be committed, before cancelling it: cut short mid-transition, it would leave
the handle half moved. A command still waiting for a running action is cancelled at once; it
stays queued for the next runner."""

Adopt = Callable[[str], Awaitable[Execution | None]]
"""Finds the live execution an execution id's commands go to: ``None`` when it is not run
here (its commands stay queued); ``ExecutionNotFound`` or ``ExecutionDamaged`` when nothing
can ever apply them (they are dropped)."""


@dataclass(slots=True)
class _Queue:
    """The commands queued for one live execution, and the task applying them."""

    execution: Execution
    commands: deque[Command] = field(default_factory=deque)
    last: int = 0  # the highest id queued so far
    task: asyncio.Task[None] | None = None


class Deliveries:
    """Applies commands to live executions (see the module's docstring).

    Args:
        where: What log messages call the store.
    """

    def __init__(self, where: str) -> None:
        self._where = where
        self._queues: dict[str, _Queue] = {}
        self._done: list[int] = []

    def deliver(self, execution: Execution, commands: Iterable[Command]) -> None:
        """Queue ``commands`` (for ``execution``, in id order) after those queued for it
        already; a command queued or applied before is skipped."""
        queue = self._queues.get(execution.id)
        if queue is None or queue.execution is not execution:
            if queue is not None and queue.task is not None:  # a handle that stopped
                queue.task.cancel()
            queue = self._queues[execution.id] = _Queue(execution)
        for command in commands:
            if command.id <= queue.last:
                continue
            if applied(execution, command.id):
                self._done.append(command.id)  # its deletion was lost: delete it again
                continue
            queue.commands.append(command)
            queue.last = command.id
        if queue.commands and (queue.task is None or queue.task.done()):
            queue.task = asyncio.get_running_loop().create_task(self._drain(queue))

    def drop(self, commands: Iterable[Command]) -> None:
        """Count ``commands`` as done with, unapplied (nothing can ever apply them)."""
        self._done += [command.id for command in commands]

    def take_done(self) -> list[int]:
        """The ids of the commands done with since the last call."""
        done, self._done = self._done, []
        return done

    async def stop(self) -> None:
        """Stop applying commands: a command being applied now is given `STOP_GRACE_S` to be
        committed; the others (waiting for an action, or queued) stay in the inbox."""
        queues = [q for q in self._queues.values() if q.task is not None and not q.task.done()]
        for queue in queues:
            queue.commands.clear()  # apply nothing after the command in progress
        firing = [q.task for q in queues if q.task is not None and firing_now(q.execution)]
        if firing:
            await asyncio.wait(firing, timeout=STOP_GRACE_S)
        tasks = [q.task for q in queues if q.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()

    async def _drain(self, queue: _Queue) -> None:
        """Apply the queue's commands one at a time until it is empty."""
        while queue.commands:
            command = queue.commands[0]
            try:
                await _apply(queue.execution, command)
            except Exception as exc:
                if isinstance(exc, StoreError):  # its store failed it: it stopped, and says so
                    logger.warning(
                        "%s: inbox command %d for execution %s was not applied: %s",
                        self._where,
                        command.id,
                        command.execution_id,
                        exc,
                    )
                else:  # a defect: say so, and leave the commands queued
                    logger.exception(
                        "%s: inbox command %d for execution %s failed",
                        self._where,
                        command.id,
                        command.execution_id,
                    )
                queue.commands.clear()
                queue.last = 0  # given again once the execution runs again
                return
            if queue.commands and queue.commands[0] is command:
                queue.commands.popleft()
            self._done.append(command.id)
        # Let go of the execution once its commands are applied: a queue kept would hold it in
        # memory for good, hibernated or not. A command read again before its deletion is
        # skipped by the execution's own cursor (``applied``), queue or no queue.
        if self._queues.get(queue.execution.id) is queue:
            del self._queues[queue.execution.id]


async def _apply(execution: Execution, command: Command) -> None:
    """Apply one command to ``execution`` (a start needs nothing more: it runs)."""
    payload = command.payload
    if command.kind == EVENT and command.reason is None and "token" in payload:
        await receive_callback(execution, command.id, payload)
    elif command.kind == EVENT and command.reason is None and isinstance(payload.get("event"), str):
        await receive_event(execution, command.id, payload["event"], payload.get("data"))
    elif command.kind == CANCEL and command.reason is None:
        await receive_cancel(execution, command.id, bool(payload.get("rollback", False)))
    elif command.kind in (EVENT, CANCEL) and not applied(execution, command.id):
        why = command.reason or f"its payload {payload!r} names no event"
        await refuse(execution, command.id, f"the {command.kind} command is damaged: {why}")


class InboxLoop:
    """A runner's inbox: finds the commands clients queue and delivers them (see the module's
    docstring). ``start`` it once the process runs the store's executions; ``stop`` it before
    the store closes.

    Args:
        backend: The store's backend.
        adopt: Finds the live execution an execution id's commands go to (see `Adopt`).
        where: What log messages call the store.
    """

    def __init__(self, backend: Backend, adopt: Adopt, where: str) -> None:
        self._backend = backend
        self._adopt = adopt
        self._where = where
        self.deliveries = Deliveries(where)
        self._declined: dict[str, float] = {}  # execution id -> when adopt declined it
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading the inbox, now and after every change, in a task of its own."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"procstore inbox {self._where}")

    async def stop(self) -> None:
        """Stop reading and delivering."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.deliveries.stop()

    async def _run(self) -> None:
        """Read the inbox after every change, until stopped; a failure (the database out of
        reach, a defect) is logged and the reading goes on after ``IDLE_READ_S``."""
        marker: int | None = None
        while True:
            try:
                if marker is None:
                    marker = await self._backend.wait_for_change(0)
                await self.read()
                marker = await self._backend.wait_for_change(IDLE_READ_S, since=marker)
            except StoreError as exc:
                logger.warning("%s: cannot read the inbox: %s", self._where, exc)
                await asyncio.sleep(IDLE_READ_S)
            except Exception:
                logger.exception("%s: reading the inbox failed", self._where)
                await asyncio.sleep(IDLE_READ_S)

    async def read(self) -> None:
        """Read the whole inbox once: deliver what is for a live (or adoptable) execution,
        drop what nothing can apply, delete what is done with."""
        after = 0
        while True:
            page = await self._backend.commands_after(after, COMMANDS_PAGE)
            by_execution: dict[str, list[Command]] = {}
            for command in page:
                by_execution.setdefault(command.execution_id, []).append(command)
            for execution_id, commands in by_execution.items():
                await self._dispatch(execution_id, commands)
            if len(page) < COMMANDS_PAGE:
                break
            after = page[-1].id
        done = self.deliveries.take_done()
        if done:
            await self._backend.delete_commands(done)

    async def _dispatch(self, execution_id: str, commands: list[Command]) -> None:
        loop = asyncio.get_running_loop()
        declined = self._declined.get(execution_id)
        if declined is not None and loop.time() - declined < ADOPT_RETRY_S:
            return
        try:
            execution = await self._adopt(execution_id)
        except (ExecutionNotFound, ExecutionDamaged) as exc:
            logger.warning(
                "%s: dropping %d inbox command(s) for execution %s: %s",
                self._where,
                len(commands),
                execution_id,
                exc,
            )
            self.deliveries.drop(commands)
            return
        if execution is None:
            self._declined[execution_id] = loop.time()
            return
        self._declined.pop(execution_id, None)
        self.deliveries.deliver(execution, commands)
