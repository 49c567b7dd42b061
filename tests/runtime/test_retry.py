"""Retry with backoff: how many attempts, the delays between them, which errors are retried, and
what the history records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from procstore import ProcedureStore, Status
from procstore.definition import MAX_DURATION_MS, RetryPolicy
from tests.builders import fn
from tests.clock import ManualClock
from tests.conftest import index_of, make_doc, records, wait_until, within


class Flaky:
    """An action failing with ``errors[i]`` on attempt ``i + 1`` and then returning ``result``."""

    def __init__(self, *errors: BaseException, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self, context: dict[str, Any]) -> Any:
        self.calls += 1
        if self.calls <= len(self.errors):
            raise self.errors[self.calls - 1]
        return self.result


def _always(exc: BaseException, n: int = 50) -> Flaky:
    return Flaky(*([exc] * n))


def _doc(retry: dict[str, Any] | None, action: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "action": action or fn("flaky"),
        "transitions": [
            {"event": "success", "target": "done"},
            {"event": "error", "target": "failed"},
        ],
    }
    if retry is not None:
        state["retry"] = retry
    return make_doc({"work": state, "done": {}, "failed": {}}, "work")


async def _run(store: ProcedureStore, flaky: Flaky, retry: dict[str, Any] | None) -> Any:
    store.register_action("flaky", flaky)
    await store.register(_doc(retry))
    ex = await within(store.start("p", "1.0", {}))
    return await within(ex.run_to_completion(timeout=5.0), 5.0)


@pytest.mark.parametrize(
    "retry",
    [
        pytest.param(None, id="no retry block"),
        pytest.param({"max_attempts": 1, "interval_ms": 1}, id="max_attempts 1"),
    ],
)
async def test_an_action_without_retries_is_attempted_once(
    store: ProcedureStore, retry: dict[str, Any] | None
) -> None:
    flaky = _always(ConnectionError("down"))
    final = await _run(store, flaky, retry)

    assert flaky.calls == 1
    assert len(records(final.history, "action", state="work")) == 1
    assert records(final.history, "retry") == []
    assert final.current == "failed"


async def test_max_attempts_counts_every_attempt_including_the_first(
    store: ProcedureStore,
) -> None:
    flaky = _always(ConnectionError("down"))
    final = await _run(store, flaky, {"max_attempts": 3, "interval_ms": 1})

    assert flaky.calls == 3
    attempts = records(final.history, "action", state="work")
    assert [r.attempt for r in attempts] == [1, 2, 3]
    assert all(r.error is not None and r.error.type == "ConnectionError" for r in attempts)
    assert [r.attempt for r in records(final.history, "retry", state="work")] == [2, 3]
    assert final.current == "failed"
    assert index_of(final.history, "transition", event="error", state="work") > index_of(
        final.history, "action", state="work", attempt=3
    )


async def test_bare_retry_block_defaults_to_three_attempts_and_one_second(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    flaky = _always(ConnectionError("down"))
    timed_store.register_action("flaky", flaky)
    proc = await timed_store.register(_doc({}))
    policy = proc.definition.states["work"].retry
    assert isinstance(policy, RetryPolicy)
    assert policy.max_attempts == 3
    assert policy.interval_ms == 1000
    assert policy.backoff_rate == 2.0
    assert policy.max_delay_ms is None
    assert policy.jitter == "none"
    assert policy.errors is None

    ex = await within(timed_store.start("p", "1.0", {}))
    await clock.settle()
    retry = records(ex.history, "retry")
    assert len(retry) == 1
    assert retry[0].attempt == 2
    assert retry[0].delay_ms == 1000
    # It really waits the second: no second attempt before it runs out, one just then.
    await clock.advance(0.999)
    assert flaky.calls == 1
    assert ex.state.current == "work"
    await clock.advance(0.001)
    assert flaky.calls == 2
    await within(ex.cancel())
    assert ex.status == Status.CANCELLED


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        pytest.param(
            {"max_attempts": 4, "interval_ms": 10, "backoff_rate": 2.0},
            [10, 20, 40],
            id="interval times rate to the power of the retry",
        ),
        pytest.param(
            {"max_attempts": 5, "interval_ms": 5, "backoff_rate": 3.0, "max_delay_ms": 20},
            [5, 15, 20, 20],  # min(5 * 3**(n-1), 20) for n = 1..4
            id="capped by max_delay_ms",
        ),
        pytest.param(
            {"max_attempts": 4, "interval_ms": 3, "backoff_rate": 1.0},
            [3, 3, 3],
            id="backoff_rate 1 keeps them constant",
        ),
        pytest.param(
            {"max_attempts": 3, "interval_ms": 2, "backoff_rate": 2.0, "jitter": "none"},
            [2, 4],
            id="exact without jitter",
        ),
    ],
)
async def test_delays_follow_the_backoff_formula(
    store: ProcedureStore, policy: dict[str, Any], delays: list[int]
) -> None:
    flaky = _always(ConnectionError("down"))
    final = await _run(store, flaky, policy)
    assert [r.delay_ms for r in records(final.history, "retry", state="work")] == delays


async def test_measured_gaps_between_attempts_match_the_delays(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    flaky = _always(ConnectionError("down"))
    timed_store.register_action("flaky", flaky)
    await timed_store.register(_doc({"max_attempts": 3, "interval_ms": 20, "backoff_rate": 2.0}))
    ex = await within(timed_store.start("p", "1.0", {}))
    calls_at = []
    for step in (0.019, 0.001, 0.039, 0.001):  # to 19, 20, 59 and 60 ms
        await clock.advance(step)
        calls_at.append(flaky.calls)
    final = await within(ex.run_to_completion())

    assert calls_at == [1, 2, 2, 3]
    assert [r.delay_ms for r in records(final.history, "retry")] == [20, 40]
    attempts = records(final.history, "action", state="work")
    assert [clock.instant(r.at) for r in attempts] == [0.0, 0.02, 0.06]


async def test_full_jitter_keeps_every_delay_within_zero_and_the_cap(
    store: ProcedureStore,
) -> None:
    flaky = _always(ConnectionError("down"))
    policy = {
        "max_attempts": 9,
        "interval_ms": 4,
        "backoff_rate": 2.0,
        "max_delay_ms": 10,
        "jitter": "full",
    }
    final = await _run(store, flaky, policy)

    retries = records(final.history, "retry", state="work")
    assert [r.attempt for r in retries] == list(range(2, 10))
    caps = [min(4 * 2.0 ** (n - 1), 10) for n in range(1, 9)]  # 4, 8, 10, 10, ...
    for record, cap in zip(retries, caps, strict=True):
        assert record.delay_ms is not None
        assert 0 <= record.delay_ms <= cap, (record.delay_ms, cap)
    # Uniform in [0, cap]: eight draws all exactly at their cap would mean no jitter at all.
    assert any(r.delay_ms != cap for r, cap in zip(retries, caps, strict=True))


@pytest.mark.parametrize(
    ("errors", "exc"),
    [
        (["ConnectionError"], ConnectionError("down")),  # the class itself
        (["OSError"], ConnectionError("down")),  # a base class
        (["OSError"], ConnectionResetError("reset")),  # a base two levels up
        (["Exception"], ValueError("bad")),
        (["ValueError", "KeyError"], KeyError("k")),  # any listed name
    ],
)
async def test_errors_match_the_class_and_its_bases(
    store: ProcedureStore, errors: list[str], exc: BaseException
) -> None:
    flaky = Flaky(exc, result="ok")
    final = await _run(store, flaky, {"max_attempts": 2, "interval_ms": 1, "errors": errors})

    assert flaky.calls == 2
    assert len(records(final.history, "retry")) == 1
    assert final.current == "done"


@pytest.mark.parametrize(
    ("errors", "exc"),
    [
        (["ConnectionError"], ValueError("bad")),
        (["ConnectionResetError"], ConnectionError("down")),  # a subclass does not match its base
        (["Timeout"], RuntimeError("boom")),
    ],
)
async def test_non_matching_error_fails_at_once_without_retry(
    timed_store: ProcedureStore, clock: ManualClock, errors: list[str], exc: BaseException
) -> None:
    flaky = _always(exc)
    timed_store.register_action("flaky", flaky)
    await timed_store.register(_doc({"max_attempts": 5, "interval_ms": 500, "errors": errors}))
    ex = await within(timed_store.start("p", "1.0", {}, auto=True))
    await clock.settle()  # no time passes
    assert ex.state.current == "failed"

    final = await within(ex.run_to_completion())
    assert flaky.calls == 1
    assert records(final.history, "retry") == []
    (finished,) = records(final.history, "finished")
    assert clock.instant(finished.at) == 0.0


async def test_timeout_in_errors_retries_an_action_timeout(store: ProcedureStore) -> None:
    calls = 0

    async def slow_then_fast(context: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)
        return "fast"

    store.register_action("slow", slow_then_fast)
    await store.register(
        _doc(
            {"max_attempts": 2, "interval_ms": 1, "errors": ["Timeout"]},
            fn("slow", timeout_ms=20),
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    attempts = records(final.history, "action", state="work")
    assert [r.attempt for r in attempts] == [1, 2]
    assert attempts[0].error is not None and attempts[0].error.type == "Timeout"
    assert attempts[1].result == "fast"
    assert final.current == "done"


async def test_timeout_not_in_errors_is_not_retried(store: ProcedureStore) -> None:
    async def slow(context: dict[str, Any]) -> None:
        await asyncio.sleep(5)

    store.register_action("slow", slow)
    await store.register(
        _doc(
            {"max_attempts": 3, "interval_ms": 1, "errors": ["ConnectionError"]},
            fn("slow", timeout_ms=20),
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    attempts = records(final.history, "action", state="work")
    assert len(attempts) == 1
    assert attempts[0].error is not None and attempts[0].error.type == "Timeout"
    assert records(final.history, "retry") == []
    assert final.current == "failed"


async def test_success_on_the_second_attempt_proceeds_with_success(
    store: ProcedureStore,
) -> None:
    flaky = Flaky(ConnectionError("blip"), result={"charged": 12})
    store.register_action("flaky", flaky)
    await store.register(_doc({"max_attempts": 3, "interval_ms": 1}, fn("flaky", result="out")))
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert final.current == "done"
    assert final.status == Status.COMPLETED
    assert final.context["out"] == {"charged": 12}
    attempts = records(final.history, "action", state="work")
    assert len(attempts) == 2
    assert attempts[0].attempt == 1
    assert attempts[0].error is not None
    assert attempts[0].error.type == "ConnectionError"
    assert attempts[0].error.message == "blip"
    assert attempts[0].result is None
    assert attempts[1].attempt == 2
    assert attempts[1].error is None
    assert attempts[1].result == {"charged": 12}
    assert records(final.history, "transition", event="success", state="work", target="done")
    assert records(final.history, "transition", event="error") == []


async def test_error_event_fires_only_after_the_last_attempt(
    timed_store: ProcedureStore, clock: ManualClock
) -> None:
    flaky = _always(ConnectionError("down"))
    timed_store.register_action("flaky", flaky)
    await timed_store.register(_doc({"max_attempts": 3, "interval_ms": 30, "backoff_rate": 1.0}))
    ex = await within(timed_store.start("p", "1.0", {}))
    driver = asyncio.create_task(ex.run_to_completion())

    # Between attempts the execution stays in the state, with no error transition yet.
    await clock.advance(0.03)
    assert flaky.calls == 2
    assert ex.state.current == "work"
    assert records(ex.history, "transition") == []
    assert records(ex.history, "entered", state="failed") == []

    await clock.advance(0.03)
    final = await within(driver)
    assert flaky.calls == 3
    assert final.current == "failed"
    error_transitions = records(final.history, "transition", event="error")
    assert len(error_transitions) == 1
    last_attempt = index_of(final.history, "action", state="work", attempt=3)
    assert index_of(final.history, "transition", event="error") > last_attempt


async def test_error_fires_after_last_attempt_even_when_not_driven(
    store: ProcedureStore,
) -> None:
    flaky = _always(ConnectionError("down"))
    store.register_action("flaky", flaky)
    await store.register(_doc({"max_attempts": 2, "interval_ms": 1}))
    ex = await within(store.start("p", "1.0", {}))

    await wait_until(lambda: ex.state.current == "failed")
    assert flaky.calls == 2


async def test_every_attempt_and_every_delay_is_in_the_history_in_order(
    store: ProcedureStore,
) -> None:
    flaky = _always(ConnectionError("down"))
    final = await _run(store, flaky, {"max_attempts": 3, "interval_ms": 2, "backoff_rate": 2.0})

    steps = [
        (r.kind, r.attempt, r.delay_ms)
        for r in final.history
        if r.kind in ("action", "retry") and r.state == "work"
    ]
    assert steps == [
        ("action", 1, None),
        ("retry", 2, 2),
        ("action", 2, None),
        ("retry", 3, 4),
        ("action", 3, None),
    ]
    first_retry = records(final.history, "retry")[0]
    assert first_retry.state == "work"


async def test_retry_of_an_unhandled_error_then_fails_the_execution(
    store: ProcedureStore,
) -> None:
    flaky = _always(ValueError("bad"))
    store.register_action("flaky", flaky)
    await store.register(
        make_doc(
            {
                "work": {
                    "action": fn("flaky"),
                    "retry": {"max_attempts": 2, "interval_ms": 1},
                    "transitions": [{"event": "success", "target": "done"}],
                },
                "done": {},
            },
            "work",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert flaky.calls == 2
    assert final.status == Status.FAILED
    assert final.current == "work"


async def test_retry_applies_to_a_terminal_states_action(store: ProcedureStore) -> None:
    flaky = Flaky(ConnectionError("blip"), result="ok")
    store.register_action("flaky", flaky)
    await store.register(
        make_doc(
            {"last": {"action": fn("flaky"), "retry": {"max_attempts": 2, "interval_ms": 1}}},
            "last",
        )
    )
    ex = await within(store.start("p", "1.0", {}))
    final = await within(ex.run_to_completion(timeout=2.0))

    assert flaky.calls == 2
    assert final.status == Status.COMPLETED


async def test_each_execution_retries_independently(store: ProcedureStore) -> None:
    flaky = Flaky(ConnectionError("only the first call fails"), result="ok")
    store.register_action("flaky", flaky)
    await store.register(_doc({"max_attempts": 2, "interval_ms": 1}))
    one = await within(store.start("p", "1.0", {}))
    final_one = await within(one.run_to_completion(timeout=2.0))
    two = await within(store.start("p", "1.0", {}))
    final_two = await within(two.run_to_completion(timeout=2.0))

    assert len(records(final_one.history, "retry")) == 1
    assert records(final_two.history, "retry") == []
    assert final_one.current == final_two.current == "done"


async def test_a_steep_backoff_is_capped_instead_of_overflowing(store: ProcedureStore) -> None:
    # 100 ** 155 overflows a float: the delay after attempt 156 once raised OverflowError and
    # the execution failed without its error transition.
    flaky = _always(ConnectionError("down"), n=300)
    final = await _run(
        store,
        flaky,
        {"max_attempts": 200, "interval_ms": 0.001, "backoff_rate": 100, "max_delay_ms": 0.001},
    )

    assert flaky.calls == 200
    assert final.current == "failed"  # through the error transition
    assert records(final.history, "internal_error") == []
    delays = [r.delay_ms for r in records(final.history, "retry")]
    assert len(delays) == 199 and max(delays) == 0.001


@pytest.mark.parametrize("attempt", [1, 2, 17, 156, 1000])
def test_a_delay_without_max_delay_ms_never_exceeds_a_day(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=1000, interval_ms=1000, backoff_rate=100)
    assert 0 < policy.delay_ms(attempt) <= MAX_DURATION_MS == 86_400_000


def test_delays_below_the_cap_keep_the_exact_formula() -> None:
    policy = RetryPolicy(interval_ms=5, backoff_rate=3.0, max_delay_ms=1e6)
    assert [policy.delay_ms(n) for n in range(1, 6)] == [5, 15, 45, 135, 405]
