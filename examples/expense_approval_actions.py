"""Actions of ``expense_approval.json``: an expense claim that waits for a person's decision.

``awaiting_approval`` has no action: the execution waits there until the approver's decision
arrives from outside, as ``await execution.send("approve")`` or ``send("reject")`` (from a web
handler, say). If nobody answers within the state's ``timeout_ms``, the claim is escalated to
the approver's manager (``escalate`` records who), who may still approve or reject it in
``escalated``; if they do not answer in time either, the claim ``expired`` (a failure).

Context: ``employee`` (default ``"dana"``), ``amount`` (required, a positive number),
``purpose`` (optional) and these knobs:

- ``"amount"`` under 100 - no approval needed: straight to ``pay`` (the guard
  ``amount < 100`` in the procedure).
- ``"amount"`` missing, not a number or not positive - ``submit`` raises ``ValueError``:
  the claim is ``rejected`` at once.
- ``"bank_down": true`` - every payment attempt loses its connection (``ConnectionError``,
  retried twice): ``payment_failed``.

Run with ``procstore run examples/expense_approval.json --context '{"amount": 40}'
--allow-module expense_approval_actions`` (the CLI puts ``examples/`` on ``sys.path``). The CLI
sends no events, so a claim of 100 or more waits, is escalated and expires; the README shows
how to send the approver's decision from Python.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("expense_approval_actions")

#: Who approves whose claims, and who is above them (a directory service, simulated).
APPROVERS: dict[str, str] = {"dana": "lee", "sam": "lee", "lee": "morgan"}
DEFAULT_APPROVER = "morgan"
STEP_SECONDS = 0.002  # a remote system's answer, simulated


def _approver(person: str) -> str:
    return APPROVERS.get(person, DEFAULT_APPROVER)


def submit(context: dict[str, Any]) -> dict[str, Any]:
    """Check the claim; return its request (id, approver), stored as ``request``."""
    amount = context.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise ValueError(f"amount must be a positive number, not {amount!r}")
    employee = str(context.get("employee", "dana"))
    approver = _approver(employee)
    request = {"id": f"EXP-{employee}-{amount:g}", "employee": employee, "approver": approver}
    log.info("claim %s of %s submitted, approver %s", request["id"], amount, approver)
    return request


async def escalate(context: dict[str, Any]) -> str:
    """Notify the approver's manager; return who now decides (stored as ``escalated_to``)."""
    await asyncio.sleep(STEP_SECONDS)
    manager = _approver(context["request"]["approver"])
    log.info("claim %s escalated to %s", context["request"]["id"], manager)
    return manager


async def pay(context: dict[str, Any]) -> dict[str, Any]:
    """Transfer the amount to the employee; return the payment, stored as ``payment``."""
    await asyncio.sleep(STEP_SECONDS)
    if context.get("bank_down"):
        raise ConnectionError("bank unreachable")
    employee = str(context.get("employee", "dana"))
    payment = {"to": employee, "amount": context["amount"], "reference": f"PAY-{employee}"}
    log.info("paid %s to %s", context["amount"], employee)
    return payment
