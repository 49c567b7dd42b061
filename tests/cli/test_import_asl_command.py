"""``procstore import-asl FILE``: an ASL definition in, a procedure document out, or every
problem printed with its ASL path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from procstore.cli import app

runner = CliRunner()

TASK_MACHINE = {
    "StartAt": "Charge",
    "States": {
        "Charge": {"Type": "Task", "Resource": "arn:aws:lambda:x:1:function:charge", "End": True}
    },
}


def import_asl(*args: str) -> Result:
    return runner.invoke(app, ["import-asl", *args])


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_it_writes_the_procedure_named_after_the_file(tmp_path: Path) -> None:
    source = write(tmp_path / "orders.asl.json", TASK_MACHINE)
    out = tmp_path / "orders.json"

    result = import_asl(str(source), "-o", str(out))

    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert (document["name"], document["version"]) == ("orders", "1.0")


def test_the_resource_map_names_the_code_each_task_calls(tmp_path: Path) -> None:
    source = write(tmp_path / "orders.json", TASK_MACHINE)
    mapping = write(tmp_path / "map.json", {"*": "billing:charge"})

    result = import_asl(
        str(source), "--resource-map", str(mapping), "--name", "o", "--version", "2"
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["definition"]["states"]["Charge"]["action"]["module"] == "billing"
    assert (document["name"], document["version"]) == ("o", "2")


def test_each_untranslatable_field_is_a_line_and_nothing_is_written(tmp_path: Path) -> None:
    machine = {"StartAt": "M", "States": {"M": {"Type": "Map", "End": True}}}
    source = write(tmp_path / "m.json", machine)
    out = tmp_path / "out.json"

    result = import_asl(str(source), "-o", str(out))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{source}: $.States.M.ItemProcessor: required: the item states (StartAt and States)"
    ]
    assert not out.exists()


def test_a_file_that_is_not_json_gets_one_line(tmp_path: Path) -> None:
    source = tmp_path / "bad.json"
    source.write_text("not json", encoding="utf-8")

    result = import_asl(str(source))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{source}: $: not valid JSON: Expecting value at line 1 column 1"
    ]


def test_a_resource_map_that_is_not_an_object_of_strings_is_a_usage_error(tmp_path: Path) -> None:
    source = write(tmp_path / "m.json", TASK_MACHINE)
    mapping = write(tmp_path / "map.json", {"*": 3})

    result = import_asl(str(source), "--resource-map", str(mapping))

    assert result.exit_code == 2
    assert "a resource map is a JSON object of strings" in result.stderr
