"""Guards: the conditions that decide whether a transition may fire.

Two kinds, both compiled to transitions' `conditions`/`unless`:

- **expressions** (`"guard": "amount < 1000"`), written in the definition — so possibly by an
  untrusted agent. They are checked when the procedure is registered and evaluated by
  simpleeval, never by `eval`. What is allowed: literals, names of context keys (and
  `result` and `error`: the state's last action result, and its last error as
  `{"type": ..., "message": ...}`, both `None` when there is none; and `context`, the whole
  context, unless it has a key of that name), subscripts
  (`order["total"]`), arithmetic, comparisons, `and`/`or`/`not`,
  `x if c else y`, `in` (`"email" in context`) and calls to the pure functions in
  `FUNCTIONS` (`has(context, "order.customer.id")` tests a nested key). What is not:
  attribute access of any kind (so no dunder walks and no method calls), other calls,
  comprehensions, lambdas, f-strings, `%` string formatting, names starting with `_`, more
  than `MAX_NODES` syntax nodes or `MAX_LENGTH` characters.

  Evaluation is budgeted, so that no guard can freeze the event loop (each operation may be
  cheap while a few of them build 10^15 items, or hand `round` an argument that makes it
  compute 10^(10^9)): at most `MAX_GUARD_STEPS` steps, where every syntax node is a step,
  every item of every value the guard builds is a step, and a call (but `len` and `bool`) or a
  comparison spends a step per item of its list, dict or string arguments; integers it
  computes have at most `MAX_INT_BITS` bits (powers are refused before they are computed);
  `int`, `str` and `round` refuse arguments that would make them convert or compute more than
  `MAX_DIGITS` digits, whatever the process's own int/str limit; `sum` adds numbers only (on
  lists it is quadratic). Over budget, the guard raises `GuardLimitExceeded`, which records a
  `guard_error` and blocks the transition, like any guard that raises. Each syntax node is
  evaluated at most once (no loops), so the steps bound the whole evaluation.
- **predicates** registered by the host with `@store.guard("name")` and named in a
  transition's `conditions` (must return true) or `unless` (must return false).
"""

from __future__ import annotations

import ast
import math
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from itertools import compress, repeat
from typing import Any

from simpleeval import (
    DEFAULT_OPERATORS,
    EvalWithCompoundTypes,
    FeatureNotAvailable,
)

from procstore.guard_types import TYPE_FUNCTIONS

#: A host predicate: `fn(context) -> bool`, sync or async.
GuardCallable = Callable[[dict[str, Any]], Any]

#: The longest guard expression, in characters.
MAX_LENGTH = 500
#: The most syntax nodes a guard expression may have.
MAX_NODES = 100
#: The most work one evaluation of a guard may do, in steps (see the module's docstring): a
#: few milliseconds of the event loop for anything a guard builds.
MAX_GUARD_STEPS = 200_000
#: The largest integer a guard computes, in bits (`9 ** 9 ** 9` is refused, not computed).
MAX_INT_BITS = 4096
#: The bound on `**` is the bound on every integer.
MAX_POWER_BITS = MAX_INT_BITS
#: The most digits `int()` reads from a string, `str()` writes for an integer and `round()`
#: rounds to: CPython's default int/str limit (4300), applied even where a process lifts it
#: (its conversions are quadratic).
MAX_DIGITS = sys.int_info.default_max_str_digits


class GuardLimitExceeded(Exception):
    """A guard expression went over its budget (`MAX_GUARD_STEPS`, `MAX_INT_BITS`,
    `MAX_DIGITS`) while it was evaluated: it is a guard error, never a hang."""


def _int(*args: Any) -> int:
    if args and isinstance(args[0], str | bytes) and len(args[0]) > MAX_DIGITS:
        raise GuardLimitExceeded(f"int() of a string longer than {MAX_DIGITS} characters")
    return int(*args)


def _str(*args: Any) -> str:
    if args and type(args[0]) is int and args[0].bit_length() > _MAX_DIGITS_BITS:
        raise GuardLimitExceeded(f"str() of an integer of more than {MAX_DIGITS} digits")
    return str(*args)


