"""An execution's history: the records it appends, and whoever waits for the next one.

Records are kept as plain dicts (``{"kind": ..., "at": ..., **fields}``) on the hot path and
become `HistoryRecord` models only when someone reads them: building a pydantic model per record
doubled the cost of a transition. The dicts are also what the journal stores.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from procstore.clock import Clock
from procstore.snapshot import HistoryRecord, RecordKind

__all__ = ["History", "error_fields"]


def error_fields(exc: BaseException) -> dict[str, str]:
    """An exception as a record's ``error``: its class name and message."""
    return {"type": type(exc).__name__, "message": str(exc)}


class History:
    """The records of one execution, oldest first."""

    __slots__ = ("_clock", "_models", "_waiters", "records")

    def __init__(self, clock: Clock, records: list[dict[str, Any]] | None = None) -> None:
        self._clock = clock
        self.records: list[dict[str, Any]] = records if records is not None else []
        self._models: list[HistoryRecord] = []  # `records` converted so far
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.records)

    def log(self, kind: RecordKind, **fields: Any) -> None:
        """Append a record of `kind` with `fields`, stamped now; wake the watchers."""
        fields["kind"] = kind.value
        fields["at"] = self._clock.time()
        self.records.append(fields)
        self.wake()

    def models(self) -> tuple[HistoryRecord, ...]:
        """Every record as a `HistoryRecord`."""
        converted = self._models
        converted.extend(_to_model(r) for r in self.records[len(converted) :])
        return tuple(converted)

    def replace(self, records: list[dict[str, Any]]) -> None:
        """Make `records` the history (a restored execution's journal)."""
        self.records = records
        del self._models[len(records) :]
        if any(m.kind != r["kind"] for m, r in zip(self._models, records, strict=False)):
            self._models.clear()

    def last_index(self, kind: RecordKind) -> int:
        """The index of the newest record of `kind` (the length when there is none)."""
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i]["kind"] == kind:
                return i
        return len(self.records)

    def waiter(self) -> asyncio.Future[None]:
        """A future that completes with the next record (or `wake()`)."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def wake(self) -> None:
        """Complete every waiter."""
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()


def _to_model(record: dict[str, Any]) -> HistoryRecord:
    return HistoryRecord.model_validate({**record, "at": datetime.fromtimestamp(record["at"], UTC)})
