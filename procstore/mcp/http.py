"""The streamable HTTP transport's boundary: where it may listen, and the bearer token.

Listening on a loopback address (127.0.0.1, ::1, localhost) reaches only this machine; any
other address reaches the network, so it needs a token. When a token is given (on any
address) every HTTP request must carry ``Authorization: Bearer TOKEN``; one that does not is
answered 401 before the MCP layer sees it. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "TOKEN_ENVVAR",
    "BearerToken",
    "NotLocal",
    "check_binding",
    "is_local",
    "rebinding_protection",
]

#: The environment variable that gives the token when ``--token`` does not.
TOKEN_ENVVAR = "PROCSTORE_MCP_TOKEN"


class NotLocal(ValueError):
    """The server would listen beyond this machine without a token."""


def is_local(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): reachable from this machine
    only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to listen on a non-loopback ``host`` without a token.

    Raises:
        NotLocal: saying what to do.
    """
    if not is_local(host) and not token:
        raise NotLocal(
            f"listening on {host} reaches the network: give a bearer token (--token TOKEN or "
            f"{TOKEN_ENVVAR}) that every client must send, or listen on 127.0.0.1"
        )


def rebinding_protection(host: str) -> TransportSecuritySettings | None:
    """For a loopback ``host``: accept only requests whose ``Host`` (and ``Origin``, if any)
    names a loopback address, so that a web page whose name an attacker resolves to it (DNS
    rebinding) cannot drive a server that needs no token there. The SDK does this by itself
    for 127.0.0.1, localhost and ::1 only; any loopback address may be listened on without a
    token. ``None`` elsewhere: a token guards those."""
    if not is_local(host):
        return None
    bare = host.strip("[]")
    names = {"127.0.0.1", "localhost", "[::1]", f"[{bare}]" if ":" in bare else bare}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in sorted(names)],
        allowed_origins=[f"http://{name}:*" for name in sorted(names)],
    )


class BearerToken:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` gets 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "unauthorized: send Authorization: Bearer TOKEN"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="procstore"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorised(self, scope: Scope) -> bool:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        given: Any = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected)
