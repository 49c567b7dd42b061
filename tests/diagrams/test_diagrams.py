"""procstore.diagrams: the DOT and Mermaid output is checked for structure (every state and
transition, guard labels, styling, clusters), not just for existing; SVG and PNG are rendered for
real by Graphviz (``make system-deps`` installs it).

Overlays use executions actually run by a :class:`procstore.ProcedureStore` (flat procedures);
nested charts are drawn from their definitions only.
"""

from __future__ import annotations

import copy
import html
import json
import os
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from procstore import ExecutionState, ProcedureStore, Status
from procstore.definition import Procedure
from procstore.diagrams import (
    diagram,
    dot_style,
    format_for,
    render,
    save,
    to_dot,
    to_mermaid,
)
from procstore.diagrams import dot as dot_renderer
from procstore.diagrams.mermaid import escape as mermaid_escape
from procstore.diagrams.model import TIMES as X
from tests.conftest import Gate, make_doc
from tools import build_diagrams as diagrams_build

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = diagrams_build.example_files(EXAMPLES)

GRAPHVIZ = shutil.which("dot")
# In CI `make test` installs Graphviz first, so these tests always run there (and fail loudly if
# dot is missing); only a developer's machine without it skips them.
needs_graphviz = pytest.mark.skipif(
    GRAPHVIZ is None and not os.environ.get("CI"),
    reason="Graphviz's dot is not installed: run `make system-deps`",
)


# --------------------------------------------------------------------------- a small DOT reader


@dataclass
class Graph:
    """What the DOT text says: nodes and edges with their attributes, and which cluster holds
    each node and each cluster."""

    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    node_cluster: dict[str, str | None] = field(default_factory=dict)
    cluster_parent: dict[str, str | None] = field(default_factory=dict)
    cluster_attrs: dict[str, dict[str, str]] = field(default_factory=dict)

    def name(self, node: str) -> str:
        """The state name a node shows: the first line of its HTML label."""
        return label_lines(self.nodes[node].get("label", ""))[0]

    def named(self, name: str) -> list[str]:
        return [n for n in self.nodes if self.nodes[n].get("label") and self.name(n) == name]

    def edge(self, source: str, target: str, label: str) -> dict[str, str]:
        found = [
            attrs
            for s, t, attrs in self.edges
            if s == source and t == target and attrs.get("label") == label
        ]
        assert len(found) == 1, f"{source} -> {target} [{label}]: {len(found)} edges"
        return found[0]

    def clusters_of(self, node: str) -> list[str]:
        """The clusters around ``node``, innermost first."""
        chain, cluster = [], self.node_cluster.get(node)
        while cluster is not None:
            chain.append(cluster)
            cluster = self.cluster_parent[cluster]
        return chain


_HTML_TAG = re.compile(r"<[^>]*>")


def label_lines(label: str) -> list[str]:
    """The text rows of an HTML-like label (one per ``<TR>``), tags and entities removed."""
    rows = re.findall(r"<TR>(.*?)</TR>", label) or [label]
    return [html.unescape(_HTML_TAG.sub("", row)) for row in rows]


def _value(text: str, i: int) -> tuple[str, int]:
    if text[i] == '"':
        j, out = i + 1, []
        while text[j] != '"':
            if text[j] == "\\":
                out.append(text[j + 1] if text[j + 1] == '"' else text[j : j + 2])
                j += 2
            else:
                out.append(text[j])
                j += 1
        return "".join(out), j + 1
    if text[i] == "<":
        depth, j = 0, i
        while True:
            if text[j] == "<":
                depth += 1
            elif text[j] == ">":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j], j + 1
            j += 1
    m = re.compile(r"[^\s\]=]+").match(text, i)
    assert m is not None
    return m.group(0), m.end()


def parse_attrs(text: str) -> dict[str, str]:
    attrs, i = {}, 0
    text = text.strip()
    assert text.startswith("[") and text.endswith("]"), text
    body = text[1:-1]
    while i < len(body):
        if body[i].isspace():
            i += 1
            continue
        key = re.compile(r"[A-Za-z_]+").match(body, i)
        assert key is not None, body[i:]
        assert body[key.end()] == "=", body[i:]
        value, i = _value(body, key.end() + 1)
        attrs[key.group(0)] = value
    return attrs


_NODE = re.compile(r"^(\w+)(?: (\[.*\]))?$")
_EDGE = re.compile(r"^(\w+) -> (\w+)(?: (\[.*\]))?$")


def parse_dot(text: str) -> Graph:
    graph = Graph()
    stack: list[str | None] = [None]
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[-1] == "}"
    for raw in lines[1:-1]:
        line = raw.strip()
        if line.startswith("subgraph "):
            name = line.split()[1]
            graph.cluster_parent[name] = stack[-1]
            graph.cluster_attrs[name] = {}
            stack.append(name)
        elif line == "}":
            stack.pop()
        elif line.split(" ", 1)[0] in ("graph", "node", "edge"):
            continue
        elif (m := _EDGE.match(line)) is not None:
            graph.edges.append((m.group(1), m.group(2), parse_attrs(m.group(3) or "[]")))
        elif (m := _NODE.match(line)) is not None:
            graph.nodes[m.group(1)] = parse_attrs(m.group(2) or "[]")
            graph.node_cluster[m.group(1)] = stack[-1]
        else:  # cluster attributes: key=value key=value ...
            cluster = stack[-1]
            assert cluster is not None, line
            graph.cluster_attrs[cluster].update(parse_attrs(f"[{line}]"))
    return graph


# --------------------------------------------------------------------------- documents


def flat_doc() -> dict[str, Any]:
    return make_doc(
        {
            "validate": {
                "action": {"type": "function", "function": "app.validate", "result": "v"},
                "transitions": [
                    {"event": "success", "target": "charge", "guard": "amount < 1000"},
                    {"event": "success", "target": "review"},
                    {"event": "error", "target": "failed"},
                ],
            },
            "review": {
                "transitions": [
                    {"event": "approve", "target": "charge", "conditions": ["is_manager"]},
                    {"event": "reject", "target": "failed", "unless": ["is_vip"]},
                ]
            },
            "charge": {
                "action": {"type": "function", "function": "app.charge", "timeout_ms": 250},
                "retry": {
                    "max_attempts": 4,
                    "interval_ms": 200,
                    "backoff_rate": 2,
                    "max_delay_ms": 5000,
                    "jitter": "full",
                },
                "timeout_ms": 10000,
                "compensate": {"type": "function", "function": "app.refund"},
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "timeout", "target": "failed"},
                    {"event": "error", "target": "failed"},
                ],
            },
            "done": {"action": {"type": "log", "message": "paid"}},
            "failed": {"outcome": "failure"},
        },
        "validate",
        name="payment",
    )


