"""SPEC-007 Task 1 (``execution_fsm_test.exs``) ported to procstore.

Mapping of the Elixir API:
  ``ExecutionFSM.start_procedure(name, vsn, ctx)`` -> ``await store.start(name, vsn, ctx)``
  ``Process.alive?(pid)``                         -> the execution exists with status running
  ``ExecutionFSM.get_state(pid).current``         -> ``ex.state.current``
  ``:ok = ExecutionFSM.send_event(pid, :success)`` -> ``await ex.send("success") is True``
  ``{:error, :not_found}``                        -> raises ``ProcedureNotFound``
  ``:completed``                                  -> ``Status.COMPLETED``
  ``Process.sleep(100)`` then check               -> poll briefly until the state is reached
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procstore import ProcedureNotFound, ProcedureStore, Status
from tests.conftest import wait_until, within

SIMPLE_PROCEDURE: dict[str, Any] = {
    "name": "test_procedure",
    "version": "1.0",
    "definition": {
        "initial_state": "start",
        "states": {
            "start": {
                "action": {"type": "log", "message": "Starting"},
                "transitions": [{"event": "success", "target": "middle"}],
            },
            "middle": {
                "action": {"type": "log", "message": "Middle"},
                "transitions": [{"event": "success", "target": "done"}],
            },
            "done": {},
        },
    },
}

ERROR_PROCEDURE: dict[str, Any] = {
    "name": "error_procedure",
    "version": "1.0",
    "definition": {
        "initial_state": "start",
        "states": {
            "start": {
                "action": {"type": "fail"},
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "error", "target": "error_state"},
                ],
            },
            "error_state": {"action": {"type": "log", "message": "Handling error"}},
            "done": {},
        },
    },
}


@pytest.fixture
async def fsm_store(store: ProcedureStore) -> ProcedureStore:
    """``setup do {:ok, _} = Loader.register(@simple_procedure) end``"""
    proc = await store.register(copy.deepcopy(SIMPLE_PROCEDURE))
    assert proc.name == "test_procedure"
    assert proc.version == "1.0"
    return store


class TestStartProcedure:
    async def test_starts_procedure_in_initial_state(self, fsm_store: ProcedureStore) -> None:
        ex = await within(fsm_store.start("test_procedure", "1.0", {}))

        # Process.alive?(pid)
        assert isinstance(ex.id, str) and ex.id
        assert ex.state.status == Status.RUNNING
        state = ex.state
        assert state.current == "start"

    async def test_returns_error_for_unknown_procedure(self, fsm_store: ProcedureStore) -> None:
        with pytest.raises(ProcedureNotFound):
            await within(fsm_store.start("nonexistent", "1.0", {}))


class TestSendEvent:
    async def test_transitions_to_next_state_on_success(self, fsm_store: ProcedureStore) -> None:
        ex = await within(fsm_store.start("test_procedure", "1.0", {}))

        assert await within(ex.send("success")) is True
        state = ex.state

        assert state.current == "middle"

    async def test_reaches_terminal_state(self, fsm_store: ProcedureStore) -> None:
        ex = await within(fsm_store.start("test_procedure", "1.0", {}))

        await within(ex.send("success"))  # start -> middle
        await within(ex.send("success"))  # middle -> done

        state = ex.state
        assert state.current == "done"
        assert state.status == Status.COMPLETED


class TestErrorHandling:
    async def test_transitions_to_error_state_on_failure(self, fsm_store: ProcedureStore) -> None:
        proc = await fsm_store.register(copy.deepcopy(ERROR_PROCEDURE))
        assert proc.name == "error_procedure"
        ex = await within(fsm_store.start("error_procedure", "1.0", {}))

        # Action fails, should auto-transition to error_state (Process.sleep(100) in the spec).
        await wait_until(lambda: ex.state.current == "error_state", timeout=1.0)
        state = ex.state

        assert state.current == "error_state"
