"""`RedisStore`: the processes of many hosts share a credential through an existing Redis.

Built on `coredis` 6 (the ``redis`` extra), which runs on anyio and so under trio and asyncio
alike. For each key, a hash holds the record (``generation`` in plain, ``data``), and a string
holds the lock: the owner's token, set only if absent, with a lease. Three short Lua scripts
make the steps atomic: renew the lease only if still the owner, release only if still the
owner, and write only if the stored generation is still the expected one.

A lock whose holder dies stays until its lease runs out (15 s by default), and the lease is
renewed while the holder fetches, so a live holder keeps it. A store that cannot be reached
raises `StoreUnavailableError` within `timeout`: no process falls back to refreshing alone.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from refresh_middleware._events import REDACTED, describe, logger

from ._errors import CorruptRecordError, StoreUnavailableError
from ._records import Record, is_generation
from ._store import Lease

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable

    import coredis

__all__ = ["RedisStore"]

LEASE: Final = 15.0
"""Default seconds a lock outlives a holder that stopped renewing it (a dead one)."""

FIRST_POLL: Final = 0.005
"""Seconds between the first attempts at a busy lock; doubled up to `LAST_POLL`."""

LAST_POLL: Final = 0.05

# KEYS[1]: the lock; ARGV[1]: the owner's token; ARGV[2]: the lease in milliseconds. A lock
# that already holds this token is ours: coredis resends a command whose reply was lost, and
# the resent SET NX finds the token the first one set.
_LOCK: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return 1
end
return 0
"""

# KEYS[1]: the lock; ARGV[1]: the owner's token; ARGV[2]: the lease in milliseconds.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1]: the lock; ARGV[1]: the owner's token.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1]: the record; ARGV[1]: the expected generation ('0': none); ARGV[2], ARGV[3]: the
# new generation and data.
_WRITE: Final = """
local stored = redis.call('HGET', KEYS[1], 'generation')
if (stored or '0') ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'data', ARGV[3])
return 1
"""


def _import_coredis() -> None:
    try:
        importlib.import_module("coredis")  # only the `redis` extra brings it
    except ImportError as error:
        msg = "RedisStore needs coredis 6: pip install 'refresh-middleware[redis]'"
        raise ImportError(msg, name="coredis") from error


def _finite_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


SCHEMES: Final = ("redis", "rediss", "unix")
"""The URL schemes coredis connects with: TCP, TCP with TLS, a Unix socket."""

_SECRET_NAMES: Final = ("password", "secret", "token")
"""Query parameters whose values are masked in messages (``?password=``)."""


