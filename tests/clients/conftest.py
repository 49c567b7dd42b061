"""What every client test runs on: a new, empty store, an SQLite file or a PostgreSQL database
(``url`` is parametrised), for a runner and its clients to share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import postgres


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty store: an SQLite file, or a PostgreSQL database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'procstore.db'}"
        return
    async with postgres.database(request.getfixturevalue("postgres_server")) as database:
        yield database
