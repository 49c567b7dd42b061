"""``procstore import-asl FILE``: a Step Functions (ASL) definition as a procedure document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from procstore.asl import AslNotTranslated, import_asl
from procstore.asl.translate import procedure_name
from procstore.cli.exits import CommandError, ExitCode, execute
from procstore.cli.output import echo, echo_document
from procstore.documents import DocumentError, parse_json, read_text


def import_asl_command(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The ASL state machine (JSON).", dir_okay=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="OUT", dir_okay=False, help="Write it here."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The procedure's name (default: FILE's name).")
    ] = None,
    version: Annotated[str, typer.Option(help="The procedure's version.")] = "1.0",
    resource_map: Annotated[
        Path | None,
        typer.Option(
            "--resource-map",
            metavar="MAP",
            dir_okay=False,
            help='A JSON object: each Task Resource (or "*") to "module:function" or the '
            "name of a registered action.",
        ),
    ] = None,
) -> None:
    """Translate a Step Functions definition into a procedure document (JSON).

    Each ASL state becomes its procstore counterpart; what has no counterpart is printed as
    `FILE: $.States.NAME.Field: why`, and nothing is written. The procedure is not registered:
    `procstore validate OUT` or `procstore run OUT` next.
    """
    execute(lambda: _import(file, out, name, version, resource_map))


def _import(
    file: Path, out: Path | None, name: str | None, version: str, resource_map: Path | None
) -> None:
    mapping = _resource_map(resource_map) if resource_map is not None else None
    source = _read(file)
    try:
        document = import_asl(
            source,
            name=name or procedure_name(file.name.split(".")[0]),
            version=version,
            resource_map=mapping,
        )
    except AslNotTranslated as exc:
        raise CommandError(
            ExitCode.NOT_COMPLETED, *(f"{file}: {problem}" for problem in exc.problems)
        ) from None
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        echo_document(text)
    else:
        out.write_text(text, encoding="utf-8")
        echo(f"wrote {out}", err=True)


def _read(path: Path) -> str:
    try:
        return read_text(path)
    except DocumentError as exc:
        raise CommandError(ExitCode.USAGE, *(f"{path}: {p}" for p in exc.problems)) from None
    except OSError as exc:
        raise CommandError(ExitCode.USAGE, f"{path}: cannot read it: {exc.strerror}") from None


def _resource_map(path: Path) -> dict[str, str]:
    try:
        data: Any = parse_json(_read(path))
    except DocumentError as exc:
        raise CommandError(ExitCode.USAGE, *(f"{path}: {p}" for p in exc.problems)) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CommandError(
            ExitCode.USAGE,
            f'{path}: $: a resource map is a JSON object of strings ("Resource": '
            '"module:function")',
        )
    return data
