"""Fixtures for the fleet tests: real stores (a directory, a redis-server), the loopback server.

Every redis-server is started by a fixture on a free 127.0.0.1 port in a temporary directory
and stopped after; CI installs Debian's redis-server (.ci/run).
"""

from __future__ import annotations

import gc
import itertools
import sys
from pathlib import Path

import pytest

from refresh_middleware.shared import FileStore, MemoryStore, RedisStore
from refresh_middleware.testing._server import open_loopback_server

# `examples` holds the redis-server launcher and the client side the demo uses.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from examples.redis_server import redis_server  # noqa: E402

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server shared by the tests that do not stop it; each test uses its own prefix."""
    with redis_server() as server:
        yield server.url


@pytest.fixture
def own_redis():
    """A redis-server for one test, which may kill it."""
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "file", "redis"])
def make_store(request, tmp_path):
    """Makes stores of each kind on one place: memory, a directory, a Redis with a fresh prefix."""
    if request.param == "memory":
        memory = MemoryStore()
        return lambda **_: memory
    if request.param == "file":
        return lambda **_: FileStore(tmp_path / "credentials")
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{next(_prefixes)}:"
    return lambda **options: RedisStore(url, prefix=prefix, **options)


@pytest.fixture
def store(make_store):
    """A store of each kind."""
    return make_store()


@pytest.fixture
async def loopback():
    """A loopback LLM server with rotating refresh tokens, in the test's trio run."""
    async with open_loopback_server() as server:
        yield server


@pytest.fixture
def collect_garbage():
    """Collect garbage before the test ends, so its leaks are reported as its own."""
    yield
    gc.collect()
