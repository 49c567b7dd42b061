"""Imported ASL documents register and run with the outcome the States Language specification
gives for the same input: data flow through Parameters, ResultSelector and ResultPath; Choice
rules with their typing; Wait; Retry and Catch; Fail's error and cause; Parallel; callback tasks
(``.waitForTaskToken``); the machine's TimeoutSeconds.

Each document is written from the specification (https://states-language.net), imported with
``import_asl`` and run on an in-memory store whose registered actions play the Lambda
functions; timing runs on the ManualClock.
"""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ActionInfo, ProcedureStore, Status
from procstore.asl import import_asl
from tests.clock import ManualClock
from tests.conftest import records, wait_until, within

LAMBDA = "arn:aws:lambda:eu-west-1:123456789012:function:"


def task(name: str, **fields: Any) -> dict[str, Any]:
    """A Task state calling the Lambda function ``name`` (registered under that name)."""
    return {"Type": "Task", "Resource": LAMBDA + name, **fields}


async def run(
    store: ProcedureStore, states: dict[str, Any], context: dict[str, Any], **top: Any
) -> Any:
    """Import the machine of ``states`` (starting at the first), register it and run it with
    ``context`` to its end; the final snapshot."""
    asl = {"StartAt": next(iter(states)), "States": states, **top}
    await store.register(import_asl(asl, name="asl"))  # a resource names a registered action
    execution = await within(store.start("asl", context=context, auto=True))
    return await within(execution.run_to_completion(timeout=10), 10)


def register(store: ProcedureStore, name: str, fn: Any) -> None:
    """Register ``fn`` as the Lambda function ``name``: under its ARN, which is what an
    imported Task names when no resource map says otherwise."""
    store.register_action(LAMBDA + name, fn)


def path_of(final: Any) -> list[str]:
    """The states entered, in order."""
    return [r.state for r in records(final.history, "entered")]


# -- data flow --------------------------------------------------------------------------------


async def test_parameters_result_selector_and_result_path_shape_the_data(
    store: ProcedureStore,
) -> None:
    seen: list[dict[str, Any]] = []

    def charge(context: dict[str, Any], amount: float, currency: str) -> dict[str, Any]:
        seen.append({"amount": amount, "currency": currency})
        return {"Payload": {"id": "ch_1", "fee": 0.3}, "StatusCode": 200}

    register(store, "charge", charge)
    states = {
        "Charge": task(
            "charge",
            InputPath="$.order",
            Parameters={"amount.$": "$.total", "currency": "EUR"},
            ResultSelector={"id.$": "$.Payload.id"},
            ResultPath="$.order.charge",
            End=True,
        )
    }

    final = await run(store, states, {"order": {"total": 12.5}, "kept": True})

    assert seen == [{"amount": 12.5, "currency": "EUR"}]
    assert final.context == {"order": {"total": 12.5, "charge": {"id": "ch_1"}}, "kept": True}


async def test_a_task_without_result_path_replaces_its_input_with_its_output(
    store: ProcedureStore,
) -> None:
    register(store, "lookup", lambda context: {"customer": "c1"})

    final = await run(store, {"Lookup": task("lookup", End=True)}, {"id": 7})

    assert final.context == {"customer": "c1"}


async def test_a_pass_state_puts_its_result_at_its_result_path(store: ProcedureStore) -> None:
    states = {
        "Fixed": {
            "Type": "Pass",
            "Result": {"region": "eu"},
            "ResultPath": "$.cfg",
            "Next": "Pick",
        },
        "Pick": {
            "Type": "Pass",
            "Parameters": {"r.$": "$.cfg.region"},
            "ResultPath": "$.picked",
            "End": True,
        },
    }

    final = await run(store, states, {})

    assert final.context == {"cfg": {"region": "eu"}, "picked": {"r": "eu"}}


async def test_an_output_path_keeps_only_part_of_the_output(store: ProcedureStore) -> None:
    register(store, "lookup", lambda context: {"customer": {"id": "c1"}, "noise": 1})
    states = {
        "Lookup": task("lookup", ResultPath="$.found", OutputPath="$.found.customer", Next="S"),
        "S": {"Type": "Succeed"},
    }

    final = await run(store, states, {"id": 7})

    assert final.context == {"id": "c1"}


