"""Untrusted text made safe to print on a terminal.

What the command line prints comes largely from definitions, contexts, histories and error
messages: data that someone else may have written. A terminal acts on some characters instead
of showing them: ESC starts escape sequences (clear the screen, conceal text, set the window
title with an OSC sequence that survives piping into a pager or a log), BEL rings, CR returns
to the start of the line to overwrite it, and invisible format characters such as bidi
overrides reorder what is shown. `safe_text` replaces each such character with a visible
escape (``\\x1b``, ``\\u202e``), so the output shows what the data holds and does nothing else.
"""

from __future__ import annotations

import functools
import unicodedata

#: Unicode general categories a terminal may act on, or that are invisible, so never printed
#: raw: control characters (C0, DEL, C1), format characters (bidi overrides and isolates,
#: zero-width characters), line and paragraph separators, and lone surrogates (which cannot
#: even be encoded for output).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@functools.lru_cache(maxsize=1024)
def _escaped(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    if unicodedata.category(char) not in UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(text: str, keep: str = "") -> str:
    """``text`` with every character of `UNSAFE_CATEGORIES` shown as a visible escape
    (``\\x1b``, ``\\u202e``; newline, CR and tab as ``\\n``, ``\\r``, ``\\t``).

    Args:
        text: Text that may hold anything.
        keep: Characters to leave as they are: ``"\\n\\t"`` for a multi-line document whose
            line breaks and indentation are the printer's own (a dot file), never for a line
            built from data, where an embedded newline would forge another line.
    """
    if text.isprintable():  # the usual case: nothing to escape
        return text
    return "".join(char if char in keep else _escaped(char) for char in text)
