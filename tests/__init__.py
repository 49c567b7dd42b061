"""procstore test suite (a package, so that ``tests.spec_actions`` is importable)."""
