"""One execution's inside: its state and the collaborators that move it, wired together.

`Run` holds what every part of the runtime shares — the compiled procedure, the `RunState`,
the history, the journal writer, the clock, the locks, the running steps and armed timers —
and the `Router`, the model transitions moves (routing, completion). The other parts are
modules of functions over a run, each with one job: `steps` (background work: actions with
their attempts and retries), `timers` (state timeouts) and `saga` (compensation). The public
handle, `Execution`, wraps a run.

They are functions rather than objects because an execution may live for days: every object
it holds is one more for the garbage collector to walk, with 10,000 executions alive.

Ordering: external events queue on `send_lock` (FIFO); machine triggers are serialised by
`fire_lock`, so transitions never overlap on one execution — which is why procstore needs
neither transitions' ``queued`` mode nor its task cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import procstore.runtime.hibernation as hibernation
import procstore.runtime.steps as steps
from procstore.clock import Clock, TimerHandle
from procstore.compiler import CompiledProcedure, StatePlan
from procstore.errors import InvalidEvent, LeaseLost, StoreError
from procstore.runtime.history import History
from procstore.runtime.journal import Journal, Writer
from procstore.runtime.router import Router
from procstore.runtime.state import RunState
from procstore.runtime.sync import Latch, Mutex
from procstore.snapshot import RecordKind, Status

if TYPE_CHECKING:
    from procstore.runtime.execution import Execution
    from procstore.runtime.hibernation import Sleeper
    from procstore.runtime.items import Spawner

__all__ = ["Run"]

logger = logging.getLogger("procstore")


class Run:
    """The shared inside of one execution (see the module's docstring)."""

    __slots__ = (
        "clock",
        "compiled",
        "drivers",
        "exited",
        "finished",
        "fire_lock",
        "frozen",
        "handle",
        "history",
        "id",
        "invoking",
        "parked",
        "plans",
        "registry",
        "router",
        "send_lock",
        "sleeper",
        "spawner",
        "state",
        "tasks",
        "timers",
        "winding_down",
        "writer",
    )

    def __init__(
        self,
        compiled: CompiledProcedure,
        execution_id: str,
        state: RunState,
        journal: Journal | None,
        running: dict[str, Execution] | None,
        spawner: Spawner | None = None,
        sleeper: Sleeper | None = None,
    ) -> None:
        self.id = execution_id
        self.compiled = compiled
        self.plans: dict[str, StatePlan] = compiled.states
        self.state = state
        self.clock: Clock = compiled.clock
        self.history = History(self.clock)
        self.writer = Writer(self, journal)
        # Where the store keeps unfinished executions alive: asyncio holds tasks only weakly,
        # so an execution nobody references could otherwise vanish mid-run.
        self.registry = running
        self.handle: Execution | None = None
        self.send_lock = Mutex()
        self.fire_lock = Mutex()
        self.finished = Latch()  # set when it ends
        self.drivers = 0  # callers of run_to_completion() driving it now
        self.frozen: str | None = None  # why the handle may not change the execution
        self.tasks: dict[str, asyncio.Task[None]] = {}  # running steps, by state path
        # Steps cancelled by leaving their state: a tuple, the shared empty one while none is.
        self.exited: tuple[asyncio.Task[None], ...] = ()
        self.timers: dict[str, TimerHandle] = {}  # armed state timeouts, by state path
        self.invoking = 0  # actions (attempts, compensations) running now
        self.winding_down = False  # the store is stopping: no new action starts
        self.router = Router(self)
        self.spawner = spawner  # how its map states start their items (the store's)
        self.sleeper = sleeper  # the store that parks it while it only waits, if any
        self.parked = False  # hibernating: nothing of it runs here (see runtime.hibernation)

    # -- what the parts ask ---------------------------------------------------------------------

    @property
    def driven(self) -> bool:
        """Outcome events fire by themselves (``auto``, or someone runs it to completion)."""
        return self.state.auto or self.drivers > 0

    @property
    def busy(self) -> bool:
        """Running an action, a transition or a commit now: letting go of it (a store that
        closes, or parks it) would cut something short."""
        return self.invoking > 0 or self.fire_lock.locked() or self.writer.lock.locked()

    def log(self, kind: RecordKind, **fields: Any) -> None:
        self.history.log(kind, **fields)

    def touch(self) -> None:
        """It did something (or a caller let go of it): tell the store that parks idle
        executions, which starts its idle interval again."""
        if self.sleeper is not None:
            self.sleeper.touched(self)

    def sending(self) -> Sending:
        """Hold the send lock (an event or a callback is delivered), then `touch`, however
        the holder ends: delivered, refused, failed or cancelled. A store that parks idle
        executions does not park one whose send lock is held, and only looks again when it
        is touched: without this touch, an execution whose event was refused after waiting
        for a step would stay in memory for good."""
        return Sending(self)

    def receive(self, command: int, **fields: Any) -> None:
        """Inbox command ``command`` is being applied (the fire lock is held): move the cursor
        and record it, so that the commit of what it does stores both (see
        `procstore.runtime.received`)."""
        self.state.inbox = command
        self.log(RecordKind.RECEIVED, state=self.router.current, **fields)

    def snapshot(self) -> tuple[str, dict[str, Any]]:
        """What is committed with the records: the status and the checkpoint."""
        checkpoint = self.state.checkpoint(self.router.fsm_state, self.compiled.order)
        checkpoint["due"] = hibernation.due(self)
        return self.state.status.value, checkpoint

    async def flush(self) -> None:
        """Commit what was recorded since the last commit (see `Writer.flush`)."""
        await self.writer.flush()

    def refuse_if_finished(self) -> None:
        if not self.state.running:
            raise InvalidEvent(f"execution {self.id} has finished; it accepts no events")

    def check_writable(self) -> None:
        if self.frozen is not None:
            self.writer.raise_if_failed()
            raise StoreError(f"execution {self.id}: this handle is {self.frozen}")

    # -- ends -----------------------------------------------------------------------------------

    def finish(self, status: Status) -> None:
        """End the execution with `status`: stop everything, record it, wake the waiters."""
        steps.halt(self)
        state = self.state
        state.deadlines.clear()
        state.deadline = None
        state.internal = ()
        state.closing = False
        state.rollback = None
        self.unregister()
        state.status = status
        why = {"error": state.error} if state.error is not None else {}
        self.log(RecordKind.FINISHED, state=self.router.current, status=status, **why)
        self.finished.set()

    def unregister(self) -> None:
        if self.registry is not None:
            self.registry.pop(self.id, None)

    def stop(self, failure: StoreError) -> None:
        """A write failed: stop everything this handle runs, at once and without a record or
        a status the database does not have. The handle goes back to the checkpoint last
        committed; a new handle (``recover()``) carries the execution on from there once
        writes work again."""
        if isinstance(failure, LeaseLost):  # it goes on in the worker that took it over
            self.frozen = f"detached: {failure}"
        else:
            self.frozen = f"stopped: a write to its store failed ({failure})"
        steps.halt(self)
        self.unregister()
        stored = self.writer.stored
        if stored is not None:  # the handle shows what the database holds, nothing newer
            self.restore(stored, self.history.dicts(0, self.writer.flushed))
        self.finished.set()  # wakes run_to_completion(), which raises the failure
        self.history.wake()

    def restore(self, snapshot: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """Become the execution a stored checkpoint and journal describe.

        Raises:
            ValueError: the checkpoint is damaged or names states the procedure does not have.
        """
        leaves = {path for path, plan in self.plans.items() if plan.works}
        state, configuration = RunState.restore(snapshot, leaves)
        leaf_configuration = configuration if isinstance(configuration, list) else [configuration]
        named = {*state.active, *map(str, leaf_configuration), *state.leaves, *state.completed}
        unknown = sorted(named - self.plans.keys())
        if unknown or not state.active:
            # Damaged, or written for another version: resuming it would run a wrong
            # configuration, so refuse (the store quarantines it).
            raise ValueError(f"its snapshot names states the procedure does not have: {unknown}")
        self.state = state
        self.router.fsm_state = configuration
        self.history.replace(records)
        self.writer.flushed, self.writer.stored = len(records), snapshot
        if state.status is not Status.RUNNING:
            self.finished.set()
            self.unregister()


class Sending:
    """`Run.sending`: a plain class rather than a generator-based context manager, which
    would cost every ``send()`` a generator and its frames."""

    __slots__ = ("_run",)

    def __init__(self, run: Run) -> None:
        self._run = run

    async def __aenter__(self) -> None:
        try:
            await self._run.send_lock.acquire()
        except BaseException:
            self._run.touch()  # cancelled while queued: nothing was sent, look again
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._run.send_lock.release()
        self._run.touch()
