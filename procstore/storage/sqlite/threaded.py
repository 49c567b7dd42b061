"""The SQLite backend's writer connection: a ``sqlite3`` connection on a daemon thread of its
own, called with whole functions.

aiosqlite sends each statement to its connection's thread and back: on a small virtual machine
such a round trip (a queue, a wake-up of the thread, a wake-up of the event loop through its
self-pipe) costs 40 to 90 µs, more than the SQL of a small commit (about 30 µs in WAL mode with
``synchronous=NORMAL``), and a commit of four statements paid four of them. ``ThreadedConnection``
runs a whole function on the thread instead (``call``), so that a transaction, whatever its
statements, is one round trip. Calls run one at a time, in the order they are made.

The thread is a daemon, like the ones ``connections.open_connection`` makes for aiosqlite: a
program that dies with a store open exits, which for the database is the same as a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from queue import SimpleQueue
from typing import Any, TypeVar

__all__ = ["ThreadedConnection"]

T = TypeVar("T")

_Done = Callable[[asyncio.Future[Any], Any, BaseException | None], None]
_Job = tuple[asyncio.Future[Any], Callable[[], Any], _Done] | None


def _work(jobs: SimpleQueue[_Job]) -> None:
    """The thread: run each job, and hand its result or exception back to its future's loop,
    until the ``None`` that ``close`` queues."""
    while True:
        job = jobs.get()
        if job is None:
            return
        future, function, done = job
        result: Any = None
        error: BaseException | None = None
        try:
            result = function()
        except BaseException as exc:  # handed to the caller, who raises it
            error = exc
        # The loop may be closed already (a program that ended without closing its store):
        # nobody waits for the answer then.
        with contextlib.suppress(RuntimeError):
            future.get_loop().call_soon_threadsafe(done, future, result, error)


class ThreadedConnection:
    """A ``sqlite3`` connection used from its own thread (see the module's docstring).

    Create it with ``open``. Use it from the event loop that opened it.
    """

    def __init__(self, name: str) -> None:
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._thread = threading.Thread(target=_work, args=(self._jobs,), name=name, daemon=True)
        self._connection: sqlite3.Connection | None = None
        self._pending = 0  # calls sent to the thread and not yet answered

    @classmethod
    async def open(cls, uri: str, *, timeout: float) -> ThreadedConnection:
        """Connect to the database at ``uri`` (a ``file:`` URI) on a new thread, in autocommit
        mode (transactions are begun and ended explicitly), waiting at most ``timeout`` seconds
        for another connection's lock.

        Raises:
            sqlite3.Error: the database cannot be opened.
        """
        connection = cls(f"procstore sqlite {uri}")
        connection._thread.start()
        try:
            connection._connection = await connection._run(
                lambda: sqlite3.connect(
                    uri,
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,  # opened here, used only on the thread
                    timeout=timeout,
                )
            )
        except BaseException:
            connection._jobs.put(None)
            raise
        return connection

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (read from the event loop: between calls)."""
        return self._connection is not None and self._connection.in_transaction

    @property
    def idle(self) -> bool:
        """Whether no call is under way on the thread: ``call_here`` may run now."""
        return self._pending == 0

    def call_here(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(connection, *args)`` right here, on the event loop's thread, and
        return what it returns: for work that cannot block (the caller's judgement: no fsync,
        no wait for a lock), which then costs no round trip. Only while ``idle``.

        Raises:
            ValueError: the connection is closed.
            RuntimeError: a call is under way on the thread.
            Exception: what ``function`` raised.
        """
        connection = self._open_connection()
        if self._pending:
            raise RuntimeError("call_here() while a call is under way on the connection's thread")
        return function(connection, *args)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(connection, *args)`` on the thread and return what it returns.

        Raises:
            ValueError: the connection is closed.
            Exception: what ``function`` raised.
        """
        connection = self._open_connection()
        return await self._run(lambda: function(connection, *args))

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        """Run one statement (its rows, if any, are dropped)."""
        await self.call(_execute, sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and return its rows."""
        return await self.call(_fetchall, sql, parameters)

    async def create_function(
        self, name: str, arguments: int, function: Callable[..., Any], *, deterministic: bool
    ) -> None:
        """``sqlite3.Connection.create_function`` on this connection."""
        await self.call(
            lambda c: c.create_function(name, arguments, function, deterministic=deterministic)
        )

    async def close(self) -> None:
        """Close the connection and end the thread (closing twice is harmless)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await self._run(connection.close)
        finally:
            self._jobs.put(None)

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("the connection is closed")
        return self._connection

    def _run(self, function: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending += 1
        self._jobs.put((future, function, self._answered))
        return future

    def _answered(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        """A call's answer, on the event loop: counted even if its caller was cancelled."""
        self._pending -= 1
        if future.done():  # its caller was cancelled
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _execute(connection: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> None:
    with contextlib.closing(connection.execute(sql, parameters)):
        pass


def _fetchall(connection: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> list[Any]:
    with contextlib.closing(connection.execute(sql, parameters)) as cursor:
        return cursor.fetchall()
