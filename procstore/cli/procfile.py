"""A procedure FILE on the command line: registering it, and saying its problems.

``run`` and ``validate`` register FILE (in memory first) and print the static checks' warnings;
an invalid FILE's problems are printed as ``FILE: $.json.path: message``, a module that is not
allowed said in the command's terms.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from procstore import InvalidProcedure, Procedure, ProcedureStore, ProcedureWarning
from procstore.cli.hostcode import HostCode
from procstore.validation import read_document


async def register_file(store: ProcedureStore, path: Path) -> tuple[Procedure, list[str]]:
    """Register FILE; return it with the static checks' warnings, as lines to print."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProcedureWarning)
        procedure = await store.register(path)
    lines = []
    for warning in caught:
        if isinstance(warning.message, ProcedureWarning):
            lines += [f"{path}: warning: {problem}" for problem in warning.message.problems]
        else:  # not ours: as Python would have shown it
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return procedure, lines


def invalid_lines(file: Path, exc: InvalidProcedure, code: HostCode | None = None) -> list[str]:
    """``FILE: $.json.path: message`` for each problem of an invalid FILE. With the ``code``
    the command allowed, a module that is not allowed is said so in the command's terms,
    followed by one hint line naming what is allowed."""
    label = str(file)
    refusals: dict[str, str] = {}  # the store's refusal message -> the module it refuses
    if code is not None:
        registry = code.registry()
        try:
            data, _ = read_document(file)
        except InvalidProcedure:
            data = None
        for module in _function_modules(data):
            refusal = registry.refusal(module)
            if refusal is not None:
                refusals[refusal] = module
    lines: list[str] = []
    refused: list[str] = []
    for problem in exc.errors:
        refused_module = refusals.get(problem.message)
        if refused_module is None:
            lines.append(f"{label}: {problem.path}: {problem.message}")
            continue
        lines.append(f"{label}: {problem.path}: module {refused_module!r} is not allowed")
        if refused_module not in refused:
            refused.append(refused_module)
    if not exc.errors:
        lines.append(f"{label}: $: {exc}")
    if refused and code is not None:
        # Not "pass --allow-module os": the document may be someone else's, and allowing a
        # module lets it call every public function the module defines.
        lines.append(
            f"{label}: hint: {code.describe(file)}; --allow-module MODULE would let the document "
            "call every public function of MODULE"
        )
    return lines


def _function_modules(data: Any) -> list[str]:
    """Every module a function action in the raw document ``data`` names, wherever it stands
    (an action in the wrong place has its own problem), in document order."""
    found: dict[str, None] = {}
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, Mapping):
            module = item.get("module")
            if item.get("type") == "function" and isinstance(module, str):
                found.setdefault(module)
            todo.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            todo.extend(reversed(item))
    return list(found)
