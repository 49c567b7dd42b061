"""Actions of ``deploy_workflow.json`` (SPEC-007's ``TestActions``, in Python).

Each action takes the execution's context and returns a value, which the procedure stores in the
context under the action's ``result`` key. Raising an exception is the outcome event ``error``.

To see a rollback, start with ``{"env": "staging", "fail_step": "build"}`` (or ``"deploy"``).
Run with ``procstore run examples/deploy_workflow.json --context '{"env": "staging"}'
--allow-module deploy_actions`` (the CLI puts ``examples/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("deploy_actions")

ENVIRONMENTS = ("staging", "prod")
STEP_SECONDS = 0.005


class DeployError(RuntimeError):
    """A simulated build or deploy failure (context ``fail_step``)."""


def _maybe_fail(context: dict[str, Any], step: str) -> None:
    if context.get("fail_step") == step:
        raise DeployError(f"{step} failed for {context.get('env')}")


def validate(context: dict[str, Any]) -> str:
    """Accept only the known environments (a plain, synchronous action: keep it quick)."""
    env = context.get("env")
    if env not in ENVIRONMENTS:
        raise ValueError(f"invalid env {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    log.info("validated env %s", env)
    return "validated"


async def build(context: dict[str, Any]) -> dict[str, str]:
    """Build an artifact (an async action)."""
    await asyncio.sleep(STEP_SECONDS)
    _maybe_fail(context, "build")
    artifact = {"image": f"app:{context['env']}", "status": "built"}
    log.info("built %s", artifact["image"])
    return artifact


async def deploy(context: dict[str, Any]) -> str:
    """Deploy the artifact that ``build`` stored in the context."""
    await asyncio.sleep(STEP_SECONDS)
    _maybe_fail(context, "deploy")
    image = context.get("artifact", {}).get("image", "?")
    log.info("deployed %s to %s", image, context["env"])
    return "deployed"


async def rollback(context: dict[str, Any]) -> str:
    """Undo whatever a failed build or deploy left behind."""
    await asyncio.sleep(STEP_SECONDS)
    log.info("rolled back %s", context.get("env"))
    return "rolled_back"
