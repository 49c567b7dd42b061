"""SPEC-007 Task 2 (``loader_test.exs``) ported to procstore.

Mapping of the Elixir API:
  ``{:ok, _} = Loader.register(p)``      -> ``await store.register(p)`` returns a Procedure
  ``{:error, :invalid_schema}``           -> raises ``InvalidProcedure``
  ``{:ok, loaded} = Loader.get(n, v)``    -> ``await store.get(n, v)``
  ``loaded.definition["initial_state"]``  -> ``loaded.definition.initial_state``
  ``Loader.list()``                       -> ``await store.list()``
"""

from __future__ import annotations

import pytest

from procstore import InvalidProcedure, ProcedureStore


class TestRegister:
    async def test_registers_valid_procedure(self, store: ProcedureStore) -> None:
        procedure = {
            "name": "valid_proc",
            "version": "1.0",
            "definition": {"initial_state": "start", "states": {"start": {}}},
        }

        proc = await store.register(procedure)

        assert proc.name == "valid_proc"
        assert proc.version == "1.0"

    async def test_validates_procedure_schema(self, store: ProcedureStore) -> None:
        invalid = {"name": "bad", "version": "1.0"}  # Missing definition

        with pytest.raises(InvalidProcedure):
            await store.register(invalid)

    async def test_allows_version_updates(self, store: ProcedureStore) -> None:
        proc_v1 = {
            "name": "versioned",
            "version": "1.0",
            "definition": {"initial_state": "a", "states": {"a": {}}},
        }
        proc_v2 = {
            "name": "versioned",
            "version": "2.0",
            "definition": {"initial_state": "b", "states": {"b": {}}},
        }

        await store.register(proc_v1)
        await store.register(proc_v2)

        loaded = await store.get("versioned", "2.0")
        assert loaded.definition.initial_state == "b"
        # ...and the update did not replace version 1.0.
        assert (await store.get("versioned", "1.0")).definition.initial_state == "a"


class TestList:
    async def test_lists_all_registered_procedures(self, store: ProcedureStore) -> None:
        await store.register(
            {
                "name": "list_test_1",
                "version": "1.0",
                "definition": {"initial_state": "s", "states": {"s": {}}},
            }
        )
        await store.register(
            {
                "name": "list_test_2",
                "version": "1.0",
                "definition": {"initial_state": "s", "states": {"s": {}}},
            }
        )

        procedures = await store.list()
        names = [p.name for p in procedures]

        assert "list_test_1" in names
        assert "list_test_2" in names
