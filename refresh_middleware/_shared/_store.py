"""What a store must do for the fleet protocol, and the loop helpers the stores share.

A store keeps one `Record` per key and one lock per key. The protocol (`_credential`) opens a
session, reads without the lock, takes the lock, reads again, writes with a compare-and-set on
the generation, and releases the lock only if it still owns it. Any store that can do these
few things (a database row with `SELECT ... FOR UPDATE`, a cloud key-value store with
conditional writes) can serve a fleet; `FileStore` and `RedisStore` are the two shipped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from refresh_middleware._backend import shielded as shielded
from refresh_middleware._backend import sleep as sleep

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ._records import Record

__all__ = ["Lease", "Store", "StoreSession", "finite_seconds", "no_keeping", "shielded", "sleep"]

R = TypeVar("R")


class Lease(NamedTuple):
    """A lock a session holds: the key it locks, and the owner token that proves it holds it."""

    key: str
    token: str


class StoreSession(Protocol):
    """The operations of a store on one key, valid inside one `Store.open(key)` block.

    Each raises `StoreUnavailableError` when the store cannot be reached or used, and
    `CorruptRecordError` for a record whose generation cannot be read.
    """

    async def read(self) -> Record | None:
        """The record of the key, read without the lock; None when nothing is stored."""
        ...

    async def lock(self, wait: float) -> Lease | None:
        """Take the lock of the key, waiting at most `wait` seconds (0: try once); None if not.

        Waiting polls without blocking the event loop. A lock whose holder died is free again:
        at once for an OS file lock, after its lease for a lock with a lease. The protocol
        calls it with 0 and reads the record between attempts. A lock command resent after
        a lost reply must recognise its own token (it is taken); one cut short by a
        cancellation must be released, if it took the lock, before the cancellation goes on.
        It should use the same permissions as `write`, so a store that could never take the
        write refuses here, before anything is sent to the identity provider.
        """
        ...

    def keep(self, lease: Lease) -> AbstractAsyncContextManager[None]:
        """Keep `lease` alive for the duration of the block (a lease is renewed while it runs).

        The block is a grant and its write: it runs shielded from the caller's cancellation,
        and every operation of the session inside it (`read`, `write`, the renewal) must work
        to its end even when the scope that opened the session is cancelled meanwhile. A store
        whose connection lives in that scope (coredis runs it in a task group there) makes
        one of its own when the block starts, inside the shield, and uses it in the block.
        """
        ...

    async def write(self, lease: Lease, expected: int, record: Record) -> bool:
        """Store `record` if the stored generation is still `expected` (0: nothing stored).

        Returns False, writing nothing, when another writer got there first. A failure
        raises `StoreUnavailableError`; the protocol calls `write` again with the same
        arguments while the lock is surely held, so a write whose reply was lost must find
        its own record on the retry (it returns False, and the protocol reads it back).
        """
        ...

    async def unlock(self, lease: Lease) -> None:
        """Release the lock if `lease` still owns it; never cut short by cancellation."""
        ...


class Store(Protocol):
    """A place the processes of a fleet share records and locks in.

    Its `repr` names it in error messages and logs: a path, a host, never a password.
    """

    @property
    def lease(self) -> float | None:
        """Seconds a lock outlives a holder that stops renewing it; None: it dies with it."""
        ...

    def open(self, key: str) -> AbstractAsyncContextManager[StoreSession]:
        """A session on the record and lock of `key` (a connection, for a networked store)."""
        ...


def finite_seconds(value: object) -> bool:
    """Whether `value` is a number of seconds a store's option can be: positive and finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


@contextlib.asynccontextmanager
async def no_keeping(lease: Lease) -> AsyncGenerator[None]:  # noqa: ARG001 - the protocol's shape
    """`StoreSession.keep` for locks that live as long as their holder (OS file locks)."""
    yield
