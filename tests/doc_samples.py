"""Reading the fenced code blocks of the Markdown pages, and matching shown output to real output.

``tests/docs/test_docs_samples.py`` runs what this module finds; the conventions (which blocks run,
the ``<!-- sample: ... -->`` markers, the placeholders of shown output) are described there.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The languages a fenced block may have, and what is done with each.
RUN = frozenset({"python", "sh", "console"})  # executed
DOCUMENTS = frozenset({"json", "yaml"})  # procedure documents: registered
PROSE = frozenset({"text", "mermaid"})  # not code: command synopses, shown output, diagrams
LANGUAGES = RUN | DOCUMENTS | PROSE

#: The marker kinds, and whether each takes an argument: a file name, or a reason (which runs to
#: the end of the marker, so it may contain ";").
MARKERS = {
    "fragment": True,  # python: compiled, not run; json: its states checked against the schema
    "continues": False,  # python: appended to the page's previous python block and run with it
    "output": False,  # text: what the page's previous python block prints
    "excerpt": True,  # text: lines that this command (run like a console one) prints, in a row
    "file": True,  # written to the page's working directory under this name before later blocks
    "invalid": False,  # json/yaml: a document that registration must reject
    "not run": True,  # sh/console: not executed, for the reason given
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_MARKER = re.compile(r"^\s*<!--\s*sample:(?P<body>.*?)-->\s*$")
_SNIPPET = re.compile(r'^--8<--\s+"(?P<path>[^"]+)"\s*$')


#: The kinds whose argument is a reason.
REASONED = ("fragment", "not run", "excerpt")


class MarkerError(ValueError):
    """A ``<!-- sample: ... -->`` marker that this module does not understand."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # the page's path relative to the repository root, "docs/cli.md"
    line: int  # the line of the opening fence, from 1
    lang: str
    text: str  # the content, dedented by the fence's indentation, ending with a newline
    markers: Mapping[str, str] = field(default_factory=dict)  # kind -> argument ("" if none)
    marker_error: str = ""  # why its marker could not be read (then it has no markers)

    @property
    def where(self) -> str:
        """``docs/cli.md:139``: the test id and the place a failure names."""
        return f"{self.page}:{self.line}"

    def marked(self, *kinds: str) -> bool:
        """Whether the block has a marker of any of these kinds."""
        return any(kind in self.markers for kind in kinds)


def parse_markers(body: str) -> dict[str, str]:
    """``"file bad.json; invalid"`` -> ``{"file": "bad.json", "invalid": ""}``.

    Raises MarkerError for an unknown kind, or a missing or unexpected argument, so that a
    misspelt marker fails the tests instead of being ignored."""
    markers: dict[str, str] = {}
    rest = body.strip()
    while rest:
        part, _, rest = rest.partition(";")
        part, rest = part.strip(), rest.strip()
        if part.startswith(REASONED):
            part, rest = f"{part}; {rest}".rstrip("; "), ""
        if not part:
            continue
        kind = next((k for k in sorted(MARKERS, key=len, reverse=True) if part.startswith(k)), "")
        after = part[len(kind) :]
        if not kind or (after and after[0] not in ": \t"):
            raise MarkerError(f"unknown sample marker {part!r}; known: {', '.join(MARKERS)}")
        argument = after.strip().removeprefix(":").strip()
        if MARKERS[kind] and not argument:
            raise MarkerError(f"sample marker {kind!r} needs an argument (a file name or reason)")
        if not MARKERS[kind] and argument:
            raise MarkerError(f"sample marker {kind!r} takes no argument, got {argument!r}")
        markers[kind] = argument
    return markers


def blocks_of(page: Path, root: Path) -> list[Block]:
    """Every fenced block of ``page``, with the marker of the last non-blank line before it.

    A block whose whole content is a snippet include (``--8<-- "examples/x.json"``) gets the
    included file's text, as the built site shows it."""
    rel = page.relative_to(root).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening or not opening["info"]:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        text = "\n".join(body) + "\n"
        snippet = _SNIPPET.match(text.strip())
        if snippet:
            text = (root / snippet["path"]).read_text(encoding="utf-8")
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        marker = _MARKER.match(previous)
        markers, error = {}, ""
        try:
            markers = parse_markers(marker["body"]) if marker else {}
        except MarkerError as exc:
            error = str(exc)
        found.append(Block(rel, i + 1, opening["info"].split()[0], text, markers, error))
        i = j + 1
    return found


# --------------------------------------------------------------------------- shell samples


@dataclass(frozen=True)
class Command:
    """A command of a console or sh block, and the output a console block shows for it."""

    line: int  # its line in the page
    text: str
    shown: tuple[str, ...] | None  # None in an sh block: no output is shown


def sh_commands(block: Block) -> Iterator[Command]:
    """The commands of an ``sh`` block: one per line (``\\`` continues a line), no comments."""
    pending: list[str] = []
    for n, raw in enumerate(block.text.splitlines(), start=block.line + 1):
        line = raw.rstrip()
        if not pending and (not line or line.lstrip().startswith("#")):
            continue
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            yield Command(n - len(pending) + 1, " ".join(pending), None)
            pending = []


