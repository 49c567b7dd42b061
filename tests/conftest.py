"""Shared fixtures and helpers.

Every test builds its own :class:`procstore.ProcedureStore` (the ``store`` fixture): there is no
global registry to leak between tests.  Helpers are imported by the test modules as
``from tests.conftest import ...``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pytest

from procstore import ProcedureStore
from tests.clock import ManualClock

SPEC_MODULE = "tests.spec_actions"

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    # pyproject runs pytest with --strict-markers; SPEC-007's @moduletag :integration.
    config.addinivalue_line("markers", "integration: SPEC-007 Task 3 integration tests")


@pytest.fixture
def store() -> ProcedureStore:
    """A fresh in-memory store allowed to call the SPEC-007 test actions."""
    return ProcedureStore(allowed_modules=[SPEC_MODULE])


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test advances it (see ``tests.clock``)."""
    return ManualClock()


@pytest.fixture
def timed_store(clock: ManualClock) -> ProcedureStore:
    """Like ``store``, but its executions run on ``clock``: a timing test advances time and
    asserts exact instants instead of wall-clock windows."""
    return ProcedureStore(allowed_modules=[SPEC_MODULE], clock=clock)


async def within(awaitable: Awaitable[T], timeout: float = 2.0) -> T:
    """Await with a short timeout, so that a hang fails the test instead of hanging the suite."""
    return await asyncio.wait_for(awaitable, timeout)


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 2.0, interval: float = 0.002
) -> None:
    """Poll ``predicate`` until it holds; fail the test if it does not within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def make_doc(
    states: dict[str, Any],
    initial: str,
    name: str = "p",
    version: str = "1.0",
    **extra: Any,
) -> dict[str, Any]:
    """A procedure document."""
    doc: dict[str, Any] = {
        "name": name,
        "version": version,
        "definition": {"initial_state": initial, "states": states},
    }
    doc.update(extra)
    return doc


def records(history: Iterable[Any], kind: str, **fields: Any) -> list[Any]:
    """The history records of ``kind`` whose attributes equal ``fields``."""
    return [
        r for r in history if r.kind == kind and all(getattr(r, k) == v for k, v in fields.items())
    ]


def index_of(history: Iterable[Any], kind: str, **fields: Any) -> int:
    """Index of the first record of ``kind`` matching ``fields``; fails the test if none."""
    for i, r in enumerate(history):
        if r.kind == kind and all(getattr(r, k) == v for k, v in fields.items()):
            return i
    raise AssertionError(f"no {kind!r} record with {fields!r} in history")


def slow_cleanup(
    store: ProcedureStore, clock: ManualClock, seconds: float, name: str = "slow"
) -> list[str]:
    """Register action ``name``: it waits until cancelled, then its cleanup (``finally``)
    takes ``seconds`` on ``clock``. The returned list gets ``"cleaned"`` when it is done."""
    cleaned: list[str] = []

    async def slow(context: dict[str, Any]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await clock.sleep(seconds)
            cleaned.append("cleaned")

    store.register_action(name, slow)
    return cleaned


class Gate:
    """An async action blocked on an :class:`asyncio.Event` until ``release`` is set.

    Register ``gate.action`` (a bound coroutine method) with the store.
    """

    def __init__(self, result: Any = "released") -> None:
        self.result = result
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = asyncio.Event()
        self.calls = 0
        self.cancelled = False
        self.returned = False

    async def action(self, context: dict[str, Any]) -> Any:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
            self.returned = True
            return self.result
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.finished.set()
