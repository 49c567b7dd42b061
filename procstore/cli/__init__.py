"""The ``procstore`` command line.

Commands: ``run``, ``resume``, ``list``, ``show``, ``history``, ``diagram``, ``validate`` and
``schema``. Every command that reads or writes a store takes ``--db URL`` (default
``sqlite:///procstore.db``, the file ``procstore.db`` in the working directory, or the
``PROCSTORE_DB`` environment variable). The exit codes are in `procstore.cli.exits`, which
writes them into every ``--help``.

Where things are: `app` (the typer application and its list of commands); one module per
command or group of commands (`run`, `resume`, `inspect` for list/show/history, `diagram`,
`validate`, `schema`, `mcp` for the MCP server of `procstore.mcp`); what they share:
`options`, `exits`, `output` and `progress` (what they print), `drive` (driving executions),
`hostcode` and `procfile` (FILE and the modules it may use), `db` (the store).
Every rule about procedures (the module allowlist, reading and checking documents, the chart,
describing actions) is the library's: the CLI calls it.
"""

from __future__ import annotations

from procstore.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``procstore`` script."""
    app(prog_name="procstore")
