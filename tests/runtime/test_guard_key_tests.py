"""Guards that test whether a key exists: ``"a" in context`` and ``has(context, "a.b")`` answer
true or false where reading the missing key would be a guard error."""

from __future__ import annotations

from typing import Any

import pytest

from procstore import ProcedureStore
from tests.builders import on
from tests.conftest import make_doc, records, within


async def goes_to(store: ProcedureStore, guard: str, context: dict[str, Any]) -> str:
    """Where an execution sent ``go`` in state ``a`` goes: ``yes`` when ``guard`` passes."""
    doc = make_doc(
        {"a": {"transitions": [on("go", "yes", guard=guard), on("go", "no")]}, "yes": {}, "no": {}},
        "a",
    )
    await store.register(doc)
    execution = await within(store.start("p", "1.0", context))
    await within(execution.send("go"))
    assert records(execution.history, "guard_error") == [], "testing for a key raised"
    return execution.current


@pytest.mark.parametrize(
    ("context", "where"),
    [({"order": {"customer": {"id": 7}}}, "yes"), ({"order": {}}, "no"), ({}, "no")],
    ids=["present", "missing inside", "missing outside"],
)
async def test_has_tells_whether_a_nested_key_exists(
    store: ProcedureStore, context: dict[str, Any], where: str
) -> None:
    assert await goes_to(store, 'has(context, "order.customer.id")', context) == where


async def test_has_reads_list_items_by_index(store: ProcedureStore) -> None:
    assert await goes_to(store, 'has(context, "items.1")', {"items": [1, 2]}) == "yes"


@pytest.mark.parametrize(("context", "where"), [({"email": "a@b"}, "yes"), ({}, "no")])
async def test_in_context_tells_whether_a_top_level_key_exists(
    store: ProcedureStore, context: dict[str, Any], where: str
) -> None:
    assert await goes_to(store, '"email" in context', context) == where


async def test_a_context_key_named_context_is_read_as_before(store: ProcedureStore) -> None:
    assert await goes_to(store, 'context == "kept"', {"context": "kept"}) == "yes"


async def test_has_reaches_no_attribute(store: ProcedureStore) -> None:
    assert (
        await goes_to(store, 'has(context, "__class__") or has(context, "a.keys")', {"a": {}})
        == "no"
    )
