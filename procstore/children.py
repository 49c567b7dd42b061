"""How a store runs the items of map states: each as a child execution of its own, in the same
store (the `procstore.runtime.items.Spawner` the store gives its executions).

A child is an ordinary execution (of the item procedure ``parent#state``, driving itself): it is
stored, listed, resumed after a crash like any other. A parent waits for a child this process
runs through its handle; for one it does not run (a PostgreSQL worker that took the parent over
may not hold its children) it reads the stored status every `CHILD_POLL_SECONDS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from procstore.errors import StoreError
from procstore.handles import journal_for
from procstore.runtime import Execution, start_execution
from procstore.runtime.items import ChildEnd
from procstore.snapshot import Status

if TYPE_CHECKING:
    from procstore.store import ProcedureStore

__all__ = ["CHILD_POLL_SECONDS", "StoreSpawner"]

#: How often a parent reads the stored status of a child that another process runs, in
#: seconds on the store's clock.
CHILD_POLL_SECONDS = 0.5


class StoreSpawner:
    """A store's `Spawner` (see the module's docstring)."""

    def __init__(self, store: ProcedureStore[Any]) -> None:
        self._store = store
        # Children started here and not yet waited for: a finished execution is only weakly
        # tracked by the store, and its parent must still read how it ended.
        self._held: dict[str, Execution] = {}

    async def start_child(
        self, child_id: str, procedure: str, version: str, context: dict[str, Any]
    ) -> None:
        store = self._store
        backend = await store._run_here()
        if store._executions.live(child_id) is not None:
            return
        if backend.persistent and await backend.load_execution(child_id) is not None:
            return  # started before a crash: it resumes as any execution does
        compiled = store._registry.compiled(procedure, version)
        execution = await start_execution(
            compiled,
            child_id,
            context,
            auto=True,
            journal=journal_for(backend, child_id, compiled.procedure),
            running=store._executions.running,
            spawner=self,
        )
        store._executions.track(execution)
        self._held[child_id] = execution

    async def wait_child(self, child_id: str) -> ChildEnd:
        store = self._store
        try:
            while True:
                live = self._held.get(child_id) or store._executions.live(child_id)
                if live is None:
                    backend = await store._opened()
                    stored = await backend.load_execution(child_id)
                    if stored is None:
                        raise StoreError(f"item execution {child_id!r} is not in the store")
                    if stored.status != Status.RUNNING.value:
                        context = stored.snapshot.get("context")
                        return ChildEnd(
                            _status(stored.status), context if isinstance(context, dict) else {}
                        )
                    try:  # resumed here, unless another worker holds it
                        live = await store.get_execution(child_id)
                    except StoreError:
                        live = None
                if live is not None and not live.detached:
                    try:
                        state = await live.run_to_completion()
                    except StoreError:  # it stopped here: it goes on elsewhere, or later
                        self._held.pop(child_id, None)
                    else:
                        return ChildEnd(state.status, dict(state.context))
                await store._clock.sleep(CHILD_POLL_SECONDS)
        finally:
            self._held.pop(child_id, None)

    async def cancel_child(self, child_id: str) -> None:
        live = self._held.get(child_id) or self._store._executions.live(child_id)
        if live is None:
            live = await self._store.get_execution(child_id)
        if not live.detached:
            await live.cancel()


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        return Status.QUARANTINED
