"""Builders for procedure documents in tests: small functions that read as the JSON they make."""

from __future__ import annotations

from typing import Any


def fn(name: str, **extra: Any) -> dict[str, Any]:
    """A function action calling the callable registered as ``name``."""
    return {"type": "function", "function": name, **extra}


def on(event: str, target: str, **extra: Any) -> dict[str, Any]:
    """A transition: on ``event`` go to ``target``."""
    return {"event": event, "target": target, **extra}


def region(initial: str, states: dict[str, Any]) -> dict[str, Any]:
    """A region of a parallel state."""
    return {"initial_state": initial, "states": states}


def step_region(action: dict[str, Any], **state: Any) -> dict[str, Any]:
    """A region of one step: its state ``run`` runs ``action`` (with the other ``state``
    fields, e.g. ``retry``), then on ``success`` the region ends in ``ok``."""
    return region(
        "run", {"run": {"action": action, **state, "transitions": [on("success", "ok")]}, "ok": {}}
    )
