"""The PostgreSQL server the tests run against, and the rule for when there is none.

``make test`` runs pytest beside a throwaway server (tools/pg_cluster.py) and passes its URL in
``PROCSTORE_TEST_POSTGRES``. Without the variable, the ``postgres_server`` fixture starts such a
server itself for the session when the machine has the binaries. With neither, a PostgreSQL
test skips saying how to get one; but with ``CI=true`` it fails: CI must never pass without
having run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tools import pg_cluster

HOW_TO_GET_ONE = (
    f"run `make test` (it starts a throwaway PostgreSQL server), install the server "
    f"(`make system-deps`), or set {pg_cluster.ENV_VAR}=postgresql://USER@HOST:PORT/DB"
)


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``), where no PostgreSQL test may skip."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """End a test that needs the server: a failure in CI, a skip saying how to get one
    elsewhere."""
    message = f"no PostgreSQL server: {reason}; {HOW_TO_GET_ONE}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def server() -> Iterator[str]:
    """Yield the URL of the test server's database: ``PROCSTORE_TEST_POSTGRES``, else one of a
    cluster started for the session (and deleted after it)."""
    url = os.environ.get(pg_cluster.ENV_VAR)
    if url:
        yield url
        return
    if pg_cluster.find_bin_dir() is None:
        unavailable(f"{pg_cluster.ENV_VAR} is not set and there are no server binaries")
    with pg_cluster.running_cluster() as started:
        yield started


@asynccontextmanager
async def database(server: str) -> AsyncIterator[str]:
    """A new, empty database on the test server (``server`` is the URL of one of its
    databases), for one test: yield its URL, then drop it, cutting any connection left open."""
    name = f"procstore_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
