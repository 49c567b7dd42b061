"""Guards: the conditions that decide whether a transition may fire.

Two kinds, both compiled to transitions' `conditions`/`unless`:

- **expressions** (`"guard": "amount < 1000"`), written in the definition — so possibly by an
  untrusted agent. They are checked when the procedure is registered and evaluated by
  simpleeval, never by `eval`. What is allowed: literals, names of context keys (and
  `result` and `error`: the state's last action result, and its last error as
  `{"type": ..., "message": ...}`, both `None` when there is none), subscripts
  (`order["total"]`), arithmetic, comparisons, `and`/`or`/`not`,
  `x if c else y` and calls to the pure functions in `FUNCTIONS`. What is not:
  attribute access of any kind (so no dunder walks and no method calls), other calls,
  comprehensions, lambdas, f-strings, `%` string formatting, names starting with `_`, more
  than `MAX_NODES` syntax nodes or `MAX_LENGTH` characters, and powers whose result would
  exceed `MAX_POWER_BITS` bits.
- **predicates** registered by the host with `@store.guard("name")` and named in a
  transition's `conditions` (must return true) or `unless` (must return false).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import Any

from simpleeval import (
    DEFAULT_OPERATORS,
    EvalWithCompoundTypes,
    FeatureNotAvailable,
    NumberTooHigh,
)

#: A host predicate: `fn(context) -> bool`, sync or async.
GuardCallable = Callable[[dict[str, Any]], Any]

#: The only functions an expression may call: pure, cheap, no access to anything else.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "float": float,
    "int": int,
    "len": len,
    "max": max,
    "min": min,
    "round": round,
    "str": str,
    "sum": sum,
}
#: The longest guard expression, in characters.
MAX_LENGTH = 500
#: The most syntax nodes a guard expression may have.
MAX_NODES = 100
#: The largest result of `**` in a guard, in bits (`9 ** 9 ** 9` is refused, not computed).
MAX_POWER_BITS = 4096

_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.List,
    ast.Dict,
    ast.Set,
    ast.boolop,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
)


class GuardSyntaxError(ValueError):
    """A guard expression is malformed or uses something guards may not use."""


def _bounded_power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int | float) and isinstance(exponent, int | float):
        magnitude = abs(base)
        if magnitude > 1 and exponent > 0 and exponent * math.log2(magnitude) > MAX_POWER_BITS:
            raise NumberTooHigh(f"{base!r} ** {exponent!r} is too large")
    return base**exponent


def _numeric_mod(left: Any, right: Any) -> Any:
    # ``"%999999999d" % 1`` would build a gigabyte string: % is arithmetic only.
    if isinstance(left, str | bytes):
        raise FeatureNotAvailable("string formatting with % is not allowed in a guard")
    return left % right


_OPERATORS = {**DEFAULT_OPERATORS, ast.Pow: _bounded_power, ast.Mod: _numeric_mod}


def check_expression(source: str) -> ast.Expr:
    """Parse `source` and check it against the rules above; return the node to evaluate.

    Raises:
        GuardSyntaxError: `source` does not parse, or uses something guards may not use.
    """
    if len(source) > MAX_LENGTH:
        raise GuardSyntaxError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise GuardSyntaxError(f"not a valid expression: {exc.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise GuardSyntaxError(f"more than {MAX_NODES} syntax nodes")
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            raise GuardSyntaxError(f"{type(node).__name__} is not allowed in a guard")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise GuardSyntaxError(f"name {node.id!r} is not allowed (leading underscore)")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
        ):
            allowed = ", ".join(sorted(FUNCTIONS))
            raise GuardSyntaxError(f"only these functions may be called: {allowed}")
    # simpleeval evaluates statement nodes: hand it the same tree as an expression statement.
    return ast.Expr(value=tree.body)


class GuardExpression:
    """A checked guard expression, ready to evaluate against an execution's names."""

    __slots__ = ("_evaluator", "_node", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._node = check_expression(source)
        # No attribute access on any type: allowed_attrs={} lists no type. (The evaluator adds
        # list/tuple/dict/set to the functions it is given, hence the copy; calls to them are
        # refused by check_expression anyway.)
        self._evaluator = EvalWithCompoundTypes(
            operators=_OPERATORS, functions=dict(FUNCTIONS), names={}, allowed_attrs={}
        )

    def __call__(self, names: Mapping[str, Any]) -> bool:
        """Evaluate against `names`; raises on an unknown name or an invalid operation."""
        self._evaluator.names = names
        return bool(self._evaluator.eval(self.source, previously_parsed=self._node))

    def __repr__(self) -> str:
        return f"GuardExpression({self.source!r})"


class GuardRegistry:
    """Host predicates by name."""

    def __init__(self) -> None:
        self._predicates: dict[str, GuardCallable] = {}

    def register(self, name: str, fn: GuardCallable) -> None:
        """Make `fn` usable as `"conditions": [name]` or `"unless": [name]`."""
        if not callable(fn):
            raise TypeError(f"guard {name!r} must be callable, got {type(fn).__name__}")
        self._predicates[name] = fn

    def __contains__(self, name: object) -> bool:
        return name in self._predicates

    def resolve(self, name: str) -> GuardCallable:
        """The predicate registered as `name`.

        Raises:
            LookupError: no predicate is registered as `name`.
        """
        try:
            return self._predicates[name]
        except KeyError:
            known = ", ".join(sorted(self._predicates)) or "none"
            raise LookupError(
                f"no guard named {name!r} is registered with the store (registered: {known})"
            ) from None
