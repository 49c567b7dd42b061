"""How the Graphviz renderer draws states: its colours, the notes it writes, and the HTML-like
labels and attributes of a state's box (a leaf, or a cluster's title).

`procstore.diagrams.dot` lays the chart out; this module decides what one box looks like, for
the static chart and with an execution overlaid (see that module's docstring for the legend).
"""

from __future__ import annotations

import html

import graphviz

from procstore.describe import format_ms
from procstore.diagrams.model import CALLBACK_LINE, FAILED_NOTE, TIMES, Diagram, StateNode

FONT = "Helvetica,Arial,sans-serif"

INK = "#37474f"
MUTED = "#90a4ae"
SUCCESS_LINE, SUCCESS_FILL = "#2e7d32", "#e8f5e9"
FAILURE_LINE, FAILURE_FILL = "#c62828", "#fdecea"
ERROR_EDGE = "#c62828"
TIMEOUT_EDGE = "#ef6c00"
COMPENSATE = "#e65100"
ACTIVE_LINE, ACTIVE_FILL = "#1565c0", "#bbdefb"
VISITED_FILL = "#e3f2fd"
FAILED_FILL = "#ffcdd2"
HANDLED_LINE, HANDLED_FILL = "#a15c00", "#fff59d"
COMPENSATED_FILL = "#ffe0b2"
MISSING_LINE = "#9e9e9e"

#: The row that marks a copy of a state drawn more than once (see Box).
COPY_NOTE = "↩ copy (same state)"

#: The legend's explanation of the numbers on transitions that share an event.
ORDER_NOTE = "(1) (2) … on one event: tried in this order, the first whose guards pass fires"
#: The legend's explanation of a choice state's diamond.
CHOICE_NOTE = "◇ choice: its rules (1) (2) … are tried in order, else default"
#: What the overlay's colours mean, in the legend.
LEGEND_FAILED = "failed: the execution failed in this state"
LEGEND_HANDLED = "error handled: its error/timeout transition fired, as designed"
LEGEND_COMPENSATED = "compensated: its action was undone"


def h(text: str) -> str:
    """Escape text for an HTML-like label."""
    return html.escape(text, quote=True)


def table(rows: list[str]) -> str:
    body = "".join(f"<TR><TD>{row}</TD></TR>" for row in rows)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{body}</TABLE>>'


def bgcolor(fill: str | None) -> str:
    return "" if fill is None else f' BGCOLOR="{fill}"'


def small(text: str, color: str = INK, *, italic: bool = False, size: int = 9) -> str:
    inner = f"<I>{h(text)}</I>" if italic else h(text)
    return f'<FONT POINT-SIZE="{size}" COLOR="{color}">{inner}</FONT>'


def overlay_rows(state: StateNode, overlaid: bool) -> list[str]:
    if not overlaid:
        return []
    rows = []
    if state.visits:
        text = f"entered {state.visits}{TIMES}"
        if state.attempts > state.visits:
            text += f" · {state.attempts} attempts"
        rows.append(small(text, ACTIVE_LINE))
    if state.failed:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="{FAILURE_LINE}"><B>{FAILED_NOTE}</B></FONT>')
    for note in state.handled_notes:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="{HANDLED_LINE}"><B>{h(note)}</B></FONT>')
    if state.timed_out:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="{TIMEOUT_EDGE}"><B>timed out</B></FONT>')
    if state.compensated:
        rows.append(
            f'<FONT POINT-SIZE="9" COLOR="{COMPENSATE}"><B>compensated {state.compensated}{TIMES}'
            "</B></FONT>"
        )
    if state.compensation_failed:
        rows.append(
            f'<FONT POINT-SIZE="9" COLOR="{FAILURE_LINE}"><B>compensation failed</B></FONT>'
        )
    return rows


def leaf_label(state: StateNode, overlaid: bool, copy: bool = False) -> str:
    rows = [f'<FONT POINT-SIZE="12"><B>{h(state.name)}</B></FONT>']
    if copy:
        rows.append(small(COPY_NOTE, MUTED, italic=True))
    if state.kind == "missing":
        rows.append(small("no such state", FAILURE_LINE, italic=True))
        return table(rows)
    if state.kind == "choice":
        rows += overlay_rows(state, overlaid)
        return table(rows)
    if state.action is not None:
        rows.append(small(state.action, size=10))
    elif state.wait is not None:
        rows.append(small(state.wait, size=10))
    elif not state.terminal:
        rows.append(small("waits for an event", MUTED, italic=True))
    rows += _policy_rows(state)
    if state.terminal:
        if state.outcome == "failure":
            rows.append(small("end: failure", FAILURE_LINE, italic=True))
            if state.error is not None:
                rows.append(small(state.error, FAILURE_LINE))
        else:
            rows.append(small("end: success", SUCCESS_LINE, italic=True))
    rows += overlay_rows(state, overlaid)
    return table(rows)


def _policy_rows(state: StateNode) -> list[str]:
    """A leaf's retry policy, attempt and state timeouts and compensation, one row each."""
    rows: list[str] = []
    if state.retry is not None:
        rows.append(small(state.retry))
    if state.action_timeout_ms is not None:
        rows.append(small(f"attempt timeout {format_ms(state.action_timeout_ms)}"))
    if state.timeout_ms is not None:
        rows.append(small(f"state timeout {format_ms(state.timeout_ms)}"))
    if state.callback:
        rows.append(small(CALLBACK_LINE))
    if state.compensate is not None:
        rows.append(small(f"↺ {state.compensate}", COMPENSATE))
    return rows