# -- choice -----------------------------------------------------------------------------------


def choosing(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "Decide": {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"},
        "Yes": {"Type": "Succeed"},
        "No": {"Type": "Succeed"},
    }


@pytest.mark.parametrize(
    ("rule", "context", "expected"),
    [
        ({"Variable": "$.n", "NumericGreaterThan": 10}, {"n": 11}, "Yes"),
        ({"Variable": "$.n", "NumericGreaterThan": 10}, {"n": "11"}, "No"),  # not a number
        ({"Variable": "$.n", "NumericLessThanEqualsPath": "$.max"}, {"n": 3, "max": 3}, "Yes"),
        ({"Variable": "$.s", "StringEquals": "gift"}, {"s": "gift"}, "Yes"),
        ({"Variable": "$.s", "StringMatches": "*.csv"}, {"s": "report.csv"}, "Yes"),
        ({"Variable": "$.s", "StringMatches": "*.csv"}, {"s": "report.txt"}, "No"),
        ({"Variable": "$.b", "BooleanEquals": True}, {"b": True}, "Yes"),
        ({"Variable": "$.b", "BooleanEquals": True}, {"b": 1}, "No"),  # not a boolean
        (
            {"Variable": "$.t", "TimestampLessThan": "2030-01-01T00:00:00Z"},
            {"t": "2030-01-01T01:00:00+02:00"},  # 23:00 the day before, in UTC
            "Yes",
        ),
        ({"Variable": "$.a.b", "IsPresent": True}, {"a": {"b": None}}, "Yes"),
        ({"Variable": "$.a.b", "IsPresent": True}, {"a": {}}, "No"),
        ({"Variable": "$.a", "IsNull": True}, {"a": None}, "Yes"),
        ({"Variable": "$.a", "IsString": False}, {"a": 3}, "Yes"),
        (
            {
                "And": [
                    {"Variable": "$.n", "NumericGreaterThan": 1},
                    {"Not": {"Variable": "$.s", "StringEquals": "x"}},
                ]
            },
            {"n": 2, "s": "y"},
            "Yes",
        ),
        (
            {
                "Or": [
                    {"Variable": "$.n", "NumericEquals": 1},
                    {"Variable": "$.n", "NumericEquals": 2},
                ]
            },
            {"n": 3},
            "No",
        ),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_choice_rules_route_as_step_functions_does(
    store: ProcedureStore, rule: dict[str, Any], context: dict[str, Any], expected: str
) -> None:
    final = await run(store, choosing(rule), context)

    assert (final.status, final.current) == (Status.COMPLETED, expected)


async def test_a_choice_that_matches_nothing_without_default_fails_as_no_choice_matched(
    store: ProcedureStore,
) -> None:
    states = {
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "One"}],
        },
        "One": {"Type": "Succeed"},
    }

    final = await run(store, states, {"n": 2})

    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "States.NoChoiceMatched"


# -- wait -------------------------------------------------------------------------------------


