"""Commands from the store's inbox, applied to an execution exactly once
(``procstore.runtime.received``): the ``received`` record and the cursor are committed with
what the command did, so a command is applied again after a restart exactly when its effect was
not stored. What delivers them (and from other processes) is tested in
tests/clients/test_clients.py."""

from __future__ import annotations

from procstore import Execution, ProcedureStore, Status
from procstore.eventdata import MAX_EVENT_DATA_BYTES
from procstore.runtime.received import receive_cancel, receive_event
from tests.builders import on
from tests.conftest import make_doc, records, within

APPROVAL = make_doc(
    {
        "wait": {"transitions": [on("approve", "review")]},
        "review": {"transitions": [on("ok", "done")]},
        "done": {},
    },
    "wait",
    name="approval",
)


def kinds(execution: Execution) -> list[tuple[str, str | None, str | None]]:
    """(kind, event, message) of each record after the first ``entered``."""
    return [(r.kind, r.event, r.message) for r in execution.history[1:]]


async def started(url: str) -> tuple[ProcedureStore, Execution]:
    store = ProcedureStore(url)
    await store.register(APPROVAL)
    return store, await store.start("approval")


async def test_an_event_from_the_inbox_is_recorded_then_fires(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 7, "approve"))
        assert execution.current == "review"
        assert kinds(execution) == [
            ("received", "approve", None),
            ("transition", "approve", None),
            ("entered", "approve", None),
        ]
        [received] = records(execution.history, "received")
        assert received.state == "wait"


async def test_a_command_applied_before_a_restart_is_not_applied_again(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 7, "approve"))
        await within(receive_event(execution, 7, "approve"))  # the same command: nothing
        assert len(records(execution.history, "received")) == 1
    async with ProcedureStore(url) as reopened:
        [resumed] = await reopened.recover()
        await within(receive_event(resumed, 7, "approve"))
        await within(receive_event(resumed, 8, "ok"))
        assert resumed.status is Status.COMPLETED
        assert [r.event for r in records(resumed.history, "received")] == ["approve", "ok"]


async def test_an_event_no_active_state_accepts_is_refused_and_changes_nothing(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 3, "aprove"))
        assert execution.current == "wait"
        [(kind, event, message)] = kinds(execution)
        assert (kind, event) == ("received", "aprove")
        assert message is not None and message.startswith("refused: ")
        assert "they accept: approve" in message
    async with ProcedureStore(url, read_only=True) as reader:  # the refusal was committed
        stored = await reader.get_execution(execution.id)
        assert [r.message for r in records(stored.history, "received")] == [message]


async def test_an_event_from_the_inbox_carries_its_data_into_the_records(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 7, "approve", {"by": "ana"}))
        [received] = records(execution.history, "received")
        [transition] = records(execution.history, "transition")
        assert received.data == transition.data == {"by": "ana"}


async def test_a_refused_event_records_the_data_it_carried(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 3, "ok", [1, 2]))
        [received] = records(execution.history, "received")
        assert received.data == [1, 2]
        assert received.message is not None and received.message.startswith("refused: ")


async def test_an_event_whose_queued_data_is_too_large_is_refused(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 3, "approve", "x" * MAX_EVENT_DATA_BYTES))
        assert execution.current == "wait"
        [received] = records(execution.history, "received")
        assert received.message is not None and "MAX_EVENT_DATA_BYTES" in received.message
        assert received.data is None  # the refused data is not kept


async def test_a_cancel_from_the_inbox_is_recorded_then_cancels(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_cancel(execution, 4, rollback=True))
        assert execution.status is Status.CANCELLED  # nothing to compensate
        assert kinds(execution)[:2] == [
            ("received", None, "cancel with rollback"),
            ("cancelled", None, None),
        ]


async def test_a_cancel_of_a_finished_execution_is_refused(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await execution.cancel()
        await within(receive_cancel(execution, 5, rollback=False))
        [received] = records(execution.history, "received")
        assert received.message == "refused: the execution has finished (cancelled)"
        assert execution.status is Status.CANCELLED


async def test_a_reset_keeps_the_commands_applied_before_it(url: str) -> None:
    store, execution = await started(url)
    async with store:
        await within(receive_event(execution, 2, "approve"))
        await execution.reset()
        await within(receive_event(execution, 2, "approve"))  # applied before the reset
        assert execution.current == "wait"
        await within(receive_event(execution, 9, "approve"))
        assert execution.current == "review"


async def test_commands_apply_on_an_execution_in_memory_too() -> None:
    store = ProcedureStore()
    await store.register(APPROVAL)
    execution = await store.start("approval")
    await within(receive_event(execution, 1, "approve"))
    await within(receive_event(execution, 1, "approve"))
    assert execution.current == "review"
    assert len(records(execution.history, "received")) == 1
