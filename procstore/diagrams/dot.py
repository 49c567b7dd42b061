"""Graphviz renderer: the neutral :class:`~procstore.diagrams.model.Diagram` as DOT, through the
``graphviz`` package, and from there SVG or PNG (which need Graphviz's ``dot`` program).

Layout:

- a leaf is a rounded box whose HTML label lists its action, retry policy, timeouts and
  compensation; a terminal state has a double border, green for a success outcome and red for a
  failure;
- a wait state's box says how long it waits (``wait 10s``); a choice state is a diamond
  whose edges are numbered in the order its rules are tried, then ``default``;
- a compound state is a cluster (``cluster_<id>``) with its own initial marker inside; a parallel
  state is a cluster whose regions are dashed clusters side by side;
- an edge from or to a compound state starts or ends at the cluster's border (``ltail`` /
  ``lhead`` with ``compound=true``);
- ``error`` edges are red and dashed, ``timeout`` edges orange and dashed;
- compensation: dashed dark-orange ``undo`` edges run from each state with a ``compensate``
  action to the one compensated after it (:attr:`Diagram.compensation_order`), outside the
  layout's ranking (``constraint=false``); a legend explains the line styles the chart uses;
- a terminal leaf entered from many states is drawn beside each of them
  (:attr:`StateNode.boxes`): the copies are dashed and say so;
- big charts (more than :data:`LARGE_STATES` states or :data:`LARGE_EDGES` transitions) are laid
  out with bounded effort: cheaper ``dot`` settings, a transition spanning more than
  :data:`JUMP_LEVELS` levels drawn to a small "jump" node beside its source, and
  :func:`render` gives ``dot`` :data:`LARGE_TIMEOUT_S` before falling back to ``sfdp``;
- with an execution overlaid, the states it went through are tinted, the active ones drawn bold,
  failed ones red (the execution failed there), those whose error a declared ``error`` or
  ``timeout`` transition handled yellow (``error handled → target``), compensated ones orange
  (the legend says which is which), and the edges that fired are thick and say how many
  times, the others grey; of a state drawn more than once, only the box the execution came in
  by carries its marks.
"""

from __future__ import annotations

import itertools
import subprocess
from typing import Any, Literal

import graphviz

from procstore import paths
from procstore.diagrams.dot_style import (
    ACTIVE_LINE,
    COMPENSATE,
    ERROR_EDGE,
    FAILURE_LINE,
    FONT,
    HANDLED_LINE,
    INK,
    MUTED,
    TIMEOUT_EDGE,
    cluster_label,
    h,
    leaf_attrs,
    legend_label,
    small,
    table,
)
from procstore.diagrams.model import TIMES, Diagram, StateNode, TransitionEdge

__all__ = ["FORMATS", "DiagramTimeout", "RankDir", "is_large", "render", "to_dot", "to_graph"]

#: Binary/text formats :func:`render` produces through Graphviz.
FORMATS = ("svg", "png")
RankDir = Literal["TB", "LR", "BT", "RL"]

#: Resolution of PNG output (Graphviz's default, 96, looks blurry on today's screens).
PNG_DPI = 144
#: Resolution of a large chart's PNG: at PNG_DPI cairo spends seconds on the bitmap.
PNG_LARGE_DPI = 96
#: The largest PNG side, in inches (14,400 pixels at PNG_DPI); larger drawings are scaled down.
PNG_MAX_INCHES = 100

#: A chart with more states (regions included) or transitions than these is "large": laid out
#: with bounded effort (see the module's docstring). Smaller charts are drawn as they always were.
LARGE_STATES = 80
LARGE_EDGES = 200
#: In a large chart, a transition between states further apart than this (in
#: :attr:`Diagram.levels`) ends at a jump node beside its source instead of running across the
#: chart: dot spends minutes placing hundreds of long back edges (one virtual node per rank).
JUMP_LEVELS = 6
#: Cheaper ``dot`` settings for large charts: fewer crossing-minimisation and network-simplex
#: iterations.
LARGE_GRAPH_ATTRS: dict[str, str] = {
    "mclimit": "0.1",
    "nslimit": "2",
    "nslimit1": "2",
    "remincross": "false",
    "searchsize": "10",
}
#: How long ``dot`` may take on a large chart before :func:`render` falls back to ``sfdp``
#: (force-directed: no ranks, but it never takes long), and how long that may take.
LARGE_TIMEOUT_S = 1.0
FALLBACK_ENGINE = "sfdp"
FALLBACK_TIMEOUT_S = 10.0

