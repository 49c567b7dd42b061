"""Guards on transitions: expressions, registered predicates, the order transitions are tried,
blocked events, and guards that raise."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import InvalidEvent, InvalidProcedure, ProcedureNotFound, ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import make_doc, records, within


def _waiting(transitions: list[dict[str, Any]], *targets: str) -> dict[str, Any]:
    """State ``a`` (no action: waits for send) with ``transitions``; each target is terminal."""
    states: dict[str, Any] = {"a": {"transitions": transitions}}
    states.update({t: {} for t in targets})
    return make_doc(states, "a")


def _problems(exc: pytest.ExceptionInfo[InvalidProcedure]) -> dict[str, str]:
    return {p.path: p.message for p in exc.value.errors}


# --- expression guards -------------------------------------------------------------------------


async def test_expression_guard_that_passes_lets_the_transition_fire(
    store: ProcedureStore,
) -> None:
    await store.register(_waiting([on("go", "b", guard="amount < 1000")], "b"))
    ex = await within(store.start("p", "1.0", {"amount": 10}))

    assert await within(ex.send("go")) is True
    assert ex.state.current == "b"
    assert ex.state.status == Status.COMPLETED
    assert records(ex.state.history, "transition", event="go", state="a", target="b")
    assert records(ex.state.history, "blocked") == []


async def test_expression_guard_that_fails_blocks_the_transition(store: ProcedureStore) -> None:
    await store.register(_waiting([on("go", "b", guard="amount < 1000")], "b"))
    ex = await within(store.start("p", "1.0", {"amount": 5000}))

    assert await within(ex.send("go")) is False
    state = ex.state
    assert state.current == "a"
    assert state.status == Status.RUNNING
    assert records(state.history, "transition") == []
    assert records(state.history, "entered", state="b") == []


@pytest.mark.parametrize(("amount", "expected"), [(10, "ship"), (999, "ship"), (1000, "review")])
async def test_first_transition_whose_guard_passes_wins(
    store: ProcedureStore, amount: int, expected: str
) -> None:
    await store.register(
        make_doc(
            {
                "charge": {
                    "action": {"type": "noop"},
                    "transitions": [
                        on("success", "ship", guard="amount < 1000"),
                        on("success", "review"),
                    ],
                },
                "ship": {},
                "review": {},
            },
            "charge",
        )
    )
    ex = await within(store.start("p", "1.0", {"amount": amount}))

    assert await within(ex.send("success")) is True
    assert ex.state.current == expected
    assert len(records(ex.state.history, "transition")) == 1


async def test_transitions_are_tried_in_document_order_when_several_pass(
    store: ProcedureStore,
) -> None:
    await store.register(
        _waiting(
            [on("go", "x", guard="amount > 5"), on("go", "y", guard="amount > 0"), on("go", "z")],
            "x",
            "y",
            "z",
        )
    )
    ex = await within(store.start("p", "1.0", {"amount": 10}))
    assert await within(ex.send("go")) is True
    assert ex.state.current == "x"

    ex2 = await within(store.start("p", "1.0", {"amount": 3}))
    assert await within(ex2.send("go")) is True
    assert ex2.state.current == "y"


async def test_when_no_guard_passes_send_returns_false_and_records_blocked(
    store: ProcedureStore,
) -> None:
    await store.register(
        _waiting([on("go", "x", guard="amount > 100"), on("go", "y", guard="amount < 0")], "x", "y")
    )
    ex = await within(store.start("p", "1.0", {"amount": 50}))
    before = ex.state

    assert await within(ex.send("go")) is False
    after = ex.state
    assert after.current == "a"
    assert after.status == Status.RUNNING
    assert after.context == before.context
    blocked = records(after.history, "blocked")
    assert len(blocked) == 1
    assert blocked[0].state == "a"
    assert blocked[0].event == "go"
    assert records(after.history, "transition") == []


async def test_blocked_execution_still_accepts_a_later_event(store: ProcedureStore) -> None:
    await store.register(
        _waiting([on("go", "x", guard="amount > 100"), on("other", "y")], "x", "y")
    )
    ex = await within(store.start("p", "1.0", {"amount": 50}))

    assert await within(ex.send("go")) is False
    assert await within(ex.send("other")) is True
    assert ex.state.current == "y"
    assert ex.state.status == Status.COMPLETED


async def test_driven_execution_keeps_waiting_when_guards_block(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "transitions": [on("success", "b", guard="approved")],
                },
                "b": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"approved": False}))

    with pytest.raises(TimeoutError):
        await ex.run_to_completion(timeout=0.1)
    state = ex.state
    assert state.current == "a"
    assert state.status == Status.RUNNING
    assert records(state.history, "blocked", state="a", event="success")
    assert records(state.history, "transition") == []


async def test_auto_execution_blocked_by_guard_does_not_move(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "noop"},
                    "transitions": [on("success", "b", guard="approved")],
                },
                "b": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"approved": False}, auto=True))

    with pytest.raises(TimeoutError):
        await ex.run_to_completion(timeout=0.1)
    assert ex.state.current == "a"
    assert records(ex.state.history, "blocked", state="a", event="success")


async def test_guard_sees_context_written_by_the_states_action(store: ProcedureStore) -> None:
    store.register_action("quote", lambda ctx: 2500)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("quote", result="amount"),
                    "transitions": [
                        on("success", "ship", guard="amount < 1000"),
                        on("success", "review"),
                    ],
                },
                "ship": {},
                "review": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"amount": 1}))
    final = await within(ex.run_to_completion(timeout=2.0))
    assert final.current == "review"


# --- the `result` name -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "context", "expected"),
    [
        pytest.param(42, {}, "yes", id="42"),
        pytest.param(7, {}, "no", id="7"),
        pytest.param(42, {"result": 0}, "yes", id="shadowing a context key named result"),
    ],
)
async def test_result_names_the_states_last_action_result(
    store: ProcedureStore, value: int, context: dict[str, Any], expected: str
) -> None:
    store.register_action("compute", lambda ctx: value)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("compute"),
                    "transitions": [
                        on("success", "yes", guard="result == 42"),
                        on("success", "no"),
                    ],
                },
                "yes": {},
                "no": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", context))
    assert await within(ex.send("success")) is True
    assert ex.state.current == expected


async def test_result_is_the_result_of_the_last_attempt_after_a_retry(
    store: ProcedureStore,
) -> None:
    calls: list[int] = []

    def flaky(ctx: dict[str, Any]) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first attempt fails")
        return len(calls)

    store.register_action("flaky", flaky)
    await store.register(
        make_doc(
            {
                "a": {
                    "action": fn("flaky"),
                    "retry": {"max_attempts": 2, "interval_ms": 1},
                    "transitions": [
                        on("success", "second", guard="result == 2"),
                        on("success", "other"),
                    ],
                },
                "second": {},
                "other": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))
    assert final.current == "second"


async def test_result_does_not_leak_from_the_previous_state(store: ProcedureStore) -> None:
    store.register_action("compute", lambda ctx: 42)
    await store.register(
        make_doc(
            {
                "a": {"action": fn("compute"), "transitions": [on("success", "b")]},
                # b has no action: it has no result of its own.
                "b": {"transitions": [on("go", "leaked", guard="result == 42"), on("go", "clean")]},
                "leaked": {},
                "clean": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    assert await within(ex.send("success")) is True
    assert await within(ex.send("go")) is True
    assert ex.state.current == "clean"


# --- registered predicates ---------------------------------------------------------------------


def _register_predicate(store: ProcedureStore, name: str, value: Any, kind: str) -> list[Any]:
    """Register predicate ``name`` returning ``value`` (sync or async); returns its call log."""
    seen: list[Any] = []
    if kind == "sync":

        def predicate(ctx: dict[str, Any]) -> Any:
            seen.append(dict(ctx))
            return value

        store.register_guard(name, predicate)
    else:

        @store.guard(name)
        async def apredicate(ctx: dict[str, Any]) -> Any:
            seen.append(dict(ctx))
            return value

    return seen


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(("value", "expected"), [(True, "b"), (False, "c")])
async def test_conditions_predicate_must_return_true(
    store: ProcedureStore, kind: str, value: bool, expected: str
) -> None:
    seen = _register_predicate(store, "approved", value, kind)
    await store.register(
        _waiting([on("go", "b", conditions=["approved"]), on("go", "c")], "b", "c")
    )
    ex = await within(store.start("p", "1.0", {"amount": 5}))

    assert await within(ex.send("go")) is True
    assert ex.state.current == expected
    assert seen, "the predicate was never called"
    assert seen[0]["amount"] == 5


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(("value", "expected"), [(True, "c"), (False, "b")])
async def test_unless_predicate_must_return_false(
    store: ProcedureStore, kind: str, value: bool, expected: str
) -> None:
    seen = _register_predicate(store, "frozen", value, kind)
    await store.register(_waiting([on("go", "b", unless=["frozen"]), on("go", "c")], "b", "c"))
    ex = await within(store.start("p", "1.0", {"amount": 5}))

    assert await within(ex.send("go")) is True
    assert ex.state.current == expected
    assert seen


async def test_all_conditions_must_pass(store: ProcedureStore) -> None:
    _register_predicate(store, "yes", True, "sync")
    _register_predicate(store, "no", False, "async")
    await store.register(_waiting([on("go", "b", conditions=["yes", "no"])], "b"))
    ex = await within(store.start("p", "1.0", {}))

    assert await within(ex.send("go")) is False
    assert ex.state.current == "a"


async def test_expression_and_predicate_combine(store: ProcedureStore) -> None:
    _register_predicate(store, "yes", True, "sync")
    await store.register(
        _waiting([on("go", "b", guard="amount > 100", conditions=["yes"]), on("go", "c")], "b", "c")
    )
    small = await within(store.start("p", "1.0", {"amount": 1}))
    big = await within(store.start("p", "1.0", {"amount": 1000}))

    assert await within(small.send("go")) is True
    assert await within(big.send("go")) is True
    assert small.state.current == "c"
    assert big.state.current == "b"


# --- guards that raise ---------------------------------------------------------------------------


def _register_raising(store: ProcedureStore, name: str, kind: str) -> None:
    if kind == "sync":

        def predicate(ctx: dict[str, Any]) -> bool:
            raise RuntimeError(f"{name} exploded")

        store.register_guard(name, predicate)
    else:

        async def apredicate(ctx: dict[str, Any]) -> bool:
            raise RuntimeError(f"{name} exploded")

        store.register_guard(name, apredicate)


@pytest.mark.parametrize("where", ["conditions", "unless"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_predicate_blocks_its_transition_and_is_recorded(
    store: ProcedureStore, where: str, kind: str
) -> None:
    _register_raising(store, "boom", kind)
    await store.register(_waiting([on("go", "b", **{where: ["boom"]})], "b"))
    ex = await within(store.start("p", "1.0", {}))

    assert await within(ex.send("go")) is False
    state = ex.state
    assert state.current == "a"
    assert state.status == Status.RUNNING
    errors = records(state.history, "guard_error")
    assert len(errors) == 1
    assert errors[0].state == "a"
    assert errors[0].event == "go"
    assert errors[0].message == "boom"
    assert errors[0].error is not None
    assert errors[0].error.type == "RuntimeError"
    assert "boom exploded" in errors[0].error.message
    assert records(state.history, "blocked", state="a", event="go")


@pytest.mark.parametrize("where", ["conditions", "unless"])
async def test_raising_guard_blocks_only_its_own_transition(
    store: ProcedureStore, where: str
) -> None:
    _register_raising(store, "boom", "sync")
    await store.register(_waiting([on("go", "b", **{where: ["boom"]}), on("go", "c")], "b", "c"))
    ex = await within(store.start("p", "1.0", {}))

    assert await within(ex.send("go")) is True
    assert ex.state.current == "c"
    assert len(records(ex.state.history, "guard_error", message="boom")) == 1


async def test_raising_expression_blocks_and_is_recorded(store: ProcedureStore) -> None:
    await store.register(_waiting([on("go", "b", guard="10 / zero > 1")], "b"))
    ex = await within(store.start("p", "1.0", {"zero": 0}))

    assert await within(ex.send("go")) is False
    assert ex.state.current == "a"
    errors = records(ex.state.history, "guard_error")
    assert len(errors) == 1
    assert errors[0].message == "10 / zero > 1"
    assert errors[0].error is not None
    assert errors[0].error.type == "ZeroDivisionError"


async def test_guard_on_unknown_context_key_blocks_with_guard_error(
    store: ProcedureStore,
) -> None:
    await store.register(
        _waiting([on("go", "b", guard="missing_key > 1"), on("other", "c")], "b", "c")
    )
    ex = await within(store.start("p", "1.0", {"amount": 1}))

    assert await within(ex.send("go")) is False
    assert ex.state.current == "a"
    errors = records(ex.state.history, "guard_error", state="a", event="go")
    assert len(errors) == 1
    assert errors[0].message == "missing_key > 1"
    assert errors[0].error is not None
    assert "missing_key" in errors[0].error.message


async def test_blocked_error_event_fails_the_execution(store: ProcedureStore) -> None:
    await store.register(
        make_doc(
            {
                "a": {
                    "action": {"type": "fail", "message": "nope"},
                    "transitions": [on("error", "recover", guard="retryable")],
                },
                "recover": {},
            },
            "a",
        )
    )
    ex = await within(store.start("p", "1.0", {"retryable": False}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.status == Status.FAILED
    assert final.current == "a"
    assert records(final.history, "blocked", state="a", event="error")
    assert records(final.history, "entered", state="recover") == []


async def test_send_to_a_state_without_that_event_still_raises_invalid_event(
    store: ProcedureStore,
) -> None:
    await store.register(_waiting([on("go", "b", guard="amount < 1")], "b"))
    ex = await within(store.start("p", "1.0", {"amount": 5}))
    with pytest.raises(InvalidEvent):
        await within(ex.send("nope"))


# --- registration-time checks ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["conditions", "unless"])
async def test_unknown_predicate_is_rejected_with_its_json_path(
    store: ProcedureStore, where: str
) -> None:
    _register_predicate(store, "known", True, "sync")
    doc = _waiting([on("go", "c"), on("go", "b", **{where: ["known", "unknown_pred"]})], "b", "c")

    with pytest.raises(InvalidProcedure) as exc:
        await store.register(doc)
    problems = _problems(exc)
    path = f"$.definition.states.a.transitions[1].{where}[1]"
    assert path in problems, problems
    assert "unknown_pred" in problems[path]
    assert not any(p.endswith("[0]") for p in problems), "the known predicate was reported"
    with pytest.raises(ProcedureNotFound):
        await store.get("p", "1.0")


@pytest.mark.parametrize("guard", ["amount <", "amount < < 1", "(amount", "amount = 1", ""])
async def test_unparsable_guard_is_rejected_with_its_json_path(
    store: ProcedureStore, guard: str
) -> None:
    doc = _waiting([on("go", "c"), on("go", "b", guard=guard)], "b", "c")

    with pytest.raises(InvalidProcedure) as exc:
        await store.register(doc)
    assert "$.definition.states.a.transitions[1].guard" in _problems(exc)
    with pytest.raises(ProcedureNotFound):
        await store.get("p", "1.0")


async def test_every_bad_guard_is_reported_in_one_go(store: ProcedureStore) -> None:
    doc = make_doc(
        {
            "a": {
                "transitions": [on("go", "b", guard="x <"), on("other", "b", conditions=["nope"])]
            },
            "b": {"transitions": [on("go", "c", guard="y.z")]},
            "c": {},
        },
        "a",
    )
    with pytest.raises(InvalidProcedure) as exc:
        await store.register(doc)
    problems = _problems(exc)
    assert "$.definition.states.a.transitions[0].guard" in problems
    assert "$.definition.states.a.transitions[1].conditions[0]" in problems
    assert "$.definition.states.b.transitions[0].guard" in problems
