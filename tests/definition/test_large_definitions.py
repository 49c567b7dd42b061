"""Large and pathological definitions: registering one never stalls the executions already
running, and the limits on states are refused with their JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import InvalidProcedure, ProcedureStore, Status
from procstore.compiler import MODEL_ATTRIBUTE
from procstore.validation import MAX_STATE_DEPTH, MAX_STATES
from tests.conftest import make_doc, within


def _parallel_chain(count: int) -> dict[str, Any]:
    """``count`` parallel states in a chain, each with two regions of one leaf: 5 states each."""
    states: dict[str, Any] = {}
    for i in range(count):
        region = {"initial_state": "s", "states": {"s": {}}}
        state: dict[str, Any] = {"parallel": {"a": region, "b": region}}
        if i + 1 < count:
            state["transitions"] = [{"event": "next", "target": f"p{i + 1}"}]
        states[f"p{i}"] = state
    return make_doc(states, "p0", name="big")


TICKER = make_doc(
    {
        "tick": {
            "action": {"type": "sleep", "ms": 0},
            "transitions": [
                {"event": "success", "target": "tock"},
                {"event": "stop", "target": "stopped"},
            ],
        },
        "stopped": {},
        "tock": {
            "action": {"type": "sleep", "ms": 0},
            "transitions": [{"event": "success", "target": "tick"}],
        },
    },
    "tick",
    name="ticker",
)


async def test_running_executions_make_progress_while_a_large_definition_registers(
    store: ProcedureStore,
) -> None:
    await store.register(TICKER)
    ticker = await within(store.start("ticker", auto=True))
    big = _parallel_chain(800)  # 4,000 states

    before = len(ticker.history)
    await within(store.register(big), 60)
    progress = len(ticker.history) - before

    # Registering on the event loop would leave room for a step or two of the ticker (while
    # the registration starts), not for the thousands it makes in the time.
    assert progress > 50
    await within(ticker.cancel())


def _chain(count: int) -> dict[str, Any]:
    """``count`` leaves in a chain s0 -> s1 -> ...: all reachable."""
    states: dict[str, Any] = {
        f"s{i}": {"transitions": [{"event": "next", "target": f"s{i + 1}"}]} for i in range(count)
    }
    states[f"s{count - 1}"] = {}
    return make_doc(states, "s0", name="chain")


def _nested(levels: int) -> dict[str, Any]:
    """Compound states n0, n0.n1, ... nested ``levels`` deep, the deepest with a leaf inside
    (``levels`` + 1 deep)."""
    state: dict[str, Any] = {"initial_state": "leaf", "states": {"leaf": {}}}
    for i in range(levels - 1, 0, -1):
        state = {"initial_state": f"n{i}", "states": {f"n{i}": state}}
    return make_doc({"n0": state}, "n0", name="deep")


async def test_a_definition_of_more_than_max_states_states_is_refused(
    store: ProcedureStore,
) -> None:
    with pytest.raises(InvalidProcedure) as exc:
        await within(store.register(_chain(MAX_STATES + 1)), 60)
    assert [str(p) for p in exc.value.errors] == [
        f"$.definition.states: {MAX_STATES + 1} states: more than {MAX_STATES} (MAX_STATES)"
    ]


async def test_states_nested_deeper_than_the_limit_are_refused_at_the_first_level_too_deep(
    store: ProcedureStore,
) -> None:
    with pytest.raises(InvalidProcedure) as exc:
        await within(store.register(_nested(MAX_STATE_DEPTH + 3)))
    [problem] = exc.value.errors
    assert problem.path == ".".join(
        ["$.definition.states.n0", *(f"states.n{i}" for i in range(1, MAX_STATE_DEPTH + 1))]
    )
    assert problem.message == (
        f"state nested more than {MAX_STATE_DEPTH} levels deep (MAX_STATE_DEPTH)"
    )


async def test_states_nested_to_the_limit_register_and_run(store: ProcedureStore) -> None:
    await within(store.register(_nested(MAX_STATE_DEPTH - 1)))
    execution = await within(store.start("deep", auto=True))
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED


async def test_an_event_named_like_the_machines_state_attribute_is_refused(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        {"a": {"transitions": [{"event": MODEL_ATTRIBUTE, "target": "b"}]}, "b": {}}, "a"
    )
    with pytest.raises(InvalidProcedure) as exc:
        await within(store.register(doc))
    [problem] = exc.value.errors
    assert problem.path == "$.definition.states.a.transitions[0].event"
    assert problem.message.startswith(f"event name {MODEL_ATTRIBUTE!r} is reserved")


@pytest.mark.parametrize(
    "event", ["trigger", "to_b", "is_a", "may_go", "state", "machine", "models", "*", "="]
)
async def test_events_named_like_the_machines_methods_work(
    store: ProcedureStore, event: str
) -> None:
    doc = make_doc({"a": {"transitions": [{"event": event, "target": "b"}]}, "b": {}}, "a")
    await within(store.register(doc))
    execution = await within(store.start("p"))
    assert await within(execution.send(event)) is True
    assert execution.state.status is Status.COMPLETED


@pytest.mark.parametrize("name", [MODEL_ATTRIBUTE, "*", "=", "initial", "trigger", "machine"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
async def test_any_state_name_works(store: ProcedureStore, name: str, nested: bool) -> None:
    states: dict[str, Any] = {"x": {"transitions": [{"event": "go", "target": name}]}, name: {}}
    if nested:
        states = {"top": {"initial_state": "x", "states": states}}
    await within(store.register(make_doc(states, "top" if nested else "x")))
    execution = await within(store.start("p"))
    assert await within(execution.send("go")) is True
    assert execution.state.status is Status.COMPLETED