_TOP = "i__top"
_LEGEND = "legend"


class DiagramTimeout(RuntimeError):
    """Graphviz could not lay out the chart in time, even with the fallback engine."""


class _Renderer:
    def __init__(self, diagram: Diagram) -> None:
        self.diagram = diagram
        self.overlaid = diagram.execution is not None
        self.states = diagram.by_path
        self.large = is_large(diagram)
        self.jumps = self._jumps() if self.large else {}

    def _jumps(self) -> dict[int, str]:
        """Large charts: transitions (by index) drawn to a jump node instead of their target,
        because source and target are more than :data:`JUMP_LEVELS` levels apart."""
        levels = self.diagram.levels
        jumps = {}
        for index, edge in enumerate(self.diagram.transitions):
            if edge.box is not None and edge.box != self.states[edge.target].id:
                continue  # it ends at a copy of its target, beside its source
            source, target = levels.get(edge.source), levels.get(edge.target)
            if source is not None and target is not None and abs(source - target) > JUMP_LEVELS:
                jumps[index] = f"j{index}_{self.states[edge.source].id}"
        return jumps

    # Anchors: the node an edge entering / leaving a state is attached to.
    def entry(self, state: StateNode) -> str:
        if state.kind == "parallel":
            return f"e_{state.id}"
        if state.kind in ("compound", "region", "map"):
            return f"i_{state.id}"
        return state.id

    def exit(self, state: StateNode) -> str:
        if state.kind == "parallel":
            return f"x_{state.id}"
        if state.kind in ("compound", "region", "map"):
            for child in state.children:
                if child.terminal:
                    return self.exit(child)
            initial = self.states.get(state.initial) if state.initial else None
            return self.exit(initial) if initial is not None else f"i_{state.id}"
        return state.id

    def cluster_attrs(self, state: StateNode) -> dict[str, str]:
        attrs = {
            "label": cluster_label(state, self.overlaid),
            "labeljust": "l",
            "fontname": FONT,
            "tooltip": graphviz.escape(state.description or state.path),
            "color": INK,
            "penwidth": "1.2",
        }
        if state.kind == "region":
            attrs.update(style="dashed,rounded", color=MUTED, bgcolor="white", penwidth="1")
        elif state.kind == "parallel":
            attrs.update(style="rounded,filled", fillcolor="#f5f7fa", penwidth="1.6")
        else:
            attrs.update(style="rounded,filled", fillcolor="#fafafa")
        if self.overlaid:
            if state.failed:
                attrs.update(color=FAILURE_LINE, penwidth="2")
            elif state.handled:
                attrs.update(color=HANDLED_LINE, penwidth="2")
            if state.active:
                attrs.update(color=ACTIVE_LINE, penwidth="2.5")
        return attrs

    def scope(self, graph: graphviz.Digraph, states: tuple[StateNode, ...]) -> None:
        for state in states:
            if state.is_cluster:
                with graph.subgraph(name=f"cluster_{state.id}") as sub:
                    sub.attr(**self.cluster_attrs(state))
                    self.cluster_body(sub, state)
                if state.terminal and state.kind != "region":
                    final = f"f_{state.id}"
                    graph.node(final, **_FINAL)
                    graph.edge(self.exit(state), final, ltail=f"cluster_{state.id}")
            elif state.boxes:
                for box in state.boxes:
                    attrs = leaf_attrs(state.drawn_as(box), self.overlaid, copy=box.copy)
                    graph.node(box.id, **attrs)
            else:
                graph.node(state.id, **leaf_attrs(state, self.overlaid))

    def cluster_body(self, sub: graphviz.Digraph, state: StateNode) -> None:
        if state.kind == "parallel":
            entry, exit_ = f"e_{state.id}", f"x_{state.id}"
            sub.node(entry, **_HIDDEN)
            self.scope(sub, state.children)
            sub.node(exit_, **_HIDDEN)
            for region in state.children:
                sub.edge(entry, self.entry(region), style="invis")
                sub.edge(self.exit(region), exit_, style="invis")
            return
        if state.kind == "map":
            # The stack marker: the item states in a second box just inside the first, like a
            # pile of cards (Graphviz draws a cluster with one border at most).
            with sub.subgraph(name=f"cluster_stack_{state.id}") as stack:
                stack.attr(label="", style="rounded", color=INK, penwidth="1", margin="6")
                self.children_body(stack, state)
            return
        self.children_body(sub, state)

    def children_body(self, sub: graphviz.Digraph, state: StateNode) -> None:
        """A compound state's (or a map's items') initial marker and children."""
        marker = f"i_{state.id}"
        sub.node(marker, **_INITIAL)
        self.scope(sub, state.children)
        initial = self.states.get(state.initial) if state.initial else None
        if initial is not None:
            sub.edge(marker, self.entry(initial), **self.lhead(initial, None))

    def lhead(self, target: StateNode, source: StateNode | None) -> dict[str, str]:
        if not target.is_cluster:
            return {}
        if source is not None and paths.is_within(source.path, target.path):
            return {}
        return {"lhead": f"cluster_{target.id}"}

    def edge_attrs(
        self, edge: TransitionEdge, source: StateNode, target: StateNode, *, jump: bool = False
    ) -> dict[str, str]:
        attrs: dict[str, str] = {}
        label = edge.label
        if source.is_cluster:
            if paths.is_within(target.path, source.path):
                # Into the state itself or inside it: the edge cannot start at the cluster's
                # border, so its label says where it comes from.
                label += f" (from {source.name})"
            else:
                attrs["ltail"] = f"cluster_{source.id}"
        if not jump:
            attrs.update(self.lhead(target, source))
        color = INK
        if edge.kind in ("normal", "done") and target.outcome != "failure":
            # The happy path pulls straight; edges to failures bend around it.
            attrs["weight"] = "3"
        if edge.kind == "error":
            color = ERROR_EDGE
            attrs["style"] = "dashed"
        elif edge.kind == "timeout":
            color = TIMEOUT_EDGE
            attrs["style"] = "dashed"
        if self.overlaid:
            if edge.fired:
                label += f" ({edge.fired}{TIMES})"
                attrs["penwidth"] = "2.5"
                if edge.kind == "normal" or edge.kind == "done":
                    color = ACTIVE_LINE
            else:
                color = MUTED
        attrs.update(
            label=graphviz.escape(label),
            color=color,
            fontcolor=color,
            tooltip=graphviz.escape(f"{edge.source} → {edge.target}: {edge.label}"),
        )
        return attrs

    def graph(self, rankdir: RankDir) -> graphviz.Digraph:
        diagram = self.diagram
        graph = graphviz.Digraph(name=diagram.name)
        title = f'<FONT POINT-SIZE="14"><B>{h(diagram.name)}</B></FONT> {h(diagram.version)}'
        rows = [title]
        if diagram.execution is not None:
            ex = diagram.execution
            rows.append(
                small(
                    f"execution {ex.id[:12]} · {ex.status} · in {ex.current}", ACTIVE_LINE, size=10
                )
            )
            if ex.error is not None:
                rows.append(small(ex.error, FAILURE_LINE, size=10))
        graph.attr(
            "graph",
            rankdir=rankdir,
            compound="true",
            fontname=FONT,
            label=table(rows),
            labelloc="t",
            labeljust="l",
            nodesep="0.35",
            ranksep="0.4",
            pad="0.2",
            bgcolor="white",
        )
        graph.attr(
            "node",
            shape="box",
            style="rounded,filled",
            fillcolor="white",
            color=INK,
            fontname=FONT,
            fontsize="11",
            margin="0.12,0.05",
        )
        graph.attr("edge", fontname=FONT, fontsize="9", color=INK, arrowsize="0.7")
        graph.node(_TOP, **_INITIAL)
        self.scope(graph, diagram.states)
        initial = self.states.get(diagram.initial)
        if initial is not None:
            graph.edge(_TOP, self.entry(initial), **self.lhead(initial, None))
        for index, edge in enumerate(diagram.transitions):
            source, target = self.states[edge.source], self.states[edge.target]
            jump = self.jumps.get(index)
            if jump is not None:
                graph.node(jump, **_jump_attrs(target))
            head = jump or edge.box or self.entry(target)
            attrs = self.edge_attrs(edge, source, target, jump=jump is not None)
            if jump is not None:
                attrs["weight"] = "1"  # weight 3 pulls the whole chain aside, one step at a time
            graph.edge(self.exit(source), head, **attrs)
        self.undo_edges(graph)
        legend = legend_label(self.diagram, self.overlaid)
        if legend is not None:
            graph.node(_LEGEND, label=legend, shape="plaintext", style="", tooltip="legend")
        return graph

    def undo_edges(self, graph: graphviz.Digraph) -> None:
        """Dashed ``undo`` edges from each compensable state to the one compensated next."""
        order = self.diagram.compensation_order
        for first, then in itertools.pairwise(order):
            source, target = self.states[first], self.states[then]
            attrs = {"ltail": f"cluster_{source.id}"} if source.is_cluster else {}
            attrs.update(self.lhead(target, source))
            graph.edge(
                self.exit(source),
                self.entry(target),
                label="undo",
                style="dashed",
                color=COMPENSATE,
                fontcolor=COMPENSATE,
                arrowhead="vee",
                constraint="false",
                tooltip=graphviz.escape(f"compensation: {first} is undone, then {then}"),
                **attrs,
            )