def _round(number: Any, ndigits: Any = None) -> Any:
    # round(1, -n) computes 10 ** n.
    if isinstance(ndigits, int) and abs(ndigits) > MAX_DIGITS:
        raise GuardLimitExceeded(f"round() to more than {MAX_DIGITS} digits")
    return round(number, ndigits)


def _sum(iterable: Any, start: Any = 0) -> Any:
    # sum(lists, []) copies the growing list at every item: quadratic.
    if not isinstance(start, int | float):
        raise GuardLimitExceeded("sum() adds numbers only")
    return sum(iterable, start)


def _has(data: Any, path: Any) -> bool:
    """Whether the dotted ``path`` (``"order.customer.id"``; a list index as digits,
    ``"items.0"``) names a value inside ``data`` — without the error reading it would raise
    when it does not: ``has(context, "order.customer")``. Each segment is one dict or list
    lookup, never an attribute."""
    if not isinstance(path, str):
        raise TypeError(f"has() takes a path as a string, not {type(path).__name__}")
    node = data
    for key in path.split("."):
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    return True


#: The only functions an expression may call: pure, cheap, no access to anything else (those
#: whose cost an argument could blow up are wrapped in bounded versions).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "float": float,
    "has": _has,
    "int": _int,
    "len": len,
    "max": max,
    "min": min,
    "round": _round,
    "str": _str,
    "sum": _sum,
    **TYPE_FUNCTIONS,  # is_number(), timestamp(), matches()...: Step Functions' typed rules
}
#: Functions that do not look inside their argument: they cost one step whatever its size.
_CONSTANT_TIME = frozenset({"len", "bool"})
_MAX_DIGITS_BITS = int(MAX_DIGITS * math.log2(10))

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
            raise GuardLimitExceeded(f"{base!r} ** {exponent!r} is more than {MAX_INT_BITS} bits")
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


#: What a guard builds: the values these nodes return are new, and are counted item by item.
_BUILDERS = frozenset({ast.BinOp, ast.UnaryOp, ast.Call, ast.List, ast.Tuple, ast.Set, ast.Dict})
#: Values whose items a step counts (a string's characters, a list's elements). JSON data and
#: what a guard builds from it have exactly these types.
_SIZED = frozenset({str, bytes, list, tuple, dict, set, frozenset})
_SCALARS = frozenset({bool, float, type(None)})
_LEAVES = frozenset({bool, int, float, type(None)})
_TEXT = frozenset({str, bytes})
_COLLECTIONS = frozenset({list, tuple, dict, set, frozenset})


