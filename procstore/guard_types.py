"""The type tests, timestamps and wildcard matching that guard expressions may call.

Step Functions' Choice rules are typed: ``NumericLessThan`` is false, not an error, for a value
that is not a number, ``TimestampLessThan`` compares instants whatever their offsets, and
``StringMatches`` matches ``*`` wildcards. These functions let a guard say the same
(``is_number(total) and total < 5``), so that an imported ASL Choice (``procstore.asl``)
behaves as it does in Step Functions. Each is pure and costs time in proportion to its
arguments, which the guard budget (``procstore.guards``) already counts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

__all__ = ["TYPE_FUNCTIONS", "is_timestamp", "matches", "timestamp"]


def is_string(value: Any) -> bool:
    """Whether ``value`` is a string."""
    return isinstance(value, str)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a number (an int or a float; not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_boolean(value: Any) -> bool:
    """Whether ``value`` is ``True`` or ``False``."""
    return isinstance(value, bool)


def is_null(value: Any) -> bool:
    """Whether ``value`` is ``None`` (JSON's ``null``)."""
    return value is None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def is_timestamp(value: Any) -> bool:
    """Whether ``value`` is an RFC 3339 timestamp with its offset (``2030-01-01T00:00:00Z``,
    ``...+02:00``), as Step Functions' ``IsTimestamp``."""
    return _instant(value) is not None


def timestamp(value: Any) -> float:
    """The instant ``value`` (an RFC 3339 timestamp with its offset) names, in seconds since
    the epoch: timestamps in different offsets compare as instants.

    Raises:
        ValueError: ``value`` is not such a timestamp.
    """
    instant = _instant(value)
    if instant is None:
        raise ValueError(f"{value!r} is not a timestamp such as 2030-01-01T00:00:00Z")
    return instant.timestamp()


def matches(value: Any, pattern: Any) -> bool:
    """Whether the string ``value`` matches ``pattern``, where ``*`` stands for any run of
    characters and ``\\*`` and ``\\\\`` for a star and a backslash (Step Functions'
    ``StringMatches``). Linear in the length of ``value``: the pattern's literal parts are
    found left to right, each as early as it can be.

    Raises:
        TypeError: ``pattern`` is not a string.
    """
    if not isinstance(pattern, str):
        raise TypeError("matches() takes a pattern string")
    if not isinstance(value, str):
        return False
    parts = _literal_parts(pattern)
    if len(parts) == 1:
        return value == parts[0]
    first, *middle, last = parts
    if not value.startswith(first) or len(value) < len(first) + len(last):
        return False
    at, end = len(first), len(value) - len(last)
    for part in middle:
        found = value.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return value.endswith(last)


def _literal_parts(pattern: str) -> list[str]:
    """``pattern`` split at its unescaped stars, escapes resolved."""
    parts, current, escaped = [], [], False
    for char in pattern:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


TYPE_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "is_string": is_string,
    "is_number": is_number,
    "is_boolean": is_boolean,
    "is_null": is_null,
    "is_timestamp": is_timestamp,
    "timestamp": timestamp,
    "matches": matches,
}
"""The functions this module adds to guard expressions, by the name a guard calls."""
