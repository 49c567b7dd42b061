"""Callbacks with a token (Step Functions' ``.waitForTaskToken``): a state with
``"callback": true`` hands a token to its action and waits until an outside system completes
it, knowing only the token."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from procstore import ActionInfo, InvalidEvent, ProcedureStore, Status
from tests.builders import fn, on
from tests.conftest import make_doc, problems_by_path, records, wait_until, within

ASK = make_doc(
    {
        "ask": {
            "action": fn("mail.ask"),
            "callback": True,
            "transitions": [
                on("success", "approved", assign={"answer.$": "$$.event.data"}),
                on("error", "declined", guard="error['type'] == 'Declined'"),
                on("reject", "declined"),
            ],
        },
        "approved": {},
        "declined": {"outcome": "failure"},
    },
    "ask",
    name="ask",
)


class Outbox:
    """The outside system: the action hands it the token, a test completes it later."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def ask(self, context: dict[str, Any], info: ActionInfo) -> str:
        assert info.token is not None
        self.tokens.append(info.token)
        return "asked"


async def _asked(store: ProcedureStore, outbox: Outbox) -> Any:
    store.register_action("mail.ask", outbox.ask)
    await store.register(ASK)
    execution = await store.start("ask", auto=True)
    await wait_until(lambda: bool(outbox.tokens))
    return execution


