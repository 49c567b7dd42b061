"""Map states in diagrams: one box for the map state, marked as a stack, with its item states
drawn inside, and the items' progress in the overlay."""

from __future__ import annotations

from typing import Any

from procstore import ProcedureStore
from procstore.diagrams import diagram, to_mermaid
from tests.diagrams.test_diagrams import dot_graph, label_lines
from tests.runtime.test_map_state import map_doc


def fail_on_three(context: dict[str, Any]) -> int:
    if context["item"] == 3:
        raise ValueError("three")
    return int(context["item"])


async def run_map(store: ProcedureStore) -> Any:
    """An execution of `map_doc` over [1, 2, 3] whose item 3 fails (one failure tolerated)."""
    store.register_action("app.work", fail_on_three)
    await store.register(map_doc(max_concurrency=2, tolerated_failures=1))
    execution = await store.start("orders", context={"orders": [1, 2, 3]}, auto=True)
    await execution.run_to_completion()
    return execution


def test_the_item_states_are_children_of_the_map_state() -> None:
    model = diagram(map_doc())
    fan = model.state("fan")
    assert fan.kind == "map" and fan.is_cluster
    assert [child.path for child in fan.children] == ["fan.work", "fan.ok"]
    assert fan.initial == "fan.work"
    edge = next(e for e in model.transitions if e.source == "fan.work")
    assert (edge.target, edge.event) == ("fan.ok", "success")


def test_dot_draws_the_map_as_a_stack_of_boxes_around_its_item_states() -> None:
    graph = dot_graph(map_doc(max_concurrency=2))
    assert graph.clusters_of("s_fan__work") == ["cluster_stack_s_fan", "cluster_s_fan"]
    label = label_lines(graph.cluster_attrs["cluster_s_fan"]["label"])
    assert "each of $.orders · 2 at once" in label


def test_mermaid_notes_that_the_map_state_runs_once_per_item() -> None:
    text = to_mermaid(map_doc(max_concurrency=2))
    assert "state s_fan {" in text
    assert "s_fan__work --> s_fan__ok : success" in text
    assert "note right of s_fan : map#58; each of $.orders · 2 at once" in text


async def test_the_overlay_shows_how_many_items_are_done_and_failed(
    store: ProcedureStore,
) -> None:
    execution = await run_map(store)
    graph = dot_graph(map_doc(max_concurrency=2, tolerated_failures=1), execution)
    assert "2/3 done, 1 failed" in label_lines(graph.cluster_attrs["cluster_s_fan"]["label"])
    text = to_mermaid(map_doc(max_concurrency=2, tolerated_failures=1), execution)
    assert "2/3 done, 1 failed" in text
