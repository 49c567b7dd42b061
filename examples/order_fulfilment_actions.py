"""Actions of ``order_fulfilment.json``: credit and fraud checks side by side, the payment,
then a cancellable fulfilment phase (pick, pack) and shipping.

It is a saga as well as a statechart: the credit check places a hold (undone by
``release_credit``) and ``charge_payment`` charges the customer (undone by ``refund_payment``).
When the order fails after both, the compensations run newest first: the refund, then the
release.

Each action takes a few milliseconds (a simulated remote system) and stores what it did in the
context, so the final context tells the order's story.

Context (all optional): ``order_id`` (default ``"A-1000"``), ``items`` (default two items),
``total`` (default 120) and these knobs:

- ``"fraud_flag": true`` - the fraud check flags the order (:class:`FraudSuspected`). The
  ``checks`` parallel state gets ``error``: the order is ``rejected`` (a failure), and the
  credit hold the credit check placed is released (its compensation): status ``rolled_back``.
  Nothing was charged, so nothing is refunded.
- ``"total"`` above ``credit_limit`` (default 1000) - the credit check refuses
  (:class:`CreditRefused`) while the fraud check still runs: the fraud check is cancelled,
  the order is ``rejected``; no hold was placed, so nothing is undone: status ``failed``.
- ``"card_declined": true`` - the payment provider declines the card
  (:class:`PaymentDeclined`): ``charge_payment``'s ``error`` transition goes to
  ``payment_declined`` (a failure); nothing was charged, and the credit hold is released:
  status ``rolled_back``.
- ``"out_of_stock": true`` - picking finds an item missing and answers ``Event("cancel")``:
  the ``fulfilment`` state's ``cancel`` transition leaves it for ``cancelled`` (a failure).
  The payment is refunded, then the credit hold released: status ``rolled_back``.

Run with ``procstore run examples/order_fulfilment.json --context '{"fraud_flag": true}'
--allow-module order_fulfilment_actions`` (the CLI puts ``examples/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from procstore import Event

log = logging.getLogger("order_fulfilment_actions")

# The checks answer at different speeds, so the history reads the same on every run: the
# credit check answers first.
CREDIT_SECONDS = 0.001
FRAUD_SECONDS = 0.004
STEP_SECONDS = 0.001


class CreditRefused(RuntimeError):
    """The order's total is above the customer's credit limit."""


class FraudSuspected(RuntimeError):
    """The fraud check flagged the order (context ``fraud_flag``)."""


class PaymentDeclined(RuntimeError):
    """The payment provider declined the customer's card (context ``card_declined``)."""


def _order(context: dict[str, Any]) -> tuple[str, float]:
    return str(context.get("order_id", "A-1000")), float(context.get("total", 120))


async def check_credit(context: dict[str, Any]) -> dict[str, Any]:
    """Place a credit hold for the order's total, if the customer's limit allows it."""
    await asyncio.sleep(CREDIT_SECONDS)
    order_id, total = _order(context)
    limit = float(context.get("credit_limit", 1000))
    if total > limit:
        raise CreditRefused(f"order {order_id}: {total:g} exceeds the credit limit {limit:g}")
    context["credit_hold"] = total
    log.info("order %s: credit hold of %g", order_id, total)
    return {"hold": total, "limit": limit}


async def release_credit(context: dict[str, Any]) -> str:
    """Compensation of ``check_credit``: release the hold."""
    await asyncio.sleep(STEP_SECONDS)
    held = context.get("credit_hold", 0)
    context["credit_hold"] = 0
    log.info("order %s: released the credit hold of %g", _order(context)[0], held)
    return f"released {held:g}"


async def check_fraud(context: dict[str, Any]) -> dict[str, Any]:
    """Score the order; a flagged order raises :class:`FraudSuspected`."""
    await asyncio.sleep(FRAUD_SECONDS)
    order_id, _ = _order(context)
    if context.get("fraud_flag"):
        raise FraudSuspected(f"order {order_id} was flagged by the fraud check")
    return {"score": 0.02}


async def charge_payment(context: dict[str, Any]) -> str:
    """Charge the customer the order's total; returns the payment id (context ``payment``)."""
    await asyncio.sleep(STEP_SECONDS)
    order_id, total = _order(context)
    if context.get("card_declined"):
        raise PaymentDeclined(f"order {order_id}: the card was declined")
    context["charged"] = total
    log.info("order %s: charged %g", order_id, total)
    return f"PAY-{order_id}"


async def refund_payment(context: dict[str, Any]) -> str:
    """Compensation of ``charge_payment``: refund the charge in full."""
    await asyncio.sleep(STEP_SECONDS)
    order_id, _ = _order(context)
    payment = context.get("payment", "?")
    amount = context.get("charged", 0)
    context["refunded"] = amount
    context["charged"] = 0
    log.info("order %s: refunded %g (payment %s)", order_id, amount, payment)
    return f"refunded {amount:g} of {payment}"


async def pick(context: dict[str, Any]) -> Any:
    """Pick the order's items; an item out of stock cancels the fulfilment."""
    await asyncio.sleep(STEP_SECONDS)
    if context.get("out_of_stock"):
        log.info("order %s: an item is out of stock", _order(context)[0])
        return Event("cancel")
    items = list(context.get("items", ["book", "lamp"]))
    context["picked"] = items
    return items


async def pack(context: dict[str, Any]) -> str:
    """Pack the picked items into a parcel."""
    await asyncio.sleep(STEP_SECONDS)
    return f"parcel-{_order(context)[0]}"


async def ship(context: dict[str, Any]) -> str:
    """Hand the parcel to the carrier; returns the tracking number."""
    await asyncio.sleep(STEP_SECONDS)
    return f"TRK-{_order(context)[0]}"
