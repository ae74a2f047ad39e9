"""Fixtures for the fleet tests: real stores (a directory, a redis-server, a PostgreSQL), the
loopback server.

Every redis-server and PostgreSQL server is started by a fixture on a free 127.0.0.1 port in a
temporary directory and stopped after; CI installs Debian's redis-server and postgresql
(.ci/run). Without PostgreSQL's binaries, its tests are skipped, saying so. The cluster,
Sentinel and Valkey fixtures are in servers.py.
"""

from __future__ import annotations

import gc
import itertools
import sys
from pathlib import Path

import pytest

from refresh_middleware.shared import FileStore, MemoryStore
from refresh_middleware.testing._server import open_loopback_server

# `examples` holds the redis-server launcher and the client side the demo uses.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from examples.postgres_server import binaries, postgres_server  # noqa: E402
from examples.redis_server import redis_server  # noqa: E402

from .helpers import LEAK, TOPOLOGIES, URL_FIXTURES, store_of  # noqa: E402
from .servers import (  # noqa: E402, F401
    own_cluster,
    own_sentinel,
    own_valkey,
    redis_cluster_url,
    redis_sentinel_url,
    valkey_url,
)

_prefixes = itertools.count()
_tables = itertools.count()


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


def _needs_postgres() -> None:
    if binaries() is None:
        pytest.skip("PostgreSQL's server binaries (initdb, postgres) are not installed")


@pytest.fixture(scope="session")
def postgres_dsn():
    """A PostgreSQL shared by the tests that do not stop it; each test uses its own table."""
    _needs_postgres()
    with postgres_server() as server:
        yield server.dsn


@pytest.fixture
def own_postgres():
    """A PostgreSQL for one test, which may kill it."""
    _needs_postgres()
    with postgres_server() as server:
        yield server


def fresh_table() -> str:
    """A table name no other test uses."""
    return f"test_{next(_tables)}"


def _kinds(kinds):
    """Fixture parameters for these kinds of store; a cluster's tests tolerate coredis's leak."""
    return [
        pytest.param(kind, marks=pytest.mark.filterwarnings(LEAK) if kind == "cluster" else ())
        for kind in kinds
    ]


def _maker(request, tmp_path):
    if request.param == "memory":
        memory = MemoryStore()
        return lambda **_: memory
    if request.param == "file":
        return lambda **_: FileStore(tmp_path / "credentials")
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        table = fresh_table()
        return lambda **options: store_of("postgres", dsn, prefix=table, **options)
    if request.param == "cluster":
        request.getfixturevalue("collect_garbage")  # coredis's leak, collected in the test
    url = request.getfixturevalue(URL_FIXTURES[request.param])
    prefix = f"test-{next(_prefixes)}:"
    return lambda **options: store_of(request.param, url, prefix=prefix, **options)


@pytest.fixture(params=_kinds(["memory", "file", "postgres", *TOPOLOGIES]))
def make_store(request, tmp_path):
    """Makes stores of each kind on one place: memory, a directory, a PostgreSQL with a fresh
    table, or a Redis (one server, a cluster, behind Sentinel, Valkey) with a fresh prefix."""
    return _maker(request, tmp_path)


@pytest.fixture(params=_kinds(TOPOLOGIES))
def make_redis_store(request, tmp_path):
    """Makes RedisStores on one Redis of each kind (one server, a cluster, behind Sentinel,
    Valkey) with a fresh prefix."""
    return _maker(request, tmp_path)


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
