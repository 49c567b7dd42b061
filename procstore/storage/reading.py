"""The reads of a backend that keeps them in a reader beside it (SQLite, PostgreSQL): each
``Backend`` read checks that the backend is open, then asks its reader, so the backends state
this once instead of each repeating it method by method."""

from __future__ import annotations

from typing import Protocol

from procstore.storage.base import (
    COMMANDS_PAGE,
    Command,
    ExecutionSummary,
    StoredExecution,
    StoredProcedure,
)

__all__ = ["ChangeSource", "RowReader", "ThroughReader"]


class RowReader(Protocol):
    """What a backend's reader answers: the ``Backend`` reads of the same names."""

    async def load_procedures(self) -> list[StoredProcedure]: ...

    async def load_execution(self, execution_id: str) -> StoredExecution | None: ...

    async def list_executions(
        self, status: str | None, procedure: str | None
    ) -> list[ExecutionSummary]: ...

    async def unfinished_execution_ids(self) -> list[str]: ...

    async def due_executions(self, before: float) -> list[tuple[str, float]]: ...

    async def load_unfinished(self) -> list[StoredExecution]: ...

    async def commands_after(
        self, after_id: int, limit: int, execution_id: str | None
    ) -> list[Command]: ...


class ChangeSource(Protocol):
    """What tells a backend that another connection committed (``Backend.wait_for_change``)."""

    async def wait(self, timeout: float, since: int | None) -> int: ...


class ThroughReader:
    """``Backend``'s reads and ``wait_for_change`` for a backend with a ``_reads`` reader and
    a ``_changes`` source; the backend defines ``_check_open`` (raising ``StoreError`` once it
    is closed)."""

    _reads: RowReader
    _changes: ChangeSource

    def _check_open(self) -> None:
        raise NotImplementedError

    async def load_procedures(self) -> list[StoredProcedure]:
        """``Backend.load_procedures``."""
        self._check_open()
        return await self._reads.load_procedures()

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """``Backend.load_execution``, read in one statement."""
        self._check_open()
        return await self._reads.load_execution(execution_id)

    async def list_executions(
        self, status: str | None = None, procedure: str | None = None
    ) -> list[ExecutionSummary]:
        """``Backend.list_executions``."""
        self._check_open()
        return await self._reads.list_executions(status, procedure)

    async def due_executions(self, before: float) -> list[tuple[str, float]]:
        """``Backend.due_executions``."""
        self._check_open()
        return await self._reads.due_executions(before)

    async def unfinished_execution_ids(self) -> list[str]:
        """``Backend.unfinished_execution_ids``."""
        self._check_open()
        return await self._reads.unfinished_execution_ids()

    async def load_unfinished(self) -> list[StoredExecution]:
        """``Backend.load_unfinished``, read in one statement."""
        self._check_open()
        return await self._reads.load_unfinished()

    async def commands_after(
        self, after_id: int, limit: int = COMMANDS_PAGE, execution_id: str | None = None
    ) -> list[Command]:
        """``Backend.commands_after``."""
        self._check_open()
        return await self._reads.commands_after(after_id, limit, execution_id)

    async def wait_for_change(self, timeout: float, since: int | None = None) -> int:
        """``Backend.wait_for_change``: returns once ``_changes`` sees a commit by another
        connection, or after ``timeout``; raises ``StoreError`` if the backend closed
        meanwhile."""
        self._check_open()
        marker = await self._changes.wait(timeout, since)
        self._check_open()
        return marker
