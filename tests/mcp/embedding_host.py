"""A host program that embeds the MCP server (``python -m tests.mcp.embedding_host DB``): it
registers an action of its own on its store, then serves the store over stdio."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from procstore import ProcedureStore
from procstore.mcp import serve


def stamp(context: dict[str, Any], **args: Any) -> dict[str, Any]:
    """The host's action: what it was given, stamped."""
    return {"stamped": True, **args}


async def main(db: str) -> None:
    store = ProcedureStore(db)
    store.register_action("stamp", stamp)
    await serve(store)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
