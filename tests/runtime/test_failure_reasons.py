"""Why an execution failed (Step Functions' Fail state with Error and Cause): a failure
terminal's `error` and `cause`, or the error no transition caught, in the snapshot's `error`
and on the `finished` record; kept when stored; none after a success."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procstore import ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import make_doc, records, within

DECLINED = {"outcome": "failure", "error": "PaymentDeclined", "cause": "the card was refused"}


def _doc(end: dict[str, Any], compensate: bool = False) -> dict[str, Any]:
    charge: dict[str, Any] = {"action": {"type": "noop"}, "transitions": [on("success", "end")]}
    if compensate:
        charge["compensate"] = {"type": "noop"}
    return make_doc({"charge": charge, "end": end}, "charge")


async def _finish(store: ProcedureStore, doc: dict[str, Any]) -> Any:
    await store.register(doc)
    return await within((await store.start("p", "1.0", {})).run_to_completion())


async def test_a_failure_terminals_error_and_cause_are_the_executions_error(
    store: ProcedureStore,
) -> None:
    final = await _finish(store, _doc(DECLINED))

    assert final.status is Status.FAILED
    assert final.error is not None
    assert (final.error.type, final.error.message) == ("PaymentDeclined", "the card was refused")


async def test_the_finished_record_says_why_it_failed(store: ProcedureStore) -> None:
    final = await _finish(store, _doc(DECLINED))

    (finished,) = records(final.history, "finished")
    assert finished.error == final.error


async def test_the_error_stays_when_compensations_roll_the_execution_back(
    store: ProcedureStore,
) -> None:
    final = await _finish(store, _doc(DECLINED, compensate=True))

    assert final.status is Status.ROLLED_BACK
    assert final.error is not None and final.error.type == "PaymentDeclined"


async def test_a_cause_alone_has_the_error_type_failed(store: ProcedureStore) -> None:
    final = await _finish(store, _doc({"outcome": "failure", "cause": "out of stock"}))

    assert final.error is not None
    assert (final.error.type, final.error.message) == ("Failed", "out of stock")


async def test_a_failure_terminal_naming_no_error_gives_none(store: ProcedureStore) -> None:
    final = await _finish(store, _doc({"outcome": "failure"}))

    assert final.status is Status.FAILED and final.error is None


async def test_an_error_no_transition_catches_is_the_executions_error(
    store: ProcedureStore,
) -> None:
    async def charge(context: dict[str, Any]) -> None:
        raise ConnectionError("gateway down")

    store.register_action("charge", charge)
    doc = make_doc(
        {"charge": {"action": fn("charge"), "transitions": [on("success", "end")]}, "end": {}},
        "charge",
    )
    final = await _finish(store, doc)

    assert final.error is not None
    assert (final.error.type, final.error.message) == ("ConnectionError", "gateway down")


async def test_a_success_has_no_error(store: ProcedureStore) -> None:
    final = await _finish(store, _doc({}))
    assert final.status is Status.COMPLETED and final.error is None
    assert records(final.history, "finished")[0].error is None


async def test_a_stored_execution_keeps_its_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with ProcedureStore(url) as store:
        execution_id = (await _finish(store, _doc(DECLINED))).id
    async with ProcedureStore(url) as store:
        loaded = await store.get_execution(execution_id)

    assert loaded.state.error is not None
    assert (loaded.state.error.type, loaded.state.error.message) == (
        "PaymentDeclined",
        "the card was refused",
    )


async def test_a_state_timeout_no_transition_takes_is_the_executions_error(
    store: ProcedureStore,
) -> None:
    slow = {"action": {"type": "sleep", "ms": 10_000}, "timeout_ms": 1}
    doc = make_doc({"charge": {**slow, "transitions": [on("success", "end")]}, "end": {}}, "charge")
    final = await _finish(store, doc)

    assert final.status is Status.FAILED
    assert final.error is not None and final.error.type == "Timeout"
    assert "'charge'" in final.error.message