_INITIAL: dict[str, Any] = {
    "label": "",
    "shape": "circle",
    "style": "filled",
    "fillcolor": "black",
    "color": "black",
    "width": "0.16",
    "height": "0.16",
    "fixedsize": "true",
    "tooltip": "initial state",
}
_FINAL: dict[str, Any] = {
    "label": "",
    "shape": "doublecircle",
    "style": "filled",
    "fillcolor": "black",
    "color": "black",
    "width": "0.12",
    "height": "0.12",
    "fixedsize": "true",
    "tooltip": "end",
}


def _jump_attrs(target: StateNode) -> dict[str, str]:
    return {
        "label": table([small(f"↪ {target.name}", size=10)]),
        "style": "rounded,dashed",
        "color": MUTED,
        "tooltip": graphviz.escape(f"goes to {target.path} (drawn apart: too far away)"),
    }


_HIDDEN: dict[str, Any] = {
    "label": "",
    "shape": "point",
    "style": "invis",
    "width": "0.01",
    "height": "0.01",
}


def is_large(diagram: Diagram) -> bool:
    """More than :data:`LARGE_STATES` states or :data:`LARGE_EDGES` transitions."""
    return len(diagram.by_path) > LARGE_STATES or len(diagram.transitions) > LARGE_EDGES


