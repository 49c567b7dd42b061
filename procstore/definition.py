"""The procedure document schema, as pydantic models.

A procedure document is plain data (JSON or YAML).

Example:
    ```json
    {"name": "deploy_workflow", "version": "1.0", "description": "optional text",
     "definition": {"initial_state": "validate",
                    "states": {"validate": {"action": {...}, "transitions": [...]},
                               "done": {}}}}
    ```

These models check the *shape* of a document; `Procedure.model_json_schema()` is its JSON
Schema. Rules that span several places (targets that exist and are unambiguous, where each
field may go, reachability, allowed modules, guards) live in `procstore.validation`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    field_validator,
)

#: A state's name: non-empty, without `.` (dots separate nested state paths).
StateName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^.]+$")]
#: A transition's target: a state's name, or the dotted path of a nested state.
StatePath = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^.]+(\.[^.]+)*$")]
#: A key of the execution context that an action's return value is stored under.
ResultKey = Annotated[str, Field(min_length=1, max_length=200)]


class _Schema(BaseModel):
    """Base of every schema model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The longest duration a definition may give, in milliseconds: a day. Also the longest retry
#: delay when a policy sets no `max_delay_ms`.
MAX_DURATION_MS = 86_400_000
#: A duration in milliseconds: positive, at most a day.
Milliseconds = Annotated[float, Field(gt=0, le=MAX_DURATION_MS)]


class _ActionBase(_Schema):
    result: ResultKey | None = Field(
        default=None,
        description="Where the action's return value is stored: a context key "
        "(context[result], even with dots in it), or a path into the context starting with $ "
        "(`$.results.step1`: the objects on the way are created).",
    )
    timeout_ms: Milliseconds | None = Field(
        default=None,
        description="Bound on each attempt; an attempt that runs longer is cancelled and fails "
        "with the error type Timeout (retryable).",
    )


class _DataAction(_ActionBase):
    """An action that takes `args` and whose result can be narrowed by `result_selector`."""

    args: dict[str, JsonValue] | None = Field(
        default=None,
        description="A template rendered at each attempt: constants, and keys ending in `.$` "
        "whose value is a path (`$.order.id` into the context, `$$.execution.id` into the "
        "execution's facts). A function receives it as keyword arguments.",
    )
    result_selector: dict[str, JsonValue] | None = Field(
        default=None,
        description="A template applied to the return value before it is stored or recorded; "
        "inside it `$` is the return value.",
    )


class NoopAction(_DataAction):
    """Does nothing and succeeds; with `args`, returns them rendered (Step Functions' Pass)."""

    type: Literal["noop"]


class LogAction(_ActionBase):
    """Writes `message` to the history (a `log` record) and to the `procstore` logger."""

    type: Literal["log"]
    message: str


class SleepAction(_ActionBase):
    """Waits `ms` milliseconds (without blocking other executions)."""

    type: Literal["sleep"]
    ms: Annotated[float, Field(ge=0, le=MAX_DURATION_MS)]


class FailAction(_ActionBase):
    """Always raises `procstore.ActionFailed` with `message` (default: `fail action`)."""

    type: Literal["fail"]
    message: str | None = None


class FunctionAction(_DataAction):
    """Calls host code: `module` + `function` (the module must be allowed by the store), or
    `function` alone naming a callable registered with `@store.action(name)`; rendered `args`
    are passed as keyword arguments: `fn(context, **args)` (or `fn(context, info, **args)`)."""

    type: Literal["function"]
    module: Annotated[str, Field(min_length=1)] | None = None
    function: Annotated[str, Field(min_length=1)]


#: Every action type, told apart by its `type` field.
Action = Annotated[
    NoopAction | LogAction | SleepAction | FailAction | FunctionAction,
    Field(discriminator="type"),
]
ACTION_TYPES = ("noop", "log", "sleep", "fail", "function")


#: The name of a guard predicate registered with `@store.guard(name)`.
GuardName = Annotated[str, Field(min_length=1, max_length=200)]


