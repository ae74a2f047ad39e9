"""SDK clients and frameworks as users hold them, wrapped and driven over the loopback server.

A package, as `tests/integration` is, so that its conftest does not shadow `tests/conftest.py`.
These tests need the `frameworks` dependency group: the `integrations` nox session runs them.
"""
