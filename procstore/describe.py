"""A state's action, compensation and retry policy in a few words, for people to read.

One wording, used wherever a procedure is shown: the diagrams' state boxes and ``procstore
show``. Text that comes from the document (a log or fail message) is folded onto one line and
shortened, so a label stays a label; the document itself (``procstore show --json``) has it
whole.
"""

from __future__ import annotations

import re

from procstore.definition import (
    Action,
    FailAction,
    FunctionAction,
    LogAction,
    MapDef,
    NoopAction,
    RetryPolicy,
    SleepAction,
    WaitDef,
)

__all__ = [
    "TIMES",
    "describe_action",
    "describe_compensation",
    "describe_map",
    "describe_retry",
    "describe_wait",
    "format_ms",
]

#: The multiplication sign, in backoff rates (and in the diagrams, how many times an edge fired).
TIMES = "\N{MULTIPLICATION SIGN}"

#: How many characters of a log or fail message a description keeps (then ``…``).
MESSAGE_SHOWN_CHARS = 36

_WHITESPACE = re.compile(r"\s+")


def format_ms(ms: float) -> str:
    """A duration for a label: ``250ms``, ``1.5s``, ``2min``, ``1h``."""
    if ms < 1000:
        return f"{ms:g}ms"
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    if ms < 3_600_000:
        return f"{ms / 60_000:g}min"
    return f"{ms / 3_600_000:g}h"


def _short(text: str, limit: int = MESSAGE_SHOWN_CHARS) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _function_name(action: FunctionAction) -> str:
    return action.function if action.module is None else f"{action.module}.{action.function}"


def describe_action(action: Action) -> str:
    """The action in a few words: ``function deploy_actions.build → artifact``,
    ``log “text”``, ``sleep 200ms``, ``fail “why”``, ``noop``."""
    if isinstance(action, FunctionAction):
        text = f"function {_function_name(action)}"
    elif isinstance(action, LogAction):
        text = f"log “{_short(action.message)}”"
    elif isinstance(action, SleepAction):
        text = f"sleep {format_ms(action.ms)}"
    elif isinstance(action, FailAction):
        text = "fail" if action.message is None else f"fail “{_short(action.message)}”"
    else:
        assert isinstance(action, NoopAction)
        text = "noop"
    if action.result is not None:
        text += f" → {action.result}"
    return text


def describe_compensation(action: Action) -> str:
    """``compensate: module.function`` (or the action's type and argument)."""
    if isinstance(action, FunctionAction):
        return f"compensate: {_function_name(action)}"
    return f"compensate: {describe_action(action)}"


def describe_retry(retry: RetryPolicy | tuple[RetryPolicy, ...]) -> str:
    """``retry 4x 200ms``, then the backoff rate, ``≤`` the cap, ``jitter``, and
    ``on`` the retried errors; a list of policies, each so, in order, joined by ``; ``."""
    if not isinstance(retry, RetryPolicy):
        return "; ".join(describe_retry(policy) for policy in retry)
    text = f"retry {retry.max_attempts}x {format_ms(retry.interval_ms)}"
    if retry.backoff_rate != 1:
        text += f"{TIMES}{retry.backoff_rate:g}"
    if retry.max_delay_ms is not None:
        text += f" ≤{format_ms(retry.max_delay_ms)}"
    if retry.jitter == "full":
        text += " jitter"
    if retry.errors:
        text += " on " + ", ".join(retry.errors)
    return text


def describe_wait(wait: WaitDef) -> str:
    """``wait 10s``, ``wait until 2026-12-24T18:00:00Z``, ``wait $.delay s``, ``wait until
    $.ship_at``."""
    if wait.seconds is not None:
        return f"wait {format_ms(wait.seconds * 1000)}"
    if wait.ms is not None:
        return f"wait {format_ms(wait.ms)}"
    if wait.timestamp is not None:
        return f"wait until {wait.timestamp}"
    if wait.seconds_path is not None:
        return f"wait {_short(wait.seconds_path)} s"
    return f"wait until {_short(wait.timestamp_path or '')}"


def describe_map(spec: MapDef) -> str:
    """A map state's items in a few words: ``each of $.orders · 2 at once · → $.results``."""
    parts = [f"each of {spec.items_path}"]
    if spec.max_concurrency is not None:
        parts.append(f"{spec.max_concurrency} at once")
    if spec.tolerated_failures is not None:
        parts.append(f"≤{spec.tolerated_failures} failures")
    if spec.tolerated_failure_percentage is not None:
        parts.append(f"≤{spec.tolerated_failure_percentage:g}% failures")
    if spec.result is not None:
        parts.append(f"→ {spec.result}")
    return " · ".join(parts)