class _BudgetedEvaluator(EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval's evaluator, counting steps against `MAX_GUARD_STEPS`.

    It replaces simpleeval's check of every intermediate result for forbidden functions and
    modules (a recursive walk of the whole value, itself unbounded): `check_expression` allows
    only calls to `FUNCTIONS` by name and no attribute access, and the names are the
    execution's JSON data, so no such value can appear.
    """

    def __init__(self) -> None:
        # No attribute access on any type: allowed_attrs={} lists no type. (The evaluator adds
        # list/tuple/dict/set to the functions it is given, hence the copy; calls to them are
        # refused by check_expression anyway.)
        super().__init__(
            operators=_OPERATORS, functions=dict(FUNCTIONS), names={}, allowed_attrs={}
        )
        self._left = MAX_GUARD_STEPS

    def run(self, source: str, node: ast.expr, names: Mapping[str, Any]) -> Any:
        """Evaluate `node` (of the expression `source`) against `names`, from a full budget."""
        self.expr = source
        self.names = names
        self._left = MAX_GUARD_STEPS
        return self._eval(node)

    def _spend(self, steps: int) -> None:
        self._left -= steps
        if self._left < 0:
            raise _over_budget()

    def _spend_items(self, value: Any) -> None:
        if type(value) in _SIZED:
            self._spend(len(value))

    def _spend_built(self, value: Any) -> None:
        kind = type(value)
        if kind in _SCALARS:
            self._spend(1)
        elif kind is int:
            _check_int(value)
            self._spend(1)
        elif kind is str:
            self._spend(1 + len(value))
        else:
            self._spend(_size(value, self._left))

    def _eval(self, node: Any) -> Any:
        self._left -= 1  # _spend(1), inlined: this runs for every node
        if self._left < 0:
            self._spend(0)
        try:
            handler = self.nodes[type(node)]
        except KeyError:
            raise FeatureNotAvailable(f"{type(node).__name__} is not allowed in a guard") from None
        result = handler(node)
        if type(node) in _BUILDERS:
            self._spend_built(result)
        return result

    def _eval_call(self, node: Any) -> Any:
        # check_expression: the callee is a name in FUNCTIONS; no keywords, no *args.
        name = node.func.id
        args = [self._eval(arg) for arg in node.args]
        if name not in _CONSTANT_TIME:
            for arg in args:
                self._spend_items(arg)
        return self.functions[name](*args)

    def _eval_compare(self, node: Any) -> Any:
        right = self._eval(node.left)
        result = True
        for operation, comparator in zip(node.ops, node.comparators, strict=True):
            if not result:
                break
            left, right = right, self._eval(comparator)
            if type(left) in _SIZED:
                self._spend(len(left))
            if type(right) in _SIZED:
                self._spend(len(right))
            result = self.operators[type(operation)](left, right)
        return result

    def _eval_subscript(self, node: Any) -> Any:
        result = super()._eval_subscript(node)
        if isinstance(node.slice, ast.Slice):  # a slice is a copy
            self._spend_items(result)
        return result


def _check_int(value: int) -> None:
    if value.bit_length() > MAX_INT_BITS:
        raise GuardLimitExceeded(f"an integer of more than {MAX_INT_BITS} bits (MAX_INT_BITS)")


def _size(value: Any, limit: int) -> int:
    """The items of `value` counted all the way down, a part shared n times counted n times
    (that is what walking it costs: `str`, `==`, `sum` do); raises `GuardLimitExceeded` past
    `limit`.

    A collection's items are classified at C speed, and a part that one collection holds n
    times is looked at once, with weight n: `[[1] * 99999] * 99999` costs three looks, not
    10^10. Every look adds at least one item, so the walk ends within `limit` looks (a cycle,
    too): a few milliseconds for what a guard builds, ~1 µs per distinct collection of the
    context it takes in. Integers inside need no check: every integer a guard computes is
    checked as it is computed.
    """
    kind = type(value)
    if kind in _TEXT:
        return 1 + len(value)
    if kind not in _COLLECTIONS:
        return 1
    total = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        collection, weight = stack.pop()
        items = (
            (*collection.keys(), *collection.values()) if type(collection) is dict else collection
        )
        total += weight * len(items)
        if total > limit:
            raise _over_budget()
        kinds = set(map(type, items))
        if kinds <= _LEAVES:
            continue
        if not kinds.isdisjoint(_TEXT):
            texts = compress(items, map(_TEXT.__contains__, map(type, items)))
            total += weight * sum(map(len, texts))
            if total > limit:
                raise _over_budget()
        if not kinds.isdisjoint(_COLLECTIONS):
            # Empty collections were counted as items: nothing inside to look at.
            collections = compress(items, map(_COLLECTIONS.__contains__, map(type, items)))
            nested = list(filter(None, collections))
            counts = Counter(map(id, nested))
            if len(counts) == len(nested):
                stack.extend(zip(nested, repeat(weight)))
            else:
                by_id = dict(zip(map(id, nested), nested, strict=True))
                stack.extend((by_id[key], weight * count) for key, count in counts.items())
    return total


def _over_budget() -> GuardLimitExceeded:
    return GuardLimitExceeded(f"more than {MAX_GUARD_STEPS} steps (MAX_GUARD_STEPS)")


class GuardExpression:
    """A checked guard expression, ready to evaluate against an execution's names."""

    __slots__ = ("_evaluator", "_node", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._node = check_expression(source)
        self._evaluator = _BudgetedEvaluator()

    def __call__(self, names: Mapping[str, Any]) -> bool:
        """Evaluate against `names`; raises on an unknown name, an invalid operation, or
        `GuardLimitExceeded` over budget."""
        return bool(self._evaluator.run(self.source, self._node.value, names))

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