async def test_a_wait_state_waits_its_seconds_then_goes_on(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    asl = {
        "StartAt": "Pause",
        "States": {
            "Pause": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    await timed_store.register(import_asl(asl, name="asl"))
    execution = await within(timed_store.start("asl", context={"delay": 30}, auto=True))

    await clock.advance(29)
    assert execution.current == "Pause"
    await clock.advance(1)
    final = await within(execution.run_to_completion(timeout=10), 10)

    assert (final.status, final.current) == (Status.COMPLETED, "Done")


# -- errors -----------------------------------------------------------------------------------


class TransientError(Exception):
    pass


class Declined(Exception):
    pass


async def test_retriers_are_matched_in_order_each_with_its_own_budget(
    store: ProcedureStore,
) -> None:
    failures = [TransientError("blip"), TransientError("blip"), Declined("no")]

    def charge(context: dict[str, Any], info: ActionInfo) -> str:
        if failures:
            raise failures.pop(0)
        return "charged"

    register(store, "charge", charge)
    states = {
        "Charge": task(
            "charge",
            Retry=[
                {"ErrorEquals": ["TransientError"], "IntervalSeconds": 0.001, "MaxAttempts": 2},
                {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0.001, "MaxAttempts": 1},
            ],
            ResultPath="$.charge",
            End=True,
        )
    }

    final = await run(store, states, {})

    attempts = records(final.history, "action", state="Charge")
    assert [a.error.type if a.error else a.result for a in attempts] == [
        "TransientError",
        "TransientError",
        "Declined",
        "charged",
    ]
    assert final.context == {"charge": "charged"}


async def test_a_catcher_routes_the_error_and_keeps_its_output_at_its_result_path(
    store: ProcedureStore,
) -> None:
    def charge(context: dict[str, Any]) -> None:
        raise Declined("card refused")

    register(store, "charge", charge)
    states = {
        "Charge": task(
            "charge",
            Catch=[
                {"ErrorEquals": ["TransientError"], "Next": "Retry later"},
                {"ErrorEquals": ["Declined"], "ResultPath": "$.failure", "Next": "Declined"},
            ],
            Next="Done",
        ),
        "Retry later": {"Type": "Succeed"},
        "Declined": {"Type": "Fail", "Error": "PaymentDeclined", "Cause": "the card was refused"},
        "Done": {"Type": "Succeed"},
    }

    final = await run(store, states, {"order": 1})

    assert final.status is Status.FAILED and final.current == "Declined"
    assert final.context == {"order": 1, "failure": {"Error": "Declined", "Cause": "card refused"}}
    assert final.error is not None
    assert (final.error.type, final.error.message) == ("PaymentDeclined", "the card was refused")


async def test_an_uncaught_error_fails_the_execution(store: ProcedureStore) -> None:
    def charge(context: dict[str, Any]) -> None:
        raise Declined("card refused")

    register(store, "charge", charge)

    final = await run(store, {"Charge": task("charge", End=True)}, {})

    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "Declined"


async def test_the_machines_timeout_fails_the_execution_with_timeout(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    asl = {
        "StartAt": "Pause",
        "TimeoutSeconds": 10,
        "States": {
            "Pause": {"Type": "Wait", "Seconds": 60, "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    await timed_store.register(import_asl(asl, name="asl"))
    execution = await within(timed_store.start("asl", auto=True))

    await clock.advance(10)
    final = await within(execution.run_to_completion(timeout=10), 10)

    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "Timeout"


# -- parallel ---------------------------------------------------------------------------------


async def test_a_parallel_runs_every_branch_then_goes_on(store: ProcedureStore) -> None:
    register(store, "credit", lambda context: {"score": 700})
    register(store, "identity", lambda context: {"verified": True})
    states = {
        "Checks": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Credit",
                    "States": {"Credit": task("credit", ResultPath="$.credit", End=True)},
                },
                {
                    "StartAt": "Identity",
                    "States": {"Identity": task("identity", ResultPath="$.identity", End=True)},
                },
            ],
            "ResultPath": None,
            "Next": "Hire",
        },
        "Hire": {"Type": "Succeed"},
    }

    final = await run(store, states, {})

    assert (final.status, final.current) == (Status.COMPLETED, "Hire")
    assert final.context == {"credit": {"score": 700}, "identity": {"verified": True}}


# -- callbacks --------------------------------------------------------------------------------


async def test_a_wait_for_task_token_task_takes_the_output_its_token_is_completed_with(
    store: ProcedureStore,
) -> None:
    tokens: list[str] = []
    register(store, "ask", lambda context, token: tokens.append(token))
    states = {
        "Ask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"},
            "ResultPath": "$.approval",
            "Next": "Decide",
        },
        "Decide": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.approval.decision", "StringEquals": "approve", "Next": "Pay"}
            ],
            "Default": "Rejected",
        },
        "Pay": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail"},
    }
    asl = {"StartAt": "Ask", "States": states}
    await store.register(import_asl(asl, name="asl", resource_map={"*": LAMBDA + "ask"}))
    execution = await within(store.start("asl", auto=True))
    await wait_until(lambda: bool(tokens))

    await store.complete_callback(tokens[0], {"decision": "approve"})
    final = await within(execution.run_to_completion(timeout=10), 10)

    assert (final.status, final.current) == (Status.COMPLETED, "Pay")
    assert final.context == {"approval": {"decision": "approve"}}
