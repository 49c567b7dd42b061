"""Which events a host may fire with ``send()``.

``done`` and ``timeout`` are only raised by procstore (a compound or parallel state completed,
a ``timeout_ms`` ran out), and so is ``error`` on a compound or parallel state (a child failed).
A host may send any other event a state has a transition for — ``success``, ``error`` to a leaf,
or its own names. Once, ``send("done")`` completed a parallel state whose regions were still
running, and the "they accept" hint offered ``done``.
"""

from __future__ import annotations

import pytest

from procstore import Execution, InvalidEvent, ProcedureStore, Status
from tests.builders import fn, on, region, step_region
from tests.conftest import Gate, make_doc, records, within


async def _parallel_with_a_running_region(store: ProcedureStore) -> tuple[Gate, Execution]:
    gate = Gate()
    store.register_action("slow", gate.action)
    await store.register(
        make_doc(
            {
                "checks": {
                    "parallel": {
                        "credit": step_region(fn("slow")),
                        "fraud": region("ok", {"ok": {}}),
                    },
                    "transitions": [on("done", "approved")],
                },
                "approved": {},
            },
            "checks",
        )
    )
    ex = await within(store.start("p", auto=True))
    await within(gate.started.wait())
    return gate, ex


async def test_done_cannot_be_sent_while_regions_are_running(store: ProcedureStore) -> None:
    gate, ex = await _parallel_with_a_running_region(store)

    with pytest.raises(InvalidEvent, match="'done' is raised by procstore itself"):
        await within(ex.send("done"))
    assert ex.current == "checks"
    gate.release.set()
    final = await within(ex.run_to_completion())
    assert final.current == "approved" and records(
        final.history, "action", state="checks.credit.run"
    )


async def test_timeout_cannot_be_sent_even_to_a_state_that_handles_it(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "wait": {
                    "timeout_ms": 60_000,
                    "transitions": [on("timeout", "late"), on("go", "done")],
                },
                "late": {},
                "done": {},
            },
            "wait",
        )
    )
    ex = await within(store.start("p"))

    with pytest.raises(InvalidEvent, match="'timeout' is raised by procstore itself"):
        await ex.send("timeout")
    assert ex.current == "wait"


async def test_the_accepted_events_hint_lists_only_what_a_host_may_send(
    store: ProcedureStore,
) -> None:
    await store.register(
        make_doc(
            {
                "outer": {
                    "initial_state": "wait",
                    "states": {
                        "wait": {"transitions": [on("go", "next"), on("error", "next")]},
                        "next": {"action": {"type": "fail"}},
                    },
                    "timeout_ms": 60_000,
                    "transitions": [
                        on("done", "end"),
                        on("timeout", "end"),
                        on("error", "end"),
                        on("abort", "end"),
                    ],
                },
                "end": {},
            },
            "outer",
        )
    )
    ex = await within(store.start("p"))

    with pytest.raises(InvalidEvent) as refused:
        await ex.send("nope")
    assert "(they accept: abort, error, go)" in str(refused.value)


async def test_a_host_may_send_error_to_a_leaf_that_handles_it(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "approval": {"transitions": [on("approve", "done"), on("error", "rejected")]},
                "done": {},
                "rejected": {},
            },
            "approval",
        )
    )
    ex = await within(store.start("p"))

    assert await within(ex.send("error")) is True
    assert ex.current == "rejected" and ex.status == Status.COMPLETED


async def test_a_host_may_send_success_to_step_a_stepped_execution(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "build": {"action": {"type": "noop"}, "transitions": [on("success", "done")]},
                "done": {},
            },
            "build",
        )
    )
    ex = await within(store.start("p"))

    assert await within(ex.send("success")) is True
    assert ex.current == "done"


async def test_error_handled_only_by_a_compound_state_cannot_be_sent(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "outer": {
                    "initial_state": "wait",
                    "states": {
                        "wait": {"transitions": [on("go", "next")]},
                        "next": {"action": {"type": "fail"}},
                    },
                    "transitions": [on("error", "failed"), on("done", "failed")],
                },
                "failed": {},
            },
            "outer",
        )
    )
    ex = await within(store.start("p"))

    with pytest.raises(InvalidEvent, match=r"no active state .* has a transition on 'error'"):
        await ex.send("error")
    assert ex.current == "outer.wait"


async def test_error_sent_into_a_parallel_state_fires_only_in_leaves(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "both": {
                    "parallel": {
                        "a": region(
                            "wait",
                            {"wait": {"transitions": [on("error", "handled")]}, "handled": {}},
                        ),
                        "b": region(
                            "inner",
                            {
                                "inner": {
                                    "initial_state": "wait",
                                    "states": {
                                        "wait": {"transitions": [on("go", "x")]},
                                        "x": {"action": {"type": "fail"}},
                                    },
                                    "transitions": [on("error", "broken"), on("done", "broken")],
                                },
                                "broken": {},
                            },
                        ),
                    },
                },
            },
            "both",
        )
    )
    ex = await within(store.start("p"))

    assert await within(ex.send("error")) is True
    assert ex.active == ["both.a.handled", "both.b.inner.wait"]
