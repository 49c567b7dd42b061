"""Actions of ``loan_routing.json``: score a loan application, then route it by guards.

The routing itself is in the procedure, not here: the ``success`` transitions of ``score``
carry the guards ``score >= 700 and amount < 50000`` (``auto_approve``), ``score >= 600``
(``manual_review``) and none (``decline``), tried in that order. These actions only check,
score and record.

Context: ``applicant`` and ``amount`` (both required) and these knobs:

- ``"applicant"`` - looked up in a simulated credit bureau: ``alice`` 760, ``bob`` 650,
  ``carol`` 540. Anyone else is unknown (``LookupError``): ``failed``.
- ``"missed_payments": N`` - each lowers the score by 25 (``alice`` with 3: 685).
- ``"amount"`` - over 250000, the application is declined before scoring; missing, not a
  number or not positive, ``check_application`` raises ``ValueError``: ``failed``.

Run with ``procstore run examples/loan_routing.json --context '{"applicant": "bob",
"amount": 20000}' --allow-module loan_routing_actions`` (the CLI puts ``examples/`` on
``sys.path``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("loan_routing_actions")

#: Credit scores by applicant (a credit bureau, simulated).
BUREAU: dict[str, int] = {"alice": 760, "bob": 650, "carol": 540}
MISSED_PAYMENT_PENALTY = 25
MAX_AMOUNT = 250_000
BUREAU_SECONDS = 0.002


def check_application(context: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless the application names an applicant and a positive amount."""
    if not context.get("applicant"):
        raise ValueError("the application names no applicant")
    amount = context.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise ValueError(f"amount must be a positive number, not {amount!r}")


async def score_application(context: dict[str, Any]) -> int:
    """The applicant's bureau score, less 25 per missed payment (stored as ``score``)."""
    await asyncio.sleep(BUREAU_SECONDS)
    applicant = str(context["applicant"])
    if applicant not in BUREAU:
        raise LookupError(f"the credit bureau does not know {applicant!r}")
    score = BUREAU[applicant] - MISSED_PAYMENT_PENALTY * int(context.get("missed_payments", 0))
    log.info("%s scores %d", applicant, score)
    return score


def make_offer(context: dict[str, Any]) -> dict[str, Any]:
    """The offer: the better the score, the lower the rate (stored as ``offer``)."""
    rate = 4.5 if context["score"] >= 750 else 5.5
    return {"amount": context["amount"], "rate_percent": rate, "term_months": 60}


def queue_for_review(context: dict[str, Any]) -> str:
    """Put the application in the underwriters' queue; return its ticket."""
    ticket = f"REV-{context['applicant']}-{context['amount']:g}"
    log.info("queued %s for an underwriter (score %s)", ticket, context["score"])
    return ticket


def decline(context: dict[str, Any]) -> str:
    """Send the decline letter; return its reason (stored as ``decline_reason``)."""
    if "score" not in context:
        return f"amount above the {MAX_AMOUNT} maximum"
    return f"score {context['score']} below 600"
