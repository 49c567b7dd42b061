"""A procedure document as a tool argument: a JSON object, or JSON or YAML text.

The store's `register` also reads a string that is not JSON as a *file path*; an agent's
string must never be one (it would let a caller read the server's files), so YAML text is
parsed here, under the same rules as a YAML file (`procstore.documents`: no aliases, no
duplicate keys, bounded depth), and text longer than a document file may be is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from procstore.documents import (
    MAX_DOCUMENT_BYTES,
    DocumentError,
    check_data,
    parse_json,
    parse_yaml,
)
from procstore.errors import InvalidProcedure, Problem

__all__ = ["context_data", "document_data"]


def document_data(document: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """The document's data: an object as given, text parsed as JSON (when it starts with
    ``{`` or ``[``) or YAML.

    Raises:
        InvalidProcedure: the text, or the object as compact JSON, is longer than
            ``MAX_DOCUMENT_BYTES`` bytes; the object breaks ``check_data``'s rules; or the
            text cannot be parsed or is not an object.
    """
    if isinstance(document, Mapping):
        # The SDK hands over an object as parsed JSON, and JSON text it has parsed itself
        # (pre-parsing) as one too: either way it must be no larger than the text may be.
        try:
            check_data(document)
        except DocumentError as exc:
            raise InvalidProcedure(exc.problems) from None
        size = _json_bytes(document)
    else:
        size = len(document.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidProcedure(
            [
                Problem(
                    "$",
                    f"the document is {size} bytes: more than {MAX_DOCUMENT_BYTES} "
                    "(MAX_DOCUMENT_BYTES)",
                )
            ]
        )
    if isinstance(document, Mapping):
        return document
    try:
        data = parse_json(document) if document.lstrip()[:1] in ("{", "[") else parse_yaml(document)
    except DocumentError as exc:
        raise InvalidProcedure(exc.problems) from None
    if not isinstance(data, Mapping):
        kind = "a list" if isinstance(data, list) else f"{type(data).__name__}"
        raise InvalidProcedure([Problem("$", f"expected a procedure object, got {kind}")])
    return data


def context_data(context: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A start context as given, once it is held to the rules of a start context file the CLI
    reads (`procstore.documents`): nesting at most ``MAX_DOCUMENT_DEPTH`` levels, at most
    ``MAX_DOCUMENT_VALUES`` values, no NaN, and at most ``MAX_DOCUMENT_BYTES`` bytes of compact
    JSON. The store takes any context from a Python caller; an agent's arrives as JSON of any
    size and depth, and is stored, copied into every snapshot and read by every guard.

    Raises:
        ValueError: naming the start context and the rule it breaks.
    """
    if context is None:
        return None
    try:
        check_data(context)
    except DocumentError as exc:
        raise ValueError(f"the start context is refused: {exc}") from None
    size = _json_bytes(context)
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(
            f"the start context is {size} bytes of JSON: more than {MAX_DOCUMENT_BYTES} "
            "(MAX_DOCUMENT_BYTES); keep large data elsewhere and pass a reference to it"
        )
    return context


def _json_bytes(data: Mapping[str, Any]) -> int:
    """The size of ``data`` (checked by ``check_data``) as compact UTF-8 JSON."""
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
