"""tools/pg_cluster.py, the throwaway PostgreSQL server ``make test`` runs the tests beside:
the command gets a live server's URL, and the server and its directory are gone afterwards,
whatever the command did."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests import postgres
from tools import pg_cluster

SCRIPT = Path(pg_cluster.__file__)

# Checks that something listens at the URL it was given, prints the URL and the cluster's
# directory (the one holding the server's socket for that port: other runs on the machine may
# have clusters of their own), then exits 3 as a failing test run would.
_PROBE = """
import glob, os, socket, sys
from urllib.parse import urlsplit
url = os.environ["PROCSTORE_TEST_POSTGRES"]
parts = urlsplit(url)
socket.create_connection((parts.hostname, parts.port), timeout=5).close()
[socket_path] = glob.glob(f"/tmp/procstore-pg-*/.s.PGSQL.{parts.port}")
print(url)
print(os.path.dirname(socket_path))
sys.exit(3)
"""


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        return probe.connect_ex((parts.hostname or "", parts.port or 0)) == 0


def test_the_command_runs_beside_a_server_that_is_deleted_after_it_fails() -> None:
    if pg_cluster.find_bin_dir() is None:
        postgres.unavailable("no server binaries to start one with")
    env = {k: v for k, v in os.environ.items() if k != pg_cluster.ENV_VAR}

    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--", sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": "/tmp"},
        timeout=120,
    )

    assert result.returncode == 3, result.stderr  # the command's own exit code
    url, directory = result.stdout.split()
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert url.endswith(f"/{pg_cluster.DATABASE}")
    assert not _listening(url)
    assert not Path(directory).exists()


def test_a_url_already_set_is_used_and_no_server_is_started() -> None:
    url = "postgresql://someone@127.0.0.1:1/theirs"
    show = f"import os; print(os.environ[{pg_cluster.ENV_VAR!r}])"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--", sys.executable, "-c", show],
        capture_output=True,
        text=True,
        env={**os.environ, pg_cluster.ENV_VAR: url},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == url
