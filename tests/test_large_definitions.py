"""Large and pathological definitions: registering one never stalls the executions already
running, and the limits on states are refused with their JSON path."""

from __future__ import annotations

from typing import Any

from procstore import ProcedureStore
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
            "transitions": [{"event": "success", "target": "tock"}],
        },
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
