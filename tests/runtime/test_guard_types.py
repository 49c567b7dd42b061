"""The typed tests guards may call (``procstore.guard_types``), as Step Functions' Choice
comparisons need them: type tests that are false rather than errors, timestamps compared as
instants, ``*`` wildcards."""

from __future__ import annotations

from typing import Any

import pytest

from procstore.guards import GuardExpression


def holds(expression: str, **names: Any) -> bool:
    return GuardExpression(expression)(names)


@pytest.mark.parametrize(
    ("value", "string", "number", "boolean", "null"),
    [
        ("a", True, False, False, False),
        (3, False, True, False, False),
        (2.5, False, True, False, False),
        (True, False, False, True, False),
        (None, False, False, False, True),
        ([1], False, False, False, False),
    ],
)
def test_the_type_tests_tell_json_types_apart(
    value: Any, string: bool, number: bool, boolean: bool, null: bool
) -> None:
    assert holds("is_string(v)", v=value) is string
    assert holds("is_number(v)", v=value) is number
    assert holds("is_boolean(v)", v=value) is boolean
    assert holds("is_null(v)", v=value) is null


def test_a_typed_comparison_is_false_for_a_value_of_another_type() -> None:
    assert not holds("is_number(total) and total > 100", total="1000")
    assert holds("is_number(total) and total > 100", total=1000)


def test_timestamps_in_different_offsets_compare_as_instants() -> None:
    assert holds(
        "timestamp(a) < timestamp(b)", a="2030-01-01T01:00:00+02:00", b="2030-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T00:00:00Z", True),
        ("2030-01-01T00:00:00.5+01:00", True),
        ("2030-01-01T00:00:00", False),
        ("soon", False),
        (5, False),
    ],
)
def test_is_timestamp_wants_rfc_3339_with_its_offset(value: Any, expected: bool) -> None:
    assert holds("is_timestamp(v)", v=value) is expected


def test_timestamp_of_something_else_is_an_error() -> None:
    with pytest.raises(ValueError, match="is not a timestamp"):
        holds("timestamp(v) > 0", v="tomorrow")


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("report.csv", "*.csv", True),
        ("report.csv.gz", "*.csv", False),
        ("log-2030-01.txt", "log-*-*.txt", True),
        ("abc", "a*b*c", True),
        ("ac", "a*b*c", False),
        ("aa", "a*a", True),
        ("a", "a*a", False),
        ("a*b", "a\\*b", True),
        ("axb", "a\\*b", False),
        ("exact", "exact", True),
        (3, "*", False),
    ],
)
def test_matches_reads_stars_as_any_run_and_escaped_stars_as_stars(
    value: Any, pattern: str, expected: bool
) -> None:
    assert holds("matches(v, p)", v=value, p=pattern) is expected


def test_matching_a_long_value_against_many_stars_is_fast() -> None:
    # Linear: a backtracking matcher takes ages on this.
    assert not holds("matches(v, p)", v="a" * 100_000, p="*a" * 40 + "*b")