#: The most error names one `errors` list may give (far more than a real list names; it bounds
#: the work of matching one failure).
MAX_ERROR_NAMES = 1000
#: The name that matches every error in `errors` (Step Functions' `States.ALL`).
CATCH_ALL = "*"
#: An error type's name: an exception class (matched with its bases), `Timeout`, a failure
#: terminal's `error`, or `*` (every error, alone in its list).
ErrorName = Annotated[str, Field(min_length=1, max_length=200)]


def _catch_all_alone(names: tuple[str, ...]) -> tuple[str, ...]:
    if CATCH_ALL in names and len(names) > 1:
        raise ValueError(f'"{CATCH_ALL}" matches every error: it must be alone in its list')
    return names


#: A list of error names (see `ErrorName`).
ErrorNames = Annotated[
    tuple[ErrorName, ...],
    Field(max_length=MAX_ERROR_NAMES),
    AfterValidator(_catch_all_alone),
]


def catches_every_error(errors: tuple[str, ...] | None) -> bool:
    """Whether an `errors` list (absent, or `["*"]`) matches every error."""
    return errors is None or CATCH_ALL in errors


def matches_error(errors: tuple[str, ...] | None, types: tuple[str, ...] | list[str]) -> bool:
    """Whether `errors` names one of `types` (an error's class and its bases' names), or
    matches every error."""
    if errors is None or CATCH_ALL in errors:
        return True
    return any(name in errors for name in types)


class TransitionDef(_Schema):
    """On `event`, go to `target` — if its guards pass.

    Transitions on the same event are tried in document order; the first whose guards all pass
    fires.
    """

    event: Annotated[str, Field(max_length=200)]
    target: StatePath = Field(
        description="A sibling's or a top-level state's name, or any state's dotted path."
    )
    guard: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None,
        description="An expression over the context's keys, `result` (the state's last action "
        "result), `error` (its last error: type and message) and `event` (the event handled: "
        "`name` and `data`) that must be true, e.g. `amount < 1000`.",
    )
    errors: ErrorNames | None = Field(
        default=None,
        description="Only on `event: error`: the error types it catches, matched on the "
        "error's class and its bases like `retry.errors` (`Timeout` for a timeout, a failure "
        'terminal\'s `error` name); `["*"]` or absent: every error.',
    )
    conditions: tuple[GuardName, ...] = Field(
        default=(), description="Registered predicates that must all return true."
    )
    unless: tuple[GuardName, ...] = Field(
        default=(), description="Registered predicates that must all return false."
    )
    assign: dict[str, Any] | None = Field(
        default=None,
        description="Data stored into the context when the transition fires: a template "
        "(keys ending in `.$` take the value of a path: `$.` the context, `$$.event.data` the "
        "event's data) whose keys become top-level context keys, e.g. "
        '`{"decision.$": "$$.event.data"}`. A path that names nothing blocks the transition.',
    )
    output: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None,
        description="A path into the context (`$.order`): when the transition fires (after "
        "`assign`), the object there becomes the whole context (Step Functions' OutputPath). "
        "A path that names nothing, or names no object, blocks the transition.",
    )


class RetryPolicy(_Schema):
    """Re-run a failed action, with exponential backoff (Step Functions' defaults).

    The delay before attempt `n + 1` is `min(interval_ms * backoff_rate ** (n - 1),
    max_delay_ms)` (`max_delay_ms` defaults to a day); with `jitter: full` it is uniform in
    `[0, that]`.
    """

    max_attempts: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, description="Every attempt counts, the first included."
    )
    interval_ms: Annotated[float, Field(ge=0, le=MAX_DURATION_MS)] = 1000
    backoff_rate: Annotated[float, Field(ge=1, le=100)] = 2.0
    max_delay_ms: Milliseconds | None = None
    jitter: Literal["full", "none"] = "none"
    errors: ErrorNames | None = Field(
        default=None,
        description="Exception class names (matched on the class and its bases) and `Timeout` "
        'that this policy retries; absent or `["*"]`: every error.',
    )

    def delay_ms(self, failed_attempt: int) -> float:
        """The delay, before jitter, after attempt `failed_attempt` (1-based) failed: never
        more than `max_delay_ms`, or a day (`MAX_DURATION_MS`) when that is not set."""
        cap = self.max_delay_ms if self.max_delay_ms is not None else MAX_DURATION_MS
        exponent = failed_attempt - 1
        if self.interval_ms == 0 or exponent == 0:
            return min(self.interval_ms, cap)
        # Compared in log space first: `backoff_rate ** exponent` overflows a float long before
        # `max_attempts` runs out (100 ** 155), and past the cap its value does not matter.
        if exponent * math.log(self.backoff_rate) > math.log(cap / self.interval_ms) + 1:
            return cap
        return min(self.interval_ms * self.backoff_rate**exponent, cap)


