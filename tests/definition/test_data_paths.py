"""Data paths and templates (``procstore.datapaths``): what a path reads, where a value is
stored, how a template renders, and what a badly written one is told."""

from __future__ import annotations

from typing import Any

import pytest

from procstore.datapaths import (
    MAX_PATH_SEGMENTS,
    MAX_RENDERED_VALUES,
    MAX_TEMPLATE_DEPTH,
    MAX_TEMPLATE_PATHS,
    MAX_TEMPLATE_VALUES,
    PathError,
    PathNotFound,
    RenderTooLarge,
    check_path,
    check_template,
    parse_path,
    render,
)

CONTEXT: dict[str, Any] = {
    "order": {"id": "A7", "items": [{"sku": "x", "unit price": 3}]},
    "flags": [True, False],
}


def test_a_path_reads_keys_indexes_and_quoted_keys() -> None:
    path = parse_path('$.order.items[0]["unit price"]')

    assert path.get(CONTEXT) == 3


def test_a_path_with_single_quotes_reads_the_same_key() -> None:
    assert parse_path("$.order.items[0]['unit price']").get(CONTEXT) == 3


def test_the_root_alone_is_the_whole_context() -> None:
    assert parse_path("$").get(CONTEXT) is CONTEXT


def test_a_facts_path_reads_the_facts_not_the_context() -> None:
    assert parse_path("$$.execution.id").get(CONTEXT, {"execution": {"id": "e1"}}) == "e1"


def test_a_missing_key_says_where_nothing_was_found() -> None:
    with pytest.raises(PathNotFound, match=r"\$\.order\.total: nothing at \$\.order\.total"):
        parse_path("$.order.total").get(CONTEXT)


def test_an_index_past_the_end_is_not_found() -> None:
    with pytest.raises(PathNotFound, match=r"nothing at \$\.flags\[2\]"):
        parse_path("$.flags[2]").get(CONTEXT)


def test_a_path_never_reads_an_attribute() -> None:
    class Host:
        secret = "s"

    with pytest.raises(PathNotFound):
        parse_path("$.obj.secret").get({"obj": Host()})


def test_a_key_on_a_list_is_not_found_rather_than_an_error() -> None:
    with pytest.raises(PathNotFound):
        parse_path("$.flags.first").get(CONTEXT)


def test_put_creates_the_objects_on_the_way() -> None:
    context: dict[str, Any] = {"kept": 1}

    parse_path("$.results.step1").put(context, {"ok": True})

    assert context == {"kept": 1, "results": {"step1": {"ok": True}}}


def test_put_at_the_root_replaces_the_whole_context() -> None:
    context: dict[str, Any] = {"old": 1}

    parse_path("$").put(context, {"new": 2})

    assert context == {"new": 2}


def test_only_an_object_replaces_the_whole_context() -> None:
    context: dict[str, Any] = {"old": 1}

    with pytest.raises(PathNotFound, match="only an object can replace the whole context"):
        parse_path("$").put(context, [1, 2])
    assert context == {"old": 1}


def test_put_into_a_value_that_is_not_an_object_fails() -> None:
    with pytest.raises(PathNotFound, match="cannot store under"):
        parse_path("$.kept.inner").put({"kept": 1}, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("order.id", "must start with \\$"),
        ("$.order..id", "at character 8 expected"),
        ("$.order[-1]", "at character 8 expected"),
        ("$[01]", "at character 2 expected"),
        ("$" + ".a" * (MAX_PATH_SEGMENTS + 1), f"at most {MAX_PATH_SEGMENTS} segments"),
        ("$." + "a" * 600, "at most 500 characters"),
    ],
)
def test_a_badly_written_path_is_refused_with_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(PathError, match=expected):
        parse_path(text)


def test_check_path_names_the_json_path_of_the_problem() -> None:
    assert check_path("order", "$.definition.states.a.action.result") == [
        "$.definition.states.a.action.result: 'order' is not a path: it must start with $ "
        "(the context) or $$"
    ]


def test_only_a_context_path_is_settable() -> None:
    assert check_path("$$.execution", "$.x", settable=True) != []
    assert check_path("$", "$.x", settable=True) == []
    assert check_path("$.a", "$.x", settable=True) == []


def test_a_template_renders_its_paths_and_keeps_its_constants() -> None:
    template = {
        "bucket": "invoices",
        "key.$": "$.order.id",
        "nested": [{"sku.$": "$.order.items[0].sku"}],
    }

    assert render(template, CONTEXT) == {
        "bucket": "invoices",
        "key": "A7",
        "nested": [{"sku": "x"}],
    }


def test_a_rendered_value_is_a_copy_of_the_data() -> None:
    rendered = render({"items.$": "$.order.items"}, CONTEXT)

    rendered["items"].append("more")

    assert len(CONTEXT["order"]["items"]) == 1


def test_a_template_path_that_names_nothing_fails_at_run_time() -> None:
    with pytest.raises(PathNotFound):
        render({"total.$": "$.order.total"}, CONTEXT)


def test_check_template_reports_each_bad_path_at_its_place() -> None:
    problems = check_template({"a": {"b.$": "nope"}, "c": [{"d.$": 3}]}, "$.args")

    assert [p.split(":")[0] for p in problems] == ['$.args.a["b.$"]', '$.args.c[0]["d.$"]']


def test_a_template_nested_too_deep_is_refused() -> None:
    template: Any = "leaf"
    for _ in range(MAX_TEMPLATE_DEPTH + 2):
        template = {"k": template}

    assert any(f"deeper than {MAX_TEMPLATE_DEPTH}" in p for p in check_template(template, "$"))


def test_a_template_with_too_many_paths_is_refused() -> None:
    template = {f"k{n}.$": "$.a" for n in range(MAX_TEMPLATE_PATHS + 1)}

    assert check_template(template, "$.args") == [
        f"$.args: at most {MAX_TEMPLATE_PATHS} paths (.$ keys), not {MAX_TEMPLATE_PATHS + 1}"
    ]


def test_a_template_with_too_many_values_is_refused() -> None:
    template = {"items": [0] * MAX_TEMPLATE_VALUES}

    assert check_template(template, "$.args") == [
        f"$.args: at most {MAX_TEMPLATE_VALUES} values, not {MAX_TEMPLATE_VALUES + 2}"
    ]


def test_a_template_as_large_as_the_limit_is_accepted() -> None:
    assert check_template({"items": [0] * (MAX_TEMPLATE_VALUES - 2)}, "$.args") == []


def test_a_name_given_both_as_a_constant_and_as_a_path_is_refused() -> None:
    assert check_template({"a": {"id": 1, "id.$": "$.id"}}, "$.args") == [
        """$.args.a["id.$"]: 'id' is given twice, as 'id' and 'id.$'"""
    ]


def test_a_rendering_that_would_copy_too_much_of_the_data_is_refused() -> None:
    context = {"xs": list(range(MAX_RENDERED_VALUES))}  # the list and its items: one too many

    with pytest.raises(RenderTooLarge, match="copy more than"):
        render({"a.$": "$.xs"}, context)


def test_every_path_of_a_rendering_counts_against_one_budget() -> None:
    context = {"xs": list(range(MAX_RENDERED_VALUES // 2))}

    assert len(render({"a.$": "$.xs"}, context)["a"]) == MAX_RENDERED_VALUES // 2
    with pytest.raises(RenderTooLarge):
        render({"a.$": "$.xs", "b.$": "$.xs", "c.$": "$.xs"}, context)
