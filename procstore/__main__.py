"""``python -m procstore``: the same as the ``procstore`` command."""

from procstore.cli import main

if __name__ == "__main__":
    main()
