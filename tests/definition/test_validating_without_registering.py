"""``ProcedureStore.validate``: a document checked exactly as ``register`` would check it, with
nothing registered or stored."""

from __future__ import annotations

import pytest

from procstore import InvalidProcedure, ProcedureStore, VersionConflict
from tests.conftest import make_doc

DONE = {"a": {"action": {"type": "noop"}, "transitions": [{"event": "success", "target": "b"}]}}


async def test_a_valid_document_is_not_registered(url: str) -> None:
    async with ProcedureStore(url) as store:
        assert await store.validate(make_doc({**DONE, "b": {}}, "a")) == []
        assert await store.list() == []


async def test_an_invalid_document_raises_every_problem_with_its_path(
    store: ProcedureStore,
) -> None:
    doc = make_doc({**DONE, "b": {"transitions": [{"event": "x", "target": "nowhere"}]}}, "a")
    with pytest.raises(InvalidProcedure) as raised:
        await store.validate(doc)
    assert [p.path for p in raised.value.errors] == ["$.definition.states.b.transitions[0].target"]


async def test_a_module_outside_the_allowlist_is_a_problem() -> None:
    store = ProcedureStore(allowed_modules=["tests.worker_actions"])
    action = {"type": "function", "module": "os", "function": "system"}
    doc = make_doc({"a": {"action": action, "transitions": []}}, "a")
    with pytest.raises(InvalidProcedure) as raised:
        await store.validate(doc)
    assert [p.path for p in raised.value.errors] == ["$.definition.states.a.action.module"]


async def test_a_changed_document_under_a_registered_version_is_a_conflict(
    store: ProcedureStore,
) -> None:
    await store.register(make_doc({**DONE, "b": {}}, "a"))
    with pytest.raises(VersionConflict):
        await store.validate(make_doc({**DONE, "b": {}}, "a", description="changed"))


async def test_the_static_checks_findings_are_returned_not_warned(
    store: ProcedureStore,
) -> None:
    # A ProcedureWarning fails the test (pyproject's filterwarnings): none is issued.
    never = {"event": "success", "target": "b", "guard": "False"}
    doc = make_doc({"a": {"action": {"type": "noop"}, "transitions": [never]}, "b": {}}, "a")
    found = await store.validate(doc)
    assert [p.path for p in found] == ["$.definition.states.a.transitions[0].guard"]