def nested_doc() -> dict[str, Any]:
    """A compound state, a parallel state, and a parallel inside a compound inside a parallel."""
    return make_doc(
        {
            "checks": {
                "parallel": {
                    "credit": {
                        "initial_state": "run",
                        "states": {
                            "run": {
                                "action": {"type": "function", "function": "risk.credit"},
                                "transitions": [{"event": "success", "target": "ok"}],
                            },
                            "ok": {},
                        },
                    },
                    "fraud": {
                        "initial_state": "run",
                        "states": {
                            "run": {
                                "action": {"type": "function", "function": "risk.fraud"},
                                "transitions": [{"event": "success", "target": "ok"}],
                            },
                            "ok": {},
                        },
                    },
                },
                "transitions": [
                    {"event": "done", "target": "fulfilment"},
                    {"event": "error", "target": "rejected"},
                ],
            },
            "fulfilment": {
                "initial_state": "picking",
                "timeout_ms": 60000,
                "states": {
                    "picking": {
                        "action": {"type": "function", "function": "wh.pick"},
                        "transitions": [{"event": "success", "target": "packing"}],
                    },
                    "packing": {
                        "action": {"type": "function", "function": "wh.pack"},
                        "transitions": [{"event": "success", "target": "packed"}],
                    },
                    "packed": {},
                },
                "transitions": [
                    {"event": "done", "target": "audit"},
                    {"event": "cancel", "target": "cancelled"},
                ],
            },
            "audit": {
                "parallel": {
                    "books": {
                        "initial_state": "phase",
                        "states": {
                            "phase": {
                                "initial_state": "inner",
                                "states": {
                                    "inner": {
                                        "parallel": {
                                            "a": {"initial_state": "x", "states": {"x": {}}},
                                            "b": {"initial_state": "y", "states": {"y": {}}},
                                        }
                                    }
                                },
                            }
                        },
                    },
                    "stock": {"initial_state": "count", "states": {"count": {}}},
                },
                "transitions": [{"event": "done", "target": "shipped"}],
            },
            "shipped": {},
            "cancelled": {"outcome": "failure"},
            "rejected": {"outcome": "failure"},
        },
        "checks",
        name="order",
    )


def chain_doc(n: int) -> dict[str, Any]:
    """``n`` states in a chain, each with a guard, a fallback and an error edge."""
    states: dict[str, Any] = {}
    for i in range(n - 1):
        states[f"step {i}"] = {
            "action": {"type": "function", "function": f"jobs.step{i}", "timeout_ms": 100},
            "retry": {"max_attempts": 3, "interval_ms": 10},
            "transitions": [
                {"event": "success", "target": f"step {i + 1}", "guard": f"amount < {1000 + i}"},
                {"event": "success", "target": "failed"},
                {"event": "error", "target": "failed"},
            ],
        }
    states[f"step {n - 1}"] = {}
    states["failed"] = {"outcome": "failure"}
    return make_doc(states, "step 0", name="chain")


def event_of(label: str) -> str:
    """The event an edge label names, after the order number it may start with (``(2) ``)."""
    return re.sub(r"^\(\d+\) ", "", label).split(" ")[0]


def dot_graph(doc: Any, execution: Any = None) -> Graph:
    return parse_dot(to_dot(doc, execution))


def node_of(graph: Graph, name: str) -> str:
    (node,) = graph.named(name)
    return node


# --------------------------------------------------------------------------- compensation


def test_compensation_order_is_the_reverse_of_the_happy_path() -> None:
    assert diagram(EXAMPLES / "book_trip.json").compensation_order == (
        "reserve_car",
        "reserve_hotel",
        "reserve_flight",
    )
    # A compound state's children are entered with it: the credit check inside the parallel
    # `checks` runs before the payment, so it is compensated after it.
    assert diagram(EXAMPLES / "order_fulfilment.json").compensation_order == (
        "charge_payment",
        "checks.credit.run",
    )


def undo_edges(graph: Graph) -> list[tuple[str, str, dict[str, str]]]:
    return [(s, t, a) for s, t, a in graph.edges if a.get("label") == "undo"]


def test_compensation_is_drawn_as_dashed_undo_edges_in_rollback_order() -> None:
    graph = dot_graph(EXAMPLES / "book_trip.json")
    car, hotel, flight = (
        node_of(graph, n) for n in ("reserve_car", "reserve_hotel", "reserve_flight")
    )
    edges = undo_edges(graph)
    assert [(s, t) for s, t, _ in edges] == [(car, hotel), (hotel, flight)]
    for _, _, attrs in edges:
        assert attrs["style"] == "dashed"
        assert attrs["color"] == dot_style.COMPENSATE
        assert attrs["constraint"] == "false"
    # The compensation is still listed inside each state too.
    assert "↺ compensate: book_trip_actions.cancel_car" in label_lines(graph.nodes[car]["label"])


def test_no_undo_edges_without_two_compensable_states() -> None:
    assert undo_edges(dot_graph(flat_doc())) == []


def test_legend_names_the_line_styles_in_use() -> None:
    graph = dot_graph(EXAMPLES / "book_trip.json")
    legend = graph.nodes["legend"]
    assert legend["shape"] == "plaintext"
    assert label_lines(legend["label"]) == [
        "—— event (solid)",
        "- - - error",
        "- - - timeout",
        "- - - undo: compensation order",
    ]
    # Only the styles a chart uses; none when every edge is solid.
    only_events = make_doc({"a": {"transitions": [{"event": "go", "target": "b"}]}, "b": {}}, "a")
    assert "legend" not in dot_graph(only_events).nodes


def test_mermaid_notes_give_each_compensation_its_place_in_the_rollback() -> None:
    model = diagram(EXAMPLES / "book_trip.json")
    ids = {s.path: s.id for s in model.walk()}
    notes = [line.strip() for line in to_mermaid(model).splitlines() if "note " in line]
    assert notes == [
        f"note right of {ids['reserve_flight']} : undo 3/3 ← compensate#58; "
        "book_trip_actions.cancel_flight",
        f"note right of {ids['reserve_hotel']} : undo 2/3 ← compensate#58; "
        "book_trip_actions.cancel_hotel",
        f"note right of {ids['reserve_car']} : undo 1/3 ← compensate#58; "
        "book_trip_actions.cancel_car",
    ]
    # A nested state's note is inside its block (Mermaid notes refer to the block's states).
    text = to_mermaid(EXAMPLES / "order_fulfilment.json")
    credit = text.index("state s_checks__credit {")
    note = text.index("note right of s_checks__credit__run")
    assert credit < note < text.index("}", credit)


