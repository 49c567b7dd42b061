"""procstore's public surface is exactly `procstore.__all__`, and docs/api.md lists it."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import procstore

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_all_is_exactly_the_public_names_of_the_package() -> None:
    public = {
        name
        for name in dir(procstore)
        if not name.startswith("_") and not isinstance(getattr(procstore, name), ModuleType)
    }
    assert set(procstore.__all__) == public


def test_all_is_sorted_and_without_repeats() -> None:
    assert list(procstore.__all__) == sorted(set(procstore.__all__))


def test_the_api_page_imports_exactly_the_public_names() -> None:
    block = re.search(r"from procstore import \((.*?)\)", API_PAGE.read_text(), re.DOTALL)
    assert block is not None
    listed = [name.strip() for name in block.group(1).split(",") if name.strip()]
    assert listed == sorted(procstore.__all__)
