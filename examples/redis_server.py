"""A throwaway `redis-server` on 127.0.0.1, for the fleet tests, demo and benchmark.

It runs Debian's ``redis-server`` (``apt-get install redis-server``; ``.ci/run`` installs it) on
a free loopback port, in a temporary directory, without persistence, and stops it at the end
of the block. Nothing listens beyond the loopback interface. `serve` runs any such server (a
cluster node, a Sentinel, a ``valkey-server``) the same way.
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
    from collections.abc import Iterator, Sequence

STARTUP_SECONDS = 10.0


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
