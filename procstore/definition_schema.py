"""The JSON Schema of procedure documents, as one document: what ``procstore schema`` prints
and what the MCP server serves as ``procstore://schema``, built in one place so they agree."""

from __future__ import annotations

from typing import Any

from procstore.definition import Procedure

__all__ = ["JSON_SCHEMA_DIALECT", "procedure_schema"]

#: The JSON Schema dialect the document declares (pydantic writes draft 2020-12).
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def procedure_schema() -> dict[str, Any]:
    """The JSON Schema of a procedure document (from the pydantic models), with its
    ``$schema`` dialect first, ready to be written as JSON."""
    return {"$schema": JSON_SCHEMA_DIALECT, **Procedure.model_json_schema()}