def _safe_url(url: str) -> str:
    """`url` without its user name and password, and with secret query values masked."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(_masked(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=host, query=query))


def _masked(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    secret = any(word in unquote(name).lower() for word in _SECRET_NAMES)
    return f"{name}={REDACTED}" if equals and secret else pair


def _checked_url(url: str) -> str:
    """`url`, if coredis can connect with it; a `ValueError` naming the accepted forms if not."""
    if urlsplit(url).scheme not in SCHEMES:
        msg = (
            f"a Redis URL starts with redis://, rediss:// (TLS) or unix://, got {_safe_url(url)!r}"
        )
        raise ValueError(msg)
    return url


class RedisStore:
    """Records and locks in a Redis that the processes of many hosts share.

    Args:
        redis: A URL (``redis://host:6379/0``, ``rediss://`` for TLS, ``unix://``), or a
            `coredis.Redis` client. With a URL, each renewal opens its own connection, so the
            store works from any event loop and thread. A client is entered (``async with``)
            around each use, as coredis 6 wants; share one only within the event loop that
            made it, entered by a task above every task that uses the credential.
        prefix: Prepended to each key: the record is ``prefix + key``, its lock
            ``prefix + key + ":lock"``.
        lease: Seconds a lock outlives a holder that stops renewing it (at most 30 is wise:
            a dead holder delays the fleet by up to one lease). Renewed every third of it
            while the holder fetches.
        timeout: Seconds to connect and to wait for each reply (URL only) before
            `StoreUnavailableError`.

    Raises:
        ImportError: coredis is not installed (the ``redis`` extra).
        ValueError: `lease` or `timeout` is not a positive number of seconds, or the URL is
            not a ``redis://``, ``rediss://`` or ``unix://`` one.

    User name and password in the URL are percent-decoded (``%40`` for ``@``), as redis-py
    does, so a generated password can be given; `repr` and errors never show them, nor a
    ``?password=`` in the query.

    """

    __slots__ = ("_client", "_lease", "_url", "prefix", "timeout")

    def __init__(
        self,
        redis: str | coredis.Redis[Any],
        *,
        prefix: str = "refresh_middleware:",
        lease: float = LEASE,
        timeout: float = 3.0,
    ) -> None:
        _import_coredis()
        options: dict[str, object] = {"lease": lease, "timeout": timeout}
        for name, value in options.items():
            if not _finite_seconds(value):
                msg = f"{name} must be a positive, finite number of seconds, got {value!r}"
                raise ValueError(msg)
        self._url: str | None = _checked_url(redis) if isinstance(redis, str) else None
        self._client: coredis.Redis[Any] | None = None if isinstance(redis, str) else redis
        self._lease = float(lease)
        self.prefix: Final = prefix
        self.timeout: Final = float(timeout)

    def __repr__(self) -> str:
        """Where the Redis is, without credentials."""
        where = repr(self._client) if self._url is None else repr(_safe_url(self._url))
        return f"RedisStore({where})"

    @property
    def lease(self) -> float:
        """Seconds a lock outlives a holder that stopped renewing it."""
        return self._lease

    def _connect(self) -> coredis.Redis[bytes]:
        import coredis  # noqa: PLC0415 - checked in __init__

        if self._client is not None:
            return cast("coredis.Redis[bytes]", self._client)
        return coredis.Redis.from_url(
            cast("str", self._url),
            connect_timeout=self.timeout,
            stream_timeout=self.timeout,
            decode_responses=False,
            decode_components=True,
        )

    @contextlib.asynccontextmanager
    async def fresh_client(self) -> AsyncGenerator[coredis.Redis[bytes]]:
        """A client of its own, connected; the given client when there is one (it is shared)."""
        client = self._connect()
        async with client.connection_pool:
            yield client

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncGenerator[_RedisSession]:
        """A connected session on the record and lock of `key`.

        Raises:
            StoreUnavailableError: The Redis cannot be reached.

        """
        client = self._connect()
        session = _RedisSession(self, client, key)
        raised: list[BaseException] = []
        try:
            # The pool, not the client: a pool counts its users, so a client the host entered
            # in a task above this one is shared, and one nobody entered is entered here.
            async with client.connection_pool:
                try:
                    yield session
                except BaseException as error:
                    raised.append(error)
                    raise
        except BaseException as error:
            # coredis runs its connections in a task group, which wraps what the block raised
            # in an exception group: the block's own exception goes on as itself.
            if raised:
                _raise_as_itself(raised[0])
            if isinstance(error, Exception) and _unreachable(error):
                raise session.unavailable("the connection failed", error) from error
            raise


def _raise_as_itself(error: BaseException) -> None:
    """Raise `error` again with the context it had, not the group it was wrapped in."""
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context


def _unreachable(error: BaseException) -> bool:
    """True for the errors of a Redis that is down, unreachable, slow or in trouble."""
    import coredis.exceptions  # noqa: PLC0415

    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        return all(_unreachable(each) for each in group.exceptions)
    return isinstance(error, coredis.exceptions.RedisError | OSError | TimeoutError)


class _RedisSession:
    """A connected client on one key's record and lock."""

    __slots__ = ("client", "key", "lock_key", "record_key", "store")

    def __init__(self, store: RedisStore, client: coredis.Redis[bytes], key: str) -> None:
        self.store = store
        self.client = client
        self.key = key
        self.record_key = f"{store.prefix}{key}"
        self.lock_key = f"{store.prefix}{key}:lock"

    def unavailable(self, what: str, error: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"{what} ({describe(error)})", store=repr(self.store), key=self.key
        )

    async def _call(self, what: str, request: Awaitable[Any]) -> Any:
        """Await one Redis command; a store in trouble becomes `StoreUnavailableError`."""
        import anyio  # noqa: PLC0415 - coredis brings it

        try:
            with anyio.fail_after(self.store.timeout):
                return await request
        except Exception as error:
            if _unreachable(error):
                raise self.unavailable(f"cannot {what}", error) from error
            raise

    async def read(self) -> Record | None:
        import coredis.exceptions  # noqa: PLC0415

        try:
            generation, data = await self._call(
                "read the record", self.client.hmget(self.record_key, ["generation", "data"])
            )
        except StoreUnavailableError as error:
            if isinstance(error.__cause__, coredis.exceptions.WrongTypeError):
                msg = f"{self.record_key!r} holds something other than a record"
                raise CorruptRecordError(msg, store=repr(self.store), key=self.key) from None
            raise
        if generation is None and data is None:
            return None
        if not (isinstance(generation, bytes) and is_generation(generation) and data is not None):
            msg = f"{self.record_key!r} has no readable generation or data"
            raise CorruptRecordError(msg, store=repr(self.store), key=self.key)
        return Record(int(generation), cast("bytes", data))

    async def lock(self, wait: float) -> Lease | None:
        import anyio  # noqa: PLC0415

        # The owner's host and process, for a person looking at the lock in Redis.
        token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        lease_ms = str(math.ceil(self.store.lease * 1000))
        deadline = time.monotonic() + wait
        pause = FIRST_POLL
        while True:
            # Not shielded: the session's connection runs in the caller's scope, and a
            # cancellation closes it under a shielded command too (it then failed with
            # "Connection lost!"). A command cut short may have taken the lock: released
            # (if it did) on a fresh connection before the cancellation goes on.
            try:
                taken = await self._call(
                    "take the lock",
                    self.client.eval(_LOCK, keys=[self.lock_key], args=[token, lease_ms]),
                )
            except BaseException:
                await self.unlock(Lease(self.key, token))
                raise
            if taken:
                return Lease(self.key, token)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await anyio.sleep(min(pause, left))
            pause = min(pause * 2, LAST_POLL)

    @contextlib.asynccontextmanager
    async def keep(self, lease: Lease) -> AsyncGenerator[None]:
        """Renew the lease every third of it while the block runs, on a connection of its own.

        The block (a grant and its write) runs shielded from the caller's cancellation; the
        session's connection does not, as coredis runs it in the scope that opened the session.
        A client entered here, inside the shield, serves the block's commands to their end.
        """
        import anyio  # noqa: PLC0415

        raised: list[BaseException] = []
        opened = self.client
        try:
            async with self.store.fresh_client() as client, anyio.create_task_group() as group:
                self.client = client
                group.start_soon(self._renew_while_held, lease)
                try:
                    yield
                except BaseException as error:
                    raised.append(error)
                    raise
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The renewer never raises: the group holds what the block raised.
            _raise_as_itself(raised[0] if raised else group)
        finally:
            self.client = opened

    async def _renew_while_held(self, lease: Lease) -> None:
        import anyio  # noqa: PLC0415

        lease_ms = str(math.ceil(self.store.lease * 1000))
        while True:
            await anyio.sleep(self.store.lease / 3)
            try:
                renewed = await self._call(
                    "renew the lease",
                    self.client.eval(_RENEW, keys=[self.lock_key], args=[lease.token, lease_ms]),
                )
            except Exception as error:  # noqa: BLE001 - the write says whether it still counts
                logger.warning(
                    "refresh_middleware: %r could not renew the lease of %r: %s",
                    self.store,
                    self.key,
                    describe(error),
                )
                continue
            if not renewed:
                logger.warning(
                    "refresh_middleware: %r: the lease of %r ran out while fetching; the "
                    "compare-and-set decides whose record stays",
                    self.store,
                    self.key,
                )
                return

    async def write(self, lease: Lease, expected: int, record: Record) -> bool:  # noqa: ARG002
        # The generation decides, not the lease: a holder whose lease ran out may still write
        # when nobody wrote meanwhile, which keeps the rotation it fetched.
        written = await self._call(
            "write the record",
            self.client.eval(
                _WRITE,
                keys=[self.record_key],
                args=[str(expected), str(record.generation), record.data],
            ),
        )
        return bool(written)

    async def unlock(self, lease: Lease) -> None:
        import anyio  # noqa: PLC0415

        with anyio.CancelScope(shield=True):
            try:
                await self._release(self.client, lease)
            except Exception:  # noqa: BLE001 - cancelled: the session's connection is closed
                try:
                    # A cancellation closes the session's connection with the rest of the
                    # cancelled scope; a fresh one, made under the shield, can still release.
                    async with self.store.fresh_client() as client:
                        await self._release(client, lease)
                except Exception as error:  # noqa: BLE001 - the lease runs out on its own
                    logger.warning(
                        "refresh_middleware: %r could not release the lock of %r: %s",
                        self.store,
                        self.key,
                        describe(error),
                    )

    async def _release(self, client: coredis.Redis[bytes], lease: Lease) -> None:
        await self._call(
            "release the lock", client.eval(_RELEASE, keys=[self.lock_key], args=[lease.token])
        )
