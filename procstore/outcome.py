"""What an action is told about its attempt, and what it can return to choose the event that
leaves its state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Returned by an action to fire `name` instead of the default `success` event.

    An action with `"result": "key"` stores the event's name as `context["key"]`.

    Attributes:
        name: The outcome event to fire: any string. The state (or, in a statechart, one of its
            ancestors) needs a transition on it; otherwise it is recorded as `ignored`.

    Example:
        ```python
        @store.action("review.decide")
        def decide(context):
            return Event("approve") if context["score"] > 0.8 else Event("reject")
        ```
    """

    name: str


@dataclass(frozen=True, slots=True)
class ActionInfo:
    """Passed to an action whose second positional parameter has no default (and is not one of
    the action's `args`), so it can make itself idempotent (an attempt interrupted by a crash
    runs again with the same number).

    Attributes:
        execution_id: The execution's id.
        state: The dotted path of the state whose action this is.
        attempt: The attempt's number, from 1.
        token: The callback token of a state with `"callback": true` (hand it to the outside
            system that will call `store.complete_callback(token, data)`); else `None`.

    Example:
        ```python
        @store.action("payments.charge")
        async def charge(context, info):
            key = f"{info.execution_id}/{info.state}"  # the same on every attempt
            return await gateway.charge(context["amount"], idempotency_key=key)
        ```
    """

    execution_id: str
    state: str
    attempt: int
    token: str | None = None
