"""A throwaway PostgreSQL server for the tests: start one, run a command against it, delete it.

    python tools/pg_cluster.py -- .venv/bin/pytest -q

runs the command with ``PROCSTORE_TEST_POSTGRES`` set to the URL of a fresh cluster
(``postgresql://postgres@127.0.0.1:PORT/procstore_test``), then stops the server and deletes
its directory, whatever the command did (a failure, Ctrl-C, SIGTERM); it exits with the
command's exit code. ``make test`` runs pytest this way. When ``PROCSTORE_TEST_POSTGRES`` is
set already (a server of your own), the command runs against it and no cluster is started.

The cluster uses the machine's PostgreSQL binaries (``find_bin_dir``: on ``PATH``, else
Debian's ``/usr/lib/postgresql/VERSION/bin``; ``make system-deps`` installs them with apt
when they are missing). ``initdb`` refuses to run as root, so as root the server runs as the
unprivileged ``postgres`` user (created if missing), otherwise as the current user. It lives
in a new temporary directory, listens on a free port of 127.0.0.1 only (its Unix socket is in
that directory too), trusts every local connection, and runs without fsync: it holds nothing
but test data, and the tests never crash the machine.

``python tools/pg_cluster.py --find-bin`` prints the directory of the binaries, or exits 1.
tests/conftest.py starts a cluster with ``running_cluster`` itself when pytest runs without
the variable, so the PostgreSQL tests run wherever the binaries are. Standard library only:
``make`` runs it with the system Python, before the virtual environment has anything.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

ENV_VAR: Final = "PROCSTORE_TEST_POSTGRES"
"""The variable that carries the server's URL to the tests."""

DATABASE: Final = "procstore_test"
"""The database created in the cluster (tests create a fresh one per test beside it)."""

SERVER_USER: Final = "postgres"
"""The unprivileged user the server runs as when this runs as root."""

START_TIMEOUT_S: Final = 60
"""How long ``pg_ctl start`` may take before the cluster counts as failed (a busy machine)."""

START_ATTEMPTS: Final = 3
"""Ports tried: another process may take the free port between choosing it and binding it."""

# Test-only settings: no fsync (nothing here must survive a power cut), connections enough for
# several stores per test, and the Unix socket beside the data instead of /var/run/postgresql.
_SERVER_SETTINGS: Final = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}

_REQUIRED: Final = ("initdb", "pg_ctl", "postgres")


class ClusterError(RuntimeError):
    """The cluster could not be set up or started (the message says why)."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: the one of ``initdb``
    on ``PATH`` if it has all three, else the newest ``/usr/lib/postgresql/*/bin`` (Debian and
    Ubuntu install the server there, off ``PATH``); ``None`` if there is none."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found is not None:
        # Through a symlink (/usr/local/bin/initdb) to the directory of the whole installation.
        candidates += [Path(found).resolve().parent, Path(found).parent]
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")]
    )
    candidates += [Path(p) for p in reversed(versions)]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _REQUIRED):
            return directory
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_account() -> dict[str, Any] | None:
    """``subprocess`` arguments that run the server's programs as ``SERVER_USER`` when this
    process is root (creating the user if missing); ``None`` otherwise (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
        )
        account = pwd.getpwnam(SERVER_USER)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _run(
    command: Sequence[str | Path], account: dict[str, Any] | None, cwd: Path, stdin: str = ""
) -> None:
    """Run one of the server's programs (as ``account``, reading ``stdin``), raising
    ``ClusterError`` with its output if it fails."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        **(account or {}),
    )
    if result.returncode != 0:
        raise ClusterError(
            f"{Path(command[0]).name} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )


@contextlib.contextmanager
def running_cluster(database: str = DATABASE) -> Iterator[str]:
    """Start a throwaway cluster with ``database`` in it; yield its URL; stop and delete it.

    Raises:
        ClusterError: No PostgreSQL binaries, or the server does not start (the message
            carries the server's log).
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise ClusterError(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres): install them with "
            "`make system-deps` (as root) or your package manager"
        )
    account = _server_account()
    # As root, a directory the server's user can reach: not under a private TMPDIR.
    root = Path(tempfile.mkdtemp(prefix="procstore-pg-", dir="/tmp" if account else None))
    data = root / "data"
    started = False
    try:
        if account is not None:
            os.chown(root, account["user"], account["group"])
        _run(
            [
                bin_dir / "initdb",
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            account,
            root,
        )
        # The database, created by the server in single-user mode: no client program needed.
        _run(
            [bin_dir / "postgres", "--single", "-D", data, "-j", "postgres"],
            account,
            root,
            stdin=f'CREATE DATABASE "{database}";\n',
        )
        url = None
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            options = " ".join(f"-c {k}={v}" for k, v in _SERVER_SETTINGS.items())
            try:
                _run(
                    [
                        bin_dir / "pg_ctl",
                        "start",
                        "-D",
                        data,
                        "-l",
                        root / "server.log",
                        "-w",
                        "-t",
                        str(START_TIMEOUT_S),
                        "-o",
                        f"-p {port} -k {root} {options}",
                    ],
                    account,
                    root,
                )
            except ClusterError as exc:
                if attempt == START_ATTEMPTS:
                    log = (root / "server.log").read_text(errors="replace")[-4000:]
                    raise ClusterError(f"{exc}\nserver log:\n{log}") from None
                continue
            started = True
            url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
            break
        assert url is not None
        yield url
    finally:
        if started:
            # immediate: the data is thrown away next, there is nothing to shut down cleanly.
            with contextlib.suppress(ClusterError):
                _run(
                    [bin_dir / "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"], account, root
                )
        shutil.rmtree(root, ignore_errors=True)


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through running_cluster's cleanup


def run_with_cluster(command: Sequence[str]) -> int:
    """Run ``command`` with ``ENV_VAR`` set to a fresh cluster's URL (or the one already set);
    return its exit code. The cluster is stopped and deleted however the command ends."""
    if os.environ.get(ENV_VAR):
        print(f"pg_cluster: using {ENV_VAR} as set", file=sys.stderr)
        return subprocess.call(command)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    began = time.monotonic()
    child: subprocess.Popen[bytes] | None = None
    try:
        with running_cluster() as url:
            print(
                f"pg_cluster: {ENV_VAR}={url} (started in {time.monotonic() - began:.1f} s)",
                file=sys.stderr,
            )
            child = subprocess.Popen(command, env={**os.environ, ENV_VAR: url})
            try:
                return child.wait()
            except BaseException:
                # Ctrl-C reached the child too (one process group); SIGTERM did not.
                child.terminate()
                child.wait()
                raise
    except ClusterError as exc:
        print(f"pg_cluster: cannot start a PostgreSQL server: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run COMMAND against a throwaway PostgreSQL cluster (see the module's doc).",
        usage="%(prog)s [--find-bin] [-- COMMAND [ARG ...]]",
    )
    parser.add_argument(
        "--find-bin", action="store_true", help="print the binaries' directory, or exit 1"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.find_bin:
        found = find_bin_dir()
        if found is None:
            return 1
        print(found)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a COMMAND to run, after --")
    return run_with_cluster(command)


if __name__ == "__main__":
    sys.exit(main())