# --------------------------------------------------------------------------- structure


def test_every_state_and_transition_is_in_the_dot_output() -> None:
    doc = flat_doc()
    graph = dot_graph(doc)
    for name, state in doc["definition"]["states"].items():
        node = node_of(graph, name)
        for t in state.get("transitions", []):
            target = node_of(graph, t["target"])
            assert any(
                s == node and d == target and event_of(a["label"]) == t["event"]
                for s, d, a in graph.edges
            ), (name, t)
    transitions = sum(len(s.get("transitions", [])) for s in doc["definition"]["states"].values())
    drawn = [e for e in graph.edges if "label" in e[2]]
    assert len(drawn) == transitions


def test_initial_marker_points_at_the_initial_state() -> None:
    graph = dot_graph(flat_doc())
    markers = [n for n, a in graph.nodes.items() if a.get("shape") == "circle"]
    assert len(markers) == 1
    assert [t for s, t, _ in graph.edges if s == markers[0]] == [node_of(graph, "validate")]


def test_guard_label_is_event_and_bracketed_guard() -> None:
    graph = dot_graph(flat_doc())
    validate, charge = node_of(graph, "validate"), node_of(graph, "charge")
    graph.edge(validate, charge, "(1) success [amount < 1000]")
    graph.edge(validate, node_of(graph, "review"), "(2) success")


def test_transitions_on_one_event_are_numbered_in_the_order_they_are_tried() -> None:
    path = EXAMPLES / "loan_routing.json"
    graph = dot_graph(path)
    score = node_of(graph, "score")
    graph.edge(
        score, node_of(graph, "auto_approve"), "(1) success [score >= 700 and amount < 50000]"
    )
    graph.edge(score, node_of(graph, "manual_review"), "(2) success [score >= 600]")
    graph.edge(score, node_of(graph, "decline"), "(3) success")
    graph.edge(score, node_of(graph, "failed"), "error")  # the only one on its event
    assert dot_style.ORDER_NOTE in label_lines(graph.nodes["legend"]["label"])
    text = to_mermaid(path)
    assert "    s_score --> s_manual_review : (2) success [score >= 600]" in text.splitlines()
    assert "    s_score --> s_failed : error" in text.splitlines()


def test_a_single_transition_on_its_event_has_no_number() -> None:
    graph = dot_graph(EXAMPLES / "book_trip.json")  # one transition per event everywhere
    car = node_of(graph, "reserve_car")
    graph.edge(car, node_of(graph, "confirmed"), "success")
    graph.edge(car, node_of(graph, "not_booked"), "error")
    assert dot_style.ORDER_NOTE not in label_lines(graph.nodes["legend"]["label"])


def test_conditions_and_unless_are_labelled_pred_and_not_pred() -> None:
    graph = dot_graph(flat_doc())
    review = node_of(graph, "review")
    graph.edge(review, node_of(graph, "charge"), "approve [is_manager]")
    graph.edge(review, node_of(graph, "failed"), "reject [!is_vip]")


def test_action_retry_and_timeouts_are_inside_the_state_label() -> None:
    graph = dot_graph(flat_doc())
    lines = label_lines(graph.nodes[node_of(graph, "charge")]["label"])
    assert lines[0] == "charge"
    assert "function app.charge" in lines
    assert f"retry 4x 200ms{X}2 ≤5s jitter" in lines
    assert "attempt timeout 250ms" in lines
    assert "state timeout 10s" in lines
    done = label_lines(graph.nodes[node_of(graph, "done")]["label"])
    assert "log “paid”" in done


def _callback_doc() -> dict[str, Any]:
    return make_doc(
        {
            "ask": {
                "action": {"type": "function", "module": "app", "function": "ask"},
                "callback": True,
                "transitions": [{"event": "success", "target": "done"}],
            },
            "done": {},
        },
        "ask",
    )


def test_a_state_waiting_for_a_callback_says_so_in_its_label() -> None:
    graph = dot_graph(_callback_doc())
    assert "⧗ waits for callback (token)" in label_lines(
        graph.nodes[node_of(graph, "ask")]["label"]
    )


def test_a_state_waiting_for_a_callback_says_so_in_mermaid() -> None:
    lines = to_mermaid(_callback_doc()).splitlines()
    assert any(line.startswith("    s_ask : ⧗ waits for callback") for line in lines)


def test_terminal_success_and_failure_are_styled_apart() -> None:
    graph = dot_graph(flat_doc())
    done = graph.nodes[node_of(graph, "done")]
    failed = graph.nodes[node_of(graph, "failed")]
    plain = graph.nodes[node_of(graph, "validate")]
    assert done["peripheries"] == failed["peripheries"] == "2"
    assert "peripheries" not in plain
    assert done["color"] != failed["color"]
    assert done["fillcolor"] != failed["fillcolor"]
    assert failed["color"] == dot_style.FAILURE_LINE
    assert done["color"] == dot_style.SUCCESS_LINE


def test_error_and_timeout_edges_are_styled_apart_from_the_happy_path() -> None:
    graph = dot_graph(flat_doc())
    charge, done, failed = (node_of(graph, n) for n in ("charge", "done", "failed"))
    happy = graph.edge(charge, done, "success")
    error = graph.edge(charge, failed, "error")
    timeout = graph.edge(charge, failed, "timeout")
    assert "style" not in happy
    assert error["style"] == timeout["style"] == "dashed"
    assert len({happy["color"], error["color"], timeout["color"]}) == 3


def test_compensation_is_listed_inside_the_state() -> None:
    graph = dot_graph(flat_doc())
    lines = label_lines(graph.nodes[node_of(graph, "charge")]["label"])
    assert "↺ compensate: app.refund" in lines
    # Mermaid reads ":" as its own separator: the label carries the entity code ``#58;``.
    assert "    s_charge : ↺ compensate#58; app.refund" in to_mermaid(flat_doc()).splitlines()


