"""The worked example the ``author_procedure`` prompt shows: examples/deploy_workflow.json
(a test checks that this copy is that file's content, since examples/ is not installed)."""

from __future__ import annotations

from typing import Any

__all__ = ["EXAMPLE_FILE", "WORKED_EXAMPLE"]

#: Where the example comes from, in the repository.
EXAMPLE_FILE = "examples/deploy_workflow.json"

_STATES: dict[str, Any] = {
    "validate": {
        "action": {
            "type": "function",
            "module": "deploy_actions",
            "function": "validate",
            "result": "validation",
        },
        "transitions": [
            {"event": "success", "target": "build"},
            {"event": "error", "target": "failed"},
        ],
    },
    "build": {
        "action": {
            "type": "function",
            "module": "deploy_actions",
            "function": "build",
            "result": "artifact",
        },
        "transitions": [
            {"event": "success", "target": "deploy"},
            {"event": "error", "target": "rollback"},
        ],
    },
    "deploy": {
        "action": {
            "type": "function",
            "module": "deploy_actions",
            "function": "deploy",
            "result": "deployment",
        },
        "transitions": [
            {"event": "success", "target": "done"},
            {"event": "error", "target": "rollback"},
        ],
    },
    "rollback": {
        "action": {
            "type": "function",
            "module": "deploy_actions",
            "function": "rollback",
            "result": "rollback",
        },
        "transitions": [{"event": "success", "target": "failed"}],
    },
    "done": {},
    "failed": {"outcome": "failure"},
}

#: examples/deploy_workflow.json: validate, build and deploy, rolled back when a step fails.
WORKED_EXAMPLE: dict[str, Any] = {
    "name": "deploy_workflow",
    "version": "1.0",
    "description": (
        "SPEC-007's deployment workflow: validate, build and deploy; a failed build or deploy "
        "is rolled back."
    ),
    "definition": {"initial_state": "validate", "states": _STATES},
}
