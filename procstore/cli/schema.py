"""``procstore schema``: the JSON Schema of procedure documents, for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from procstore.cli.output import echo, echo_document
from procstore.definition_schema import procedure_schema


def schema(
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="OUT", dir_okay=False, help="Write it here."),
    ] = None,
) -> None:
    """Print the JSON Schema of the procedure document (from the pydantic models).

    Point an editor at it for validation and completion, e.g. in VS Code
    "json.schemas": [{"fileMatch": ["*.procedure.json"], "url": "./procedure.schema.json"}],
    or for YAML a first line `# yaml-language-server: $schema=./procedure.schema.json`.
    """
    text = json.dumps(procedure_schema(), indent=2) + "\n"
    if out is None:
        echo_document(text)
    else:
        out.write_text(text, encoding="utf-8")
        echo(f"wrote {out}", err=True)