def test_model_lists_every_state_and_transition_in_document_order() -> None:
    model = diagram(nested_doc())
    paths = [s.path for s in model.walk()]
    assert paths[:7] == [
        "checks",
        "checks.credit",
        "checks.credit.run",
        "checks.credit.ok",
        "checks.fraud",
        "checks.fraud.run",
        "checks.fraud.ok",
    ]
    assert "audit.books.phase.inner.a.x" in paths
    assert [(t.source, t.target, t.label) for t in model.transitions][:3] == [
        ("checks", "fulfilment", "done"),
        ("checks", "rejected", "error"),
        ("checks.credit.run", "checks.credit.ok", "success"),
    ]
    assert model.state("checks").kind == "parallel"
    assert model.state("checks.credit").kind == "region"
    assert model.state("fulfilment").initial == "fulfilment.picking"


def test_compound_state_is_a_cluster_with_its_own_initial_marker() -> None:
    graph = dot_graph(nested_doc())
    cluster = "cluster_s_fulfilment"
    assert graph.cluster_parent[cluster] is None
    label = label_lines(graph.cluster_attrs[cluster]["label"])
    assert label[0] == "fulfilment" and "state timeout 1min" in label
    children = [n for n, c in graph.node_cluster.items() if c == cluster]
    names = {graph.name(n) for n in children if graph.nodes[n].get("label")}
    assert names == {"picking", "packing", "packed"}
    (marker,) = [n for n in children if graph.nodes[n].get("shape") == "circle"]
    assert [t for s, t, _ in graph.edges if s == marker] == ["s_fulfilment__picking"]


def test_edges_of_a_compound_state_start_and_end_at_its_cluster() -> None:
    graph = dot_graph(nested_doc())
    done = [a for _, _, a in graph.edges if a.get("tooltip") == "fulfilment → audit: done"]
    assert done[0]["ltail"] == "cluster_s_fulfilment"
    assert done[0]["lhead"] == "cluster_s_audit"
    into = [a for _, _, a in graph.edges if a.get("tooltip") == "checks → fulfilment: done"]
    assert into[0]["lhead"] == "cluster_s_fulfilment"
    assert into[0]["ltail"] == "cluster_s_checks"


def test_parallel_regions_are_dashed_clusters_inside_the_parallel_cluster() -> None:
    graph = dot_graph(nested_doc())
    regions = [c for c, p in graph.cluster_parent.items() if p == "cluster_s_checks"]
    assert regions == ["cluster_s_checks__credit", "cluster_s_checks__fraud"]
    for region in regions:
        assert "dashed" in graph.cluster_attrs[region]["style"]
    assert graph.clusters_of("s_audit__books__phase__inner__a__x") == [
        "cluster_s_audit__books__phase__inner__a",
        "cluster_s_audit__books__phase__inner",
        "cluster_s_audit__books__phase",
        "cluster_s_audit__books",
        "cluster_s_audit",
    ]


@needs_graphviz
def test_parallel_regions_are_laid_out_side_by_side() -> None:
    graph = dot_renderer.to_graph(diagram(nested_doc()))
    layout = json.loads(graph.pipe(format="json"))
    boxes = {
        o["name"]: [float(v) for v in o["bb"].split(",")]
        for o in layout.get("objects", [])
        if o["name"].startswith("cluster_")
    }
    (cx1, cy1, cx2, cy2) = boxes["cluster_s_checks__credit"]
    (fx1, fy1, fx2, fy2) = boxes["cluster_s_checks__fraud"]
    assert cx2 <= fx1 or fx2 <= cx1  # apart horizontally
    assert min(cy2, fy2) > max(cy1, fy1)  # overlapping vertically


def test_missing_target_is_drawn_instead_of_crashing() -> None:
    doc = make_doc({"a": {"transitions": [{"event": "go", "target": "nowhere"}]}}, "a")
    model = diagram(doc)
    assert model.state("nowhere").kind == "missing"
    assert "no such state" in to_dot(doc)
    assert "s_nowhere" in to_mermaid(doc)


def test_busy_terminal_state_is_drawn_beside_each_source() -> None:
    graph = dot_graph(chain_doc(8))
    copies = graph.named("failed")
    assert len(copies) == 7  # one per state that leads there
    for node in copies:
        sources = {s for s, t, _ in graph.edges if t == node}
        assert len(sources) == 1
        labels = sorted(a["label"] for _, t, a in graph.edges if t == node)
        assert labels == ["(2) success", "error"]


# --------------------------------------------------------------------------- ids and escaping


def test_awkward_state_names_are_quoted_and_escaped() -> None:
    names = ['say "hi"', "a -> b", "naïve café", "<b>&amp;</b>", "back\\slash", "x;y:z #1 %%"]
    states: dict[str, Any] = {
        name: {"transitions": [{"event": f"go {i}", "target": names[i + 1]}]}
        for i, name in enumerate(names[:-1])
    }
    states[names[-1]] = {}
    doc = make_doc(states, names[0])
    graph = dot_graph(doc)
    assert {graph.name(n) for n in graph.nodes if graph.nodes[n].get("label")} == set(names)
    assert all(re.fullmatch(r"\w+", n) for n in graph.nodes)
    text = to_mermaid(doc)
    assert 'state "say #34;hi#34;" as s_say_20__22_hi_22_' in text
    assert 'state "x#59;y#58;z #35;1 #37;#37;" as ' in text
    for line in text.splitlines()[4:]:
        if "-->" in line:
            ids = line.strip().split(" : ")[0].split(" --> ")
            assert all(re.fullmatch(r"\w+|\[\*\]", i) for i in ids), line


@needs_graphviz
def test_awkward_state_names_render() -> None:
    doc = make_doc(
        {
            '"quoted" <&>': {"transitions": [{"event": "a\\b", "target": "ünïcødé ✓"}]},
            "ünïcødé ✓": {},
        },
        '"quoted" <&>',
    )
    root = ET.fromstring(render(doc, "svg"))
    text = "".join(root.itertext())
    assert '"quoted" <&>' in text and "ünïcødé ✓" in text and "a\\b" in text


def test_ids_clash_gets_a_suffix() -> None:
    doc = make_doc(
        {
            "a b": {"transitions": [{"event": "x", "target": "a_20_b"}]},
            "a_20_b": {},
        },
        "a b",
    )
    model = diagram(doc)
    assert [s.id for s in model.walk()] == ["s_a_20_b", "s_a_20_b_2"]


# --------------------------------------------------------------------------- determinism


def test_output_is_deterministic() -> None:
    doc = nested_doc()
    first_dot, first_mermaid = to_dot(doc), to_mermaid(doc)
    again = Procedure.model_validate(json.loads(json.dumps(copy.deepcopy(doc))))
    assert to_dot(again) == first_dot
    assert to_mermaid(again) == first_mermaid
    assert render(doc, "dot") == first_dot


