"""A map state's step: one child execution per item of a list, at most ``max_concurrency`` at
once, their outputs collected in the items' order.

The children are executions of their own in the same store (Step Functions' Distributed Map
does the same): each item's steps are stored and resumed after a crash like any execution's.
The runtime does not know the store: it starts, waits for and cancels children through the
`Spawner` the store gives each execution (as it gives the journal and the clock).

Before a child is started its id is recorded in the map state's `MapProgress` and committed
(write-ahead); a step resumed after a crash re-attaches to the children recorded there (the
spawner starts one only if it does not exist yet), so no item runs twice and none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import procstore.runtime.steps as steps
from procstore import datapaths
from procstore.compiler import MapPlan, StatePlan
from procstore.definition import MAX_MAP_ITEMS
from procstore.errors import StoreError
from procstore.runtime.events import DONE, ERROR
from procstore.runtime.state import LeafState, MapProgress
from procstore.snapshot import RecordKind, Status

if TYPE_CHECKING:
    from procstore.runtime.run import Run

__all__ = ["MAP_FAILED", "MAP_ITEMS_INVALID", "ChildEnd", "Spawner", "run_map"]

logger = logging.getLogger("procstore")

#: The error type of a map state whose failed items exceed what it tolerates (Step Functions'
#: ``States.ExceedToleratedFailureThreshold``).
MAP_FAILED = "MapFailed"
#: The error type of a map state whose ``items_path`` names nothing, or no list, or a list
#: longer than ``MAX_MAP_ITEMS``.
MAP_ITEMS_INVALID = "MapItemsInvalid"


@dataclass(frozen=True, slots=True)
class ChildEnd:
    """How a child execution ended: its status, final context and (failed) why."""

    status: Status
    context: dict[str, Any]


class Spawner(Protocol):
    """What a map state needs of the store its execution lives in."""

    async def start_child(
        self, child_id: str, procedure: str, version: str, context: dict[str, Any]
    ) -> None:
        """Start an execution ``child_id`` of ``procedure`` (driving itself), unless an
        execution of that id exists already (then nothing happens)."""

    async def wait_child(self, child_id: str) -> ChildEnd:
        """Wait until execution ``child_id`` has finished; how it ended."""

    async def cancel_child(self, child_id: str) -> None:
        """Cancel execution ``child_id`` if it is still running."""


async def run_map(run: Run, plan: StatePlan) -> None:
    """The step of a map state (see the module's docstring): read the list (or, resuming, the
    progress recorded), run the items, then ``done`` (the outputs stored at ``result``) or
    ``error``."""
    spec = plan.map
    assert spec is not None
    leaf = run.state.leaves.setdefault(plan.path, LeafState())
    try:
        items = _items(run, spec)
    except ValueError as exc:
        await _end(run, plan, leaf, {"type": MAP_ITEMS_INVALID, "message": str(exc)})
        return
    if run.spawner is None:
        raise StoreError("a map state needs its store to start its items")
    if leaf.map is None:
        leaf.map = MapProgress(count=len(items))
    error = await _Items(run, plan, spec, run.spawner, leaf.map, items).until_ended()
    if error is None and spec.result is not None:
        outputs = [leaf.map.outputs.get(i) for i in range(leaf.map.count)]
        try:
            spec.result.put(run.state.context, outputs)
        except datapaths.PathNotFound as exc:  # Step Functions' States.ResultPathMatchFailure
            error = {"type": "PathNotFound", "message": f"result {exc}"}
    await _end(run, plan, leaf, error)


class _Items:
    """One run of a map state's items: the children waited for, topped up to
    ``max_concurrency``, until all ended or too many failed."""

    def __init__(
        self,
        run: Run,
        plan: StatePlan,
        spec: MapPlan,
        spawner: Spawner,
        progress: MapProgress,
        items: list[Any],
    ) -> None:
        self.run, self.plan, self.spec, self.spawner = run, plan, spec, spawner
        self.progress, self.items = progress, items
        self.waiting: dict[asyncio.Task[ChildEnd], int] = {}

    async def until_ended(self) -> dict[str, str] | None:
        """Run the items; the map's error, or ``None`` when it is done."""
        progress = self.progress
        try:
            for index in sorted(progress.children):
                # Recorded, so maybe started: start_child does nothing if it exists.
                await self.start(index)
            while True:
                if self.spec.over_tolerance(len(progress.failed), progress.count):
                    await _cancel_children(self.spawner, progress)
                    progress.children.clear()
                    message = (
                        f"{len(progress.failed)} of {progress.count} items failed, more than "
                        "tolerated"
                    )
                    return {"type": MAP_FAILED, "message": message}
                await self.top_up()
                if not self.waiting:
                    return None
                ended, _ = await asyncio.wait(self.waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in ended:
                    _record(
                        self.run,
                        self.plan,
                        self.spec,
                        progress,
                        self.waiting.pop(task),
                        task.result(),
                    )
                await self.run.flush()
        finally:
            await self.stop()

    async def top_up(self) -> None:
        """Start the next items, up to ``max_concurrency`` running; their ids are recorded and
        committed before they exist."""
        progress, run = self.progress, self.run
        fresh: list[int] = []
        limit = self.spec.max_concurrency - len(self.waiting)
        while len(fresh) < limit and progress.started < len(self.items):
            index = progress.started
            child = progress.children[index] = uuid.uuid4().hex
            progress.started += 1
            fresh.append(index)
            # A record, so that the flush commits the id with it.
            run.log(
                RecordKind.ITEM, state=self.plan.path, target=child, result=_counts(progress, index)
            )
        if fresh:
            await run.flush()
        for index in fresh:
            await self.start(index)

    async def start(self, index: int) -> None:
        """Start item ``index`` (its id is recorded); an item whose ``item_selector`` names
        nothing in its data fails without starting."""
        progress = self.progress
        child = progress.children[index]
        try:
            context = _start_context(self.run, self.plan, self.spec, self.items[index], index)
        except datapaths.PathNotFound as exc:
            del progress.children[index]
            progress.failed[index] = {"type": "PathNotFound", "message": f"item_selector {exc}"}
            status = Status.FAILED
            self.run.log(
                RecordKind.ITEM,
                state=self.plan.path,
                status=status,
                result=_counts(progress, index),
            )
            return
        version = self.run.compiled.procedure.version
        await self.spawner.start_child(child, self.spec.procedure, version, context)
        self.waiting[asyncio.create_task(self.spawner.wait_child(child))] = index

    async def stop(self) -> None:
        """Stop waiting; if the map state was left (or the execution cancelled or rolled back)
        its items go too. A store closing freezes the run first: its children carry on."""
        for task in self.waiting:
            task.cancel()
        current = asyncio.current_task()
        cancelled = current is not None and current.cancelling() > 0
        if self.progress.children and cancelled and self.run.frozen is None:
            await _cancel_children(self.spawner, self.progress)


def left(run: Run, path: str) -> None:
    """Map state ``path`` is being left: a task cancels the items it started, which the
    transition lets finish (``run.exited``). Its step, if it still runs, cancels them too (see
    `_Items.stop`), but it may not run: its time may have run out while the store was closed.
    (Cancelling an item twice changes nothing.) Nothing is left to cancel when the step itself
    is leaving the state: its items have ended, or it cancelled them."""
    leaf = run.state.leaves.get(path)
    if run.spawner is None or leaf is None or leaf.map is None:
        return
    if leaf.map.children:
        progress = MapProgress(leaf.map.count, children=dict(leaf.map.children))
        cancelling = _cancel_children(run.spawner, progress)
        steps.exit_later(run, asyncio.get_running_loop().create_task(cancelling))


def _items(run: Run, spec: MapPlan) -> list[Any]:
    """The list the map runs over (read again when resuming: nothing else moves while the map
    state is active)."""
    try:
        items = spec.items.get(run.state.context, _facts(run, None))
    except datapaths.PathNotFound as exc:
        raise ValueError(f"items_path {exc}") from None
    if not isinstance(items, list):
        raise ValueError(f"items_path {spec.items.text} is not a list: {type(items).__name__}")
    if len(items) > MAX_MAP_ITEMS:
        raise ValueError(
            f"items_path {spec.items.text} has {len(items)} items, more than {MAX_MAP_ITEMS} "
            "(MAX_MAP_ITEMS)"
        )
    return items


def _facts(run: Run, path: str | None, **more: Any) -> dict[str, Any]:
    procedure = run.compiled.procedure
    facts: dict[str, Any] = {
        "execution": {"id": run.id},
        "procedure": {"name": procedure.name, "version": procedure.version},
        **more,
    }
    if path is not None:
        facts["state"] = path
    return facts


def _start_context(run: Run, plan: StatePlan, spec: MapPlan, item: Any, index: int) -> Any:
    """An item's start context: the rendered ``item_selector``, or ``{item, index}``."""
    if spec.selector is None:
        return {"item": item, "index": index}
    facts = _facts(run, plan.path, map={"item": item, "index": index})
    rendered = datapaths.render(spec.selector, run.state.context, facts)
    return rendered if isinstance(rendered, dict) else {"item": rendered, "index": index}


def _record(
    run: Run, plan: StatePlan, spec: MapPlan, progress: MapProgress, index: int, end: ChildEnd
) -> None:
    """Item ``index`` ended as ``end``: its output, or its failure, into ``progress``."""
    child = progress.children.pop(index)
    if end.status is Status.COMPLETED:
        try:
            output = spec.output.get(end.context) if spec.output is not None else end.context
        except datapaths.PathNotFound as exc:
            progress.failed[index] = {"type": "PathNotFound", "message": f"output_path {exc}"}
        else:
            progress.outputs[index] = output
    else:
        progress.failed[index] = {
            "type": "ItemFailed",
            "message": f"item {index} (execution {child}) ended {end.status.value}",
        }
    run.log(RecordKind.ITEM, state=plan.path, status=end.status, result=_counts(progress, index))


def _counts(progress: MapProgress, index: int) -> dict[str, int]:
    """An `item` record's ``result``: the item, and where the map's items stand."""
    return {
        "index": index,
        "count": progress.count,
        "done": len(progress.outputs),
        "failed": len(progress.failed),
    }


async def _cancel_children(spawner: Spawner, progress: MapProgress) -> None:
    for child in list(progress.children.values()):
        # Held elsewhere, or gone: it ends on its own.
        with contextlib.suppress(StoreError, LookupError):
            await spawner.cancel_child(child)


async def _end(run: Run, plan: StatePlan, leaf: LeafState, error: dict[str, str] | None) -> None:
    """The items ended (or could not start): ``done`` from the map state, or ``error``."""
    router = run.router
    async with run.fire_lock:
        if plan.path not in run.state.active or not run.state.running:
            return
        if error is not None:
            # procstore's own error types (MapFailed, MapItemsInvalid...): an Exception.
            leaf.error, leaf.error_types = error, [error["type"], "Exception"]
            await router.raise_event(ERROR, plan.path, leaf.error_types, error)
        elif plan.terminal:
            run.state.internal += ((plan.path, plan.failure),)
        elif DONE in plan.events:
            await router.trigger(DONE, plan.path, exact=True)
        else:
            run.log(RecordKind.IGNORED, state=plan.path, event=DONE)
        await router.drain()
