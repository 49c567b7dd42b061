"""What each ASL state and field becomes (``procstore.asl.import_asl``), and how what has no
procstore counterpart is reported: with the ASL path of the field, never dropped.

Whether the imported procedures run as Step Functions would is in tests/asl/test_asl_runs.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from procstore.asl import AslNotTranslated, import_asl


def machine(states: dict[str, Any], start: str | None = None, **top: Any) -> dict[str, Any]:
    return {"StartAt": start or next(iter(states)), "States": states, **top}


def states_of(asl: dict[str, Any], **options: Any) -> dict[str, Any]:
    states: dict[str, Any] = import_asl(asl, **options)["definition"]["states"]
    return states


def problems(asl: Any, **options: Any) -> list[str]:
    with pytest.raises(AslNotTranslated) as caught:
        import_asl(asl, **options)
    return [str(problem) for problem in caught.value.problems]


TASK = {"Type": "Task", "Resource": "arn:aws:lambda:eu-west-1:1:function:charge"}


def test_a_task_calls_the_action_the_resource_map_names() -> None:
    asl = machine({"Charge": {**TASK, "End": True}})

    states = states_of(asl, resource_map={TASK["Resource"]: "billing:charge"})

    assert states["Charge"] == {
        "action": {"type": "function", "module": "billing", "function": "charge", "result": "$"}
    }


def test_the_default_resource_mapping_applies_to_resources_the_map_does_not_name() -> None:
    states = states_of(machine({"Charge": {**TASK, "End": True}}), resource_map={"*": "run"})

    assert states["Charge"]["action"]["function"] == "run"


def test_a_mapped_name_that_is_no_entry_point_names_a_registered_action() -> None:
    arn = "arn:aws:lambda:eu-west-1:1:function:charge"
    states = states_of(machine({"Charge": {**TASK, "End": True}}), resource_map={"*": arn})

    assert states["Charge"]["action"] == {"type": "function", "function": arn, "result": "$"}


def test_without_a_map_the_resource_names_a_registered_action() -> None:
    states = states_of(machine({"Charge": {**TASK, "End": True}}))

    assert states["Charge"]["action"]["function"] == TASK["Resource"]


def test_parameters_result_selector_and_result_path_become_the_actions_data_flow() -> None:
    task = {
        **TASK,
        "InputPath": "$.order",
        "Parameters": {"amount.$": "$.total", "currency": "EUR", "run.$": "$$.Execution.Id"},
        "ResultSelector": {"id.$": "$.Payload.id"},
        "ResultPath": "$.charge",
        "End": True,
    }

    action = states_of(machine({"Charge": task}))["Charge"]["action"]

    assert action["args"] == {
        "amount.$": "$.order.total",  # relative to the InputPath
        "currency": "EUR",
        "run.$": "$$.execution.id",
    }
    assert action["result_selector"] == {"id.$": "$.Payload.id"}  # $ is the result there
    assert action["result"] == "$.charge"


def test_a_result_path_of_null_discards_the_result() -> None:
    action = states_of(machine({"T": {**TASK, "ResultPath": None, "End": True}}))["T"]["action"]

    assert "result" not in action


def test_an_input_path_without_parameters_passes_the_input_as_the_input_argument() -> None:
    action = states_of(machine({"T": {**TASK, "InputPath": "$.order", "End": True}}))["T"]["action"]

    assert action["args"] == {"input.$": "$.order"}


def test_timeout_seconds_bounds_each_attempt() -> None:
    action = states_of(machine({"T": {**TASK, "TimeoutSeconds": 5, "End": True}}))["T"]["action"]

    assert action["timeout_ms"] == 5000


def test_retriers_become_retry_policies_in_order_with_attempts_counted_from_the_first() -> None:
    retry = [
        {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 2},
        {"ErrorEquals": ["ValueError", "KeyError"], "IntervalSeconds": 3, "BackoffRate": 1.5},
        {"ErrorEquals": ["States.ALL"], "MaxDelaySeconds": 10, "JitterStrategy": "FULL"},
    ]

    states = states_of(machine({"T": {**TASK, "Retry": retry, "End": True}}))

    assert states["T"]["retry"] == [
        {"max_attempts": 3, "interval_ms": 1000, "backoff_rate": 2.0, "errors": ["Timeout"]},
        {
            "max_attempts": 4,
            "interval_ms": 3000,
            "backoff_rate": 1.5,
            "errors": ["ValueError", "KeyError"],
        },
        {
            "max_attempts": 4,
            "interval_ms": 1000,
            "backoff_rate": 2.0,
            "max_delay_ms": 10000,
            "jitter": "full",
        },
    ]


def test_catchers_become_error_transitions_after_the_success_one() -> None:
    catch = [
        {"ErrorEquals": ["CardDeclined"], "Next": "Declined"},
        {"ErrorEquals": ["States.ALL"], "Next": "Failed"},
    ]
    asl = machine(
        {
            "Charge": {**TASK, "Catch": catch, "Next": "Done"},
            "Declined": {"Type": "Fail"},
            "Failed": {"Type": "Fail"},
            "Done": {"Type": "Succeed"},
        }
    )

    error_output = {"Error.$": "$$.error.type", "Cause.$": "$$.error.message"}
    assert states_of(asl)["Charge"]["transitions"] == [
        {"event": "success", "target": "Done"},
        {
            "event": "error",
            "target": "Declined",
            "errors": ["CardDeclined"],
            "assign": error_output,
        },
        {"event": "error", "target": "Failed", "assign": error_output},
    ]


def test_a_catchers_result_path_keeps_the_error_output_at_a_key() -> None:
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "F"}]
    asl = machine({"T": {**TASK, "Catch": catch, "Next": "F"}, "F": {"Type": "Fail"}})

    [_, caught] = states_of(asl)["T"]["transitions"]

    assert caught["assign"] == {
        "failure": {"Error.$": "$$.error.type", "Cause.$": "$$.error.message"}
    }


def test_a_catchers_result_path_of_null_keeps_nothing() -> None:
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "F"}]
    asl = machine({"T": {**TASK, "Catch": catch, "Next": "F"}, "F": {"Type": "Fail"}})

    [_, caught] = states_of(asl)["T"]["transitions"]

    assert "assign" not in caught


def test_a_wait_for_task_token_task_waits_for_its_callback() -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token"},
        "ResultPath": "$.approval",
        "TimeoutSeconds": 3600,
        "Next": "S",
    }

    state = states_of(machine({"Ask": task, "S": {"Type": "Succeed"}}), resource_map={"*": "ask"})[
        "Ask"
    ]

    assert state == {
        "action": {"type": "function", "function": "ask", "args": {"token.$": "$$.token"}},
        "callback": True,
        "timeout_ms": 3600000,  # the whole wait, not an attempt
        "transitions": [
            {"event": "success", "target": "S", "assign": {"approval.$": "$$.event.data"}}
        ],
    }


def test_an_end_task_with_catchers_goes_to_an_added_terminal_state_on_success() -> None:
    asl = machine(
        {
            "T": {**TASK, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}], "End": True},
            "F": {"Type": "Fail"},
        }
    )

    states = states_of(asl)

    assert states["T"]["transitions"][0] == {"event": "success", "target": "end"}
    assert states["end"] == {}


def test_a_pass_state_with_a_result_stores_it_at_its_result_path() -> None:
    asl = machine({"P": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.fixed", "End": True}})

    assert states_of(asl)["P"] == {
        "action": {"type": "noop", "args": {"x": 1}, "result": "$.fixed"}
    }


def test_a_pass_state_with_parameters_renders_them_as_its_result() -> None:
    asl = machine(
        {
            "P": {
                "Type": "Pass",
                "Parameters": {"id.$": "$.order.id"},
                "ResultPath": "$.ids",
                "End": True,
            }
        }
    )

    assert states_of(asl)["P"]["action"] == {
        "type": "noop",
        "args": {"id.$": "$.order.id"},
        "result": "$.ids",
    }


def test_a_plain_pass_state_does_nothing_and_moves_on() -> None:
    asl = machine({"P": {"Type": "Pass", "Next": "S"}, "S": {"Type": "Succeed"}})

    assert states_of(asl)["P"] == {
        "action": {"type": "noop"},
        "transitions": [{"event": "success", "target": "S"}],
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("Seconds", 10, {"seconds": 10}),
        ("Timestamp", "2030-01-01T00:00:00Z", {"timestamp": "2030-01-01T00:00:00Z"}),
        ("SecondsPath", "$.delay", {"seconds_path": "$.delay"}),
        ("TimestampPath", "$.at", {"timestamp_path": "$.at"}),
    ],
)
def test_a_wait_state_becomes_a_durable_wait(
    field: str, value: Any, expected: dict[str, Any]
) -> None:
    asl = machine({"W": {"Type": "Wait", field: value, "Next": "S"}, "S": {"Type": "Succeed"}})

    assert states_of(asl)["W"] == {
        "wait": expected,
        "transitions": [{"event": "success", "target": "S"}],
    }


def test_a_choice_state_routes_on_ordered_guards_with_its_default() -> None:
    rules = [
        {"Variable": "$.total", "NumericGreaterThan": 100, "Next": "Big"},
        {"Variable": "$.kind", "StringEquals": "gift", "Next": "Gift"},
    ]
    asl = machine(
        {
            "C": {"Type": "Choice", "Choices": rules, "Default": "Small"},
            "Big": {"Type": "Succeed"},
            "Gift": {"Type": "Succeed"},
            "Small": {"Type": "Succeed"},
        }
    )

    assert states_of(asl)["C"] == {
        "choice": [
            {"guard": "is_number(total) and total > 100", "target": "Big"},
            {"guard": 'is_string(kind) and kind == "gift"', "target": "Gift"},
        ],
        "default": "Small",
    }


def test_a_choice_without_a_default_fails_as_no_choice_matched() -> None:
    asl = machine(
        {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.a", "IsPresent": True, "Next": "S"}],
            },
            "S": {"Type": "Succeed"},
        }
    )

    states = states_of(asl)

    assert states[states["C"]["default"]] == {
        "outcome": "failure",
        "error": "States.NoChoiceMatched",
    }


def test_a_fail_state_keeps_its_error_and_cause() -> None:
    asl = machine({"F": {"Type": "Fail", "Error": "Rejected", "Cause": "too big"}})

    assert states_of(asl)["F"] == {"outcome": "failure", "error": "Rejected", "cause": "too big"}


def test_a_parallel_state_has_a_region_per_branch_and_moves_on_when_done() -> None:
    branch = {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}
    asl = machine(
        {
            "P": {
                "Type": "Parallel",
                "Branches": [branch, branch],
                "ResultPath": None,
                "Next": "S",
            },
            "S": {"Type": "Succeed"},
        }
    )

    state = states_of(asl)["P"]

    assert state["parallel"] == {
        "branch_1": {"initial_state": "B", "states": {"B": {}}},
        "branch_2": {"initial_state": "B", "states": {"B": {}}},
    }
    assert state["transitions"] == [{"event": "done", "target": "S"}]


def test_a_parallels_output_array_is_reported() -> None:
    branch = {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}
    asl = machine({"P": {"Type": "Parallel", "Branches": [branch, branch], "End": True}})

    assert [p.split(": ")[0] for p in problems(asl)] == ["$.States.P.ResultPath"]


def test_the_machines_timeout_seconds_bounds_the_whole_execution() -> None:
    document = import_asl(machine({"S": {"Type": "Succeed"}}, TimeoutSeconds=60))

    assert document["definition"]["timeout_ms"] == 60000


def test_state_names_with_dots_are_renamed_and_followed() -> None:
    asl = machine({"a.b": {"Type": "Pass", "Next": "c.d"}, "c.d": {"Type": "Succeed"}})

    states = states_of(asl)

    assert set(states) == {"a_b", "c_d"}
    assert states["a_b"]["transitions"] == [{"event": "success", "target": "c_d"}]


def test_the_comment_becomes_the_description_and_the_name_and_version_are_given() -> None:
    document = import_asl(
        machine({"S": {"Type": "Succeed"}}, Comment="orders"), name="orders", version="2.0"
    )

    assert (document["name"], document["version"], document["description"]) == (
        "orders",
        "2.0",
        "orders",
    )


def test_an_output_path_makes_part_of_the_output_the_context_when_the_state_moves_on() -> None:
    asl = machine({"T": {**TASK, "ResultPath": "$.r", "OutputPath": "$.r", "End": True}})

    states = states_of(asl)

    assert states["T"]["transitions"] == [{"event": "success", "target": "end", "output": "$.r"}]


def test_an_input_path_of_null_gives_a_task_no_input() -> None:
    task = {**TASK, "InputPath": None, "Parameters": {"run.$": "$$.Execution.Id"}, "End": True}

    assert states_of(machine({"T": task}))["T"]["action"]["args"] == {"run.$": "$$.execution.id"}


def test_an_input_path_of_null_with_parameters_reading_the_input_is_reported() -> None:
    task = {**TASK, "InputPath": None, "Parameters": {"id.$": "$.id"}, "End": True}

    assert problems(machine({"T": task})) == [
        "$.States.T.Parameters: InputPath null leaves no input for $ paths to read"
    ]


def test_every_untranslatable_field_is_reported_at_its_asl_path() -> None:
    asl = machine(
        {
            "T": {**TASK, "HeartbeatSeconds": 5, "OutputPath": None, "Next": "M"},
            "M": {"Type": "Map", "Next": "S"},
            "S": {"Type": "Succeed"},
        }
    )

    assert problems(asl) == [
        "$.States.T.OutputPath: OutputPath null (an empty output) is not translated",
        "$.States.T.HeartbeatSeconds: HeartbeatSeconds is not translated here",
        "$.States.M.ItemProcessor: required: the item states (StartAt and States)",
    ]


def test_a_path_procstore_cannot_read_is_reported() -> None:
    asl = machine(
        {
            "T": {
                **TASK,
                "Parameters": {"all.$": "$.items[*].id", "f.$": "States.Format('{}', $.a)"},
                "End": True,
            }
        }
    )

    assert [p.split(": ")[0] for p in problems(asl)] == [
        '$.States.T.Parameters["all.$"]',
        '$.States.T.Parameters["f.$"]',
    ]


def test_a_target_that_is_no_state_is_reported() -> None:
    assert problems(machine({"P": {"Type": "Pass", "Next": "Nowhere"}})) == [
        "$.States.P.Next: required: the name of a state of this machine, not 'Nowhere'"
    ]


def test_an_unknown_predefined_error_name_is_reported() -> None:
    asl = machine({"T": {**TASK, "Retry": [{"ErrorEquals": ["States.Permissions"]}], "End": True}})

    assert problems(asl) == [
        "$.States.T.Retry[0].ErrorEquals[0]: States.Permissions has no procstore counterpart"
    ]


def test_text_that_is_not_json_is_one_problem() -> None:
    assert problems("{nope") == [
        "$: not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"
    ]


def test_json_that_is_not_an_object_is_one_problem() -> None:
    assert problems("[1]") == ["$: an ASL state machine is a JSON object"]


def test_a_machine_without_states_is_reported() -> None:
    assert problems({"StartAt": "A"}) == ["$.States: required: an object of states, at least one"]


def test_a_map_state_runs_its_item_processor_per_item_and_moves_on_when_done() -> None:
    processor = {
        "ProcessorConfig": {"Mode": "INLINE"},
        "StartAt": "Ship",
        "States": {"Ship": {"Type": "Pass", "End": True}},
    }
    asl = machine(
        {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.orders",
                "ItemSelector": {"order.$": "$$.Map.Item.Value", "n.$": "$$.Map.Item.Index"},
                "ItemProcessor": processor,
                "MaxConcurrency": 5,
                "ToleratedFailureCount": 1,
                "ResultPath": "$.shipped",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "S"}],
                "Next": "S",
            },
            "S": {"Type": "Succeed"},
        }
    )

    state = states_of(asl)["Fan"]

    assert state["map"] == {
        "items_path": "$.orders",
        "item_selector": {"order.$": "$$.map.item", "n.$": "$$.map.index"},
        "initial_state": "Ship",
        "states": {"Ship": {"action": {"type": "noop"}}},
        "max_concurrency": 5,
        "tolerated_failures": 1,
        "result": "$.shipped",
    }
    assert state["transitions"] == [
        {"event": "done", "target": "S"},
        {
            "event": "error",
            "target": "S",
            "assign": {"Error.$": "$$.error.type", "Cause.$": "$$.error.message"},
        },
    ]


def test_a_map_state_whose_output_replaces_its_input_is_reported() -> None:
    iterator = {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}
    asl = machine({"M": {"Type": "Map", "Iterator": iterator, "End": True}})
    assert problems(asl) == [
        "$.States.M.ResultPath: a Map state's output replaces its whole input ($), which "
        "procstore cannot hold (its context is an object): give a ResultPath such as $.results"
    ]


async def test_an_imported_map_state_runs_each_item() -> None:
    from procstore import ProcedureStore

    processor = {"StartAt": "Ship", "States": {"Ship": {"Type": "Pass", "End": True}}}
    asl = machine(
        {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.orders",
                "ItemProcessor": processor,
                "ResultPath": "$.shipped",
                "End": True,
            }
        }
    )
    store = ProcedureStore()
    await store.register(import_asl(asl, name="fan"))
    execution = await store.start("fan", context={"orders": ["a", "b"]}, auto=True)
    final = await execution.run_to_completion(timeout=10)
    assert final.context["shipped"] == [{"item": "a", "index": 0}, {"item": "b", "index": 1}]


def test_a_pass_state_with_only_an_input_path_passes_that_part_on() -> None:
    asl = machine(
        {"P": {"Type": "Pass", "InputPath": "$.a", "Next": "S"}, "S": {"Type": "Succeed"}}
    )

    assert states_of(asl)["P"]["transitions"] == [
        {"event": "success", "target": "S", "output": "$.a"}
    ]


def test_a_pass_result_that_is_not_an_object_is_reported() -> None:
    asl = machine({"P": {"Type": "Pass", "Result": "hi", "ResultPath": "$.x", "End": True}})

    assert problems(asl) == ["$.States.P.Result: a Result that is not an object is not translated"]


def test_a_callback_tasks_retry_is_reported() -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Retry": [{"ErrorEquals": ["States.ALL"]}],
        "ResultPath": "$.answer",
        "End": True,
    }

    assert [p.split(": ")[0] for p in problems(machine({"Ask": task}))] == ["$.States.Ask.Retry"]
