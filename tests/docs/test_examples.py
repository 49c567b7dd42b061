"""Every procedure in examples/ validates and runs to its expected final state.

A new example needs an entry in ``EXPECTED`` below: the modules its function actions use and, for
one or more start contexts, the states it goes through and how it ends. A run may also send events
from outside (a person's decision), each once the execution has reached a given state.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from procstore import Execution, ProcedureStore, Status
from procstore.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = sorted(
    p for pattern in ("*.json", "*.yaml", "*.yml") for p in EXAMPLES.glob(pattern)
)


@dataclass(frozen=True)
class Run:
    context: dict[str, Any]
    path: list[str]  # every state entered, in order
    status: Status
    context_subset: dict[str, Any] = field(default_factory=dict)
    # The states whose actions were compensated, in the order the compensations ran (None: not
    # checked; [] for none at all).
    compensated: list[str] | None = None
    # Action attempts recorded per state (only the states named are checked).
    attempts: dict[str, int] = field(default_factory=dict)
    # delay_ms of every "retry" record, in order (None: not checked).
    retry_delays: list[float] | None = None
    # History record kinds that must occur at least once.
    kinds: tuple[str, ...] = ()
    # Events sent from outside, in order: (state, event) sends event once the execution is in
    # state. A run that sends events is started with auto=True, so its outcome events fire by
    # themselves until it waits in that state.
    send: tuple[tuple[str, str], ...] = ()

    @property
    def final(self) -> str:
        return self.path[-1]


@dataclass(frozen=True)
class Example:
    allowed_modules: list[str]
    runs: list[Run]


async def wait_for_state(execution: Execution, state: str, timeout: float = 5.0) -> None:
    """Wait until ``execution`` is in ``state`` (as a person would, before deciding)."""
    async with asyncio.timeout(timeout):
        while execution.current != state:
            assert execution.state.status == Status("running"), (
                f"finished in {execution.current} before reaching {state}"
            )
            await asyncio.sleep(0.001)


TRIP = ["reserve_flight", "reserve_hotel", "reserve_car"]
IMPORT = ["fetch", "transform", "load", "done"]
CHECKS = ["checks", "checks.credit.run", "checks.fraud.run"]
CHECKS_PASSED = [*CHECKS, "checks.credit.ok", "checks.fraud.ok", "approved"]
FULFILMENT = ["fulfilment", "fulfilment.picking", "fulfilment.packing", "fulfilment.packed"]
CLAIM = {"employee": "dana", "amount": 420, "purpose": "conference hotel"}
LOAN = ["check_application", "score"]

EXPECTED: dict[str, Example] = {
    "deploy_workflow.json": Example(
        allowed_modules=["deploy_actions"],
        runs=[
            Run(
                {"env": "staging"},
                ["validate", "build", "deploy", "done"],
                Status("completed"),
                {"validation": "validated", "deployment": "deployed"},
            ),
            Run({"env": "prod"}, ["validate", "build", "deploy", "done"], Status("completed")),
            Run({"env": "nowhere"}, ["validate", "failed"], Status("failed")),
            Run(
                {"env": "staging", "fail_step": "build"},
                ["validate", "build", "rollback", "failed"],
                Status("failed"),
                {"rollback": "rolled_back"},
            ),
            Run(
                {"env": "staging", "fail_step": "deploy"},
                ["validate", "build", "deploy", "rollback", "failed"],
                Status("failed"),
            ),
        ],
    ),
    "book_trip.json": Example(
        allowed_modules=["book_trip_actions"],
        runs=[
            Run(
                {"destination": "Lisbon", "nights": 3},
                [*TRIP, "confirmed"],
                Status("completed"),
                {
                    "booked": ["flight", "hotel", "car"],
                    "itinerary": {"flight": "FL-LIS-1", "hotel": "HO-LIS-1", "car": "CA-LIS-1"},
                },
                compensated=[],
            ),
            # The car is sold out (not retried): the hotel, then the flight are cancelled.
            Run(
                {"destination": "Lisbon", "fail_at": "car"},
                [*TRIP, "not_booked"],
                Status("rolled_back"),
                {"booked": ["flight", "hotel"], "cancelled": ["hotel", "flight"]},
                compensated=["reserve_hotel", "reserve_flight"],
                attempts={"reserve_car": 1},
                kinds=("rollback",),
            ),
            Run(
                {"fail_at": "hotel"},
                ["reserve_flight", "reserve_hotel", "not_booked"],
                Status("rolled_back"),
                {"booked": ["flight"], "cancelled": ["flight"]},
                compensated=["reserve_flight"],
            ),
            # Nothing was booked, so nothing to undo: failed, not rolled_back.
            Run(
                {"fail_at": "flight"},
                ["reserve_flight", "not_booked"],
                Status("failed"),
                compensated=[],
            ),
            # A cancellation fails: the others still run, and the execution ends failed.
            Run(
                {"fail_at": "car", "fail_cancel": "hotel"},
                [*TRIP, "not_booked"],
                Status("failed"),
                {"cancelled": ["flight"]},
                compensated=["reserve_hotel", "reserve_flight"],
            ),
            # A dropped connection is retried: the trip is still booked.
            Run(
                {"flaky_at": "hotel"},
                [*TRIP, "confirmed"],
                Status("completed"),
                {"booked": ["flight", "hotel", "car"]},
                compensated=[],
                attempts={"reserve_flight": 1, "reserve_hotel": 2, "reserve_car": 1},
                retry_delays=[10.0],
            ),
        ],
    ),
    "data_import.json": Example(
        allowed_modules=["data_import_actions"],
        runs=[
            Run(
                {"source": "customers"},
                IMPORT,
                Status("completed"),
                {"fetch_attempts": 1, "rows": 2, "rejected": 1, "loaded": 2},
                retry_delays=[],
            ),
            # Three dropped connections, retried after 10, 20 and 30 ms (backoff, capped).
            Run(
                {"fail_times": 3},
                IMPORT,
                Status("completed"),
                {"fetch_attempts": 4, "loaded": 2},
                attempts={"fetch": 4},
                retry_delays=[10.0, 20.0, 30.0],
            ),
            # The retries run out: the error transition.
            Run(
                {"fail_times": 4},
                ["fetch", "failed"],
                Status("failed"),
                {"fetch_attempts": 4},
                attempts={"fetch": 4},
                retry_delays=[10.0, 20.0, 30.0],
            ),
            # An attempt that hangs is cut by the action's timeout_ms and retried.
            Run(
                {"hang_times": 1},
                IMPORT,
                Status("completed"),
                {"fetch_attempts": 2, "loaded": 2},
                attempts={"fetch": 2},
                retry_delays=[10.0],
            ),
            # Every attempt hangs: the state's timeout_ms runs out before the retries do.
            Run(
                {"hang_times": 99},
                ["fetch", "timed_out"],
                Status("failed"),
                kinds=("timeout",),
            ),
            # The guard `rows > 0` blocks load; the next success transition goes to empty.
            Run(
                {"source": "empty"},
                ["fetch", "transform", "empty"],
                Status("completed"),
                {"rows": 0},
                kinds=("log",),
            ),
            Run({"source": "invalid"}, ["fetch", "transform", "empty"], Status("completed")),
            # Not a retryable error: no retry.
            Run({"source": "nowhere"}, ["fetch", "failed"], Status("failed"), retry_delays=[]),
        ],
    ),
    "order_fulfilment.json": Example(
        allowed_modules=["order_fulfilment_actions"],
        runs=[
            # Both checks pass (credit first: it answers sooner), done -> approved; the
            # customer is charged; the fulfilment phase completes (done) -> shipped.
            Run(
                {"order_id": "A-1001", "total": 120},
                [*CHECKS_PASSED, "charge_payment", *FULFILMENT, "shipped"],
                Status("completed"),
                {
                    "credit_hold": 120,
                    "payment": "PAY-A-1001",
                    "charged": 120,
                    "picked": ["book", "lamp"],
                    "parcel": "parcel-A-1001",
                    "tracking": "TRK-A-1001",
                },
                compensated=[],
            ),
            # The fraud check fails after the credit check passed: the parallel state's error
            # -> rejected (a failure); the credit hold is released; nothing was charged.
            Run(
                {"order_id": "A-1002", "fraud_flag": True},
                [*CHECKS, "checks.credit.ok", "rejected"],
                Status("rolled_back"),
                {"credit_hold": 0},
                compensated=["checks.credit.run"],
                attempts={"charge_payment": 0},
                kinds=("rollback",),
            ),
            # The credit check refuses while the fraud check runs: that one is cancelled;
            # no hold was placed, so nothing to undo.
            Run(
                {"total": 5000},
                [*CHECKS, "rejected"],
                Status("failed"),
                compensated=[],
                attempts={"checks.credit.run": 1},
            ),
            # The card is declined: charge_payment's error -> payment_declined (a failure);
            # nothing was charged, so only the credit hold is released.
            Run(
                {"order_id": "A-1003", "card_declined": True},
                [*CHECKS_PASSED, "charge_payment", "payment_declined"],
                Status("rolled_back"),
                {"credit_hold": 0},
                compensated=["checks.credit.run"],
                attempts={"charge_payment": 1},
            ),
            # Picking answers Event("cancel"): fulfilment's cancel transition -> cancelled.
            # The saga unwinds newest first: the payment is refunded, then the hold released.
            Run(
                {"order_id": "A-1004", "out_of_stock": True},
                [*CHECKS_PASSED, "charge_payment", "fulfilment", "fulfilment.picking", "cancelled"],
                Status("rolled_back"),
                {"payment": "PAY-A-1004", "charged": 0, "refunded": 120, "credit_hold": 0},
                compensated=["charge_payment", "checks.credit.run"],
                kinds=("rollback",),
            ),
        ],
    ),
    "expense_approval.json": Example(
        allowed_modules=["expense_approval_actions"],
        runs=[
            # The approver approves: paid.
            Run(
                CLAIM,
                ["submit", "awaiting_approval", "pay", "paid"],
                Status("completed"),
                {
                    "request": {"id": "EXP-dana-420", "employee": "dana", "approver": "lee"},
                    "payment": {"to": "dana", "amount": 420, "reference": "PAY-dana"},
                },
                send=(("awaiting_approval", "approve"),),
            ),
            # The approver rejects: nothing is paid.
            Run(
                CLAIM,
                ["submit", "awaiting_approval", "rejected"],
                Status("completed"),
                attempts={"pay": 0},
                kinds=("log",),
                send=(("awaiting_approval", "reject"),),
            ),
            # The approver does not answer: escalated; the manager approves.
            Run(
                CLAIM,
                ["submit", "awaiting_approval", "escalated", "pay", "paid"],
                Status("completed"),
                {"escalated_to": "morgan"},
                kinds=("timeout",),
                send=(("escalated", "approve"),),
            ),
            # Nobody answers: escalated, then expired.
            Run(
                CLAIM,
                ["submit", "awaiting_approval", "escalated", "expired"],
                Status("failed"),
                {"escalated_to": "morgan"},
                attempts={"pay": 0},
                kinds=("timeout",),
            ),
            # Under 100: the guard `amount < 100` skips the approval.
            Run(
                {"employee": "sam", "amount": 40},
                ["submit", "pay", "paid"],
                Status("completed"),
                {"payment": {"to": "sam", "amount": 40, "reference": "PAY-sam"}},
            ),
            # Not a valid claim: rejected at once.
            Run({"amount": 0}, ["submit", "rejected"], Status("completed"), attempts={"pay": 0}),
            # Approved, but the bank stays unreachable: three attempts, then payment_failed.
            Run(
                {**CLAIM, "bank_down": True},
                ["submit", "awaiting_approval", "pay", "payment_failed"],
                Status("failed"),
                attempts={"pay": 3},
                retry_delays=[10.0, 20.0],
                send=(("awaiting_approval", "approve"),),
            ),
        ],
    ),
    "loan_routing.json": Example(
        allowed_modules=["loan_routing_actions"],
        runs=[
            # score >= 700 and amount < 50000: the first guard passes.
            Run(
                {"applicant": "alice", "amount": 20000},
                [*LOAN, "auto_approve"],
                Status("completed"),
                {"score": 760, "offer": {"amount": 20000, "rate_percent": 4.5, "term_months": 60}},
            ),
            # A good score but a large amount: the second guard, score >= 600.
            Run(
                {"applicant": "alice", "amount": 80000},
                [*LOAN, "manual_review"],
                Status("completed"),
                {"score": 760, "review_ticket": "REV-alice-80000"},
            ),
            Run(
                {"applicant": "bob", "amount": 20000},
                [*LOAN, "manual_review"],
                Status("completed"),
                {"score": 650},
            ),
            # Three missed payments take alice below 700.
            Run(
                {"applicant": "alice", "amount": 20000, "missed_payments": 3},
                [*LOAN, "manual_review"],
                Status("completed"),
                {"score": 685},
            ),
            # No guard passes: the unguarded transition.
            Run(
                {"applicant": "carol", "amount": 20000},
                [*LOAN, "decline"],
                Status("completed"),
                {"score": 540, "decline_reason": "score 540 below 600"},
            ),
            # Above the maximum: declined before scoring.
            Run(
                {"applicant": "alice", "amount": 300000},
                ["check_application", "decline"],
                Status("completed"),
                {"decline_reason": "amount above the 250000 maximum"},
            ),
            # Unknown to the bureau (LookupError, not retried).
            Run(
                {"applicant": "zed", "amount": 20000},
                [*LOAN, "failed"],
                Status("failed"),
                attempts={"score": 1},
            ),
            # Incomplete: no applicant.
            Run({"amount": 20000}, ["check_application", "failed"], Status("failed")),
        ],
    ),
}

RUNS = [
    pytest.param(path, run, id=f"{path.name}-{i}")
    for path in EXAMPLE_FILES
    for i, run in enumerate(EXPECTED[path.name].runs if path.name in EXPECTED else [])
]


def test_there_are_examples() -> None:
    assert EXAMPLE_FILES, f"no procedure documents in {EXAMPLES}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_has_an_expected_outcome(path: Path) -> None:
    assert path.name in EXPECTED, f"add {path.name} to EXPECTED in {__file__}"
    assert EXPECTED[path.name].runs, f"{path.name}: give at least one run in EXPECTED"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_has_a_readme(path: Path) -> None:
    readme = path.with_suffix(".md")
    assert readme.is_file(), f"add {readme.name}: what {path.name} shows, how to run it"
    text = readme.read_text(encoding="utf-8")
    # docs/examples.md includes these sections of each README.
    for section in ("about", "runs"):
        for marker in ("start", "end"):
            assert f"--8<-- [{marker}:{section}]" in text, f"{readme.name}: [{marker}:{section}]"
    assert f"procstore run examples/{path.name}" in text, readme.name


def test_every_expectation_has_its_example() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert set(EXPECTED) <= names, f"EXPECTED names missing examples: {set(EXPECTED) - names}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
async def test_example_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(path.parent))
    example = EXPECTED.get(path.name, Example([], []))
    store = ProcedureStore(allowed_modules=example.allowed_modules)
    procedure = await store.register(path)
    assert procedure.name
    assert await store.get(procedure.name, procedure.version) is not None


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_validates_through_the_cli(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    example = EXPECTED.get(path.name, Example([], []))
    args = ["validate", str(path)]
    for module in example.allowed_modules:
        args += ["--allow-module", module]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: ok"


@pytest.mark.parametrize(("path", "run"), RUNS)
async def test_example_runs_to_its_expected_end(
    path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(path.parent))
    store = ProcedureStore(allowed_modules=EXPECTED[path.name].allowed_modules)
    procedure = await store.register(path)
    execution = await store.start(
        procedure.name, procedure.version, run.context, auto=bool(run.send)
    )
    for state, event in run.send:
        await wait_for_state(execution, state)
        assert await execution.send(event), f"{event!r} did not fire in {state}"
    final = await execution.run_to_completion(timeout=10.0)

    assert final.current == run.final
    assert final.status == run.status
    assert [r.state for r in final.history if r.kind == "entered"] == run.path
    for key, value in run.context_subset.items():
        assert final.context.get(key) == value, key
    history = final.history
    if run.compensated is not None:
        assert [r.state for r in history if r.kind == "compensation"] == run.compensated
    for state, count in run.attempts.items():
        assert sum(r.kind == "action" and r.state == state for r in history) == count, state
    if run.retry_delays is not None:
        assert [r.delay_ms for r in history if r.kind == "retry"] == run.retry_delays
    for kind in run.kinds:
        assert any(r.kind == kind for r in history), f"no {kind!r} record"
    # The start context is kept, not replaced.
    for key, value in run.context.items():
        assert final.context[key] == value
