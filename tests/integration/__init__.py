"""Tests over real HTTP against the loopback LLM server.

A package, so that its conftest is not imported as a top-level `conftest` that would shadow
`tests/conftest.py` for the unit tests that import helpers from it.
"""
