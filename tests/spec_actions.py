"""Port of SPEC-007's ``Mimo.ProceduralStore.TestActions`` module.

Function actions of the deploy workflow name this module (``"module": "tests.spec_actions"``),
so every store that runs them is built with ``allowed_modules=["tests.spec_actions"]``.

    def validate(%{env: env}) when env in ["staging", "prod"], do: {:ok, :validated}
    def validate(_), do: {:error, :invalid_env}
    def build(_context), do: {:ok, :built}
    def deploy(_context), do: {:ok, :deployed}
    def rollback(_context), do: {:ok, :rolled_back}
"""

from __future__ import annotations

from typing import Any


def validate(context: dict[str, Any]) -> str:
    if context.get("env") in ("staging", "prod"):
        return "validated"
    raise ValueError("invalid_env")


def build(context: dict[str, Any]) -> str:
    return "built"


def deploy(context: dict[str, Any]) -> str:
    return "deployed"


def rollback(context: dict[str, Any]) -> str:
    return "rolled_back"


# Not part of the SPEC port: used by the validation tests, which check that a function action
# may only name a *public callable* defined in an allowed module.
def _private_helper(context: dict[str, Any]) -> str:
    return "private"


NOT_CALLABLE = 42
