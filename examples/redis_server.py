"""A throwaway `redis-server` on 127.0.0.1, for the fleet tests, demo and benchmark.

It runs Debian's ``redis-server`` (``apt-get install redis-server``; ``.ci/run`` installs it) on
a free loopback port, in a temporary directory, without persistence, and stops it at the end
of the block. Nothing listens beyond the loopback interface. `serve` runs any such server (a
cluster node, a Sentinel, a ``valkey-server``) the same way; `redis_cluster` makes three of them
a Redis Cluster (with ``redis-cli``, of Debian's ``redis-tools``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

STARTUP_SECONDS = 10.0
READY_SECONDS = 30.0
CLUSTER_NODES = 3


@dataclasses.dataclass
class RedisServer:
    """A running redis-server: where it listens, and how to stop it abruptly."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(binary: str | None = None, arguments: Sequence[str] = ()) -> Iterator[RedisServer]:
    """Start a redis-server (or `binary`, such as valkey-server) on a free loopback port for
    the block, with `arguments` after the usual ones; stop it after."""
    binary = binary or shutil.which("redis-server")
    if binary is None:
        msg = "redis-server is not installed: apt-get install redis-server (.ci/run does)"
        raise RuntimeError(msg)
    with tempfile.TemporaryDirectory(prefix="refresh-middleware-redis-") as folder:
        port = free_port()
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", folder]
        command += ["--save", "", "--appendonly", "no", "--protected-mode", "yes", *arguments]
        with serve(command, port, folder) as server:
            yield server


@contextlib.contextmanager
def serve(command: Sequence[str], port: int, folder: str) -> Iterator[RedisServer]:
    """Run `command` in `folder` until it answers PING on 127.0.0.1:`port`; stop it after."""
    process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
    )
    server = RedisServer(port, process)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                msg = f"{command[0]} did not start on 127.0.0.1:{port}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()


@dataclasses.dataclass
class Cluster:
    """A running Redis Cluster: its nodes, and the URL of one (the client finds the rest)."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"


def cli(*arguments: str) -> str:
    """Run redis-cli; its output."""
    done = subprocess.run(  # noqa: S603 - our own arguments, no shell
        ["redis-cli", *arguments],  # noqa: S607 - found on PATH, as redis-server is
        capture_output=True,
        text=True,
        timeout=READY_SECONDS,
        check=True,
    )
    return done.stdout


def wait_for(ready: Callable[[], bool], what: str) -> None:
    """Poll `ready` until it is true; a `RuntimeError` naming `what` after `READY_SECONDS`."""
    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            msg = f"{what} was not ready within {READY_SECONDS:g} s"
            raise RuntimeError(msg)
        time.sleep(0.05)


@contextlib.contextmanager
def redis_cluster() -> Iterator[Cluster]:
    """Three primaries on loopback ports, the 16384 slots shared between them."""
    if shutil.which("redis-cli") is None:
        msg = "a Redis Cluster needs redis-cli: apt-get install redis-tools (.ci/run does)"
        raise RuntimeError(msg)
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
            for _ in range(CLUSTER_NODES)
        ]  # fmt: skip
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        cli("--cluster", "create", *addresses, "--cluster-yes")
        for node in nodes:
            port = str(node.port)
            wait_for(
                lambda port=port: "cluster_state:ok" in cli("-p", port, "cluster", "info"),
                f"the cluster node on port {port}",
            )
        yield Cluster(nodes)
