"""Store URLs that name a server: which are PostgreSQL's, and how messages name the database
they point to. Needs no driver, so a store can tell a PostgreSQL URL, and say what is missing,
without asyncpg installed.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, urlsplit

__all__ = ["POSTGRES_SCHEMES", "describe_postgres", "is_postgres_url"]

POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
"""The URL schemes of a PostgreSQL store (libpq's two spellings)."""

_DEFAULT_PORT: Final = 5432


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(POSTGRES_SCHEMES)


def describe_postgres(url: str) -> str:
    """``url`` as messages name it: ``postgresql://HOST:PORT/DATABASE``, without the user, the
    password or the query (which may carry a password too)."""
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        hosts = parts.netloc.rpartition("@")[2]
        if not hosts:
            hosts = query.get("host", ["localhost"])[0]
        elif "," not in hosts and parts.port is None:
            hosts = f"{hosts}:{query.get('port', [_DEFAULT_PORT])[0]}"
        user = parts.username or query.get("user", [""])[0]
        database = parts.path.lstrip("/") or query.get("dbname", [user])[0]
    except ValueError:
        return "postgresql://(a URL that cannot be parsed)"
    return f"postgresql://{hosts}/{database}"
