"""A throwaway PostgreSQL server on 127.0.0.1, for the fleet tests, demo and benchmark.

It runs Debian's PostgreSQL binaries (``apt-get install postgresql``; ``.ci/run`` installs it)
from a cluster made by ``initdb`` in a temporary directory, on a free loopback port, with no
Unix socket and with durability off (a test server loses nothing it needs), and stops it at
the end of the block. TCP connections need the password, so the tests see a DSN that holds
one. PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user the
Debian package creates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

STARTUP_SECONDS = 30.0
MEMORY = Path("/dev/shm")  # noqa: S108 - a tmpfs: initdb and its removal cost half as much
MEMORY_NEEDED = 512 * 2**20
USER = "postgres"  # the database superuser initdb makes, and the system user of Debian's package


def binaries() -> Path | None:
    """The folder of the newest installed PostgreSQL's server binaries, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclasses.dataclass
class PostgresServer:
    """A running PostgreSQL server: where it listens, and how to stop it abruptly."""

    port: int
    password: str
    process: subprocess.Popen[bytes]

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def kill(self) -> None:
        """SIGKILL the server and every backend of it, as a crash of its machine would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _scratch() -> str | None:
    """Where the cluster goes: in memory when there is room, else the temporary folder.

    Not pytest's folders: they are root's, and the server may run as the postgres user.
    """
    with contextlib.suppress(OSError):
        if shutil.disk_usage(MEMORY).free >= MEMORY_NEEDED:
            return str(MEMORY)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    """True once the server takes sign-ins: a startup message is answered by a password request.

    While it starts, it answers with an error ("the database system is starting up") instead.
    """
    body = b"\x00\x03\x00\x00user\x00%b\x00database\x00postgres\x00\x00" % USER.encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(struct.pack("!i", len(body) + 4) + body)
            return connection.recv(1) == b"R"
    except OSError:
        return False


def _as_server_user() -> dict[str, Any]:
    """Popen options that run a command as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        msg = f"as root, PostgreSQL needs the {USER!r} system user (Debian's package makes it)"
        raise RuntimeError(msg) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server on a free loopback port for the block; stop it after."""
    folder_of_binaries = binaries()
    if folder_of_binaries is None:
        msg = "PostgreSQL is not installed: apt-get install postgresql (.ci/run does)"
        raise RuntimeError(msg)
    as_user = _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="refresh-middleware-postgres-", dir=_scratch()))
    try:
        if as_user:
            os.chown(folder, as_user["user"], as_user["group"])
        password = secrets.token_hex(12)
        (folder / "password").write_text(password)
        if as_user:
            os.chown(folder / "password", as_user["user"], as_user["group"])
        subprocess.run(  # noqa: S603 - our own arguments, no shell
            [
                str(folder_of_binaries / "initdb"),
                "--pgdata",
                str(folder / "data"),
                "--username",
                USER,
                "--pwfile",
                str(folder / "password"),
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=folder,
            **as_user,
        )
        port = _free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": "",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        arguments = [str(folder_of_binaries / "postgres"), "-D", str(folder / "data")]
        for name, value in settings.items():
            arguments += ["-c", f"{name}={value}"]
        process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            arguments,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=folder,
            process_group=0,  # its own group: kill() takes every backend down with it
            **as_user,
        )
        server = PostgresServer(port, password, process)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"PostgreSQL did not start on 127.0.0.1:{port}"
                    raise RuntimeError(msg)
                time.sleep(0.02)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)  # an immediate shutdown: nothing is kept
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
