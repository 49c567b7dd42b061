"""An execution's history: the records it appends, and whoever waits for the next one.

A record is kept as one flat tuple, ``(kind, at, key, value, key, value, ...)``: an execution
waiting for days keeps its records that long, and a tuple of a few fields is half the memory
of the dict it stands for (a dict has room for eight keys at least). It becomes a dict
(``{**fields, "kind": ..., "at": ...}``, what the journal stores) or a `HistoryRecord` model
only when someone reads it: building a pydantic model per record doubled the cost of a
transition.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from procstore.clock import Clock
from procstore.snapshot import HistoryRecord, RecordKind

__all__ = ["History", "error_fields"]

#: Each kind's value (a plain str), looked up faster than through the enum's ``value``.
_VALUES = {kind: kind.value for kind in RecordKind}

#: One record: its kind's value, its time (seconds since the epoch), then its fields as
#: alternating names and values.
Record = tuple[Any, ...]


def error_fields(exc: BaseException) -> dict[str, str]:
    """An exception as a record's ``error``: its class name and message."""
    return {"type": type(exc).__name__, "message": str(exc)}


class History:
    """The records of one execution, oldest first."""

    __slots__ = ("_clock", "_models", "_waiters", "records")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.records: list[Record] = []
        self._models: list[HistoryRecord] | None = None  # `records` converted so far
        self._waiters: list[asyncio.Future[None]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def log(self, kind: RecordKind, **fields: Any) -> None:
        """Append a record of `kind` with `fields`, stamped now; wake the watchers."""
        record: list[Any] = [_VALUES[kind], self._clock.time()]
        for item in fields.items():
            record += item
        self.records.append(tuple(record))
        if self._waiters:
            self.wake()

    def dicts(self, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        """Records ``start`` to ``end`` as dicts (``{**fields, "kind": ..., "at": ...}``)."""
        return [_to_dict(record) for record in self.records[start:end]]

    def models(self) -> tuple[HistoryRecord, ...]:
        """Every record as a `HistoryRecord`."""
        if self._models is None:
            self._models = []
        converted = self._models
        converted.extend(_to_model(r) for r in self.records[len(converted) :])
        return tuple(converted)

    def replace(self, records: list[dict[str, Any]]) -> None:
        """Make `records` (dicts, as the journal stores them) the history (a restored
        execution's journal)."""
        self.records = [_from_dict(record) for record in records]
        models = self._models
        if models is not None:
            del models[len(records) :]
            if any(m.kind != r["kind"] for m, r in zip(models, records, strict=False)):
                models.clear()

    def last_index(self, kind: RecordKind) -> int:
        """The index of the newest record of `kind` (the length when there is none)."""
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i][0] == kind:
                return i
        return len(self.records)

    def waiter(self) -> asyncio.Future[None]:
        """A future that completes with the next record (or `wake()`)."""
        future = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)
        return future

    def wake(self) -> None:
        """Complete every waiter."""
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)


def _to_dict(record: Record) -> dict[str, Any]:
    fields = dict(zip(record[2::2], record[3::2], strict=True))
    fields["kind"], fields["at"] = record[0], record[1]
    return fields


def _from_dict(record: dict[str, Any]) -> Record:
    flat: list[Any] = [record["kind"], record["at"]]
    for item in record.items():
        if item[0] != "kind" and item[0] != "at":
            flat += item
    return tuple(flat)


def _to_model(record: Record) -> HistoryRecord:
    fields = _to_dict(record)
    fields["at"] = datetime.fromtimestamp(record[1], UTC)
    return HistoryRecord.model_validate(fields)
