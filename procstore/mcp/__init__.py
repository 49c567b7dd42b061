"""procstore as a Model Context Protocol server: agents author, register, run and follow
procedures through tools (``procstore mcp`` on the command line). Needs the ``procstore[mcp]``
extra (the official ``mcp`` SDK).

A leaf of the library: it uses the store's public API, and nothing in procstore imports it.
Where things are: `server` (building and serving), `tools` (the tools), `models` (what they
return), `resources` (resources and the prompt), `errors` (tool errors), `documents` (a
document argument), `http` (the HTTP transport's binding rule and bearer token), `example`
(the prompt's worked example).
"""

from __future__ import annotations

from procstore.mcp.http import NotLocal
from procstore.mcp.server import build_server, serve

__all__ = ["NotLocal", "build_server", "serve"]
