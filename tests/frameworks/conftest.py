"""Fixtures for the framework tests: the loopback server in the test's trio run or a thread."""

from __future__ import annotations

import pytest

from frameworks.support import Keys
from refresh_middleware.testing import open_loopback_server, run_loopback_server_in_thread


@pytest.fixture
async def loopback():
    """A loopback server in the test's own trio run, for frameworks that run on trio."""
    async with open_loopback_server() as server:
        yield server


@pytest.fixture
def threaded():
    """A loopback server on a thread of its own, for asyncio frameworks and sync callers."""
    with run_loopback_server_in_thread() as server:
        yield server


@pytest.fixture
def keys(loopback):
    """Fresh tokens from the in-run server's token endpoint, counted."""
    return Keys(loopback)
