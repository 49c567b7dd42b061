"""Regenerate (or check) the diagrams of the example procedures: ``make diagrams``.

For every ``examples/*.json`` / ``*.yaml`` / ``*.yml`` it writes ``diagrams/<name>.svg`` (through
Graphviz) and ``diagrams/<name>.mmd`` (Mermaid); for every Step Functions workflow
``examples/stepfunctions/<name>.asl.json``, imported as ``procstore import-asl`` does (with the
``resources.json`` beside it), ``diagrams/stepfunctions/<name>.svg`` and ``.mmd``. Each SVG
carries the SHA-256 of the DOT source it was drawn from, so ``--check`` can tell an out-of-date
SVG without Graphviz and without depending on the Graphviz version's exact output; an SVG whose
source did not change is left untouched.

    python tools/build_diagrams.py             # regenerate what changed
    python tools/build_diagrams.py --check     # exit 1 if anything is out of date
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from procstore.asl import import_asl
from procstore.diagrams import dot, mermaid
from procstore.diagrams.extract import extract
from procstore.diagrams.model import Diagram

__all__ = ["DOT_HASH", "Outputs", "check", "example_files", "main", "outputs", "svg_source_hash"]

PATTERNS = ("*.json", "*.yaml", "*.yml")
#: Where the Step Functions workflows are, under the examples and under the diagrams.
STEP_FUNCTIONS = "stepfunctions"
ASL_SUFFIX = ".asl.json"
#: The comment an SVG carries: the SHA-256 of the DOT text it was rendered from.
DOT_HASH = "procstore-dot-sha256"
_HASH_RE = re.compile(rf"<!-- {DOT_HASH}: ([0-9a-f]{{64}}) -->")


@dataclass(frozen=True)
class Outputs:
    """What an example's diagrams should contain."""

    example: Path
    svg: Path
    mermaid: Path
    dot_text: str
    mermaid_text: str

    @property
    def dot_hash(self) -> str:
        return hashlib.sha256(self.dot_text.encode("utf-8")).hexdigest()


def example_files(examples: Path) -> list[Path]:
    """The procedure documents in ``examples``, sorted by file name, then the Step Functions
    workflows of ``examples/stepfunctions``."""
    documents = sorted({p for pattern in PATTERNS for p in examples.glob(pattern)})
    return documents + sorted((examples / STEP_FUNCTIONS).glob(f"*{ASL_SUFFIX}"))


def diagram_of(example: Path) -> Diagram:
    """The diagram of ``example``: a procedure document, or an ASL workflow imported."""
    if not example.name.endswith(ASL_SUFFIX):
        return extract(example)
    resources = json.loads((example.parent / "resources.json").read_text(encoding="utf-8"))
    name = example.name[: -len(ASL_SUFFIX)]
    source = example.read_text(encoding="utf-8")
    return extract(import_asl(source, name=name, resource_map=resources))


def outputs(example: Path, out: Path) -> Outputs:
    """The expected diagrams of ``example`` in directory ``out``."""
    model = diagram_of(example)
    stem = example.stem
    if example.name.endswith(ASL_SUFFIX):
        out, stem = out / STEP_FUNCTIONS, example.name[: -len(ASL_SUFFIX)]
    return Outputs(
        example=example,
        svg=out / f"{stem}.svg",
        mermaid=out / f"{stem}.mmd",
        dot_text=dot.to_dot(model),
        mermaid_text=mermaid.to_mermaid(model),
    )


def svg_source_hash(svg: Path) -> str | None:
    """The DOT hash recorded in ``svg``, or ``None`` (no file, or no hash)."""
    try:
        match = _HASH_RE.search(svg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return match.group(1) if match else None


def _stamp(svg: bytes, digest: str) -> bytes:
    """Put the DOT hash comment after the XML prolog (or first, if there is none)."""
    comment = f"<!-- {DOT_HASH}: {digest} -->\n".encode()
    head, sep, tail = svg.partition(b"?>\n")
    if sep and head.startswith(b"<?xml"):
        return head + sep + comment + tail
    return comment + svg


def check(examples: Path, out: Path) -> list[str]:
    """Every way ``out`` is out of date with ``examples``, one message each (empty: current)."""
    problems = []
    for example in example_files(examples):
        expected = outputs(example, out)
        if not expected.mermaid.exists():
            problems.append(f"{expected.mermaid}: missing")
        elif expected.mermaid.read_text(encoding="utf-8") != expected.mermaid_text:
            problems.append(f"{expected.mermaid}: out of date with {example}")
        if not expected.svg.exists():
            problems.append(f"{expected.svg}: missing")
        elif svg_source_hash(expected.svg) != expected.dot_hash:
            problems.append(f"{expected.svg}: out of date with {example}")
    return problems


def build(examples: Path, out: Path) -> list[Path]:
    """Write what is out of date; return the files written."""
    written = []
    for example in example_files(examples):
        expected = outputs(example, out)
        expected.svg.parent.mkdir(parents=True, exist_ok=True)
        if (
            not expected.mermaid.exists()
            or expected.mermaid.read_text(encoding="utf-8") != expected.mermaid_text
        ):
            expected.mermaid.write_text(expected.mermaid_text, encoding="utf-8")
            written.append(expected.mermaid)
        if svg_source_hash(expected.svg) != expected.dot_hash:
            svg = dot.render(diagram_of(example), "svg")
            expected.svg.write_bytes(_stamp(svg, expected.dot_hash))
            written.append(expected.svg)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/build_diagrams.py",
        description="Regenerate the SVG and Mermaid diagrams of the example procedures.",
    )
    parser.add_argument("--examples", type=Path, default=Path("examples"))
    parser.add_argument("--out", type=Path, default=Path("diagrams"))
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a diagram is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.examples, args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `make diagrams` to regenerate them", file=sys.stderr)
        return 1 if problems else 0
    for path in build(args.examples, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
