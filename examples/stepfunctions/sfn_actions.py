"""The side effects of the Step Functions workflows beside this file: what their Lambda functions
would do, simulated. Nothing else of the workflows is Python: `procstore import-asl` turns each
`*.asl.json` into a procedure whose Tasks call these functions (`resources.json` says which).

The "outside world" is module state: `OUTBOX` (the approval requests a person would get, with
their callback tokens), `ORDERS` (the orders recorded as done) and `LOG` (what was sent or
undone). A start context may ask for failures: `transient_failures` (run_job), `bad_credit`
(credit_check), `fail_at` (the reservation that fails).
"""

from __future__ import annotations

from typing import Any

OUTBOX: list[dict[str, Any]] = []
ORDERS: dict[str, str] = {}
LOG: list[str] = []


class TransientError(Exception):
    """A failure that goes away when tried again (the job retries it)."""


class CheckNotPassed(Exception):
    """A background check whose answer is no."""


class NotAvailable(Exception):
    """A reservation that cannot be made."""


# -- retry_job ----------------------------------------------------------------------------


def run_job(context: dict[str, Any], job_id: str, size: int) -> dict[str, Any]:
    """Run the job: it fails transiently `transient_failures` times first; a negative size is
    a failure no retry helps."""
    if context.get("transient_failures", 0) > 0:
        context["transient_failures"] -= 1
        raise TransientError(f"job {job_id}: the worker went away")
    if size < 0:
        raise ValueError(f"job {job_id}: a size of {size}")
    return {"rows": size * 10, "job": job_id}


def notify(context: dict[str, Any], message: str, job_id: str) -> None:
    LOG.append(f"notify {job_id}: {message}")


# -- human_approval -----------------------------------------------------------------------


def request_approval(context: dict[str, Any], token: str, amount: float, employee: str) -> None:
    """Ask a person; they answer by completing `token` (`procstore callback TOKEN`)."""
    OUTBOX.append({"token": token, "amount": amount, "employee": employee})


def escalate(context: dict[str, Any], employee: str) -> None:
    LOG.append(f"escalate {employee}")


def pay(context: dict[str, Any], employee: str, amount: float) -> dict[str, Any]:
    return {"paid": amount, "to": employee}


# -- background_checks ---------------------------------------------------------------------


def credit_check(context: dict[str, Any], name: str) -> dict[str, Any]:
    if name in context.get("bad_credit", []):
        raise CheckNotPassed(f"{name}: credit check")
    return {"score": 720}


def identity_check(context: dict[str, Any], name: str) -> dict[str, Any]:
    return {"verified": True}


# -- idempotent_order ----------------------------------------------------------------------


def look_up_order(context: dict[str, Any], order_id: str) -> dict[str, Any]:
    return {"status": ORDERS.get(order_id, "new")}


def charge(context: dict[str, Any], order_id: str, amount: float) -> dict[str, Any]:
    return {"charged": amount}


def ship(context: dict[str, Any], order_id: str) -> dict[str, Any]:
    return {"tracking": f"TR-{order_id}"}


def record_order(context: dict[str, Any], order_id: str, status: str) -> None:
    ORDERS[order_id] = status


# -- book_trip_saga -------------------------------------------------------------------------


def _reserve(context: dict[str, Any], kind: str, trip_id: str) -> str:
    if context.get("fail_at") == kind:
        raise NotAvailable(f"no {kind} for trip {trip_id}")
    return f"{kind[:2].upper()}-{trip_id}"


def reserve_hotel(context: dict[str, Any], trip_id: str) -> str:
    return _reserve(context, "hotel", trip_id)


def reserve_flight(context: dict[str, Any], trip_id: str, to: str) -> str:
    return _reserve(context, "flight", trip_id)


def reserve_car(context: dict[str, Any], trip_id: str) -> str:
    return _reserve(context, "car", trip_id)


def cancel_flight(context: dict[str, Any], trip_id: str) -> None:
    LOG.append(f"cancel flight {trip_id}")


def cancel_hotel(context: dict[str, Any], trip_id: str) -> None:
    LOG.append(f"cancel hotel {trip_id}")
