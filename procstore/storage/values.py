"""What every backend does to what it is given, so that all of them accept and refuse the same
values the same way: the JSON text a document, snapshot or record is stored as
(``encode_json``) and how it is read back (``json_object``: a value that is not a JSON object
becomes a reason, never an exception; ``stored_procedure`` and ``decode_execution`` for whole
rows), the one form of each version (``canonical_version``), the type checks of ids and names
(``check_strings``), and of an inbox command (``encode_command``).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterable, Iterator
from typing import Any

from packaging.utils import canonicalize_version

from procstore.storage.base import COMMAND_KINDS, StoredProcedure

__all__ = [
    "canonical_version",
    "check_strings",
    "decode_execution",
    "encode_command",
    "encode_json",
    "json_object",
    "paused_collector",
    "stored_procedure",
]

# ensure_ascii: every Python str is storable, lone surrogates included (written as \ud800
# escapes): text an action produced can never make a commit fail to encode.
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def encode_json(value: Any) -> str:
    """``value`` as the JSON text a backend stores.

    Raises:
        TypeError: Part of ``value`` has no JSON form.
        ValueError: ``value`` holds NaN or infinity.
    """
    return _ENCODER.encode(value)


def canonical_version(version: str) -> str:
    """The canonical form of a procedure version: equal for every spelling of one PEP 440
    version (``1.0``, ``1.0.0`` and ``1`` are all ``1``; ``1.0A1`` is ``1a1``), so that a
    backend, like the registry, holds one version once. A string that is not a PEP 440
    version is its own canonical form.

    The SQLite schema's migration 3 calls it from SQL as ``procstore_canonical_version``: its
    result for a given version must never change.
    """
    return canonicalize_version(version, strip_trailing_zero=True)


def check_strings(**values: object) -> None:
    """Raise ``TypeError`` naming the first of ``values`` that is not a ``str``."""
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def json_object(text: Any, what: str, problems: list[str]) -> dict[str, Any]:
    """Decode the JSON object ``text``; on failure add why to ``problems`` and return ``{}``."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:  # JSONDecodeError, and bytes that are not UTF-8
        problems.append(f"{what} is not valid JSON ({exc})")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{what} is not a JSON object but {type(value).__name__}")
        return {}
    return value


def decode_execution(
    snapshot: Any, records: Iterable[Any], problems: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An execution's stored snapshot and journal records decoded; what cannot be decoded is
    added to ``problems`` (naming the snapshot or the record's seq) and read as ``{}``."""
    decoded = json_object(snapshot, "its stored snapshot", problems)
    journal = [
        json_object(record, f"its journal record {seq}", problems)
        for seq, record in enumerate(records, 1)
    ]
    return decoded, journal


def stored_procedure(
    name: str, version: str, text: Any, problems: list[str] | None = None
) -> StoredProcedure:
    """A stored procedure version read back: its document decoded from ``text``, or, when that
    fails or ``problems`` already says why it cannot be loaded, no document and the first
    reason."""
    problems = [] if problems is None else problems
    document = json_object(text, "its stored document", problems)
    return StoredProcedure(
        name=name,
        version=version,
        document=None if problems else document,
        reason=problems[0] if problems else None,
    )


def encode_command(execution_id: str, kind: str, payload: dict[str, Any]) -> str:
    """Check a command for ``Backend.post_command`` and return its payload as stored JSON.

    Raises:
        TypeError: ``execution_id`` or ``kind`` is not a string, ``payload`` not a dict, or
            part of it has no JSON form.
        ValueError: ``kind`` is not one of ``COMMAND_KINDS``, or ``payload`` holds NaN or
            infinity.
    """
    check_strings(execution_id=execution_id, kind=kind)
    if kind not in COMMAND_KINDS:
        known = ", ".join(sorted(COMMAND_KINDS))
        raise ValueError(f"unknown command kind {kind!r} (known: {known})")
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    return encode_json(payload)


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a bulk load (decoding or restoring
    many executions) runs, for as long as it takes without waiting on anything.

    Recovering 100,000 executions makes millions of dicts, lists and objects that all live
    on. The collector runs after every 700 net allocations, and every tenth of its runs
    scans the older objects too, so the load kept rescanning what it had already built:
    with the collector on, recovering 10,000 executions took about twice as long. Nothing
    such a load makes is garbage, so nothing is lost by not collecting meanwhile; the
    collector resumes (if it was on) afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
