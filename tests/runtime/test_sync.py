"""The runtime's latch and mutex behave as asyncio's Event and Lock do (they replace them to
keep a waiting execution small)."""

from __future__ import annotations

import asyncio

import pytest

from procstore.runtime.sync import Latch, Mutex
from tests.conftest import within


async def test_waiters_take_the_mutex_in_the_order_they_asked() -> None:
    mutex, order = Mutex(), []

    async def take(name: str) -> None:
        async with mutex:
            order.append(name)
            await asyncio.sleep(0)

    await mutex.acquire()
    tasks = [asyncio.create_task(take(name)) for name in "abc"]
    await asyncio.sleep(0)
    mutex.release()
    await within(asyncio.gather(*tasks), 1.0)
    assert order == ["a", "b", "c"]


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    mutex = Mutex()
    await mutex.acquire()
    first = asyncio.create_task(mutex.acquire())
    second = asyncio.create_task(mutex.acquire())
    await asyncio.sleep(0)
    first.cancel()
    mutex.release()
    assert await within(second, 1.0) is True
    assert first.cancelled() and mutex.locked()


async def test_releasing_a_free_mutex_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not acquired"):
        Mutex().release()


async def test_a_latch_wakes_its_waiters_when_set_and_not_after_a_clear() -> None:
    latch = Latch()
    waiter = asyncio.create_task(latch.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    latch.set()
    await within(waiter, 1.0)
    latch.clear()
    again = asyncio.create_task(latch.wait())
    await asyncio.sleep(0)
    assert not again.done() and not latch.is_set()
    again.cancel()
