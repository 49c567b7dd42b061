"""An untrusted definition's `args` and `result_selector` read data only: a path reaches no
attribute, method or code of a host object, in the context or in an action's result."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore
from tests.builders import fn, on
from tests.conftest import make_doc, records, within


class Secret:
    """A host object an action put into the context or returned."""

    token = "s3cr3t"

    def __init__(self) -> None:
        self.calls = 0

    def __getitem__(self, key: Any) -> Any:
        self.calls += 1
        return "read through __getitem__"


async def _run(store: ProcedureStore, states: dict[str, Any], initial: str) -> Any:
    await store.register(make_doc(states, initial))
    ex = await within(store.start("p"))
    return await within(ex.run_to_completion(timeout=5.0), 5.0)


@pytest.mark.parametrize(
    "path",
    ["$.host.token", "$.host.__class__", "$.host.__init__.__globals__", '$.host["token"]'],
)
async def test_args_cannot_read_a_host_object_in_the_context(
    store: ProcedureStore, path: str
) -> None:
    secret, received = Secret(), []

    @store.action("plant")
    def plant(context: dict[str, Any]) -> None:
        context["host"] = secret

    store.register_action("leak", lambda context, value: received.append(value))
    states = {
        "plant": {"action": fn("plant"), "transitions": [on("success", "leak")]},
        "leak": {
            "action": fn("leak", args={"value.$": path}),
            "transitions": [on("success", "stopped"), on("error", "stopped")],
        },
        "stopped": {},
    }

    final = await _run(store, states, "plant")

    [attempt] = records(final.history, "action", state="leak")
    assert (attempt.error.type, received, secret.calls) == ("PathNotFound", [], 0)


async def test_a_result_selector_cannot_read_a_returned_host_object(
    store: ProcedureStore,
) -> None:
    secret = Secret()
    store.register_action("give", lambda context: {"host": secret})
    action = fn("give", result_selector={"value.$": "$.host.token"}, result="out")
    give = {"action": action, "transitions": [on("success", "stopped"), on("error", "stopped")]}
    states = {"give": give, "stopped": {}}

    final = await _run(store, states, "give")

    [attempt] = records(final.history, "action", state="give")
    assert attempt.error.type == "TypeError"
    assert "out" not in final.context
    assert secret.calls == 0