def cluster_label(state: StateNode, overlaid: bool) -> str:
    if state.kind == "region":
        return table([f'<FONT POINT-SIZE="10" COLOR="{INK}"><I>{h(state.name)}</I></FONT>'])
    title = f'<FONT POINT-SIZE="12"><B>{h(state.name)}</B></FONT>'
    if state.kind == "parallel":
        title += small("  ‖ parallel", MUTED, italic=True)
    if state.kind == "map":
        title += small("  map: once per item", MUTED, italic=True)
    rows = [title]
    if state.map is not None:
        rows.append(small(state.map))
    if overlaid and state.items is not None:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="{ACTIVE_LINE}"><B>{h(state.items)}</B></FONT>')
    if state.timeout_ms is not None:
        rows.append(small(f"state timeout {format_ms(state.timeout_ms)}"))
    rows += overlay_rows(state, overlaid)
    return table(rows)


def leaf_attrs(state: StateNode, overlaid: bool, *, copy: bool = False) -> dict[str, str]:
    """A leaf's box; a ``copy`` of a state drawn more than once says so and is dashed."""
    attrs: dict[str, str] = {"label": leaf_label(state, overlaid, copy)}
    tooltip = state.description or state.path
    if copy:
        tooltip = f"{tooltip} ({COPY_NOTE})"
    attrs["tooltip"] = graphviz.escape(tooltip)
    line, fill = INK, "white"
    if state.kind == "missing":
        line = MISSING_LINE
        attrs["style"] = "rounded,dashed"
    if copy:
        attrs["style"] = "rounded,filled,dashed"
    if state.kind == "choice":
        attrs.update(shape="diamond", style="filled", margin="0.02")
    if state.terminal:
        attrs["peripheries"] = "2"
        if state.outcome == "failure":
            line, fill = FAILURE_LINE, FAILURE_FILL
        else:
            line, fill = SUCCESS_LINE, SUCCESS_FILL
    if overlaid:
        fill = _overlay_fill(state) or fill
        if state.active:
            line = ACTIVE_LINE
            attrs["penwidth"] = "3"
        elif state.failed:
            attrs["penwidth"] = "2"
    attrs["color"] = line
    attrs["fillcolor"] = fill
    return attrs


def _overlay_fill(state: StateNode) -> str | None:
    """The fill an execution drawn on top gives a leaf, by what matters most: it failed,
    handled an error, was compensated, is active, was visited; `None` when untouched."""
    if state.failed:
        return FAILED_FILL
    if state.handled:
        return HANDLED_FILL
    if state.compensated or state.compensation_failed:
        return COMPENSATED_FILL
    if state.active:
        return ACTIVE_FILL
    if state.visits:
        return VISITED_FILL
    return None


def legend_label(diagram: Diagram, overlaid: bool) -> str | None:
    """The legend's label: the line styles used, when there is more than the solid one, and,
    over an execution, what its failed, handled and compensated states' colours mean; `None`
    when there is nothing worth a legend."""
    kinds = {edge.kind for edge in diagram.transitions}
    rows: list[tuple[str, str | None]] = []  # (text, background)
    if kinds & {"normal", "done"}:
        rows.append((small("—— event (solid)"), None))
    if "error" in kinds:
        rows.append((small("- - - error", ERROR_EDGE), None))
    if "timeout" in kinds:
        rows.append((small("- - - timeout", TIMEOUT_EDGE), None))
    if len(diagram.compensation_order) > 1:
        rows.append((small("- - - undo: compensation order", COMPENSATE), None))
    if any(edge.order is not None and edge.rule == "transition" for edge in diagram.transitions):
        rows.append((small(ORDER_NOTE), None))
    if any(state.kind == "choice" for state in diagram.walk()):
        rows.append((small(CHOICE_NOTE), None))
    if any(state.boxes for state in diagram.walk()):
        rows.append((small(f"┆ dashed box, {COPY_NOTE}: drawn beside each source", MUTED), None))
    if overlaid:
        rows += _overlay_legend_rows(list(diagram.walk()))
    if len(rows) < 2:
        return None
    cells = "".join(f'<TR><TD ALIGN="LEFT"{bgcolor(fill)}>{text}</TD></TR>' for text, fill in rows)
    return (
        '<<TABLE BORDER="1" COLOR="#cfd8dc" CELLBORDER="0" CELLSPACING="0" '
        f'CELLPADDING="2">{cells}</TABLE>>'
    )


def _overlay_legend_rows(states: list[StateNode]) -> list[tuple[str, str | None]]:
    """The legend rows (text, background) for the fills an execution drawn on top used:
    failed, handled and compensated states."""
    rows: list[tuple[str, str | None]] = []
    if any(state.failed for state in states):
        rows.append((small(LEGEND_FAILED, FAILURE_LINE), FAILED_FILL))
    if any(state.handled for state in states):
        rows.append((small(LEGEND_HANDLED, HANDLED_LINE), HANDLED_FILL))
    if any(state.compensated for state in states):
        rows.append((small(LEGEND_COMPENSATED, COMPENSATE), COMPENSATED_FILL))
    return rows
