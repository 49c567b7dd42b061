"""Error transitions that name the errors they catch (Step Functions' Catch): matched on the
error's class and its bases like `retry.errors`, in document order, together with guards."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import make_doc, records, within


def _raising(exc: BaseException) -> Any:
    async def action(context: dict[str, Any]) -> None:
        raise exc

    return action


CATCHERS = [
    on("error", "bad_value", errors=["ValueError"]),
    on("error", "offline", errors=["ConnectionError", "Timeout"]),
    on("error", "anything"),
]


def _doc(transitions: list[dict[str, Any]], **work: Any) -> dict[str, Any]:
    transitions = [on("success", "ok"), *transitions]
    states: dict[str, Any] = {"work": {"action": fn("work"), **work, "transitions": transitions}}
    states.update({transition["target"]: {} for transition in transitions})
    return make_doc(states, "work")


async def _run(store: ProcedureStore, exc: BaseException, doc: dict[str, Any]) -> Any:
    store.register_action("work", _raising(exc))
    await store.register(doc)
    execution = await store.start("p", "1.0", {})
    return await within(execution.run_to_completion())


@pytest.mark.parametrize(
    ("exc", "caught_in"),
    [
        pytest.param(ValueError("v"), "bad_value", id="ValueError"),
        pytest.param(UnicodeDecodeError("utf-8", b"", 0, 1, "x"), "bad_value", id="a subclass"),
        pytest.param(ConnectionResetError("reset"), "offline", id="second in the list"),
        pytest.param(KeyError("k"), "anything", id="no name matches: the one without errors"),
    ],
)
async def test_the_first_error_transition_naming_the_error_or_a_base_fires(
    store: ProcedureStore, exc: BaseException, caught_in: str
) -> None:
    final = await _run(store, exc, _doc(CATCHERS))
    assert final.current == caught_in


async def test_an_attempts_timeout_is_caught_as_timeout(store: ProcedureStore) -> None:
    async def slow(context: dict[str, Any]) -> None:
        import asyncio

        await asyncio.sleep(10)

    store.register_action("work", slow)
    doc = _doc(CATCHERS)
    doc["definition"]["states"]["work"]["action"]["timeout_ms"] = 1
    await store.register(doc)
    final = await within((await store.start("p", "1.0", {})).run_to_completion())
    assert final.current == "offline"


async def test_a_state_timeout_without_a_timeout_transition_is_caught_as_timeout(
    store: ProcedureStore,
) -> None:
    doc = _doc(CATCHERS[:2], timeout_ms=1)
    doc["definition"]["states"]["work"]["action"] = {"type": "sleep", "ms": 10_000}
    await store.register(doc)
    final = await within((await store.start("p", "1.0", {})).run_to_completion())
    assert final.current == "offline"


async def test_an_error_no_transition_catches_fails_the_execution(store: ProcedureStore) -> None:
    final = await _run(store, KeyError("k"), _doc(CATCHERS[:2]))

    assert final.status is Status.FAILED
    assert final.current == "work"
    finished = records(final.history, "finished")[0]
    assert (finished.error.type, finished.error.message) == ("KeyError", "'k'")


async def test_guards_still_see_the_error_of_a_transition_that_names_errors(
    store: ProcedureStore,
) -> None:
    transitions = [
        on("error", "bad_value", errors=["ValueError"], guard="error['message'] == 'fatal'"),
        on("error", "anything", errors=["ValueError"]),
    ]
    final = await _run(store, ValueError("not fatal"), _doc(transitions))
    assert final.current == "anything"


async def test_a_guard_on_error_type_keeps_matching_the_exact_class(
    store: ProcedureStore,
) -> None:
    transitions = [
        on("error", "bad_value", guard="error['type'] == 'ValueError'"),
        on("error", "anything"),
    ]
    final = await _run(store, UnicodeDecodeError("utf-8", b"", 0, 1, "x"), _doc(transitions))
    assert final.current == "anything"


def _compound(child: dict[str, Any], transitions: list[dict[str, Any]]) -> dict[str, Any]:
    transitions = [on("done", "ok"), *transitions]
    outer = {"initial_state": "inner", "states": {"inner": child}, "transitions": transitions}
    states: dict[str, Any] = {"outer": outer}
    states.update({transition["target"]: {} for transition in transitions})
    return make_doc(states, "outer")


async def test_a_compound_state_catches_its_childs_error_by_name(store: ProcedureStore) -> None:
    child = {"action": fn("work")}
    final = await _run(store, ConnectionError("c"), _compound(child, CATCHERS))
    assert final.current == "offline"


async def test_a_failure_terminals_error_name_is_caught_by_its_enclosing_state(
    store: ProcedureStore,
) -> None:
    child = {"outcome": "failure", "error": "ConnectionError", "cause": "the line is down"}
    await store.register(_compound(child, CATCHERS))
    final = await within((await store.start("p", "1.0", {})).run_to_completion())
    assert final.current == "offline"


async def test_a_failure_terminal_without_an_error_name_is_caught_only_by_a_catch_all(
    store: ProcedureStore,
) -> None:
    await store.register(_compound({"outcome": "failure"}, CATCHERS))
    final = await within((await store.start("p", "1.0", {})).run_to_completion())
    assert final.current == "anything"


async def test_a_star_catches_every_error(store: ProcedureStore) -> None:
    transitions = [
        on("error", "bad_value", errors=["KeyError"]),
        on("error", "offline", errors=["*"]),
    ]
    final = await _run(store, ValueError("v"), _doc(transitions))
    assert final.current == "offline"


async def test_an_error_its_own_state_does_not_catch_goes_to_the_enclosing_state(
    store: ProcedureStore,
) -> None:
    own = [on("success", "bad_value"), on("error", "bad_value", errors=["ValueError"])]
    doc = _compound({"action": fn("work"), "transitions": own}, CATCHERS[1:2])
    doc["definition"]["states"]["outer"]["states"]["bad_value"] = {}
    final = await _run(store, ConnectionError("c"), doc)
    assert final.current == "offline"


async def test_an_always_true_guard_on_a_transition_naming_errors_hides_nothing(
    store: ProcedureStore,
) -> None:
    # No "transitions after it never fire" warning (warnings are errors in the tests): the
    # errors it names keep the others reachable.
    transitions = [on("error", "bad_value", errors=["ValueError"], guard="True"), CATCHERS[2]]
    final = await _run(store, KeyError("k"), _doc(transitions))
    assert final.current == "anything"
