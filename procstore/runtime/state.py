"""What an execution knows about itself, in one place: the run state, with one reset, one
checkpoint and one restore.

`RunState` is the execution as a whole (status, context, active states, deadlines, the
compensation stack, a rollback under way); `LeafState` is what an active leaf knows while it is
active (its attempt, retry deadline, outcome, last result and error). A leaf's record is created
when the leaf is entered and dropped when it is left, so nothing of a visit outlives it.

The checkpoint is the JSON form of all of this, written with every commit. It carries its
format (`CHECKPOINT_FORMAT`); `RunState.restore` reads every format procstore has written,
the first of which had no ``format`` key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from procstore.jsondata import stand_in
from procstore.snapshot import Status

__all__ = ["CHECKPOINT_FORMAT", "LeafState", "MapProgress", "RunState"]

#: The format of the checkpoints this procstore writes. 0 (no ``format`` key) kept each kind of
#: per-leaf fact in a map of its own; 1 keeps one record per active leaf under ``leaves``; 2 adds
#: ``inbox``, the id of the last inbox command applied (0 in a restored format 0 or 1); 3 adds
#: each leaf's ``retries`` (failures counted per retry policy: a restored older leaf counts
#: all its failed attempts against its one policy) and ``error_types``, and the execution's
#: ``deadline`` (``timeout_ms``), ``error`` and ``compensating`` (a compensation's attempt,
#: retry counts and deadline; none of them in a restored older format).
CHECKPOINT_FORMAT = 3


@dataclass(slots=True)
class MapProgress:
    """Where a map state's items stand (in its `LeafState`, stored with every commit), so that
    after a crash it re-attaches to the children it started instead of starting them again.

    Attributes:
        count: How many items its list has.
        started: How many items were given a child (they are started in order, from 0).
        children: The child execution of each item started and not ended, by index.
        outputs: The output of each item that completed, by index.
        failed: The error of each item that failed, by index.
    """

    count: int
    started: int = 0
    children: dict[int, str] = field(default_factory=dict)
    outputs: dict[int, Any] = field(default_factory=dict)
    failed: dict[int, dict[str, str]] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "started": self.started,
            "children": {str(i): child for i, child in self.children.items()},
            "outputs": {str(i): output for i, output in self.outputs.items()},
            "failed": {str(i): error for i, error in self.failed.items()},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> MapProgress:
        return cls(
            count=int(data["count"]),
            started=int(data["started"]),
            children={int(i): str(child) for i, child in data["children"].items()},
            outputs={int(i): output for i, output in data["outputs"].items()},
            failed={int(i): dict(error) for i, error in data["failed"].items()},
        )


@dataclass(slots=True)
class LeafState:
    """An active leaf, for as long as it is active.

    Attributes:
        attempt: The number of the attempt in progress or next (retries), or `None`.
        running: An attempt is in flight.
        retry_at: When the next attempt starts (wall clock), while waiting to retry.
        acted: Its action has completed.
        outcome: `(event, failed)` of a finished action not yet acted on.
        pending: An outcome event waiting for a driver (`send()` or `run_to_completion()`).
        done: A terminal leaf whose work has completed.
        result: The last result of its action (guards' `result`).
        error: The last error of its action (guards' `error`).
        error_types: The names of that error's class and its bases (what `errors` match).
        retries: Per retry policy (by its index), the failed attempts it matched so far.
        token: The callback token of a leaf with ``callback`` (see
            `procstore.runtime.callbacks`): it is valid while the leaf is active.
        wait_until: A wait state's end (wall clock), worked out when it was entered.
        map: A map state's items, once it has read its list.
    """

    attempt: int | None = None
    running: bool = False
    retry_at: float | None = None
    acted: bool = False
    outcome: tuple[str, bool] | None = None
    pending: str | None = None
    done: bool = False
    result: Any = None
    error: dict[str, str] | None = None
    error_types: list[str] | None = None
    retries: tuple[int, ...] = ()  # immutable: most leaves never fail, and share the empty one
    token: str | None = None
    wait_until: float | None = None
    map: MapProgress | None = None

    def count_failure(self, policy: int) -> int:
        """Count a failed attempt against retry policy ``policy``; return its count now."""
        counts = [*self.retries, *[0] * (policy + 1 - len(self.retries))]
        counts[policy] += 1
        self.retries = tuple(counts)
        return counts[policy]

    def to_data(self) -> dict[str, Any]:
        """The stored form: only what differs from a fresh leaf (an attempt in flight is
        stored as the attempt to run again)."""
        data: dict[str, Any] = {}
        if self.attempt is not None:
            data["attempt"] = self.attempt
        if self.retry_at is not None:
            data["retry_at"] = self.retry_at
        if self.acted:
            data["acted"] = True
        if self.outcome is not None:
            data["outcome"] = list(self.outcome)
        if self.pending is not None:
            data["pending"] = self.pending
        if self.done:
            data["done"] = True
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        if self.map is not None:
            data["map"] = self.map.to_data()
        data.update(self._waiting_data())
        data.update(self._failure_data())
        return data

    def _waiting_data(self) -> dict[str, Any]:
        """The stored form of what a waiting leaf keeps: its callback token, its wait's end."""
        data: dict[str, Any] = {}
        if self.token is not None:
            data["token"] = self.token
        if self.wait_until is not None:
            data["wait_until"] = self.wait_until
        return data

    def _failure_data(self) -> dict[str, Any]:
        """The stored form of what retry policies and error transitions match on."""
        data: dict[str, Any] = {}
        if self.error_types is not None:
            data["error_types"] = self.error_types
        if self.retries:
            data["retries"] = list(self.retries)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> LeafState:
        outcome = data.get("outcome")
        return cls(
            attempt=int(data["attempt"]) if data.get("attempt") is not None else None,
            retry_at=float(data["retry_at"]) if data.get("retry_at") is not None else None,
            acted=bool(data.get("acted", False)),
            outcome=(str(outcome[0]), bool(outcome[1])) if outcome else None,
            pending=str(data["pending"]) if data.get("pending") is not None else None,
            done=bool(data.get("done", False)),
            result=data.get("result"),
            error=dict(data["error"]) if data.get("error") is not None else None,
            map=MapProgress.from_data(data["map"]) if data.get("map") is not None else None,
            error_types=[str(t) for t in data["error_types"]] if data.get("error_types") else None,
            retries=tuple(int(n) for n in data.get("retries", ())),
            token=str(data["token"]) if data.get("token") is not None else None,
            wait_until=float(data["wait_until"]) if data.get("wait_until") is not None else None,
        )


@dataclass(slots=True)
class RunState:
    """One execution's state (see the module's docstring).

    Attributes:
        start_context: The context it started with (a reset starts from a copy again).
        context: Its data, as actions see and change it.
        auto: It drives itself (`start(..., auto=True)`).
        status: Where it stands.
        closing: Failing, rolling back or cancelled: no more events.
        rollback: `(reason, status if nothing was undone)` of a rollback under way.
        active: The paths of every active state, at every level.
        leaves: A record per active leaf.
        deadlines: When each active state's `timeout_ms` runs out (wall clock).
        completed: The paths of the completed actions to compensate, oldest first.
        internal: Terminal leaves reached, `(leaf, failed)`, not yet processed.
        inbox: The id of the last command from the store's inbox applied to it (a client's
            event or cancel): stored with what the command did, so that after a crash a
            command is applied again exactly when its effect was not stored. A reset keeps it.
        deadline: When the definition's `timeout_ms` runs out (wall clock), or `None`.
        compensating: The compensation under way (the newest of `completed`): its attempt,
            its retry policies' counts and its retry deadline.
        error: Why it failed (`type` and `message`): a failure terminal's `error` and
            `cause`, `Timeout`, or the error nobody handled; `None` otherwise.
    """

    start_context: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    auto: bool = False
    status: Status = Status.RUNNING
    closing: bool = False
    rollback: tuple[str, str] | None = None
    active: set[str] = field(default_factory=set)
    leaves: dict[str, LeafState] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)
    # Tuples, the shared empty one while nothing is done or queued (most waiting executions).
    completed: tuple[str, ...] = ()
    internal: tuple[tuple[str, bool], ...] = ()
    inbox: int = 0
    deadline: float | None = None
    error: dict[str, str] | None = None
    compensating: LeafState | None = None

    @classmethod
    def fresh(cls, start_context: dict[str, Any], auto: bool) -> RunState:
        """A new execution's state: a copy of the start context, nothing active yet."""
        return cls(start_context, copy.deepcopy(start_context), auto)

    def reset(self) -> None:
        """Back to the start: a fresh copy of the start context, nothing active, running. The
        inbox cursor stays: the commands applied before the reset stay applied."""
        fresh = RunState.fresh(self.start_context, self.auto)
        fresh.inbox = self.inbox
        for name in RunState.__slots__:
            setattr(self, name, getattr(fresh, name))

    @property
    def running(self) -> bool:
        """Running and accepting events (not finished, not closing)."""
        return self.status is Status.RUNNING and not self.closing

    def context_data(self) -> dict[str, Any]:
        """The context as JSON data. An action may have put anything into it, so what JSON
        cannot hold is a readable stand-in (never an error)."""
        data = stand_in(self.context)
        if isinstance(data, dict):
            return data
        return {str(key): stand_in(value) for key, value in self.context.items()}

    # -- the stored form ------------------------------------------------------------------------

    def checkpoint(self, configuration: Any, order: dict[str, int]) -> dict[str, Any]:
        """Everything needed to resume the execution elsewhere, as JSON data.

        Args:
            configuration: The machine's view of the active leaves (a path, or a list).
            order: Document order of the states, for stable listings.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "auto": self.auto,
            "status": self.status.value,
            "closing": self.closing,
            "rollback": list(self.rollback) if self.rollback else None,
            "active": sorted(self.active, key=order.__getitem__),
            "configuration": configuration,
            "context": self.context_data(),
            "start_context": self.start_context,
            "leaves": {path: leaf.to_data() for path, leaf in self.leaves.items()},
            "deadlines": dict(self.deadlines),
            "completed": list(self.completed),
            "inbox": self.inbox,
            "deadline": self.deadline,
            "error": self.error,
            "compensating": self.compensating.to_data() if self.compensating else None,
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], leaf_paths: set[str]) -> tuple[RunState, Any]:
        """The state a checkpoint of any known format describes, and its configuration.

        Args:
            snapshot: The checkpoint.
            leaf_paths: The procedure's leaf states (format 0 kept facts about left ones).

        Raises:
            ValueError: the format is unknown, or the checkpoint is not an object of it.
            KeyError: a field it needs is missing.
        """
        version = snapshot.get("format", 0)
        if version == 0:
            snapshot = _from_format_0(snapshot, leaf_paths)
        if version in (0, 1):  # before the inbox: no command applied
            snapshot = {**snapshot, "inbox": 0}
        if version in (0, 1, 2):
            snapshot = _from_format_2(snapshot)
        elif version != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {version!r} is unknown to this procstore")
        if not isinstance(snapshot["context"], dict):
            raise ValueError("its snapshot's context is not an object")
        rollback = snapshot["rollback"]
        state = cls(
            start_context=snapshot["start_context"],
            context=snapshot["context"],
            auto=bool(snapshot["auto"]),
            status=Status(snapshot["status"]),
            closing=bool(snapshot["closing"]),
            rollback=(str(rollback[0]), str(rollback[1])) if rollback else None,
            active=set(snapshot["active"]),
            leaves={path: LeafState.from_data(data) for path, data in snapshot["leaves"].items()},
            deadlines={path: float(at) for path, at in snapshot["deadlines"].items()},
            completed=tuple(str(path) for path in snapshot["completed"]),
            inbox=int(snapshot["inbox"]),
            deadline=float(snapshot["deadline"]) if snapshot["deadline"] is not None else None,
            error=dict(snapshot["error"]) if snapshot["error"] is not None else None,
            compensating=(
                LeafState.from_data(snapshot["compensating"])
                if snapshot["compensating"] is not None
                else None
            ),
        )
        return state, snapshot["configuration"]


def _from_format_2(old: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of format 2 (or older, brought to 2) as format 3: no execution deadline or
    error, and a leaf's failed attempts all counted against its one retry policy."""
    leaves = {}
    for path, leaf in old["leaves"].items():
        failed = int(leaf.get("attempt") or 1) - 1
        leaves[path] = {**leaf, "retries": [failed]} if failed > 0 else leaf
    return {**old, "leaves": leaves, "deadline": None, "error": None, "compensating": None}


#: How format 0 kept each per-leaf fact: its map, and the fact's name in a format-1 leaf
#: record. Maps of values give the value; ``acted`` and ``done_leaves`` were lists of paths.
_FORMAT_0_MAPS = (
    ("attempts", "attempt"),
    ("retry_at", "retry_at"),
    ("outcomes", "outcome"),
    ("pending", "pending"),
    ("results", "result"),
    ("errors", "error"),
)
_FORMAT_0_FLAGS = (("acted", "acted"), ("done_leaves", "done"))


def _from_format_0(old: dict[str, Any], leaf_paths: set[str]) -> dict[str, Any]:
    """A format-0 checkpoint (one map per per-leaf fact, kept even for leaves left) as
    format 1 (a record per active leaf)."""
    leaves: dict[str, dict[str, Any]] = {}
    for path in (p for p in old["active"] if p in leaf_paths):
        leaf: dict[str, Any] = {}
        for old_map, fact in _FORMAT_0_MAPS:
            if old[old_map].get(path) is not None:
                leaf[fact] = old[old_map][path]
        for old_list, fact in _FORMAT_0_FLAGS:
            if path in old[old_list]:
                leaf[fact] = True
        leaves[path] = leaf
    return {
        "auto": old["auto"],
        "status": old["status"],
        "closing": old["closing"],
        "rollback": old["rollback"],
        "active": old["active"],
        "configuration": old["fsm_state"],
        "context": old["context"],
        "start_context": old["start_context"],
        "leaves": leaves,
        "deadlines": old["deadlines"],
        "completed": old["completed"],
    }