def console_commands(block: Block) -> list[Command]:
    """The ``$ `` commands of a ``console`` block, each with the lines shown after it."""
    commands: list[Command] = []
    current: tuple[int, str] | None = None
    shown: list[str] = []
    for n, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if line.startswith("$ "):
            if current:
                commands.append(Command(current[0], current[1], tuple(shown)))
            current, shown = (n, line[2:].strip()), []
        elif current is None:
            raise MarkerError(f"{block.page}:{n}: console output before any '$ ' command")
        else:
            shown.append(line)
    if current:
        commands.append(Command(current[0], current[1], tuple(shown)))
    return commands


# --------------------------------------------------------------------------- shown output

#: An execution id as the CLI prints it.
EXECUTION_ID = re.compile(r"\b[0-9a-f]{32}\b")
#: A timestamp as the CLI prints it: "2026-11-29 16:55:29" (local) or
#: "2026-11-29T16:55:29.777+00:00" (history --timestamps).
TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?")


@dataclass
class Ids:
    """Execution ids shown in a page, bound to the real ids of the run that follows the page.

    The first time a shown id lines up with a real one in a command's output, the two are
    bound; after that the shown id must line up with that same real id, and commands that use
    the shown id get the real one."""

    real_of: dict[str, str] = field(default_factory=dict)

    def substitute(self, command: str) -> str:
        """``command`` with every bound shown id replaced by its real id."""

        def real(match: re.Match[str]) -> str:
            shown = match.group(0)
            if shown not in self.real_of:
                raise LookupError(f"{shown} is used before any output shows it")
            return self.real_of[shown]

        return EXECUTION_ID.sub(real, command)

    def bind(self, shown: str, real: str) -> bool:
        """Bind ``shown`` to ``real``; False if either is already bound to another id."""
        if self.real_of.get(shown, real) != real:
            return False
        if any(r == real and s != shown for s, r in self.real_of.items()):
            return False
        self.real_of[shown] = real
        return True


def _pattern(shown: str) -> re.Pattern[str]:
    """A regex for one shown line: literal text, with an id matching any id (captured) and a
    timestamp any timestamp of the same form."""
    pattern = ""
    pos = 0
    spans = sorted(
        [(m.start(), m.end(), "id") for m in EXECUTION_ID.finditer(shown)]
        + [(m.start(), m.end(), "time") for m in TIMESTAMP.finditer(shown)]
    )
    for start, end, kind in spans:
        pattern += re.escape(shown[pos:start])
        if kind == "id":
            pattern += r"([0-9a-f]{32})"
        else:
            pattern += re.sub(r"\d", r"\\d", re.escape(shown[start:end]))
        pos = end
    return re.compile(pattern + re.escape(shown[pos:]))


def output_mismatch(
    shown: Sequence[str], actual: str, ids: Ids, replacements: Mapping[str, str]
) -> str | None:
    """None when ``actual`` is the ``shown`` output, else a diff saying how it differs.

    Both are compared line by line, trailing blanks ignored. ``replacements`` turn the real
    run's machine-specific text (its working directory, the Python installation) into the
    text the page shows; ids and timestamps are matched as ``_pattern`` says."""
    for real, placeholder in replacements.items():
        actual = actual.replace(real, placeholder)
    want = [line.rstrip() for line in shown]
    got = [line.rstrip() for line in actual.rstrip("\n").splitlines()]
    while want and not want[-1]:
        want.pop()
    pairs: list[tuple[str, str]] = []  # (shown id, real id), bound only if every line matches
    if len(want) == len(got):
        for expected, line in zip(want, got, strict=True):
            match = _pattern(expected).fullmatch(line)
            if not match:
                break
            pairs += zip(EXECUTION_ID.findall(expected), match.groups(), strict=True)
        else:
            trial = Ids(dict(ids.real_of))
            if all(trial.bind(shown_id, real_id) for shown_id, real_id in pairs):
                ids.real_of.update(trial.real_of)
                return None
    diff = difflib.unified_diff(want, got, "shown in the page", "real output", lineterm="", n=2)
    return "\n".join(diff)


def excerpt_mismatch(
    shown: Sequence[str], actual: str, ids: Ids, replacements: Mapping[str, str]
) -> str | None:
    """None when the ``shown`` lines occur in ``actual``, one after the other, as
    ``output_mismatch`` matches lines; else what ``actual`` is."""
    want = list(shown)
    while want and not want[-1].strip():
        want.pop()
    got = actual.rstrip("\n").splitlines()
    for start in range(len(got) - len(want) + 1):
        window = "\n".join(got[start : start + len(want)])
        if output_mismatch(want, window, ids, replacements) is None:
            return None
    lines = "\n".join(want)
    return f"these lines are not in the real output:\n{lines}\nreal output:\n{actual}"