# --------------------------------------------------------------------------- mermaid


def test_mermaid_flat_chart() -> None:
    text = to_mermaid(flat_doc())
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:4] == ["---", 'title: "payment 1.0"', "---", "stateDiagram-v2"]
    assert "[*] --> s_validate" in lines
    assert "s_validate --> s_charge : (1) success [amount < 1000]" in lines
    assert "s_review --> s_failed : reject [!is_vip]" in lines
    assert "s_done --> [*]" in lines and "s_failed --> [*]" in lines
    assert f"s_charge : retry 4x 200ms{X}2 ≤5s jitter" in lines
    assert "class s_done success" in lines and "class s_failed failure" in lines


def test_mermaid_parallel_chart_has_nested_blocks_and_region_separators() -> None:
    text = to_mermaid(nested_doc())
    lines = text.splitlines()
    assert "    state s_checks {" in lines
    assert "        state s_checks__credit {" in lines
    assert "        --" in lines
    assert "            [*] --> s_checks__credit__run" in lines
    assert "            s_checks__credit__run --> s_checks__credit__ok : success" in lines
    assert "            s_checks__credit__ok --> [*]" in lines
    assert "    s_checks --> s_fulfilment : done" in lines
    assert text.count("{") == text.count("}")
    # a separator only ever sits between two region blocks of a parallel state
    for i, line in enumerate(lines):
        if line.strip() == "--":
            assert lines[i - 1].strip() == "}"
            assert lines[i + 1].strip().startswith('state "')
    depth = 0
    for line in lines:
        depth += line.count("{") - line.count("}")
        assert depth >= 0
    assert depth == 0


# --------------------------------------------------------------------------- rendering


@needs_graphviz
def test_svg_render_is_an_svg_document() -> None:
    data = render(flat_doc(), "svg")
    assert isinstance(data, bytes)
    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "success [amount < 1000]" in "".join(root.itertext())


@needs_graphviz
def test_png_render_is_a_png_image() -> None:
    data = render(nested_doc(), "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_render_text_formats_and_unknown_format() -> None:
    assert render(flat_doc(), "mermaid") == to_mermaid(flat_doc())
    assert render(flat_doc(), "dot").startswith("digraph payment {")
    with pytest.raises(ValueError, match="unknown diagram format"):
        render(flat_doc(), "gif")


def test_format_from_file_suffix(tmp_path: Path) -> None:
    assert [format_for(n) for n in ("a.svg", "a.PNG", "a.dot", "a.gv", "a.mmd")] == [
        "svg",
        "png",
        "dot",
        "dot",
        "mermaid",
    ]
    with pytest.raises(ValueError, match="cannot tell"):
        format_for("a.txt")
    out = save(flat_doc(), tmp_path / "p.mmd")
    assert out.read_text(encoding="utf-8") == to_mermaid(flat_doc())


@needs_graphviz
def test_200_states_draw_every_transition() -> None:
    # How fast: perf/bench_diagrams.py (speed is measured by benchmarks, not unit tests).
    doc = chain_doc(200)
    text = to_dot(doc)
    svg = render(doc, "svg")
    assert text.count('[label="(1) success [amount < ') == 199
    assert svg.startswith(b"<?xml")


# --------------------------------------------------------------------------- big charts


def generated_doc(kind: str, n: int = 200) -> dict[str, Any]:
    """``n`` states in a chain; ``errors``: each also has an error edge to one failure state;
    ``labels``: guards, retry policies, timeouts and compensations too; ``back``: error edges
    and a transition back to a random earlier state (seeded)."""
    rnd = random.Random(6)
    states: dict[str, Any] = {}
    for i in range(n - 1):
        state: dict[str, Any] = {
            "action": {"type": "function", "module": "jobs", "function": f"step{i}"},
        }
        transitions: list[dict[str, Any]] = [{"event": "success", "target": f"step_{i + 1}"}]
        if kind != "plain":
            transitions.append({"event": "error", "target": "failed"})
        if kind == "labels":
            state["action"]["timeout_ms"] = 100
            state["retry"] = {
                "max_attempts": 3,
                "interval_ms": 10,
                "backoff_rate": 2.0,
                "max_delay_ms": 500,
                "jitter": "full",
                "errors": ["ConnectionError", "Timeout"],
            }
            state["timeout_ms"] = 5000
            state["compensate"] = {"type": "function", "module": "jobs", "function": f"undo{i}"}
            transitions[0]["guard"] = f"amount < {1000 + i}"
            transitions.append({"event": "timeout", "target": "failed"})
        if kind == "back" and i > 0:
            transitions.append({"event": "retry", "target": f"step_{rnd.randrange(i)}"})
        state["transitions"] = transitions
        states[f"step_{i}"] = state
    states[f"step_{n - 1}"] = {}
    if kind != "plain":  # a plain chain never fails: a failure state would be unreachable
        states["failed"] = {"outcome": "failure"}
    return make_doc(states, "step_0", name=f"generated_{kind}")


def test_small_charts_are_drawn_without_the_large_chart_settings() -> None:
    for path in EXAMPLE_FILES:
        text = to_dot(diagrams_build.diagram_of(path))
        assert "mclimit" not in text
        assert not re.search(r"^\tj\d+_", text, re.M)


def test_large_chart_gets_bounded_settings_and_jump_nodes_for_long_edges() -> None:
    model = diagram(generated_doc("back"))
    assert dot_renderer.is_large(model)
    text = to_dot(model)
    for name, value in dot_renderer.LARGE_GRAPH_ATTRS.items():
        assert f"{name}={value}" in text
    graph = parse_dot(text)
    levels = model.levels
    jumps = [(s, t, a) for s, t, a in graph.edges if t.startswith("j")]
    assert jumps
    for source, target, attrs in jumps:
        edge_source, edge_target = attrs["tooltip"].split(": ")[0].split(" → ")
        assert abs(levels[edge_source] - levels[edge_target]) > dot_renderer.JUMP_LEVELS
        assert label_lines(graph.nodes[target]["label"]) == [f"↪ {edge_target}"]
        assert graph.name(source) == edge_source
    # Every transition is still drawn once (to its target, a copy of it, or a jump node).
    for t in model.transitions:
        tooltip = f"{t.source} → {t.target}: {t.label}"
        assert [a["label"] for _, _, a in graph.edges if a.get("tooltip") == tooltip] == [t.label]


@needs_graphviz
def test_large_chart_falls_back_to_sfdp_when_dot_is_too_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dot_renderer, "LARGE_TIMEOUT_S", 0.001)
    svg = render(generated_doc("errors"), "svg")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "step_199" in "".join(root.itertext())


