"""The data an event carries: ``send(event, data=...)``, a client's queued event, a callback's
result.

It is JSON data, checked once where it comes in (`event_data`), so that what guards read,
what ``assign`` stores and what the history and the inbox keep is always plain, bounded JSON.
"""

from __future__ import annotations

import json
from typing import Any, Final

from procstore.errors import InvalidEvent
from procstore.jsondata import require_json

__all__ = ["MAX_EVENT_DATA_BYTES", "event_data"]

MAX_EVENT_DATA_BYTES: Final = 256 * 1024
"""The largest data one event may carry, in bytes of compact JSON (UTF-8): Step Functions'
limit on a state's input. It is stored in the inbox, the history and possibly the context."""


def event_data(data: Any, event: str) -> Any:
    """``data`` as the JSON data ``event`` carries (a copy; ``None`` stays ``None``).

    Raises:
        InvalidEvent: ``data`` is not JSON data (an object without a JSON form, NaN, a
            circular value...) or is larger than ``MAX_EVENT_DATA_BYTES`` as JSON.
    """
    if data is None:
        return None
    try:
        plain = require_json(data, f"the data of event {event!r}")
    except TypeError as exc:
        raise InvalidEvent(str(exc)) from None
    size = len(json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_EVENT_DATA_BYTES:
        raise InvalidEvent(
            f"the data of event {event!r} is {size} bytes of JSON; at most "
            f"{MAX_EVENT_DATA_BYTES} (MAX_EVENT_DATA_BYTES) may be sent"
        )
    return plain
