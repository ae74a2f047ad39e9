"""`FileStore`: the processes of one machine share a credential through a directory.

One record file and one lock file per key. The lock is an OS file lock (`flock`) on the lock
file: the kernel releases it when its holder dies, however it dies, so a killed holder never
wedges the others. Records are written atomically (a temporary file, fsync, rename, fsync of
the directory) and readable by their owner only (mode 0600, in a 0700 directory). Flock is
unreliable on network filesystems: local filesystems only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from refresh_middleware._events import describe, logger

from ._errors import CorruptRecordError, StoreUnavailableError
from ._records import Record, is_generation
from ._store import Lease, no_keeping, sleep

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from contextlib import AbstractAsyncContextManager

__all__ = ["FileStore"]

FIRST_POLL: Final = 0.002
"""Seconds between the first attempts at a busy lock; doubled up to `LAST_POLL`."""

LAST_POLL: Final = 0.05
"""The longest pause between attempts: a freed lock is noticed within this."""

NAME_MAX: Final = 255
"""The longest file name most local filesystems take, in bytes."""

SUFFIXES: Final = (".record", ".lock")


class FileStore:
    """Records and locks in a directory that the processes of one machine share.

    Args:
        path: The directory (`str` or `pathlib.Path`), made on first use (mode 0700) when it
            does not exist. One record file and one lock file per key.

    Raises:
        ValueError: `path` is empty.

    The lock is an OS file lock, released by the kernel when its holder dies: a killed
    holder delays nobody. Waiting for it polls without blocking the event loop. Use a local
    filesystem: file locks on network filesystems are unreliable. The tokens live in the
    directory: one that other users can write to is reported (a warning in the log), as they
    could replace the record or the lock.

    """

    __slots__ = ("_checked", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if os.fspath(path) == "":
            msg = "FileStore needs a directory, got an empty path"
            raise ValueError(msg)
        self.path: Final = Path(path)
        self._checked = False

    def __repr__(self) -> str:
        """The directory, which is what a person needs to find the records."""
        return f"FileStore({str(self.path)!r})"

    @property
    def lease(self) -> None:
        """None: the lock lives as long as its holder, and dies with it."""
        return

    def check_directory(self) -> None:
        """Warn, once, when users other than the owner can write to the directory."""
        if self._checked:
            return
        self._checked = True
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            logger.warning(
                "refresh_middleware: %r: the directory is writable by other users (mode %o); "
                "they could replace the credential: chmod 700 it",
                self,
                mode,
            )

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncGenerator[_FileSession]:
        """A session on the record and lock files of `key`; releases a lock left held."""
        session = _FileSession(self, key)
        longest = max(len(session.record_path.name.encode()), len(session.lock_path.name.encode()))
        if longest > NAME_MAX:
            msg = f"the key {key!r} makes a file name of {longest} bytes, over {NAME_MAX}"
            raise ValueError(msg)
        try:
            yield session
        finally:
            session.close()


class _FileSession:
    """The files of one key; the lock it holds, if any."""

    __slots__ = ("held", "key", "lock_path", "record_path", "store")

    def __init__(self, store: FileStore, key: str) -> None:
        self.store = store
        self.key = key
        name = quote(key, safe="")
        self.record_path = store.path / f"{name}.record"
        self.lock_path = store.path / f"{name}.lock"
        self.held: dict[str, int] = {}

    def _unavailable(self, what: str, error: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"cannot {what} ({describe(error)})", store=repr(self.store), key=self.key
        )

    async def read(self) -> Record | None:
        try:
            data = self.record_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._unavailable("read the record", error) from error
        return self._parse(data)

    def _parse(self, data: bytes) -> Record:
        head, newline, body = data.partition(b"\n")
        if not (newline and is_generation(head) and int(head) > 0):
            msg = "the record file has no generation line: not written by FileStore"
            raise CorruptRecordError(msg, store=repr(self.store), key=self.key)
        return Record(int(head), body)

    async def lock(self, wait: float) -> Lease | None:
        descriptor = self._lock_file()
        deadline = time.monotonic() + wait
        pause = FIRST_POLL
        taken = False
        try:
            while not (taken := _try_flock(descriptor)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                await sleep(min(pause, left))
                pause = min(pause * 2, LAST_POLL)
        finally:
            if not taken:  # not ours: the attempt leaves no descriptor behind
                os.close(descriptor)
        token = secrets.token_hex(8)
        self.held[token] = descriptor
        return Lease(self.key, token)

    def _lock_file(self) -> int:
        try:
            self.store.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.store.check_directory()
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise self._unavailable("open the lock file", error) from error

    def keep(self, lease: Lease) -> AbstractAsyncContextManager[None]:
        return no_keeping(lease)

    async def write(self, lease: Lease, expected: int, record: Record) -> bool:
        if lease.token not in self.held:
            msg = "a record is written only under the lock this session holds"
            raise RuntimeError(msg)
        # Under the lock nobody else writes, so reading and replacing is a compare-and-set.
        # Done in this thread, without an await: a cancellation cannot cut it in half.
        current = await self.read()
        if (0 if current is None else current.generation) != expected:
            return False
        try:
            _replace_atomically(self.record_path, b"%d\n%b" % (record.generation, record.data))
        except OSError as error:
            raise self._unavailable("write the record", error) from error
        return True

    async def unlock(self, lease: Lease) -> None:
        descriptor = self.held.pop(lease.token, None)
        if descriptor is not None:
            os.close(descriptor)  # closing the last descriptor of the file releases its lock

    def close(self) -> None:
        """Release whatever lock the session still holds."""
        for descriptor in self.held.values():
            os.close(descriptor)
        self.held.clear()


def _try_flock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held by another open file: another process, or another session
        return False
    return True


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, whole.

    The temporary file is made 0600 by `mkstemp`, flushed to disk before the rename, and the
    directory is flushed after it, so a crash leaves one of the two records, never a mix.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
