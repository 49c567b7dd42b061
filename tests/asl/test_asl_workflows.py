"""The five Step Functions workflows of examples/stepfunctions/ (a job with retries, a human
approval with a timeout, background checks side by side, an idempotent order with a child flow,
a trip booked as a saga), imported as they are with `import-asl` and run: no Python but their
side effects (examples/stepfunctions/sfn_actions.py), and the outcome the States Language gives.
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from procstore.asl import import_asl
from tests.clock import ManualClock
from tests.conftest import records, wait_until, within

WORKFLOWS = Path(__file__).resolve().parents[2] / "examples" / "stepfunctions"
RESOURCES = json.loads((WORKFLOWS / "resources.json").read_text(encoding="utf-8"))


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``sfn_actions``, importable from examples/stepfunctions/, with its outside world empty."""
    monkeypatch.syspath_prepend(str(WORKFLOWS))
    sfn_actions = importlib.import_module("sfn_actions")

    sfn_actions.OUTBOX.clear()
    sfn_actions.ORDERS.clear()
    sfn_actions.LOG.clear()
    yield sfn_actions
    sys.modules.pop("sfn_actions", None)


async def started(name: str, context: dict[str, Any]) -> Any:
    """Import ``<name>.asl.json``, register it in a new store and start it, driven."""
    source = (WORKFLOWS / f"{name}.asl.json").read_text(encoding="utf-8")
    store = ProcedureStore(allowed_modules=["sfn_actions"])
    await store.register(import_asl(source, name=name, resource_map=RESOURCES))
    execution = await within(store.start(name, context=context, auto=True))
    return store, execution


async def finished(name: str, context: dict[str, Any]) -> Any:
    _, execution = await started(name, context)
    return await within(execution.run_to_completion(timeout=10), 10)


def entered(final: Any) -> list[str]:
    return [r.state for r in records(final.history, "entered")]


# -- a job with retries ----------------------------------------------------------------------


async def test_the_job_retries_transient_failures_and_succeeds(actions: ModuleType) -> None:
    job = {"job": {"id": "j1", "size": 4}, "transient_failures": 2}

    final = await finished("retry_job", job)

    assert (final.status, final.current) == (Status.COMPLETED, "Done")
    assert len(records(final.history, "action", state="RunJob")) == 3
    assert final.context["outcome"] == {"rows": 40}


async def test_the_job_reports_a_failure_no_retry_helps(actions: ModuleType) -> None:
    final = await finished("retry_job", {"job": {"id": "j2", "size": -1}})

    assert entered(final) == ["RunJob", "ReportFailure", "JobFailed"]
    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "JobFailed"
    assert actions.LOG == ["notify j2: the job failed"]


# -- a human approval ------------------------------------------------------------------------


@pytest.mark.parametrize(("decision", "end"), [("approve", "Pay"), ("reject", "Rejected")])
async def test_the_approval_waits_for_a_person_and_follows_their_decision(
    actions: ModuleType, decision: str, end: str
) -> None:
    store, execution = await started("human_approval", {"amount": 420, "employee": "dana"})
    await wait_until(lambda: bool(actions.OUTBOX))

    await store.complete_callback(actions.OUTBOX[0]["token"], {"decision": decision})
    final = await within(execution.run_to_completion(timeout=10), 10)

    assert final.current == end
    assert final.context["approval"] == {"decision": decision}


async def test_an_approval_nobody_gives_in_time_is_escalated(
    actions: ModuleType, clock: ManualClock
) -> None:
    source = (WORKFLOWS / "human_approval.asl.json").read_text(encoding="utf-8")
    store = ProcedureStore(allowed_modules=["sfn_actions"], clock=clock)
    await store.register(import_asl(source, name="approval", resource_map=RESOURCES))
    execution = await within(
        store.start("approval", context={"amount": 1, "employee": "sam"}, auto=True)
    )
    await wait_until(lambda: bool(actions.OUTBOX))

    await clock.advance(3600)
    final = await within(execution.run_to_completion(timeout=10), 10)

    assert entered(final) == ["RequestApproval", "Escalate", "Rejected"]
    assert actions.LOG == ["escalate sam"]


# -- background checks side by side ----------------------------------------------------------


async def test_the_checks_run_side_by_side_and_hire(actions: ModuleType) -> None:
    final = await finished("background_checks", {"candidate": {"name": "ana"}})

    assert (final.status, final.current) == (Status.COMPLETED, "Hire")
    assert {"Checks.branch_1.Credit", "Checks.branch_2.Identity"} <= set(entered(final))


async def test_a_check_that_does_not_pass_stops_the_hiring(actions: ModuleType) -> None:
    final = await finished("background_checks", {"candidate": {"name": "bo"}, "bad_credit": ["bo"]})

    assert (final.status, final.current) == (Status.FAILED, "NotHired")
    assert final.error is not None and final.error.type == "ChecksNotPassed"


# -- an idempotent order with a child flow ---------------------------------------------------


async def test_an_order_is_processed_once_however_often_it_is_submitted(
    actions: ModuleType,
) -> None:
    order = {"order_id": f"o-{uuid.uuid4().hex[:6]}", "amount": 30}

    first = await finished("idempotent_order", order)
    again = await finished("idempotent_order", order)

    assert entered(first) == [
        "LookUp",
        "SeenBefore",
        "Process",
        "Process.Charge",
        "Process.Ship",
        "Record",
        "CoolDown",
        "Done",
    ]
    assert first.context["shipment"] == {"tracking": f"TR-{order['order_id']}"}
    assert entered(again) == ["LookUp", "SeenBefore", "AlreadyDone"]


# -- a trip booked as a saga ------------------------------------------------------------------


async def test_the_trip_is_booked(actions: ModuleType) -> None:
    final = await finished("book_trip_saga", {"trip_id": "t1", "destination": "LIS"})

    assert (final.status, final.current) == (Status.COMPLETED, "Booked")
    assert (final.context["hotel"], final.context["flight"], final.context["car"]) == (
        "HO-t1",
        "FL-t1",
        "CA-t1",
    )


async def test_a_car_that_cannot_be_booked_cancels_the_flight_then_the_hotel(
    actions: ModuleType,
) -> None:
    final = await finished(
        "book_trip_saga", {"trip_id": "t2", "destination": "LIS", "fail_at": "car"}
    )

    assert entered(final)[-3:] == ["CancelFlight", "CancelHotel", "BookingFailed"]
    assert actions.LOG == ["cancel flight t2", "cancel hotel t2"]
    assert len(records(final.history, "action", state="ReserveCar")) == 1  # NotAvailable
    assert final.error is not None and final.error.type == "BookingFailed"
