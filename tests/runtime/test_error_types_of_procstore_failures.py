"""Failures procstore raises itself (a map over its tolerance, a wait that cannot be worked
out, an outside system failing a callback) carry their error type, so that an ``error``
transition's ``errors`` catch them as they catch an action's exception, and an uncaught one
is the execution's error."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ActionInfo, ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import make_doc, wait_until, within


def _fail_item(context: dict[str, Any]) -> None:
    raise KeyError("nope")


ITEM = {"w": {"action": fn("app.fail"), "transitions": [on("success", "ok")]}, "ok": {}}


async def _run(store: ProcedureStore, doc: dict[str, Any], context: dict[str, Any]) -> Any:
    await store.register(doc)
    execution = await within(store.start(doc["name"], context=context, auto=True))
    return await within(execution.run_to_completion(timeout=10), 10)


@pytest.mark.parametrize("caught", ["MapFailed", "Exception"])
async def test_an_error_transition_catches_a_failed_map_by_its_type(
    store: ProcedureStore, caught: str
) -> None:
    store.register_action("app.fail", _fail_item)
    doc = make_doc(
        {
            "fan": {
                "map": {"items_path": "$.xs", "initial_state": "w", "states": ITEM},
                "transitions": [on("done", "end"), {**on("error", "caught"), "errors": [caught]}],
            },
            "end": {},
            "caught": {},
        },
        "fan",
        name="m",
    )

    final = await _run(store, doc, {"xs": [1]})

    assert (final.status, final.current) == (Status.COMPLETED, "caught")


async def test_an_uncaught_failed_map_is_the_executions_error(store: ProcedureStore) -> None:
    store.register_action("app.fail", _fail_item)
    doc = make_doc(
        {
            "fan": {
                "map": {"items_path": "$.xs", "initial_state": "w", "states": ITEM},
                "transitions": [on("done", "end")],
            },
            "end": {},
        },
        "fan",
        name="m",
    )

    final = await _run(store, doc, {"xs": [1]})

    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "MapFailed"


async def test_an_error_transition_catches_a_wait_error_by_its_type(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "w": {
                "wait": {"seconds_path": "$.missing"},
                "transitions": [
                    on("success", "end"),
                    {**on("error", "caught"), "errors": ["WaitError"]},
                ],
            },
            "end": {},
            "caught": {},
        },
        "w",
        name="w",
    )

    final = await _run(store, doc, {})

    assert (final.status, final.current) == (Status.COMPLETED, "caught")


async def test_a_failed_callback_is_an_exception_for_errors(store: ProcedureStore) -> None:
    tokens: list[str] = []

    def ask(context: dict[str, Any], info: ActionInfo) -> None:
        assert info.token is not None
        tokens.append(info.token)

    store.register_action("ask", ask)
    doc = make_doc(
        {
            "ask": {
                "action": fn("ask"),
                "callback": True,
                "transitions": [
                    on("success", "end"),
                    {**on("error", "caught"), "errors": ["Exception"]},
                ],
            },
            "end": {},
            "caught": {},
        },
        "ask",
        name="cb",
    )
    await store.register(doc)
    execution = await within(store.start("cb", auto=True))
    await wait_until(lambda: bool(tokens))

    await store.fail_callback(tokens[0], "Rejected", "the reviewer said no")
    final = await within(execution.run_to_completion(timeout=10), 10)

    assert (final.status, final.current) == (Status.COMPLETED, "caught")