@needs_graphviz
@pytest.mark.parametrize("fmt", ["svg", "png"])
@pytest.mark.parametrize("kind", ["plain", "errors", "labels", "back"])
def test_cli_draws_200_state_charts(kind: str, fmt: str, tmp_path: Path) -> None:
    # How fast (the target is under 2 s): perf/bench_diagrams.py measures it.
    source = tmp_path / f"{kind}.json"
    source.write_text(json.dumps(generated_doc(kind)), encoding="utf-8")
    out = tmp_path / f"{kind}.{fmt}"
    cli = Path(sys.executable).parent / "procstore"
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "procstore"]
    proc = subprocess.run([*command, "diagram", str(source), "-o", str(out)], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG" if fmt == "png" else b"<?xml")


# --------------------------------------------------------------------------- overlay


def loop_doc() -> dict[str, Any]:
    return make_doc(
        {
            "work": {
                "action": {"type": "function", "function": "loop.work"},
                "transitions": [
                    {"event": "success", "target": "check"},
                    {"event": "error", "target": "failed"},
                ],
            },
            "check": {
                "action": {"type": "noop"},
                "transitions": [
                    {"event": "success", "target": "work", "guard": "n < 3"},
                    {"event": "success", "target": "done"},
                ],
            },
            "done": {},
            "failed": {"outcome": "failure"},
        },
        "work",
        name="loop",
    )


async def run_loop() -> ExecutionState:
    """work -> check -> work -> check -> work -> check -> done: edges fire 3, 2 and 1 times."""
    store = ProcedureStore()

    @store.action("loop.work")
    def work(context: dict[str, Any]) -> int:
        context["n"] = context.get("n", 0) + 1
        return int(context["n"])

    await store.register(loop_doc())
    ex = await store.start("loop")
    return await ex.run_to_completion(timeout=5)


async def run_failing() -> tuple[dict[str, Any], ExecutionState]:
    """reserve (compensated) -> charge fails twice (retry) -> execution fails, rolled back."""
    store = ProcedureStore()

    @store.action("shop.reserve")
    def reserve(context: dict[str, Any]) -> str:
        return "R-1"

    @store.action("shop.release")
    def release(context: dict[str, Any]) -> None:
        return None

    @store.action("shop.charge")
    def charge(context: dict[str, Any]) -> None:
        raise ConnectionError("card network down")

    doc = make_doc(
        {
            "reserve": {
                "action": {"type": "function", "function": "shop.reserve"},
                "compensate": {"type": "function", "function": "shop.release"},
                "transitions": [{"event": "success", "target": "charge"}],
            },
            "charge": {
                "action": {"type": "function", "function": "shop.charge"},
                "retry": {"max_attempts": 2, "interval_ms": 1},
                "transitions": [{"event": "success", "target": "done"}],
            },
            "done": {},
        },
        "reserve",
        name="shop",
    )
    await store.register(doc)
    ex = await store.start("shop")
    return doc, await ex.run_to_completion(timeout=5)


async def test_overlay_of_a_finished_run_counts_fired_edges() -> None:
    state = await run_loop()
    assert state.status == Status.COMPLETED
    model = diagram(loop_doc(), state)
    fired = {(t.source, t.target, t.label): t.fired for t in model.transitions}
    assert fired == {
        ("work", "check", "success"): 3,
        ("work", "failed", "error"): 0,
        ("check", "work", "(1) success [n < 3]"): 2,
        ("check", "done", "(2) success"): 1,
    }
    assert model.state("done").active and not model.state("work").active
    assert model.state("work").visits == 3
    assert not any(s.failed for s in model.walk())
    assert model.execution is not None and model.execution.status == "completed"


async def test_overlay_of_a_finished_run_in_dot_and_mermaid() -> None:
    state = await run_loop()
    store_doc = loop_doc()
    graph = dot_graph(store_doc, state)
    work, check, done = (node_of(graph, n) for n in ("work", "check", "done"))
    assert graph.edge(check, work, f"(1) success [n < 3] (2{X})")["penwidth"] == "2.5"
    assert graph.edge(work, check, f"success (3{X})")["color"] == dot_style.ACTIVE_LINE
    assert graph.edge(work, node_of(graph, "failed"), "error")["color"] == dot_style.MUTED
    assert graph.nodes[done]["penwidth"] == "3"
    assert f"entered 3{X}" in label_lines(graph.nodes[work]["label"])
    text = to_mermaid(store_doc, state)
    assert f"s_check --> s_work : (1) success [n < 3] (2{X})" in text
    assert "class s_done active" in text
    assert "class s_work,s_check visited" in text
    # the JSON form of a snapshot draws the same
    assert to_mermaid(store_doc, state.model_dump(mode="json")) == text


async def test_overlay_of_a_failed_run_marks_failed_and_compensated_states() -> None:
    doc, state = await run_failing()
    assert state.status == Status.ROLLED_BACK
    model = diagram(doc, state)
    charge, reserve = model.state("charge"), model.state("reserve")
    assert charge.failed and charge.active and charge.attempts == 2
    assert reserve.compensated == 1 and not reserve.failed
    assert not model.state("done").active and model.state("done").visits == 0
    graph = dot_graph(doc, state)
    charge_node = graph.nodes[node_of(graph, "charge")]
    assert charge_node["fillcolor"] == dot_style.FAILED_FILL
    assert "failed" in label_lines(charge_node["label"])
    assert f"entered 1{X} · 2 attempts" in label_lines(charge_node["label"])
    reserve_node = graph.nodes[node_of(graph, "reserve")]
    assert reserve_node["fillcolor"] == dot_style.COMPENSATED_FILL
    assert f"compensated 1{X}" in label_lines(reserve_node["label"])
    text = to_mermaid(doc, state)
    assert "class s_charge failed" in text and "class s_reserve compensated" in text


async def test_a_retried_success_is_not_a_failure() -> None:
    store = ProcedureStore()
    calls: list[int] = []

    @store.action("flaky")
    def flaky(context: dict[str, Any]) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("blip")
        return "ok"

    doc = make_doc(
        {
            "fetch": {
                "action": {"type": "function", "function": "flaky"},
                "retry": {"max_attempts": 3, "interval_ms": 1},
                "transitions": [{"event": "success", "target": "done"}],
            },
            "done": {},
        },
        "fetch",
    )
    await store.register(doc)
    state = await (await store.start("p")).run_to_completion(timeout=5)
    fetch = diagram(doc, state).state("fetch")
    assert fetch.attempts == 2 and not fetch.failed


def saga_doc(steps: int) -> dict[str, Any]:
    """A trip saga of ``steps`` reservations, each compensable, each with an ``error`` edge to
    one ``not_booked`` state: more sources than FANIN_LIMIT, so ``not_booked`` is drawn beside
    each of them."""
    names = [f"reserve_{i}" for i in range(steps)]
    states: dict[str, Any] = {}
    for i, name in enumerate(names):
        states[name] = {
            "action": {"type": "function", "function": "trip.reserve"},
            "compensate": {"type": "function", "function": "trip.cancel"},
            "transitions": [
                {"event": "success", "target": names[i + 1] if i + 1 < steps else "confirmed"},
                {"event": "error", "target": "not_booked"},
            ],
        }
    states["confirmed"] = {}
    states["not_booked"] = {"outcome": "failure"}
    return make_doc(states, names[0], name="saga")


async def run_saga(doc: dict[str, Any], fail_at: int) -> ExecutionState:
    """Run ``doc``; the ``fail_at``-th reservation (from 1) is refused."""
    store = ProcedureStore()

    @store.action("trip.reserve")
    def reserve(context: dict[str, Any]) -> None:
        context["n"] = context.get("n", 0) + 1
        if context["n"] == fail_at:
            raise RuntimeError("sold out")

    @store.action("trip.cancel")
    def cancel(context: dict[str, Any]) -> None:
        return None

    await store.register(doc)
    ex = await store.start("saga")
    return await ex.run_to_completion(timeout=5)


def boxes_named(graph: Graph, name: str) -> dict[str, list[str]]:
    """Every box drawn for state ``name`` (its own and its copies), with its label's rows."""
    return {node: label_lines(graph.nodes[node]["label"]) for node in graph.named(name)}


def test_a_state_drawn_more_than_once_marks_its_copies() -> None:
    graph = dot_graph(saga_doc(6))
    boxes = boxes_named(graph, "not_booked")
    assert len(boxes) == 6  # beside each reservation
    copies = [node for node, rows in boxes.items() if dot_style.COPY_NOTE in rows]
    assert len(copies) == 5
    for node in boxes:
        assert ("dashed" in graph.nodes[node].get("style", "")) == (node in copies)
    legend = label_lines(graph.nodes["legend"]["label"])
    assert f"┆ dashed box, {dot_style.COPY_NOTE}: drawn beside each source" in legend


async def test_overlay_marks_only_the_copy_the_execution_came_in_by() -> None:
    doc = saga_doc(6)
    state = await run_saga(doc, fail_at=4)
    assert state.status == Status.ROLLED_BACK and state.current == "not_booked"
    graph = dot_graph(doc, state)
    (reached,) = [
        target
        for _, target, attrs in graph.edges
        if attrs.get("tooltip") == "reserve_3 → not_booked: error"
    ]
    for node, rows in boxes_named(graph, "not_booked").items():
        attrs = graph.nodes[node]
        if node == reached:
            assert f"entered 1{X}" in rows and "failed" in rows
            assert attrs["penwidth"] == "3" and attrs["color"] == dot_style.ACTIVE_LINE
        else:
            assert not any(row.startswith("entered") or row == "failed" for row in rows), node
            assert "penwidth" not in attrs and attrs["color"] == dot_style.FAILURE_LINE
    model = diagram(doc, state)
    assert [(b.id, b.visits) for b in model.state("not_booked").boxes if b.marked] == [(reached, 1)]


async def run_with_fallback() -> tuple[dict[str, Any], ExecutionState]:
    """fetch fails; its ``error`` transition goes to use_cache, which completes."""
    store = ProcedureStore()

    @store.action("feed.fetch")
    def fetch(context: dict[str, Any]) -> None:
        raise ConnectionError("feed down")

    doc = make_doc(
        {
            "fetch": {
                "action": {"type": "function", "function": "feed.fetch"},
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "error", "target": "use_cache"},
                ],
            },
            "use_cache": {"action": {"type": "noop"}},
            "done": {},
        },
        "fetch",
        name="feed",
    )
    await store.register(doc)
    return doc, await (await store.start("feed")).run_to_completion(timeout=5)


