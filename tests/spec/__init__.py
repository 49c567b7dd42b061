"""SPEC-007's acceptance tests, ported from its Elixir test suites."""
