"""ASL Choice rules as guard expressions.

A rule compares the value at ``Variable`` with a constant (``NumericLessThan: 5``) or with the
value at another path (``NumericLessThanPath``), tests its type (``IsString``), its presence
(``IsPresent``) or combines rules (``And``, ``Or``, ``Not``). Each becomes an expression of
procstore's guard language (``procstore.guards``), with ASL's typing kept: a comparison is
false, not an error, when the value is not of the compared type (``StringEquals`` on a number),
as Step Functions has it. Timestamps compare as instants (``timestamp()``), not as text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from procstore.asl.paths import Untranslatable, guard_operand, relative
from procstore.datapaths import CONTEXT, DataPath

__all__ = ["COMPARISONS", "rule_expression"]

# ASL's comparison families: the type test a value must pass, and how a constant is written.
_TYPES: Final[Mapping[str, tuple[str, Callable[[Any], bool]]]] = {
    "String": ("is_string({})", lambda v: isinstance(v, str)),
    "Numeric": ("is_number({})", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "Boolean": ("is_boolean({})", lambda v: isinstance(v, bool)),
    "Timestamp": ("is_timestamp({})", lambda v: isinstance(v, str)),
}
_OPERATORS: Final = {
    "Equals": "==",
    "LessThan": "<",
    "GreaterThan": ">",
    "LessThanEquals": "<=",
    "GreaterThanEquals": ">=",
}
#: Every ASL comparison operator this module translates (each also with a ``Path`` suffix but
#: ``StringMatches``, and the type tests, which take a boolean).
COMPARISONS: Final = frozenset(
    {
        f"{family}{operator}"
        for family in _TYPES
        for operator in _OPERATORS
        if not (family == "Boolean" and operator != "Equals")
    }
    | {"StringMatches"}
)
_TESTS: Final = {
    "IsNull": "is_null({})",
    "IsPresent": "has(context, {})",
    "IsNumeric": "is_number({})",
    "IsString": "is_string({})",
    "IsBoolean": "is_boolean({})",
    "IsTimestamp": "is_timestamp({})",
}


def rule_expression(rule: Mapping[str, Any], input_path: DataPath | None) -> str:
    """The guard expression of one Choice rule (without its ``Next``).

    Raises:
        Untranslatable: The rule uses an operator or a path procstore cannot express.
    """
    fields = {k: v for k, v in rule.items() if k not in ("Next", "Comment")}
    if set(fields) == {"And"} or set(fields) == {"Or"}:
        [(combinator, rules)] = fields.items()
        if not isinstance(rules, list) or not rules:
            raise Untranslatable(f"{combinator} takes a non-empty list of rules")
        parts = [f"({rule_expression(r, input_path)})" for r in rules]
        return f" {combinator.lower()} ".join(parts)
    if set(fields) == {"Not"}:
        inner = fields["Not"]
        if not isinstance(inner, Mapping):
            raise Untranslatable("Not takes one rule")
        return f"not ({rule_expression(inner, input_path)})"
    variable = fields.pop("Variable", None)
    if variable is None or len(fields) != 1:
        raise Untranslatable(
            "a rule has a Variable and one comparison, or is an And, Or or Not: "
            f"found {', '.join(sorted(rule)) or 'nothing'}"
        )
    [(operator, operand)] = fields.items()
    path = relative(variable, input_path)
    if operator in _TESTS:
        return _test(operator, operand, path)
    return _comparison(operator, operand, path, input_path)


def _test(operator: str, operand: Any, path: DataPath) -> str:
    if not isinstance(operand, bool):
        raise Untranslatable(f"{operator} takes true or false, not {operand!r}")
    if operator == "IsPresent":
        expression = _TESTS[operator].format(_presence_argument(path))
    else:
        expression = _TESTS[operator].format(guard_operand(path))
    return expression if operand else f"not {expression}"


def _comparison(operator: str, operand: Any, path: DataPath, input_path: DataPath | None) -> str:
    by_path = operator.endswith("Path") and operator != "StringMatches"
    name = operator[: -len("Path")] if by_path else operator
    if name not in COMPARISONS:
        raise Untranslatable(f"{operator} is not a Choice comparison operator")
    value = guard_operand(path)
    family = next(f for f in _TYPES if name.startswith(f))
    type_test, accepts = _TYPES[family]
    if by_path:
        other = guard_operand(relative(operand, input_path))
        checks = [type_test.format(value), type_test.format(other)]
    else:
        if not accepts(operand):
            raise Untranslatable(f"{operator} compares with a {family.lower()}, not {operand!r}")
        other = json.dumps(operand) if not isinstance(operand, bool) else str(operand)
        checks = [type_test.format(value)]
    if name == "StringMatches":
        return f"{checks[0]} and matches({value}, {other})"
    if family == "Timestamp":
        value, other = f"timestamp({value})", f"timestamp({other})"
    return " and ".join([*checks, f"{value} {_OPERATORS[name[len(family) :]]} {other}"])


def _presence_argument(path: DataPath) -> str:
    """``has()``'s dotted path for ``path`` (a list index as its digits).

    Raises:
        Untranslatable: The path reads the facts, or a key with a dot in it.
    """
    if path.root != CONTEXT or not path.segments:
        raise Untranslatable(f"IsPresent cannot test {path.text} (only $.key... paths)")
    keys = [str(segment) for segment in path.segments]
    if any("." in key or not key for key in keys):
        raise Untranslatable(f"IsPresent cannot test {path.text}: a key has a dot in it")
    return json.dumps(".".join(keys))
