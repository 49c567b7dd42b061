"""``python -m procstore.cli``: the ``procstore`` command."""

from procstore.cli import main

main()
