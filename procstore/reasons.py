"""The reasons a store gives for what it quarantines (a procedure version it cannot load, an
execution it cannot restore): one line each, of bounded length, since they are stored and shown
in listings and logs."""

from __future__ import annotations

__all__ = ["MAX_REASON_CHARS", "one_line"]

MAX_REASON_CHARS = 500
"""Longest quarantine reason stored and shown (one line; a longer one is cut with ``...``)."""


def one_line(text: str) -> str:
    """``text`` on one line (whitespace runs become one space), at most MAX_REASON_CHARS."""
    line = " ".join(text.split())
    if len(line) > MAX_REASON_CHARS:
        line = line[: MAX_REASON_CHARS - 3] + "..."
    return line
