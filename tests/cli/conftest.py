"""What every command-line test runs in: its own directory and database, and an interpreter
left as it found it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path without PROCSTORE_DB, so a forgotten --db cannot touch ./procstore.db;
    afterwards undo the CLI's sys.path changes (it puts each FILE's directory there) and forget
    the modules it imported from this test's directories."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROCSTORE_DB", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if file and Path(file).resolve().is_relative_to(tmp_path.resolve()):
            del sys.modules[name]


@pytest.fixture
def db(tmp_path: Path) -> str:
    """This test's store: ``sqlite:////tmp/.../x.db`` (absolute path: four slashes)."""
    return f"sqlite:///{tmp_path}/x.db"
