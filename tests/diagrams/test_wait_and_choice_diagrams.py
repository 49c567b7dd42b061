"""Diagrams of wait and choice states: a wait state's box says how long it waits; a choice
state is a diamond whose edges are numbered in the order its rules are tried, then
``default`` — in DOT and in Mermaid, and with an execution laid over it."""

from __future__ import annotations

import re

from procstore import ProcedureStore
from procstore.diagrams import diagram, to_dot, to_mermaid
from procstore.diagrams.extract import extract
from procstore.diagrams.model import TIMES as X
from tests.builders import on
from tests.conftest import make_doc, within

DOC = make_doc(
    {
        "pause": {"wait": {"seconds": 90}, "transitions": [on("success", "route")]},
        "route": {
            "choice": [
                {"guard": "amount > 1000", "target": "large"},
                {"guard": "amount > 100", "target": "medium"},
            ],
            "default": "small",
        },
        "large": {},
        "medium": {},
        "small": {},
    },
    "pause",
)


def test_a_choices_edges_are_numbered_in_the_order_its_rules_are_tried() -> None:
    edges = [e for e in extract(DOC).transitions if e.source == "route"]
    assert [(e.target, e.label) for e in edges] == [
        ("large", "(1) [amount > 1000]"),
        ("medium", "(2) [amount > 100]"),
        ("small", "default"),
    ]


def test_dot_draws_a_choice_as_a_diamond_and_a_wait_with_its_duration() -> None:
    dot = to_dot(extract(DOC))
    (route,) = [line for line in dot.splitlines() if line.strip().startswith("s_route [")]
    assert "shape=diamond" in route
    (pause,) = [line for line in dot.splitlines() if line.strip().startswith("s_pause [")]
    assert "wait 1.5min" in pause
    assert re.search(r"s_route -> s_small \[.*label=default", dot)


def test_mermaid_draws_a_choice_as_a_choice_pseudostate_with_numbered_edges() -> None:
    text = to_mermaid(extract(DOC))
    assert "state s_route <<choice>>" in text
    assert "s_route --> s_large : (1) [amount > 1000]" in text
    assert "s_route --> s_small : default" in text
    assert "s_pause : wait 1.5min" in text


def test_ordinary_guarded_transitions_on_one_event_keep_their_event_and_number() -> None:
    doc = make_doc(
        {
            "a": {"transitions": [on("go", "b", guard="x > 1"), on("go", "c")]},
            "b": {},
            "c": {},
        },
        "a",
    )
    labels = [e.label for e in extract(doc).transitions]
    assert labels == ["(1) go [x > 1]", "(2) go"]


async def test_the_overlay_counts_the_choice_edge_an_execution_took(
    store: ProcedureStore,
) -> None:
    doc = make_doc(
        DOC["definition"]["states"] | {"pause": {"transitions": [on("go", "route")]}}, "pause"
    )
    await store.register(doc)
    execution = await within(store.start("p", "1.0", {"amount": 500}))
    await within(execution.send("go"))
    drawn = to_mermaid(diagram(doc, execution.state))
    assert f"s_route --> s_medium : (2) [amount > 100] (1{X})" in drawn
