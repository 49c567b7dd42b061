"""How a `function` action's `args` reach its callable, and the registration check that the
callable can take them.

The callable is called ``fn(context, **args)``, or ``fn(context, info, **args)`` when its second
positional parameter has no default and is not one of the args' names (so a function written
before `args` existed, ``fn(context, info)``, is called as it always was). The args are the
template's names: ``"key.$": "$.order.id"`` gives the keyword ``key``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from procstore.datapaths import TEMPLATE_SUFFIX

__all__ = ["argument_names", "argument_problems", "takes_info"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def argument_names(template: Mapping[str, Any] | None) -> dict[str, str]:
    """The keyword names ``template`` (an action's ``args``) renders to, each mapped to its
    key as written (``key`` for ``key.$``)."""
    if template is None:
        return {}
    # A key that is not a string is the schema's to report: it names no keyword.
    return {key.removesuffix(TEMPLATE_SUFFIX): key for key in template if isinstance(key, str)}


def takes_info(signature: inspect.Signature, names: Iterable[str] = ()) -> bool:
    """Whether a callable with ``signature`` receives the attempt's `ActionInfo`: its second
    positional parameter has no default and is not given by name (one of ``names``)."""
    positional = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    return (
        len(positional) >= 2
        and positional[1].default is inspect.Parameter.empty
        and positional[1].name not in set(names)
    )


def argument_problems(
    signature: inspect.Signature, names: Mapping[str, str], what: str
) -> list[tuple[str | None, str]]:
    """Why ``fn(context[, info], **args)`` would not bind, for a callable ``what`` with
    ``signature`` and args whose names are ``names`` (name -> key as written): each problem
    as (the key at fault, or ``None`` for the args as a whole; the message)."""
    parameters = list(signature.parameters.values())
    by_name = {p.name: p for p in parameters if p.kind not in _VARIADIC}
    positional = [p for p in parameters if p.kind in _POSITIONAL]
    # The parameters the call fills by position: the context, and the info if taken.
    filled = positional[: 2 if takes_info(signature, names) else 1]
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    problems: list[tuple[str | None, str]] = []
    for name, key in names.items():
        parameter = by_name.get(name)
        if parameter is not None and parameter in filled:
            problems.append((key, f"{what} already receives {name!r} by position"))
        elif parameter is not None and parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            problems.append((key, f"{what} takes {name!r} only by position, not by name"))
        elif parameter is None and not any_keyword:
            takes = ", ".join(p.name for p in parameters if p.kind in _BY_NAME and p not in filled)
            problems.append(
                (key, f"{what} has no parameter {name!r} (it takes: {takes or 'none by name'})")
            )
    missing = [
        p.name
        for p in parameters
        if p not in filled
        and p.kind not in _VARIADIC
        and p.default is inspect.Parameter.empty
        and p.name not in names
    ]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        problems.append((None, f"{what} needs {listed}, which args does not give"))
    return problems