#: The most items of one map state that run at once (its `max_concurrency` may not exceed it,
#: and a map that sets none runs this many): each is an execution of its own.
MAX_MAP_CONCURRENCY = 100
#: The most items one map state takes: its list is refused (the event `error`, type
#: `MapItemsInvalid`) when longer, so that a list in the data cannot start unbounded work.
MAX_MAP_ITEMS = 10_000


class MapDef(_Schema):
    """A map state's item sub-procedure (Step Functions' Map): one child execution per item of
    a list in the context, at most `max_concurrency` at once; the state gets `done` when every
    item ended within the tolerated failures, otherwise `error` (type `MapFailed`)."""

    items_path: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="A path to the list in the context, e.g. `$.orders` (ItemsPath)."
    )
    item_selector: Any = Field(
        default=None,
        description="A template for each item's start context (ItemSelector): keys ending in "
        "`.$` take the value of a path; `$$.map.item` and `$$.map.index` are the item and its "
        'index, `$` the parent\'s context. Default: `{"item": <item>, "index": <i>}`.',
    )
    initial_state: StateName = Field(description="The item's first state.")
    states: Annotated[dict[StateName, StateDef], Field(min_length=1)] = Field(
        description="The item's states, like a definition's (inline item sub-procedure)."
    )
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_MAP_CONCURRENCY)] | None = Field(
        default=None,
        description="The most items running at once (MaxConcurrency); default and at most "
        "MAX_MAP_CONCURRENCY.",
    )
    result: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None,
        description="A context path (`$.results`) that receives the items' outputs, a list in "
        "the items' order (ResultPath).",
    )
    output_path: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None,
        description="Which part of an item's final context is its output (`$.total`); "
        "default the whole context.",
    )
    tolerated_failures: Annotated[int, Field(ge=0, le=MAX_MAP_ITEMS)] | None = Field(
        default=None,
        description="How many items may fail with the map still `done` "
        "(ToleratedFailureCount). With neither this nor the percentage, no item may fail; "
        "with both, exceeding either fails the map.",
    )
    tolerated_failure_percentage: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None,
        description="The share of the items, in %, that may fail with the map still `done` "
        "(ToleratedFailurePercentage).",
    )


#: The longest `cause` a failure terminal may give, in characters.
MAX_CAUSE_LENGTH = 10_000
#: The most retry policies one `retry` list may give.
MAX_RETRY_POLICIES = 20


def _catch_all_last(policies: tuple[RetryPolicy, ...]) -> tuple[RetryPolicy, ...]:
    for i, policy in enumerate(policies[:-1]):
        if catches_every_error(policy.errors):
            raise ValueError(
                f"policy {i} retries every error, so the policies after it never apply: "
                "put it last, or give it errors"
            )
    return policies


def _one_or_list(value: object) -> str:
    return "policies" if isinstance(value, list | tuple) else "policy"


#: `retry`: one policy, or a list of them matched in order against each failure.
Retry = Annotated[
    Annotated[RetryPolicy, Tag("policy")]
    | Annotated[
        tuple[RetryPolicy, ...],
        Field(min_length=1, max_length=MAX_RETRY_POLICIES),
        AfterValidator(_catch_all_last),
        Tag("policies"),
    ],
    Discriminator(_one_or_list),
]
#: The tags of `Retry`'s two forms (not part of a JSON path).
RETRY_FORMS = ("policy", "policies")


def retry_policies(retry: RetryPolicy | tuple[RetryPolicy, ...] | None) -> tuple[RetryPolicy, ...]:
    """`retry` as a list of policies (one policy is a list of one; none, an empty list)."""
    if retry is None:
        return ()
    return (retry,) if isinstance(retry, RetryPolicy) else retry


