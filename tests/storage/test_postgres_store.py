"""A store on PostgreSQL through the public API and the command line: a ``postgresql://`` (or
``postgres://``) URL picks the PostgreSQL backend, and a server the store cannot use is one
clear error, never a traceback.

Each test gets a new database on the test server (``postgres_url``); what every persistent
store does, on SQLite and PostgreSQL alike, is in tests/storage/test_persistent_stores.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from procstore import ProcedureStore, Status, StoreError
from procstore.cli import app
from procstore.cli.exits import ExitCode
from tests.conftest import make_doc, within

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DOC = make_doc(
    {
        "a": {"action": {"type": "noop"}, "transitions": [{"event": "success", "target": "b"}]},
        "b": {},
    },
    "a",
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens on it once the probe is closed


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_postgresql_url_keeps_the_store_in_that_database(
    postgres_url: str, scheme: str
) -> None:
    url = scheme + postgres_url[postgres_url.index("://") :]
    async with ProcedureStore(url) as store:
        await store.register(DOC)
        final = await within((await store.start("p")).run_to_completion())
    assert final.status is Status.COMPLETED

    connection = await asyncpg.connect(postgres_url)
    try:
        stored = await connection.fetchval("SELECT status FROM executions WHERE id = $1", final.id)
    finally:
        await connection.close()
    assert stored == "completed"


async def test_an_unreachable_server_is_one_store_error_naming_it() -> None:
    port = closed_port()
    store = ProcedureStore(f"postgresql://app:pw@127.0.0.1:{port}/orders")
    with pytest.raises(StoreError) as raised:
        await store.open()
    assert str(raised.value).startswith(f"cannot connect to postgresql://127.0.0.1:{port}/orders: ")


def test_without_the_driver_a_postgresql_url_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"  # as if procstore[postgres] were missing
        "from procstore import ProcedureStore, StoreError\n"
        "try:\n"
        "    ProcedureStore('postgresql://u@db.example/orders')\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith(
        "cannot use postgresql://db.example:5432/orders: the PostgreSQL store needs the asyncpg "
        "driver (pip install 'procstore[postgres]')"
    )


# -- the command line --------------------------------------------------------------------------


def test_the_cli_reports_an_unreachable_server_in_one_line_and_fails() -> None:
    port = closed_port()
    result = subprocess.run(
        [sys.executable, "-m", "procstore.cli", "list", "--db", f"postgresql://127.0.0.1:{port}/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ExitCode.STORE
    assert result.stderr.splitlines() == [
        f"error: cannot connect to postgresql://127.0.0.1:{port}/x: connection refused: is the "
        "server running and listening there?"
    ]


def test_the_cli_runs_and_lists_executions_in_a_postgresql_database(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    runner = CliRunner()
    ran = runner.invoke(
        app,
        [
            "run",
            str(EXAMPLES / "deploy_workflow.json"),
            "--allow-module",
            "deploy_actions",
            "--context",
            '{"env": "staging"}',
            "--db",
            postgres_url,
        ],
    )
    assert ran.exit_code == 0, ran.output

    listed = runner.invoke(app, ["list", "--json", "--db", postgres_url])
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.stdout)
    assert document["procedures"] == [{"name": "deploy_workflow", "versions": ["1.0"]}]
    assert [e["status"] for e in document["executions"]] == ["completed"]
