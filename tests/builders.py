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
