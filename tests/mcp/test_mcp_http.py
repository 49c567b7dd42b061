"""The MCP server over streamable HTTP: a real ``procstore mcp --transport http`` process on a
free port, with and without its bearer token; and the rule that only a loopback address may
be served without one."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp.agent import ROOT, WAIT_S, approval_doc, call

TOKEN = "s3cret-token-for-tests"
SERVER = (sys.executable, "-m", "procstore", "mcp")


def free_port() -> int:
    return free_port_on("127.0.0.1")


def free_port_on(address: str) -> int:
    """A port nothing listens on at ``address`` (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def http_server(db: str, port: int, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """``procstore mcp --transport http`` on ``port``, stopped (SIGTERM) afterwards."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROCSTORE_MCP_TOKEN", None)
    process = subprocess.Popen(
        [*SERVER, "--db", db, "--transport", "http", "--port", str(port), *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def listening(
    port: int, process: subprocess.Popen[bytes], address: str = "127.0.0.1"
) -> None:
    """Poll until the server accepts connections (fails after `WAIT_S`, or if it exits)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            _, writer = await asyncio.open_connection(address, port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"nothing listens on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


@asynccontextmanager
async def http_session(
    port: int, token: str, address: str = "127.0.0.1"
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=WAIT_S) as client,
        streamable_http_client(f"http://{address}:{port}/mcp", http_client=client) as (
            read,
            write,
        ),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_the_http_server_answers_only_requests_that_carry_its_token(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with http_server(f"sqlite:///{tmp_path}/http.db", port, "--token", TOKEN) as process:
        await listening(port, process)
        async with httpx2.AsyncClient(timeout=WAIT_S) as client:
            bare = await client.post(url, json={})
            wrong = await client.post(url, json={}, headers={"Authorization": "Bearer nope"})
        async with http_session(port, TOKEN) as session:
            registered = await call(session, "register_procedure", document=approval_doc())
            listed = await call(session, "list_procedures")
    assert (bare.status_code, wrong.status_code) == (401, 401)
    assert registered["name"] == "release"
    assert [p["name"] for p in listed["procedures"]] == ["release"]


def test_listening_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROCSTORE_MCP_TOKEN", None)
    non_local = ("--host", "0.0.0.0", "--port", str(free_port()))
    done = subprocess.run(
        [*SERVER, "--db", f"sqlite:///{tmp_path}/x.db", "--transport", "http", *non_local],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 2
    assert "--token" in done.stderr
    assert "0.0.0.0" in done.stderr


async def test_a_loopback_server_without_a_token_refuses_a_foreign_host_header(
    tmp_path: Path,
) -> None:
    """A browser page whose name resolves to a loopback address (DNS rebinding) reaches a
    tokenless server on any of them (127.0.0.2 here): the page's Host header is refused."""
    port = free_port_on("127.0.0.2")
    with http_server(f"sqlite:///{tmp_path}/rebind.db", port, "--host", "127.0.0.2") as process:
        await listening(port, process, "127.0.0.2")
        async with httpx2.AsyncClient(timeout=WAIT_S) as client:
            rebound = await client.post(
                f"http://127.0.0.2:{port}/mcp", json={}, headers={"Host": f"evil.example:{port}"}
            )
    assert rebound.status_code == 421


async def test_a_bracketed_ipv6_loopback_address_is_served(tmp_path: Path) -> None:
    port = free_port_on("::1")
    db = f"sqlite:///{tmp_path}/v6.db"
    with http_server(db, port, "--host", "[::1]", "--token", TOKEN) as process:
        await listening(port, process, "::1")
        async with http_session(port, TOKEN, "[::1]") as session:
            listed = await call(session, "list_procedures")
    assert listed["procedures"] == []
