"""What an action can return to choose the event that leaves its state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Returned by an action to fire ``name`` instead of the default ``success`` event.

    Example::

        @store.action("review.decide")
        def decide(context):
            return Event("approve") if context["score"] > 0.8 else Event("reject")
    """

    name: str
