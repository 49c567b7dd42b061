"""Actions of ``book_trip.json``: a saga that reserves a flight, a hotel and a car.

Each ``reserve_*`` action returns the reservation (stored in the context under the action's
``result`` key) and appends what it booked to ``context["booked"]``; each ``cancel_*``
compensation appends to ``context["cancelled"]``. So the final context shows what was booked and
what was undone, in order.

Context knobs (all optional):

- ``"fail_at": "flight" | "hotel" | "car"`` - that reservation is refused (:class:`SoldOut`,
  which the state's retry policy does not retry). The execution then fails and the
  reservations already made are cancelled, newest first: status ``rolled_back``.
- ``"flaky_at": "flight" | "hotel" | "car"`` - that reservation's first attempt loses its
  connection (``ConnectionError``, which is retried): the trip is still booked.
- ``"fail_cancel": "flight" | "hotel" | "car"`` - that cancellation fails. The other
  cancellations still run, and the execution ends ``failed``.

Run with ``procstore run examples/book_trip.json --context '{"fail_at": "car"}'
--allow-module book_trip_actions`` (the CLI puts ``examples/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("book_trip_actions")

STEP_SECONDS = 0.002  # a reservation system's answer, simulated


class SoldOut(RuntimeError):
    """The provider has nothing left for these dates (context ``fail_at``)."""


class CancellationRefused(RuntimeError):
    """The provider refuses to cancel a reservation (context ``fail_cancel``)."""


def _trip(context: dict[str, Any]) -> tuple[str, int]:
    return str(context.get("destination", "Lisbon")), int(context.get("nights", 3))


async def _reserve(context: dict[str, Any], kind: str, details: dict[str, Any]) -> dict[str, Any]:
    """Ask the (simulated) provider for a reservation of ``kind``; record it as booked."""
    attempts = context.setdefault("attempts", {})
    attempts[kind] = attempts.get(kind, 0) + 1
    await asyncio.sleep(STEP_SECONDS)
    if context.get("flaky_at") == kind and attempts[kind] == 1:
        raise ConnectionError(f"{kind} provider dropped the connection")
    if context.get("fail_at") == kind:
        raise SoldOut(f"no {kind} available for {_trip(context)[0]}")
    destination, _ = _trip(context)
    reservation = {"ref": f"{kind[:2].upper()}-{destination[:3].upper()}-1", **details}
    context.setdefault("booked", []).append(kind)  # only once the reservation is held
    log.info("reserved %s %s", kind, reservation["ref"])
    return reservation


async def _cancel(context: dict[str, Any], kind: str) -> str:
    """Cancel the reservation of ``kind`` that ``_reserve`` stored in the context."""
    await asyncio.sleep(STEP_SECONDS)
    ref = context.get(kind, {}).get("ref", "?")
    if context.get("fail_cancel") == kind:
        raise CancellationRefused(f"{kind} {ref} cannot be cancelled any more")
    context.setdefault("cancelled", []).append(kind)
    log.info("cancelled %s %s", kind, ref)
    return f"cancelled {ref}"


async def reserve_flight(context: dict[str, Any]) -> dict[str, Any]:
    """Reserve a return flight to the destination."""
    return await _reserve(context, "flight", {"to": _trip(context)[0]})


async def reserve_hotel(context: dict[str, Any]) -> dict[str, Any]:
    """Reserve the hotel for the trip's nights."""
    return await _reserve(context, "hotel", {"nights": _trip(context)[1]})


async def reserve_car(context: dict[str, Any]) -> dict[str, Any]:
    """Reserve a rental car for the trip's days."""
    return await _reserve(context, "car", {"days": _trip(context)[1]})


async def cancel_flight(context: dict[str, Any]) -> str:
    """Compensation of ``reserve_flight``."""
    return await _cancel(context, "flight")


async def cancel_hotel(context: dict[str, Any]) -> str:
    """Compensation of ``reserve_hotel``."""
    return await _cancel(context, "hotel")


async def cancel_car(context: dict[str, Any]) -> str:
    """Compensation of ``reserve_car``."""
    return await _cancel(context, "car")


def confirm(context: dict[str, Any]) -> dict[str, Any]:
    """Every reservation is held: the itinerary to send to the traveller."""
    return {kind: context[kind]["ref"] for kind in ("flight", "hotel", "car")}