async def test_the_action_of_a_callback_state_gets_a_token(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    [token] = outbox.tokens
    assert token.startswith(f"{execution.id}.") and len(token) > len(execution.id) + 40


async def test_the_action_can_take_its_token_as_an_argument(store: ProcedureStore) -> None:
    given: list[tuple[str, str | None]] = []

    def ask(context: dict[str, Any], info: ActionInfo, token: str) -> None:
        given.append((token, info.token))

    store.register_action("mail.ask", ask)
    doc = make_doc(
        {
            "ask": {
                "action": fn("mail.ask", args={"token.$": "$$.token"}),
                "callback": True,
                "transitions": [on("success", "done")],
            },
            "done": {},
        },
        "ask",
        name="ask_args",
    )
    await store.register(doc)
    await store.start("ask_args", auto=True)
    await wait_until(lambda: bool(given))

    [(token, info_token)] = given
    assert token == info_token and token is not None


async def test_the_action_succeeding_does_not_leave_a_callback_state(
    store: ProcedureStore,
) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    await wait_until(lambda: bool(records(execution.history, "action")))
    assert execution.current == "ask" and execution.status is Status.RUNNING
    assert not records(execution.history, "transition")


async def test_completing_the_callback_fires_success_with_its_data(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    await store.complete_callback(outbox.tokens[0], {"approved": True})
    final = await within(execution.run_to_completion())
    assert final.status is Status.COMPLETED
    assert final.context == {"answer": {"approved": True}}
    [transition] = records(final.history, "transition")
    assert (transition.event, transition.data) == ("success", {"approved": True})


async def test_a_callback_that_comes_while_the_action_runs_waits_for_it(
    store: ProcedureStore,
) -> None:
    tokens: list[str] = []
    release = asyncio.Event()

    async def ask(context: dict[str, Any], info: ActionInfo) -> str:
        tokens.append(str(info.token))
        await release.wait()  # the outside system answers before the action returns
        return "asked"

    store.register_action("mail.ask", ask)
    await store.register(ASK)
    execution = await store.start("ask", auto=True)
    await wait_until(lambda: bool(tokens))
    completing = asyncio.ensure_future(store.complete_callback(tokens[0], "early"))
    await asyncio.sleep(0.01)
    assert not completing.done() and execution.current == "ask"
    release.set()
    await within(completing)
    kinds = [r.kind for r in execution.history]
    assert kinds.index("action") < kinds.index("transition")
    assert execution.state.context == {"answer": "early"}


async def test_a_stepped_execution_takes_its_callback_without_being_driven(
    store: ProcedureStore,
) -> None:
    outbox = Outbox()
    store.register_action("mail.ask", outbox.ask)
    await store.register(ASK)
    execution = await store.start("ask")  # not auto: nothing drives it
    await wait_until(lambda: bool(records(execution.history, "action")))
    await store.complete_callback(outbox.tokens[0], "yes")
    assert (execution.current, execution.status) == ("approved", Status.COMPLETED)


async def test_failing_the_callback_fires_error_that_guards_see(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    await store.fail_callback(outbox.tokens[0], "Declined", "the manager said no")
    final = await within(execution.run_to_completion())
    assert (final.status, final.current) == (Status.FAILED, "declined")
    [transition] = records(final.history, "transition")
    assert transition.data == {"error": "Declined", "cause": "the manager said no"}


async def test_a_failure_no_transition_handles_fails_the_execution(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    await store.fail_callback(outbox.tokens[0], "Unexpected")
    final = await within(execution.run_to_completion())
    assert (final.status, final.current) == (Status.FAILED, "ask")


async def test_a_token_completes_its_callback_once(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    await store.complete_callback(outbox.tokens[0], "first")
    with pytest.raises(InvalidEvent, match="finished"):
        await store.complete_callback(outbox.tokens[0], "second")
    assert execution.state.context == {"answer": "first"}


async def test_the_token_of_a_state_left_is_refused(store: ProcedureStore) -> None:
    outbox = Outbox()
    doc = make_doc(
        {
            "ask": {
                "action": fn("mail.ask"),
                "callback": True,
                "transitions": [on("success", "done"), on("skip", "later")],
            },
            "later": {"transitions": [on("go", "done")]},
            "done": {},
        },
        "ask",
        name="left",
    )
    store.register_action("mail.ask", outbox.ask)
    await store.register(doc)
    execution = await store.start("left", auto=True)
    await wait_until(lambda: bool(outbox.tokens))
    await execution.send("skip")
    with pytest.raises(InvalidEvent, match=r"no state of execution .* waits for that callback"):
        await store.complete_callback(outbox.tokens[0])
    assert execution.current == "later"


async def test_a_forged_secret_is_refused(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    with pytest.raises(InvalidEvent, match="waits for that callback token"):
        await store.complete_callback(f"{execution.id}.not-the-secret")
    assert execution.current == "ask"


async def test_what_is_not_a_token_is_refused(store: ProcedureStore) -> None:
    with pytest.raises(InvalidEvent, match="not a callback token"):
        await store.complete_callback("no separator")


async def test_the_token_is_not_written_to_the_history(store: ProcedureStore) -> None:
    outbox = Outbox()
    execution = await _asked(store, outbox)
    await store.complete_callback(outbox.tokens[0], "yes")
    final = await within(execution.run_to_completion())
    secret = outbox.tokens[0].split(".")[1]
    assert secret not in final.model_dump_json()


async def test_a_failure_with_an_overlong_cause_is_refused(store: ProcedureStore) -> None:
    outbox = Outbox()
    await _asked(store, outbox)
    with pytest.raises(InvalidEvent, match="MAX_CAUSE_CHARS"):
        await store.fail_callback(outbox.tokens[0], "Declined", "x" * 40_000)


async def test_a_callback_completes_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    outbox = Outbox()
    async with ProcedureStore(url) as store:
        execution = await _asked(store, outbox)
        await wait_until(lambda: bool(records(execution.history, "action")))
    async with ProcedureStore(url) as reopened:
        reopened.register_action("mail.ask", outbox.ask)
        await reopened.recover()
        await reopened.complete_callback(outbox.tokens[0], "after the restart")
        resumed = await reopened.get_execution(execution.id)
        final = await within(resumed.run_to_completion())
    assert final.context == {"answer": "after the restart"}
    assert len(outbox.tokens) == 1  # the action was not run again


async def test_an_action_run_again_after_a_restart_hands_out_the_same_token(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    tokens: list[str] = []

    async def stuck(context: dict[str, Any], info: ActionInfo) -> None:
        tokens.append(str(info.token))
        await asyncio.Event().wait()  # never returns: the process goes away meanwhile

    async with ProcedureStore(url) as store:
        store.register_action("mail.ask", stuck)
        await store.register(ASK)
        await store.start("ask", auto=True)
        await wait_until(lambda: bool(tokens))
    async with ProcedureStore(url) as reopened:
        reopened.register_action("mail.ask", stuck)
        await reopened.recover()
        await wait_until(lambda: len(tokens) == 2)
    assert tokens[0] == tokens[1]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"callback": True, "transitions": [on("success", "done")]}, "has no action to hand"),
        ({"action": fn("mail.ask"), "callback": True}, "has no transitions"),
    ],
)
async def test_a_callback_state_needs_an_action_and_transitions(
    store: ProcedureStore, state: dict[str, Any], message: str
) -> None:
    store.register_action("mail.ask", Outbox().ask)
    doc = make_doc({"ask": state, "done": {}}, "ask", name="bad")
    found = await problems_by_path(store, doc)
    assert any(message in m for m in found["$.definition.states.ask.callback"])
