"""What the command line prints from a definition, a context, a history or an error message
never reaches the terminal raw: control characters (ESC, BEL, CR, C1), invisible format
characters (bidi overrides) and the like are shown as visible escapes such as ``\\x1b``."""

from __future__ import annotations

import io
import json
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from procstore.cli.drive import Session as _Session
from procstore.cli.progress import LiveOutput as _LiveOutput
from procstore.cli.run import run_file as _run
from tests.cli.test_cli import execution_id_of, invoke, write_json

# An OSC window title (BEL-terminated), a screen clear, concealed text, a right-to-left override,
# an 8-bit CSI, a carriage return and DEL.
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[8m\u202e\x9b\r\x7f"
SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\x1b[8m\\u202e\\x9b\\r\\x7f"


def raw_controls(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on or hide, other than newlines."""
    return [
        ch
        for ch in text
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")
    ]


def hostile_definition(directory: Path, file: str = "hostile.json") -> Path:
    """A definition whose state names, event, log message, action result, context key, error
    message and description all carry HOSTILE, with its actions module beside it."""
    module = f"hostile_{uuid.uuid4().hex}"
    (directory / f"{module}.py").write_text(
        "from procstore import Event\n"
        f"HOSTILE = {HOSTILE!r}\n"
        "def shout(context):\n"
        "    return 'result' + HOSTILE\n"
        "def signal(context):\n"
        "    return Event('event' + HOSTILE)\n",
        encoding="utf-8",
    )
    doc: dict[str, Any] = {
        "name": "hostile",
        "version": "1.0",
        "description": f"description{HOSTILE}",
        "definition": {
            "initial_state": f"shout{HOSTILE}",
            "states": {
                f"shout{HOSTILE}": {
                    "action": {
                        "type": "function",
                        "module": module,
                        "function": "shout",
                        "result": f"key{HOSTILE}",
                    },
                    "transitions": [{"event": "success", "target": f"say{HOSTILE}"}],
                },
                f"say{HOSTILE}": {
                    "action": {"type": "log", "message": f"message{HOSTILE}"},
                    "transitions": [{"event": "success", "target": f"signal{HOSTILE}"}],
                },
                f"signal{HOSTILE}": {
                    "action": {"type": "function", "module": module, "function": "signal"},
                    "transitions": [{"event": f"event{HOSTILE}", "target": f"fail{HOSTILE}"}],
                },
                f"fail{HOSTILE}": {"action": {"type": "fail", "message": f"error{HOSTILE}"}},
            },
        },
    }
    return write_json(directory / file, doc)


def test_run_prints_hostile_text_escaped(tmp_path: Path, db: str) -> None:
    context = json.dumps({f"given{HOSTILE}": f"value{HOSTILE}"}, ensure_ascii=False)

    result = invoke("run", "--db", db, str(hostile_definition(tmp_path)), "--context", context)

    assert result.exit_code == 1, result.output
    assert raw_controls(result.output) == []
    for word in ("shout", "say", "signal", "fail", "message", "event", "error"):
        assert f"{word}{SHOWN}" in result.output, word
    # Results and the context are shown as JSON: its escapes, then ours for the rest.
    assert '"result\\u001b]0;owned\\u0007' in result.output
    assert '"given\\u001b]0;owned\\u0007' in result.output


def test_run_verbose_logs_hostile_messages_escaped(tmp_path: Path, db: str) -> None:
    result = invoke("run", "--verbose", "--db", db, str(hostile_definition(tmp_path)))

    assert raw_controls(result.stderr) == []
    assert f"message{SHOWN}" in result.stderr


def test_history_prints_hostile_text_escaped(tmp_path: Path, db: str) -> None:
    ran = invoke("run", "--db", db, str(hostile_definition(tmp_path)))

    result = invoke("history", execution_id_of(ran.output), "--db", db)

    assert result.exit_code == 0, result.output
    assert raw_controls(result.output) == []
    assert f"error{SHOWN}" in result.output


def test_show_and_list_print_hostile_text_escaped(tmp_path: Path, db: str) -> None:
    invoke("run", "--db", db, str(hostile_definition(tmp_path)))

    shown = invoke("show", "hostile", "--db", db)
    listed = invoke("list", "--db", db)

    assert shown.exit_code == 0, shown.output
    assert raw_controls(shown.output) == []
    assert f"description{SHOWN}" in shown.output
    assert raw_controls(listed.output) == []


@pytest.mark.parametrize(
    "command", [["history", "ID", "--json"], ["show", "hostile", "--json"], ["list", "--json"]]
)
def test_json_output_escapes_hostile_text_and_stays_json(
    tmp_path: Path, db: str, command: list[str]
) -> None:
    ran = invoke("run", "--db", db, str(hostile_definition(tmp_path)))
    args = [execution_id_of(ran.output) if arg == "ID" else arg for arg in command]

    result = invoke(*args, "--db", db)

    assert result.exit_code == 0, result.output
    assert raw_controls(result.output) == []
    json.loads(result.output)  # still JSON, its strings intact


def test_validate_prints_hostile_problems_and_file_names_escaped(tmp_path: Path) -> None:
    # A file name is data too: `procstore validate flows/*.json` prints whatever is there.
    path = hostile_definition(tmp_path, f"flow{HOSTILE}.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["definition"]["states"][f"fail{HOSTILE}"]["transitions"] = [
        {"event": "success", "target": f"nowhere{HOSTILE}"}
    ]
    write_json(path, doc)

    result = invoke("validate", str(path))

    assert result.exit_code == 1, result.output
    assert raw_controls(result.output) == []
    assert f"flow{SHOWN}.json: $.definition" in result.output


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
def test_diagram_prints_hostile_text_escaped(tmp_path: Path, fmt: str) -> None:
    result = invoke("diagram", str(hostile_definition(tmp_path)), "--format", fmt)

    assert result.exit_code == 0, result.output
    assert [ch for ch in raw_controls(result.output) if ch != "\t"] == []


async def test_the_live_display_shows_hostile_text_escaped(tmp_path: Path, db: str) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=400, color_system=None)

    await _run(hostile_definition(tmp_path), {}, [], 10.0, db, _LiveOutput(console), _Session(db))

    text = buffer.getvalue()
    # The display's own cursor movements are escape sequences; HOSTILE's must not be there.
    own = re.sub(r"\x1b\[(\?25[lh]|\d*[AKG]|2K)", "", text)
    assert raw_controls(own.replace("\r", "")) == []
    assert f"message{SHOWN}" in text


def test_run_prints_the_problems_of_a_hostile_definition_escaped(tmp_path: Path, db: str) -> None:
    path = hostile_definition(tmp_path, f"flow{HOSTILE}.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["definition"]["states"][f"fail{HOSTILE}"]["transitions"] = [
        {"event": f"event{HOSTILE}", "target": f"nowhere{HOSTILE}"}
    ]
    write_json(path, doc)

    result = invoke("run", "--db", db, str(path))

    assert result.exit_code == 2, result.output
    assert raw_controls(result.output) == []
    assert f"flow{SHOWN}.json: $.definition" in result.stderr
