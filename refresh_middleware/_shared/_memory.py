"""`MemoryStore`: the records and locks of one process, kept in memory.

The embedded default for a script or a single worker: no file, no server, so a
`SharedCredential` is the one credential abstraction from a script to a fleet. Every task,
thread and event loop of the process shares one store object; the lock is a process-wide
record guarded by a `threading.Lock` held for nanoseconds, and a waiter for a busy lock waits
on the flight's `Signal`, in its own event loop, without blocking it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING

from refresh_middleware._backend import bounded
from refresh_middleware._flight import Signal

from ._store import Lease, no_keeping

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from contextlib import AbstractAsyncContextManager

    from ._records import Record

__all__ = ["MemoryStore"]


class _Held:
    """A lock held on one key: its owner's token, and the signal of its release."""

    __slots__ = ("released", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.released = Signal()


class _WaitedEnough(Exception):  # noqa: N818 - not an error: the bound of a wait ran out
    """The lock wait's bound ran out (a private signal of `bounded`)."""


class _Shelf:
    """The records and locks of a `MemoryStore`, behind a guard held for nanoseconds."""

    __slots__ = ("guard", "locks", "pid", "records")

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.records: dict[str, Record] = {}
        self.locks: dict[str, _Held] = {}
        self.pid = os.getpid()

    def after_fork(self) -> None:
        # A child keeps the records it inherited, but a lock another thread of the parent held
        # would never be released there.
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.guard = threading.Lock()
            self.locks = {}

    def read(self, key: str) -> Record | None:
        self.after_fork()
        with self.guard:
            return self.records.get(key)

    def try_lock(self, key: str, token: str) -> Signal | None:
        """Take the lock of `key` for `token` (None), or the signal of its holder's release."""
        self.after_fork()
        with self.guard:
            held = self.locks.get(key)
            if held is not None:
                return held.released
            self.locks[key] = _Held(token)
            return None

    def write(self, key: str, expected: int, record: Record) -> bool:
        """Compare-and-set; the caller holds the lock of `key`."""
        with self.guard:
            stored = self.records.get(key)
            if (0 if stored is None else stored.generation) != expected:
                return False
            self.records[key] = record
            return True

    def unlock(self, key: str) -> None:
        """Release the lock of `key`; the caller holds it."""
        with self.guard:
            held = self.locks.pop(key, None)
        if held is not None:  # None: the lock was taken before a fork, in the parent
            held.released.set()


class MemoryStore:
    """Records and locks in the memory of one process: the default for a single process.

    Every `SharedCredential` made on the same `MemoryStore` object shares its records and
    locks, from any task, thread or event loop. Nothing outlives the process, so the first
    credential comes from `SharedCredential.seed` (or the initial `fetch`) in each run; use
    `FileStore` to share a credential between processes.

    """

    __slots__ = ("_shelf",)

    def __init__(self) -> None:
        self._shelf = _Shelf()

    def __repr__(self) -> str:
        """The store's kind; it holds nothing a person could look up elsewhere."""
        return "MemoryStore()"

    @property
    def lease(self) -> None:
        """None: a lock lives as long as the session that holds it (and dies with the process)."""
        return

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncGenerator[_MemorySession]:
        """A session on the record and lock of `key`; releases a lock left held."""
        session = _MemorySession(self._shelf, key)
        try:
            yield session
        finally:
            session.close()


class _MemorySession:
    """The record and lock of one key in a `MemoryStore`; the leases it holds, if any."""

    __slots__ = ("held", "key", "shelf")

    def __init__(self, shelf: _Shelf, key: str) -> None:
        self.shelf = shelf
        self.key = key
        self.held: set[str] = set()

    async def read(self) -> Record | None:
        return self.shelf.read(self.key)

    async def lock(self, wait: float) -> Lease | None:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        while True:
            released = self.shelf.try_lock(self.key, token)
            if released is None:
                self.held.add(token)
                return Lease(self.key, token)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await bounded(released.wait_async, left, _WaitedEnough)
            except _WaitedEnough:
                return None

    def keep(self, lease: Lease) -> AbstractAsyncContextManager[None]:
        return no_keeping(lease)

    async def write(self, lease: Lease, expected: int, record: Record) -> bool:
        if lease.token not in self.held:
            msg = "a record is written only under the lock this session holds"
            raise RuntimeError(msg)
        return self.shelf.write(self.key, expected, record)

    async def unlock(self, lease: Lease) -> None:
        if lease.token in self.held:
            self.held.discard(lease.token)
            self.shelf.unlock(self.key)

    def close(self) -> None:
        """Release whatever lock the session still holds."""
        if self.held:
            self.held.clear()
            self.shelf.unlock(self.key)
