"""JSON data: what procstore stores (contexts, results, documents, history) and the two ways a
Python value becomes it.

- `require_json` is strict: for values that must round-trip exactly (a start context, an
  action's `result` stored in the context, a procedure document). What JSON cannot hold — an
  object without a JSON form, NaN or infinity — is a `TypeError` naming where it is.
- `stand_in` never fails: for values that are only shown (a result kept in the history, a
  context an action changed in place). What JSON cannot hold becomes a readable string:
  `repr()` of an object, `"NaN"`, `"Infinity"`, `"-Infinity"`.

So a value an action returns can never make a commit fail: either it is refused as that
attempt's error (strict), or it is stored as a stand-in.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

__all__ = ["require_json", "stand_in"]

#: Types whose values are JSON data as they are (not subclasses: an enum's str may not be).
_PLAIN = frozenset({str, int, bool})


def require_json(value: Any, what: str) -> Any:
    """`value` as plain JSON data (a copy).

    Raises:
        TypeError: `value` is not JSON data: part of it has no JSON form, it is NaN or infinity
            (`what at $.a[0] is nan`), nested deeper than pydantic serialises, or circular. The
            message names `what` and, for a number, where it is.
    """
    try:
        data = to_jsonable_python(value)
    except (PydanticSerializationError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-compatible: {exc}") from None
    try:
        json.dumps(data, allow_nan=False)
    except ValueError:
        where, number = _first_non_finite(data, "$") or ("$", math.nan)
        raise TypeError(
            f"{what} is not JSON-compatible: {where} is {number!r}, which JSON cannot represent"
        ) from None
    return data


def stand_in(value: Any) -> Any:
    """`value` as JSON data, with readable strings where JSON has no form for a part of it (a
    value too deeply nested or circular becomes one string saying so)."""
    if value is None or type(value) in _PLAIN:  # most results: nothing to convert or check
        return value
    try:
        data = to_jsonable_python(value, fallback=repr)
    except (PydanticSerializationError, ValueError) as exc:
        return f"<not storable: {exc}>"
    try:
        json.dumps(data, allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: rare, so found by a second walk
        return _spell_non_finite(data)
    return data


def _spell_non_finite(data: Any) -> Any:
    """`data` (JSON data but for NaN and infinities) with those numbers as JSON spells them."""
    if isinstance(data, float) and not math.isfinite(data):
        return json.dumps(data)  # "NaN", "Infinity", "-Infinity"
    if isinstance(data, dict):
        return {key: _spell_non_finite(item) for key, item in data.items()}
    if isinstance(data, list):
        return [_spell_non_finite(item) for item in data]
    return data


def _first_non_finite(data: Any, where: str) -> tuple[str, float] | None:
    """The JSON path and value of the first NaN or infinity in `data` (already JSON data)."""
    if isinstance(data, float) and not math.isfinite(data):
        return where, data
    if isinstance(data, dict):
        items = ((f"{where}.{key}", item) for key, item in data.items())
    elif isinstance(data, list):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(data))
    else:
        return None
    for path, item in items:
        found = _first_non_finite(item, path)
        if found is not None:
            return found
    return None