#: The longest a `wait` state may wait, in seconds: 366 days (a `seconds`, `ms` or
#: `seconds_path` value, or a `timestamp` that far ahead, is refused).
MAX_WAIT_SECONDS = 31_622_400
#: A wait's length in seconds: from 0 up to `MAX_WAIT_SECONDS`.
WaitSeconds = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)]


class WaitDef(_Schema):
    """How long a `wait` state waits: exactly one of a fixed duration (`seconds` or `ms`), an
    instant (`timestamp`), or a duration or an instant read from the context (`seconds_path`,
    `timestamp_path`). When the wait is over the state's event is `success`."""

    seconds: WaitSeconds | None = Field(default=None, description="Wait this many seconds.")
    ms: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS * 1000)] | None = Field(
        default=None, description="Wait this many milliseconds."
    )
    timestamp: str | None = Field(
        default=None,
        description="Wait until this instant: an RFC 3339 timestamp with its offset, e.g. "
        "`2026-12-24T18:00:00Z` (one already past ends the wait at once).",
    )
    seconds_path: str | None = Field(
        default=None,
        description="A path into the context (`$.delay`) naming the number of seconds to wait.",
    )
    timestamp_path: str | None = Field(
        default=None,
        description="A path into the context (`$.order.ship_at`) naming the RFC 3339 "
        "timestamp to wait until.",
    )

    @field_validator("timestamp")
    @classmethod
    def _timestamp_is_rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            parse_timestamp(value)
        return value

    @property
    def given(self) -> tuple[str, ...]:
        """The names of the fields that are set (a valid wait sets exactly one)."""
        return tuple(name for name in WAIT_FIELDS if getattr(self, name) is not None)


