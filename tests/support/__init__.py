"""Tests of the test suite's own helpers (tests/conftest.py)."""
