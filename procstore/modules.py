"""Finding a host module's source and the functions it defines, without running any of it.

Registering a procedure checks its `function` actions, and a definition may come from someone
the host does not trust: the check must not execute anything. Importing ``pkg.sub`` runs
``pkg/__init__.py`` and ``pkg/sub.py``, and even ``importlib.util.find_spec("pkg.sub")``
imports ``pkg`` first. So this module asks the import system's finders (which only look at
the file system) where a module's file is, walking from the top-level package down through
each package's search locations itself, and reads that file with ``ast``. The module is
imported only when an action that names it runs.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import sys
from collections.abc import Mapping
from importlib.machinery import ModuleSpec
from typing import Any

#: The largest module source file the registration check reads (4 MiB): far more than any
#: hand-written module, small enough that parsing it stays well under a second.
MAX_MODULE_SOURCE_BYTES = 4 * 1024 * 1024


class ModuleUnreadable(Exception):
    """A module cannot be found or read without running it; the message says why."""


def find_spec(name: str) -> ModuleSpec | None:
    """Where the import system would load module ``name`` from, or ``None`` if nowhere.

    Unlike ``importlib.util.find_spec``, no package is imported on the way: the parent's
    search locations come from the parent's own spec (or from the parent module, when it is
    already imported).

    Raises:
        ModuleUnreadable: a parent is not a package, or a finder failed.
    """
    parent, _, _ = name.rpartition(".")
    search: Any = None
    if parent:
        loaded = sys.modules.get(parent)
        if loaded is not None:
            # The namespace, not getattr(): never a module-level __getattr__.
            search = getattr(loaded, "__dict__", {}).get("__path__")
        else:
            parent_spec = find_spec(parent)
            if parent_spec is None:
                return None
            search = parent_spec.submodule_search_locations
        if search is None:
            raise ModuleUnreadable(f"{parent!r} is a module, not a package")
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, search, None)
        except Exception as exc:  # a finder's own failure: report it, never crash a check
            raise ModuleUnreadable(f"looking it up failed: {type(exc).__name__}: {exc}") from exc
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    return None


def source_file(spec: ModuleSpec) -> str:
    """The ``.py`` file ``spec`` loads, which can be read without running it.

    Raises:
        ModuleUnreadable: the module has no Python source file (a namespace package, a
            built-in, frozen or compiled extension module, a module inside a zip file).
    """
    origin = spec.origin
    if spec.has_location and origin and origin.endswith(".py") and os.path.isfile(origin):
        return origin
    if spec.submodule_search_locations is not None and not spec.has_location:
        raise ModuleUnreadable("it is a namespace package, which defines no functions")
    raise ModuleUnreadable(
        f"it has no Python source file ({origin or 'no origin'}), so its functions cannot be "
        "checked without importing it: import it in the host before registering, or register "
        "its functions by name with store.action()"
    )


def defined_functions(path: str) -> frozenset[str]:
    """The names ``path``'s module binds, at its top level, to a ``def`` or ``async def``
    statement (the last top-level statement binding the name is that ``def``).

    Raises:
        ModuleUnreadable: the file cannot be read, is larger than `MAX_MODULE_SOURCE_BYTES`,
            or is not valid Python.
    """
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ModuleUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    # Keyed by the file's identity and version: many actions naming one module parse it once,
    # and an edited file is read again.
    return frozenset(_defined_functions(path, stat.st_mtime_ns, stat.st_size))


def function_signature(path: str, name: str) -> inspect.Signature | None:
    """The signature of the function ``name`` that ``path``'s module defines (see
    `defined_functions`), as its ``def`` statement reads, or ``None`` when the source does not
    tell it: no such function, or a decorated one (a decorator may change what it takes).

    Raises:
        ModuleUnreadable: as `defined_functions`.
    """
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ModuleUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    return _defined_functions(path, stat.st_mtime_ns, stat.st_size).get(name)


@functools.lru_cache(maxsize=256)
def _defined_functions(
    path: str, mtime_ns: int, size: int
) -> Mapping[str, inspect.Signature | None]:
    if size > MAX_MODULE_SOURCE_BYTES:
        raise ModuleUnreadable(
            f"{path} is larger than MAX_MODULE_SOURCE_BYTES ({MAX_MODULE_SOURCE_BYTES} bytes)"
        )
    try:
        with open(path, "rb") as file:
            source = file.read(MAX_MODULE_SOURCE_BYTES + 1)
    except OSError as exc:
        raise ModuleUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(source) > MAX_MODULE_SOURCE_BYTES:
        raise ModuleUnreadable(
            f"{path} is larger than MAX_MODULE_SOURCE_BYTES ({MAX_MODULE_SOURCE_BYTES} bytes)"
        )
    try:
        # Bytes: ast honours the file's coding declaration, as the import would.
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno is not None else ""
        raise ModuleUnreadable(f"{path} cannot be parsed: {exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ModuleUnreadable(f"{path} cannot be parsed: {type(exc).__name__}") from None
    bound: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | None] = {}
    for statement in tree.body:
        for name in _bound_names(statement):
            bound[name] = (
                statement if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) else None
            )
    return {
        name: _signature(statement) for name, statement in bound.items() if statement is not None
    }


def _signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> inspect.Signature | None:
    """What ``function`` takes, read from its ``def``: names, kinds and whether each has a
    default (the defaults themselves are never evaluated: each is a stand-in)."""
    if function.decorator_list:
        return None
    kind = inspect.Parameter
    arguments = function.args
    positional = [(a, kind.POSITIONAL_ONLY) for a in arguments.posonlyargs] + [
        (a, kind.POSITIONAL_OR_KEYWORD) for a in arguments.args
    ]
    first_default = len(positional) - len(arguments.defaults)
    parameters = [
        kind(a.arg, k, default=... if i >= first_default else kind.empty)
        for i, (a, k) in enumerate(positional)
    ]
    if arguments.vararg is not None:
        parameters.append(kind(arguments.vararg.arg, kind.VAR_POSITIONAL))
    parameters += [
        kind(a.arg, kind.KEYWORD_ONLY, default=kind.empty if d is None else ...)
        for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
    ]
    if arguments.kwarg is not None:
        parameters.append(kind(arguments.kwarg.arg, kind.VAR_KEYWORD))
    try:
        return inspect.Signature(parameters)
    except ValueError:  # not a valid signature after all: nothing is claimed about it
        return None


def _bound_names(statement: ast.stmt) -> list[str]:
    """The names a top-level statement binds directly (nested blocks are not looked into:
    only a plain top-level ``def`` counts as defining a function)."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).split(".")[0] for alias in statement.names]
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        targets = [statement.target]
    return [
        node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)
    ]
