"""Reading a child process's output line by line (``tests.conftest.read_line``)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import read_line


def _child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_lines_printed_at_once_are_read_one_after_the_other() -> None:
    # Printed in one write, then the child waits: a buffered read would take both lines and
    # leave the second where waiting on the pipe cannot see it.
    child = _child("import sys; sys.stdout.write('one\\ntwo\\n'); sys.stdout.flush(); input()")
    try:
        assert read_line(child, 5) == "one"
        assert read_line(child, 5) == "two"
    finally:
        child.kill()
        child.communicate(timeout=10)


def test_what_follows_the_line_read_is_left_for_communicate() -> None:
    child = _child("print('first'); print('rest')")
    assert read_line(child, 5) == "first"
    out, _ = child.communicate(timeout=10)
    assert out == "rest\n"
