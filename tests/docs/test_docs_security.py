"""docs/security.md states procstore's limits as numbers: each must be the constant's value."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ROW = re.compile(r"^\| `(procstore(?:\.\w+)+)\.([A-Z_]+)` \| ([\d,]+) \|", re.MULTILINE)


def _rows() -> list[tuple[str, str, int]]:
    return [(m[1], m[2], int(m[3].replace(",", ""))) for m in ROW.finditer(PAGE.read_text())]


def test_the_page_lists_the_limits() -> None:
    assert len(_rows()) >= 10


@pytest.mark.parametrize(("module", "name", "shown"), _rows(), ids=lambda v: str(v))
def test_each_limit_on_the_security_page_is_the_constants_value(
    module: str, name: str, shown: int
) -> None:
    assert getattr(importlib.import_module(module), name) == shown
