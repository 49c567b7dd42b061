"""SPEC-007 Task 3 (``procedural_store_integration_test.exs``) ported to procstore.

The ``Mimo.ProceduralStore.TestActions`` module is ported as :mod:`tests.spec_actions`.
``:ok = ExecutionFSM.run_to_completion(pid, timeout: 5000)`` becomes
``await ex.run_to_completion(timeout=5.0)``, which returns the final snapshot.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import fn
from tests.clock import ManualClock
from tests.conftest import SPEC_MODULE, records, within

DEPLOY_PROCEDURE: dict[str, Any] = {
    "name": "deploy_workflow",
    "version": "1.0",
    "definition": {
        "initial_state": "validate",
        "states": {
            "validate": {
                "action": fn("validate", module=SPEC_MODULE),
                "transitions": [
                    {"event": "success", "target": "build"},
                    {"event": "error", "target": "failed"},
                ],
            },
            "build": {
                "action": fn("build", module=SPEC_MODULE),
                "transitions": [
                    {"event": "success", "target": "deploy"},
                    {"event": "error", "target": "rollback"},
                ],
            },
            "deploy": {
                "action": fn("deploy", module=SPEC_MODULE),
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "error", "target": "rollback"},
                ],
            },
            "rollback": {
                "action": fn("rollback", module=SPEC_MODULE),
                "transitions": [{"event": "success", "target": "failed"}],
            },
            "done": {},
            "failed": {},
        },
    },
}

PARALLEL_PROCEDURE: dict[str, Any] = {
    "name": "parallel_test",
    "version": "1.0",
    "definition": {
        "initial_state": "work",
        "states": {
            "work": {
                "action": {"type": "sleep", "ms": 100},
                "transitions": [{"event": "success", "target": "done"}],
            },
            "done": {},
        },
    },
}


@pytest.mark.integration
class TestDeploymentWorkflow:
    async def test_completes_full_deployment_workflow(self, store: ProcedureStore) -> None:
        await store.register(copy.deepcopy(DEPLOY_PROCEDURE))
        ex = await within(store.start("deploy_workflow", "1.0", {"env": "staging"}))

        # Run through all states
        final = await within(ex.run_to_completion(timeout=5.0), 6.0)

        state = ex.state
        assert state.current == "done"
        assert state.status == Status.COMPLETED
        assert final.current == "done"
        assert final.status == Status.COMPLETED

    async def test_invalid_env_takes_the_error_branch(self, store: ProcedureStore) -> None:
        # Not in the SPEC's tests, but its TestActions.validate/1 has this branch:
        # validate(_) -> {:error, :invalid_env} routes to the "failed" state.
        await store.register(copy.deepcopy(DEPLOY_PROCEDURE))
        ex = await within(store.start("deploy_workflow", "1.0", {"env": "dev"}))

        final = await within(ex.run_to_completion(timeout=5.0), 6.0)

        assert final.current == "failed"
        errors = [r.error for r in final.history if r.kind == "action" and r.error is not None]
        assert len(errors) == 1
        assert errors[0].type.endswith("ValueError")
        assert errors[0].message == "invalid_env"
        entered = [r.state for r in final.history if r.kind == "entered"]
        assert entered == ["validate", "failed"]


@pytest.mark.integration
class TestConcurrentExecution:
    async def test_runs_multiple_procedures_in_parallel(
        self, timed_store: ProcedureStore, clock: ManualClock
    ) -> None:
        await timed_store.register(copy.deepcopy(PARALLEL_PROCEDURE))

        # Start 10 parallel procedures
        executions = [
            await within(timed_store.start("parallel_test", "1.0", {"id": i})) for i in range(1, 11)
        ]
        await clock.advance(0.1)

        # They run in parallel: all ten 100 ms sleeps have ended at 100 ms, at that instant.
        slept = [records(ex.state.history, "action", state="work") for ex in executions]
        assert [[clock.instant(r.at) for r in s] for s in slept] == [[0.1]] * 10

        # All should complete
        for ex in executions:
            final = await within(ex.run_to_completion())
            assert final.status == Status.COMPLETED

        # Verify all completed
        states = [ex.state for ex in executions]
        assert all(s.current == "done" for s in states)
        # Each kept its own context.
        assert sorted(s.context["id"] for s in states) == list(range(1, 11))