#: The fields of a `wait`, of which exactly one must be given.
WAIT_FIELDS = ("seconds", "ms", "timestamp", "seconds_path", "timestamp_path")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp (`2026-12-24T18:00:00Z`, `2026-12-24T19:00:00.5+01:00`) as an
    aware datetime.

    Raises:
        ValueError: it is not one, or it has no offset (its instant would be unknown).
    """
    try:
        instant = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{text!r} is not an RFC 3339 timestamp (e.g. 2026-12-24T18:00:00Z)"
        ) from None
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} has no offset: add Z (UTC) or e.g. +01:00")
    return instant


class ChoiceRule(_Schema):
    """One rule of a `choice` state: go to `target` if `guard` is true."""

    guard: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="An expression over the context's keys, as a transition's guard."
    )
    target: StatePath = Field(
        description="A sibling's or a top-level state's name, or any state's dotted path."
    )


class StateDef(_Schema):
    """One state: a *leaf* (it may run an action), a *compound* state (`initial_state` and
    `states`: it is in exactly one child at a time) or a *parallel* state (`parallel`: it is
    in every region at once). Two kinds of leaf do something else than run an action: a
    *wait* state (`wait`) waits, a *choice* state (`choice` and `default`) routes at once.

    A state without transitions is terminal in its parent: at the top it ends the execution;
    inside a compound state it completes that state (event `done`); inside a region it
    completes the region, and a parallel state gets `done` when every region completed.
    """

    description: str | None = None
    action: Action | None = None
    retry: Retry | None = Field(
        default=None,
        description="Re-run the failed action: one policy, or a list tried in order; the first "
        "whose `errors` match the failure decides, with its own attempt budget.",
    )
    timeout_ms: Milliseconds | None = Field(
        default=None,
        description="Bound on the whole stay in the state (action, retries, waiting for an "
        "event, everything inside a compound state); when it runs out the action is cancelled "
        "and the event `timeout` fires.",
    )
    compensate: Action | None = Field(
        default=None,
        description="Undoes this state's completed action when the execution fails or is "
        "rolled back.",
    )
    compensate_retry: Retry | None = Field(
        default=None,
        description="Re-run a failed compensation: one policy, or a list tried in order (like "
        "`retry`).",
    )
    transitions: tuple[TransitionDef, ...] = ()
    callback: bool = Field(
        default=False,
        description="For a leaf that waits for an outside system (Step Functions' "
        "`.waitForTaskToken`): entering it makes a callback token (`$$.token`, the action's "
        "`info.token`); the action's success does not leave the state: "
        "`store.complete_callback(token, data)` fires `success` with that data, "
        "`store.fail_callback(token, error, cause)` fires `error`.",
    )
    outcome: Literal["success", "failure"] | None = Field(
        default=None,
        description="For a terminal leaf: `failure` makes ending here a failure (the "
        "execution's status is failed; inside a compound state its parent gets `error` "
        "instead of `done`). Default: success.",
    )
    error: ErrorName | None = Field(
        default=None,
        description="For a failure terminal: the error's name (the execution's error type; "
        "what an enclosing state's `error` transitions match with `errors`).",
    )
    cause: Annotated[str, Field(max_length=MAX_CAUSE_LENGTH)] | None = Field(
        default=None, description="For a failure terminal: why, in words (the error's message)."
    )
    initial_state: StateName | None = Field(
        default=None, description="For a compound state: the child entered first."
    )
    states: Annotated[dict[StateName, StateDef], Field(min_length=1)] | None = Field(
        default=None, description="For a compound state: its children by name."
    )
    parallel: Annotated[dict[StateName, RegionDef], Field(min_length=2)] | None = Field(
        default=None,
        description="For a parallel state: its regions by name (at least two), all active at once.",
    )
    map: MapDef | None = Field(
        default=None,
        description="For a map state: one child execution of the inline item states per item "
        "of a list; the state gets `done` when they ended (see MapDef).",
    )
    wait: WaitDef | None = Field(
        default=None,
        description="A wait state: it waits as this says, then its event is `success`. "
        "Without an action, states or regions.",
    )
    choice: Annotated[tuple[ChoiceRule, ...], Field(min_length=1)] | None = Field(
        default=None,
        description="A choice state: on entry it goes at once to the target of the first rule "
        "whose guard is true, else to `default`. Without an action or transitions.",
    )
    default: StatePath | None = Field(
        default=None, description="For a choice state: where to go when no rule's guard is true."
    )

    @property
    def is_terminal(self) -> bool:
        """A state with no outgoing transitions is terminal in its parent."""
        return not self.transitions

    @property
    def is_compound(self) -> bool:
        return self.states is not None

    @property
    def is_parallel(self) -> bool:
        return self.parallel is not None

    @property
    def is_leaf(self) -> bool:
        return self.states is None and self.parallel is None

    @property
    def is_map(self) -> bool:
        """A map state: a leaf of its machine whose work is its items' child executions."""
        return self.map is not None

    @property
    def is_failure(self) -> bool:
        return self.outcome == "failure"


class RegionDef(_Schema):
    """One region of a parallel state: its own initial state and states."""

    initial_state: StateName
    states: Annotated[dict[StateName, StateDef], Field(min_length=1)]


class Definition(_Schema):
    """The state machine: where to start and the states by name."""

    initial_state: StateName
    states: Annotated[dict[StateName, StateDef], Field(min_length=1)]
    timeout_ms: Milliseconds | None = Field(
        default=None,
        description="Bound on the whole execution: when it runs out, what runs is cancelled "
        "and the execution fails with the error type `Timeout` (compensating what completed).",
    )

    @property
    def is_flat(self) -> bool:
        """No compound or parallel states: compiled to the (faster) flat machine."""
        return all(state.is_leaf for state in self.states.values())


class Procedure(_Schema):
    """A complete, versioned procedure document."""

    name: Annotated[
        str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    ]
    """The procedure's name: a letter or digit, then letters, digits, `_`, `.` or `-`."""
    version: str
    """A PEP 440 version string (`"1.0"`, `"10.0"`); versions compare as versions."""
    description: str | None = None
    """Free text."""
    definition: Definition
    """The state machine: its initial state and its states."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_version(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError('must be a string such as "1.0" (quote it in YAML)')
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"{value!r} is not a version (expected e.g. 1.0, 2.1.3)") from None
        return value

    @property
    def parsed_version(self) -> Version:
        """The version as a comparable `packaging.version.Version` (`10.0 > 2.0`)."""
        return Version(self.version)


StateDef.model_rebuild()
