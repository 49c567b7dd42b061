"""Procedure documents: parsing, the schema, validation, static checks, versions and limits."""
