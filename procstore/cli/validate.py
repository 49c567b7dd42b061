"""``procstore validate FILE...``: check procedure files, printing every problem."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated

import typer

from procstore import InvalidProcedure
from procstore.cli.exits import ExitCode
from procstore.cli.hostcode import HostCode
from procstore.cli.options import AllowModule, LocalModules
from procstore.cli.output import echo
from procstore.cli.procfile import invalid_lines, register_file


def validate(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="Procedure documents (.json, .yaml or .yml) to check."),
    ],
    allow_module: AllowModule = None,
    local_modules: LocalModules = True,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Count warnings as problems: a file with warnings is invalid."
        ),
    ] = False,
) -> None:
    """Validate procedure files, printing every problem as `FILE: $.json.path: message`.

    Each file is registered into a throwaway in-memory store, so every check done at
    registration applies (schema, targets, reachability, allowed modules, the static checks).
    A valid file prints `FILE: ok`; the static checks' warnings print as
    `FILE: warning: $.json.path: message` and do not make a file invalid unless --strict.
    No database is used.
    """
    results = asyncio.run(_validate(files, allow_module or [], local_modules))
    invalid = False
    for path, problems, warned in results:
        for line in (*problems, *warned):
            echo(line)
        if problems or (strict and warned):
            invalid = True
            if not problems:
                echo(f"{path}: invalid: {len(warned)} warning(s), and --strict")
        else:
            echo(f"{path}: ok" + (f" ({len(warned)} warning(s))" if warned else ""))
    raise typer.Exit(ExitCode.NOT_COMPLETED if invalid else ExitCode.OK)


async def _validate(
    paths: Iterable[Path], allowed: Sequence[str], local_modules: bool = True
) -> list[tuple[Path, list[str], list[str]]]:
    """Each FILE with its problems and its warnings, as lines."""
    results: list[tuple[Path, list[str], list[str]]] = []
    for path in paths:
        label = str(path)
        if not path.is_file():
            problem = "no such file" if not path.exists() else "not a file"
            results.append((path, [f"{label}: $: {problem}"], []))
            continue
        code = HostCode.beside(path, allowed, local_modules)
        try:
            _, warned = await register_file(code.store(), path)
        except InvalidProcedure as exc:
            results.append((path, invalid_lines(path, exc, code), []))
        except Exception as exc:  # a check that broke: report it, and check the other files
            results.append((path, [f"{label}: $: {type(exc).__name__}: {exc}"], []))
        else:
            results.append((path, [], warned))
    return results
