"""Actions of ``data_import.json``: fetch rows from a flaky source, clean them, load them.

``fetch`` counts its calls in ``context["fetch_attempts"]`` (the context is per execution, so
the count is too), which makes the retries visible in the final context as well as in the
history. Context knobs (all optional):

- ``"source": "customers" | "empty" | "invalid"`` - which sample data set to fetch
  (default ``customers``: three rows, one invalid). ``empty`` has no rows and ``invalid`` has
  no valid ones: the job then ends in ``empty`` without loading anything.
- ``"fail_times": N`` - the first N fetch attempts lose the connection (``ConnectionError``,
  retried). Up to 3 the import still succeeds; from 4 on the retries run out: ``failed``.
- ``"hang_times": N`` - the first N fetch attempts hang until the attempt's ``timeout_ms``
  (50 ms) cancels them (error type ``Timeout``, retried). Up to 2 the import still succeeds;
  from 3 on (3 x 50 ms plus the 10 + 20 + 30 ms of delays) the state's own ``timeout_ms``
  (200 ms) runs out first, cancels the attempt and fires ``timeout``: ``timed_out``.

Run with ``procstore run examples/data_import.json --context '{"fail_times": 2}'
--allow-module data_import_actions`` (the CLI puts ``examples/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("data_import_actions")

#: Sample data sets standing in for a remote source.
SOURCES: dict[str, list[dict[str, Any]]] = {
    "customers": [
        {"id": 1, "name": "Ada Lovelace", "email": "ada@example.org"},
        {"id": 2, "name": "Alan Turing", "email": "alan@example.org"},
        {"id": 3, "name": "", "email": "not-an-email"},
    ],
    "empty": [],
    "invalid": [{"id": 4, "name": "", "email": ""}],
}
HANG_SECONDS = 10.0  # far beyond the attempt's timeout_ms: the timeout cancels the sleep


async def fetch(context: dict[str, Any]) -> list[dict[str, Any]]:
    """Fetch the source's rows; may lose the connection or hang (see the knobs above)."""
    attempt = context["fetch_attempts"] = context.get("fetch_attempts", 0) + 1
    if attempt <= int(context.get("hang_times", 0)):
        log.info("fetch attempt %d hangs", attempt)
        await asyncio.sleep(HANG_SECONDS)  # cancelled by the action's timeout_ms
    if attempt <= int(context.get("fail_times", 0)):
        raise ConnectionError(f"source unreachable (attempt {attempt})")
    source = str(context.get("source", "customers"))
    if source not in SOURCES:
        raise LookupError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    rows = [dict(row) for row in SOURCES[source]]
    log.info("fetched %d rows from %s (attempt %d)", len(rows), source, attempt)
    return rows


def transform(context: dict[str, Any]) -> int:
    """Keep the rows with a name and an email address (in ``context["records"]``); return how
    many were kept, which the procedure stores as ``rows`` for its guard ``rows > 0``."""
    records = [
        {"id": row["id"], "name": row["name"].strip(), "email": row["email"].lower()}
        for row in context.get("raw", [])
        if row.get("name", "").strip() and "@" in row.get("email", "")
    ]
    context["records"] = records
    context["rejected"] = len(context.get("raw", [])) - len(records)
    return len(records)


async def load(context: dict[str, Any]) -> int:
    """Write the records to the (simulated) warehouse; return how many were written."""
    await asyncio.sleep(0.002)
    records = context.get("records", [])
    log.info("loaded %d rows", len(records))
    return len(records)