async def test_an_error_handled_by_a_declared_transition_is_not_a_failure() -> None:
    doc, state = await run_with_fallback()
    assert state.status == Status.COMPLETED
    fetch = diagram(doc, state).state("fetch")
    assert not fetch.failed
    assert fetch.handled == (("error", "use_cache"),)
    graph = dot_graph(doc, state)
    node = graph.nodes[node_of(graph, "fetch")]
    rows = label_lines(node["label"])
    assert "error handled → use_cache" in rows and "failed" not in rows
    assert node["fillcolor"] == dot_style.HANDLED_FILL
    text = to_mermaid(doc, state)
    assert "    s_fetch : error handled → use_cache" in text.splitlines()
    assert "class s_fetch handled" in text and "failed" not in text


async def test_a_failed_execution_is_marked_where_it_failed_apart_from_handled_errors() -> None:
    doc = saga_doc(3)
    state = await run_saga(doc, fail_at=2)  # reserve_1's error -> not_booked: rolled back
    assert state.status == Status.ROLLED_BACK
    model = diagram(doc, state)
    assert model.state("not_booked").failed
    assert not model.state("reserve_1").failed
    assert model.state("reserve_1").handled == (("error", "not_booked"),)
    assert not model.state("not_booked").handled
    graph = dot_graph(doc, state)
    ended = graph.nodes[node_of(graph, "not_booked")]
    assert ended["fillcolor"] == dot_style.FAILED_FILL and "failed" in label_lines(ended["label"])
    legend = label_lines(graph.nodes["legend"]["label"])
    assert dot_style.LEGEND_FAILED in legend and dot_style.LEGEND_HANDLED in legend


async def test_a_timeout_handled_by_its_transition_is_not_a_failure() -> None:
    store = ProcedureStore()
    gate = Gate()  # never released: the state's timeout interrupts the attempt
    store.register_action("slow.call", gate.action)
    doc = make_doc(
        {
            "call": {
                "action": {"type": "function", "function": "slow.call"},
                "timeout_ms": 20,
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "timeout", "target": "late"},
                ],
            },
            "late": {},
            "done": {},
        },
        "call",
    )
    await store.register(doc)
    state = await (await store.start("p")).run_to_completion(timeout=5)
    assert state.status == Status.COMPLETED and gate.cancelled
    call = diagram(doc, state).state("call")
    assert call.timed_out
    assert not call.failed  # the interrupted attempt is not a failure of the action
    assert call.handled == (("timeout", "late"),)


