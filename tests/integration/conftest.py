"""Fixtures for tests that talk to a real loopback LLM server over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from refresh_middleware.testing._server import open_loopback_server


class ManualClock:
    """A clock for token expiry that only moves when a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def manual_clock():
    """A clock to inject into the server, so tests expire tokens without sleeping."""
    return ManualClock()


@pytest.fixture
def loopback_options():
    """Options for the `loopback` server; override with ``@pytest.mark.parametrize``."""
    return {}


@pytest.fixture
async def loopback(loopback_options):
    """A loopback LLM server running in the test's trio run."""
    async with open_loopback_server(**loopback_options) as server:
        yield server


@pytest.fixture
def token(loopback):
    """A valid bearer token for the `loopback` server."""
    return loopback.issue_token()


# The example providers are documentation, and these tests check that they work: make
# `examples` importable however pytest was started.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture
def tokens(loopback):
    """A token source on the `loopback` server's /oauth/token endpoint."""
    from examples.providers import TokenSource

    return TokenSource(loopback.token_url)