def to_graph(diagram: Diagram, *, rankdir: RankDir = "TB") -> graphviz.Digraph:
    """``diagram`` as a :class:`graphviz.Digraph` (render it with ``.pipe(format=...)``)."""
    graph = _Renderer(diagram).graph(rankdir)
    if is_large(diagram):
        graph.attr("graph", **LARGE_GRAPH_ATTRS)
    return graph


def to_dot(diagram: Diagram, *, rankdir: RankDir = "TB") -> str:
    """``diagram`` as DOT source text."""
    source: str = to_graph(diagram, rankdir=rankdir).source
    return source


def render(diagram: Diagram, format: str = "svg", *, rankdir: RankDir = "TB") -> bytes:
    """``diagram`` rendered by Graphviz's ``dot`` program as ``svg`` or ``png`` bytes.

    Raises:
        ValueError: an unknown format.
        graphviz.ExecutableNotFound: Graphviz is not installed (``make system-deps``).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    graph = to_graph(diagram, rankdir=rankdir)
    if format == "png":
        # Sharp at PNG_DPI, but at most PNG_MAX_INCHES a side: beyond that cairo's bitmaps
        # take minutes (a 200-state chart is better read as SVG anyway).
        dpi = PNG_LARGE_DPI if is_large(diagram) else PNG_DPI
        graph.attr("graph", dpi=str(dpi), size=f"{PNG_MAX_INCHES},{PNG_MAX_INCHES}")
    if not is_large(diagram):
        data: bytes = graph.pipe(format=format)
        return data
    source = graph.source.encode("utf-8")
    try:
        return _run("dot", format, source, LARGE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        return _run(FALLBACK_ENGINE, format, source, FALLBACK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DiagramTimeout(
            f"Graphviz could not lay out {diagram.title} ({len(diagram.by_path)} states) in "
            f"{LARGE_TIMEOUT_S + FALLBACK_TIMEOUT_S:g}s; draw it as dot or mermaid text instead"
        ) from None


def _run(engine: str, format: str, source: bytes, timeout: float) -> bytes:
    """Graphviz's ``engine`` program on ``source``, killed after ``timeout`` seconds
    (``subprocess.TimeoutExpired``); errors as the ``graphviz`` package raises them."""
    cmd = [engine, f"-T{format}"]
    try:
        proc = subprocess.run(cmd, input=source, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise graphviz.ExecutableNotFound(cmd) from None
    if proc.returncode:
        raise graphviz.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc.stdout