def test_overlay_of_a_nested_snapshot_matches_bubbled_events_and_active_regions() -> None:
    """A snapshot written by hand (the nested runtime is not needed): ``cancel`` is declared on
    ``fulfilment`` but recorded from its active leaf; parallel regions are active together."""
    at = "2026-01-01T00:00:00Z"
    snapshot = ExecutionState.model_validate(
        {
            "id": "e1",
            "procedure": "order",
            "version": "1.0",
            "current": "checks",
            "active": ["checks.credit.run", "checks.fraud.ok"],
            "status": "running",
            "context": {},
            "history": [
                {"kind": "entered", "at": at, "state": "fulfilment.packing"},
                {
                    "kind": "transition",
                    "at": at,
                    "state": "fulfilment.packing",
                    "event": "cancel",
                    "target": "cancelled",
                },
                {
                    "kind": "transition",
                    "at": at,
                    "state": "checks.fraud.run",
                    "event": "success",
                    "target": "checks.fraud.ok",
                },
            ],
        }
    )
    model = diagram(nested_doc(), snapshot)
    fired = {(t.source, t.target, t.event): t.fired for t in model.transitions if t.fired}
    assert fired == {
        ("fulfilment", "cancelled", "cancel"): 1,
        ("checks.fraud.run", "checks.fraud.ok", "success"): 1,
    }
    active = [s.path for s in model.walk() if s.active]
    assert active == [
        "checks",
        "checks.credit",
        "checks.credit.run",
        "checks.fraud",
        "checks.fraud.ok",
    ]
    assert model.state("fulfilment").visits == 1  # entered through its child
    graph = dot_graph(nested_doc(), snapshot)
    assert graph.cluster_attrs["cluster_s_checks"]["color"] == dot_style.ACTIVE_LINE
    assert graph.nodes["s_checks__credit__run"]["penwidth"] == "3"


def test_an_error_handled_by_an_ancestor_is_marked_on_the_state_that_raised_it() -> None:
    at = "2026-01-01T00:00:00Z"
    snapshot = ExecutionState.model_validate(
        {
            "id": "e2",
            "procedure": "order",
            "version": "1.0",
            "current": "rejected",
            "status": "failed",
            "context": {},
            "history": [
                {"kind": "entered", "at": at, "state": "checks.credit.run"},
                {
                    "kind": "action",
                    "at": at,
                    "state": "checks.credit.run",
                    "attempt": 1,
                    "error": {"type": "LookupError", "message": "no such customer"},
                },
                {
                    "kind": "transition",
                    "at": at,
                    "state": "checks",  # the state that declares the error transition
                    "event": "error",
                    "target": "rejected",
                },
                {"kind": "entered", "at": at, "state": "rejected"},
                {"kind": "finished", "at": at, "state": "rejected", "status": "failed"},
            ],
        }
    )
    model = diagram(nested_doc(), snapshot)
    run = model.state("checks.credit.run")
    assert not run.failed and run.handled == (("error", "rejected"),)
    assert not model.state("checks").handled and not model.state("checks").failed
    assert model.state("rejected").failed


@needs_graphviz
async def test_overlay_renders_to_png() -> None:
    doc, state = await run_failing()
    assert render(doc, "png", state)[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_every_example_diagram_has_all_states_and_transitions(path: Path) -> None:
    model = diagrams_build.diagram_of(path)  # a procedure document, or an ASL workflow
    graph = parse_dot(to_dot(model))
    ids = {s.path: s.id for s in model.walk()}
    for state in model.walk():
        if state.is_cluster:
            assert f"cluster_{state.id}" in graph.cluster_attrs
        else:
            assert graph.name(state.id) == state.name
    for t in model.transitions:
        tooltip = f"{t.source} → {t.target}: {t.label}"
        assert [a["label"] for _, _, a in graph.edges if a.get("tooltip") == tooltip] == [t.label]
    mermaid = to_mermaid(model)
    for t in model.transitions:
        assert f"{ids[t.source]} --> {ids[t.target]} : " in mermaid


def test_example_diagrams_are_up_to_date() -> None:
    problems = diagrams_build.check(EXAMPLES, ROOT / "diagrams")
    assert problems == [], "\n".join([*problems, "run `make diagrams`"])


# --------------------------------------------------------------------------- error matching


def _catching_doc() -> dict[str, Any]:
    return make_doc(
        {
            "charge": {
                "action": {"type": "fail", "message": "no"},
                "transitions": [
                    {"event": "success", "target": "done"},
                    {"event": "error", "target": "declined", "errors": ["ActionFailed", "Timeout"]},
                ],
            },
            "done": {},
            "declined": {
                "outcome": "failure",
                "error": "PaymentDeclined",
                "cause": "the card was refused",
            },
        },
        "charge",
    )


def test_an_error_edge_names_the_errors_it_catches() -> None:
    model = diagram(_catching_doc())
    labels = {(t.source, t.target): t.label for t in model.transitions}
    assert labels[("charge", "declined")] == "error (ActionFailed, Timeout)"
    graph = dot_graph(_catching_doc())
    charge, declined = node_of(graph, "charge"), node_of(graph, "declined")
    assert graph.edge(charge, declined, "error (ActionFailed, Timeout)")


def test_a_failure_terminal_shows_its_error_and_cause() -> None:
    model = diagram(_catching_doc())
    assert model.state("declined").error == "PaymentDeclined: the card was refused"
    graph = dot_graph(_catching_doc())
    lines = label_lines(graph.nodes[node_of(graph, "declined")]["label"])
    assert "PaymentDeclined: the card was refused" in lines
    note = mermaid_escape("fails: PaymentDeclined: the card was refused")
    assert f"s_declined : {note}" in to_mermaid(_catching_doc())


async def test_the_overlay_of_a_failed_execution_says_why_it_failed() -> None:
    store = ProcedureStore()
    await store.register(_catching_doc())
    final = await (await store.start("p", "1.0", {})).run_to_completion()
    model = diagram(_catching_doc(), final)
    assert model.execution is not None
    assert model.execution.error == "PaymentDeclined: the card was refused"
    why = "PaymentDeclined: the card was refused"
    # In the title, besides the failure terminal's own row.
    assert to_dot(_catching_doc(), final).count(why) == to_dot(_catching_doc()).count(why) + 1
    assert f'failed in declined · {why}"' in to_mermaid(_catching_doc(), final)
