"""`RedisStore`: the processes of many hosts share a credential through an existing Redis.

Built on `coredis` 6 (the ``redis`` extra), which runs on anyio and so under trio and asyncio
alike, on one server, a Redis Cluster (``cluster=True``), a primary behind Sentinel
(``sentinel="name"``), and Valkey. For each key, a hash holds the record (``generation`` in
plain, ``data``), and a string holds the lock: the owner's token, set only if absent, with a
lease. Both names carry one hash tag, ``{prefix + key}``, so a cluster keeps them in one slot
and one script may touch both. Three short Lua scripts make the steps atomic: renew the lease
only if still the owner, release only if still the owner, and write only for the lock's owner
and only if the stored generation is still the expected one (the write is fenced: a holder
whose lock was taken over cannot write, even when a failover lost the lock's history).

A lock whose holder dies stays until its lease runs out (15 s by default), and the lease is
renewed while the holder fetches, so a live holder keeps it. A store that cannot be reached
raises `StoreUnavailableError` within `timeout`: no process falls back to refreshing alone.

Why it is over 600 lines: the three topologies (one server, Cluster, Sentinel) each need their
own connecting and checking, and the Lua scripts, renewing the lease and the error mapping must
stay beside the session that runs them.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import secrets
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from refresh_middleware._backend import cancellations, checkpoint_if_cancelled
from refresh_middleware._events import REDACTED, describe, logger

from ._errors import CorruptRecordError, StoreUnavailableError
from ._records import Record, is_generation
from ._store import Lease, finite_seconds

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable

    import coredis
    from coredis.connection import TCPLocation

    Client: TypeAlias = coredis.Redis[bytes] | coredis.RedisCluster[bytes]

__all__ = ["RedisStore"]

LEASE: Final = 15.0
"""Default seconds a lock outlives a holder that stopped renewing it (a dead one)."""

FIRST_POLL: Final = 0.005
"""Seconds between the first attempts at a busy lock; doubled up to `LAST_POLL`."""

LAST_POLL: Final = 0.05

SENTINEL_PORT: Final = 26379
CLUSTER_PORT: Final = 6379

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

# KEYS[1]: the record, KEYS[2]: its lock (one hash tag: one slot). ARGV[1]: the owner's token;
# ARGV[2]: the lease in milliseconds; ARGV[3]: the expected generation; ARGV[4]: the generation
# an absent record counts as ('0', or that of the record under the names before the hash tag);
# ARGV[5], ARGV[6]: the new generation and data. Returns 1 written, 0 another generation is
# stored, -1 another owner holds the lock.
_WRITE: Final = """
local owner = redis.call('GET', KEYS[2])
if owner == false then
    -- The lease ran out and nobody took the lock: take it back; the generation decides.
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
elseif owner ~= ARGV[1] then
    return -1
end
local stored = redis.call('HGET', KEYS[1], 'generation') or ARGV[4]
if stored ~= ARGV[3] then
    return 0
end
redis.call('HSET', KEYS[1], 'generation', ARGV[5], 'data', ARGV[6])
return 1
"""

TAKEN_OVER: Final = -1
"""What the write script returns when another owner holds the lock."""


def _import_coredis() -> None:
    try:
        importlib.import_module("coredis")  # only the `redis` extra brings it
    except ImportError as error:
        msg = (
            "RedisStore needs coredis 6: pip install -e '.[redis]' in a clone of refresh_middleware"
        )
        raise ImportError(msg, name="coredis") from error


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
            `coredis.Redis` or `coredis.RedisCluster` client. With a URL, each renewal opens
            its own connection, so the store works from any event loop and thread. A client
            is entered (``async with``) around each use, as coredis 6 wants; share one only
            within the event loop that made it, entered by a task above every task that uses
            the credential.
        prefix: Prepended to each key, inside one hash tag: the record is
            ``{prefix + key}``, its lock ``{prefix + key}:lock`` (one slot on a cluster).
        lease: Seconds a lock outlives a holder that stops renewing it (at most 30 is wise:
            a dead holder delays the fleet by up to one lease). Renewed every third of it
            while the holder fetches.
        timeout: Seconds to connect and to wait for each reply (URL only) before
            `StoreUnavailableError`.
        cluster: The URL names a node of a Redis Cluster (or a Valkey cluster); the client
            finds the others.
        sentinel: The name of the primary that Sentinel watches (``"mymaster"``); the URL
            then names the Sentinels, comma-separated
            (``redis://:password@sentinel-1:26379,sentinel-2:26379/0``): its user name,
            password and database are the primary's.

    Raises:
        ImportError: coredis is not installed (the ``redis`` extra).
        ValueError: `lease` or `timeout` is not a positive number of seconds, the URL is not a
            ``redis://``, ``rediss://`` or ``unix://`` one, both `cluster` and `sentinel` are
            given (or either with a client), or the URL of the cluster's nodes or of the
            Sentinels cannot be read.

    User name and password in the URL are percent-decoded (``%40`` for ``@``), as redis-py
    does, so a generated password can be given; `repr` and errors never show them, nor a
    ``?password=`` in the query.

    """

    __slots__ = ("_client", "_cluster", "_lease", "_sentinel", "_url", "prefix", "timeout")

    def __init__(  # noqa: PLR0913 - the public options, each named at the call (keyword-only)
        self,
        redis: str | coredis.Redis[Any] | coredis.RedisCluster[Any],
        *,
        prefix: str = "refresh_middleware:",
        lease: float = LEASE,
        timeout: float = 3.0,
        cluster: bool = False,
        sentinel: str | None = None,
    ) -> None:
        _import_coredis()
        options: dict[str, object] = {"lease": lease, "timeout": timeout}
        for name, value in options.items():
            if not finite_seconds(value):
                msg = f"{name} must be a positive, finite number of seconds, got {value!r}"
                raise ValueError(msg)
        _check_topology(redis, cluster=cluster, sentinel=sentinel)
        self._url: str | None = _checked_url(redis) if isinstance(redis, str) else None
        self._client = None if isinstance(redis, str) else redis
        self._cluster = cluster
        self._sentinel = sentinel
        self._lease = float(lease)
        self.prefix: Final = prefix
        self.timeout: Final = float(timeout)

    def __repr__(self) -> str:
        """Where the Redis is, without credentials."""
        if self._url is None:
            return f"RedisStore({self._client!r})"
        topology = ", cluster=True" if self._cluster else ""
        if self._sentinel is not None:
            topology = f", sentinel={self._sentinel!r}"
        return f"RedisStore({_safe_url(self._url)!r}{topology})"

    @property
    def lease(self) -> float:
        """Seconds a lock outlives a holder that stopped renewing it."""
        return self._lease

    @contextlib.asynccontextmanager
    async def fresh_client(self) -> AsyncGenerator[Client]:
        """A client of its own, connected; the given client when there is one (it is shared)."""
        if self._url is None:
            client = cast("Client", self._client)
            # The pool, not the client: a pool counts its users, so a client the host entered
            # in a task above this one is shared, and one nobody entered is entered here.
            async with client.connection_pool:
                yield client
            return
        async with _connected(
            self._url, cluster=self._cluster, sentinel=self._sentinel, seconds=self.timeout
        ) as client:
            yield client

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncGenerator[_RedisSession]:
        """A connected session on the record and lock of `key`.

        Raises:
            StoreUnavailableError: The Redis cannot be reached.
            ValueError: ``prefix + key`` starts with ``}``: it would make an empty hash tag.

        """
        names = _Names.of(self.prefix, key)
        raised: list[BaseException] = []
        try:
            async with self.fresh_client() as client:
                try:
                    yield _RedisSession(self, client, key, names)
                except BaseException as error:
                    raised.append(error)
                    raise
        except BaseException as error:
            # coredis runs its connections in a task group, which wraps what the block raised
            # in an exception group: the block's own exception goes on as itself.
            if raised:
                _raise_as_itself(raised[0])
            if isinstance(error, Exception) and _unreachable(error):
                raise _unavailable(self, key, "the connection failed", error) from error
            raise


class _Names(NamedTuple):
    """Where one key's record and lock live, and where its record lived before the hash tag."""

    record: str
    lock: str
    legacy: str

    @classmethod
    def of(cls, prefix: str, key: str) -> _Names:
        name = prefix + key
        if name.startswith("}"):
            # Redis would hash the whole names, not the tag: the record and lock would part.
            msg = f"prefix + key must not start with '}}', got {name!r}"
            raise ValueError(msg)
        return cls(f"{{{name}}}", f"{{{name}}}:lock", name)


def _check_topology(redis: object, *, cluster: bool, sentinel: str | None) -> None:
    """Refuse options that contradict each other, and a URL of nodes that cannot be read."""
    if cluster and sentinel is not None:
        msg = "a RedisStore is on a cluster or behind Sentinel, not both"
        raise ValueError(msg)
    if not isinstance(redis, str):
        if cluster or sentinel is not None:
            msg = "cluster= and sentinel= go with a URL; a client is used as it was made"
            raise ValueError(msg)
        return
    if sentinel is not None and not sentinel:
        msg = "sentinel must name the primary that Sentinel watches, got ''"
        raise ValueError(msg)
    if cluster or sentinel:
        _nodes(redis, sentinel=bool(sentinel))


class _Nodes(NamedTuple):
    """The servers a URL names (cluster nodes, or Sentinels), and how to connect to them."""

    locations: list[TCPLocation]
    username: str | None
    password: str | None
    database: int
    ssl_context: ssl.SSLContext | None


def _nodes(url: str, *, sentinel: bool) -> _Nodes:
    """Read ``redis://[user[:password]@]host[:port][,host[:port]...][/db]``.

    ``rediss://`` is TLS (the system's certificate authorities) to every server. Behind
    Sentinel, the user name, password and database are the primary's: Sentinels that want a
    password of their own are reached through a client made by hand. A cluster has database
    0 only.
    """
    from coredis.connection import TCPLocation  # noqa: PLC0415 - checked in __init__

    what = "Sentinel" if sentinel else "cluster node"
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if parts.scheme not in {"redis", "rediss"} or not hosts:
        msg = f"a {what} is named by a redis:// or rediss:// URL, got {_safe_url(url)!r}"
        raise ValueError(msg)
    locations: list[TCPLocation] = []
    for host in hosts.split(","):
        # Each address is read as the host of a URL of its own: ports, IPv6 brackets.
        one = urlsplit(f"//{host}")
        try:
            port = one.port or (SENTINEL_PORT if sentinel else CLUSTER_PORT)
        except ValueError:
            port = 0
        if not one.hostname or not port:
            msg = f"cannot read the {what} address {host!r} in {_safe_url(url)!r}"
            raise ValueError(msg)
        locations.append(TCPLocation(one.hostname, port))
    database = parts.path.strip("/") or "0"
    if not database.isdigit() or (not sentinel and database != "0"):
        msg = f"the database of a {what} URL must be a number (0 on a cluster), got {database!r}"
        raise ValueError(msg)
    user, has_password, password = userinfo.partition(":")
    return _Nodes(
        locations,
        unquote(user) or None,
        unquote(password) if has_password else None,
        int(database),
        ssl.create_default_context() if parts.scheme == "rediss" else None,
    )


@contextlib.asynccontextmanager
async def _connected(
    url: str, *, cluster: bool, sentinel: str | None, seconds: float
) -> AsyncGenerator[Client]:
    """A connected client of `url`: one server, a cluster, or the primary Sentinel names.

    `seconds` bounds connecting and each reply.
    """
    import coredis  # noqa: PLC0415 - checked in __init__

    client: Client
    if sentinel is not None:
        nodes = _nodes(url, sentinel=True)
        # The Sentinels are asked where the primary is for each session: after a failover,
        # the next one talks to the new primary.
        watchers = coredis.Sentinel(
            nodes.locations,
            sentinel_kwargs={
                "connect_timeout": seconds,
                "stream_timeout": seconds,
                "ssl_context": nodes.ssl_context,
            },
            decode_responses=False,
            connect_timeout=seconds,
            stream_timeout=seconds,
            username=nodes.username,
            password=nodes.password,
            db=nodes.database,
            ssl_context=nodes.ssl_context,
        )
        async with watchers:
            client = watchers.primary_for(sentinel)
            async with client.connection_pool:
                yield client
        return
    if cluster:
        # Not RedisCluster.from_url: it warns (DeprecationWarning) about its own startup node.
        nodes = _nodes(url, sentinel=False)
        client = coredis.RedisCluster(
            startup_nodes=nodes.locations,
            username=nodes.username,
            password=nodes.password,
            ssl_context=nodes.ssl_context,
            connect_timeout=seconds,
            stream_timeout=seconds,
            decode_responses=False,
        )
    else:
        # User name and password are percent-decoded, as redis-py does.
        client = coredis.Redis.from_url(
            url,
            connect_timeout=seconds,
            stream_timeout=seconds,
            decode_responses=False,
            decode_components=True,
        )
    async with client.connection_pool:
        yield client


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


def _unavailable(
    store: RedisStore, key: str, what: str, error: BaseException
) -> StoreUnavailableError:
    return StoreUnavailableError(f"{what} ({describe(error)})", store=repr(store), key=key)


class _RedisSession:
    """A connected client on one key's record and lock."""

    __slots__ = ("absent_as", "client", "key", "legacy_key", "lock_key", "record_key", "store")

    def __init__(self, store: RedisStore, client: Client, key: str, names: _Names) -> None:
        self.store = store
        self.client = client
        self.key = key
        self.record_key = names.record
        self.lock_key = names.lock
        self.legacy_key = names.legacy
        # The generation an absent record counts as in a compare-and-set: that of the record
        # read under the names before the hash tag, so its first write under the new names
        # is the next generation of it.
        self.absent_as = "0"

    def unavailable(self, what: str, error: BaseException) -> StoreUnavailableError:
        return _unavailable(self.store, self.key, what, error)

    async def _call(self, what: str, request: Awaitable[Any]) -> Any:
        """Await one Redis command; a store in trouble becomes `StoreUnavailableError`."""
        import anyio  # noqa: PLC0415 - coredis brings it

        mark = cancellations()
        try:
            with anyio.fail_after(self.store.timeout):
                return await request
        except Exception as error:
            if _unreachable(error):
                # coredis reports a cancellation that lands while it connects (a slow Sentinel
                # or primary) as a failed connection: the caller's cancellation goes on as
                # itself, not as an outage.
                await checkpoint_if_cancelled(mark)
                raise self.unavailable(f"cannot {what}", error) from error
            raise

    async def read(self) -> Record | None:
        record = await self._read(self.record_key)
        if record is not None:
            return record
        # A record stored before the hash tag (refresh_middleware 0.1) is read where it was
        # until the first write stores its next generation under the new names: an upgrade
        # logs nobody out. On a cluster it may sit in another slot: a command of its own.
        record = await self._read(self.legacy_key)
        self.absent_as = "0" if record is None else str(record.generation)
        return record

    async def _read(self, name: str) -> Record | None:
        import coredis.exceptions  # noqa: PLC0415

        try:
            generation, data = await self._call(
                "read the record", self.client.hmget(name, ["generation", "data"])
            )
        except StoreUnavailableError as error:
            if isinstance(error.__cause__, coredis.exceptions.WrongTypeError):
                msg = f"{name!r} holds something other than a record"
                raise CorruptRecordError(msg, store=repr(self.store), key=self.key) from None
            raise
        if generation is None and data is None:
            return None
        if not (isinstance(generation, bytes) and is_generation(generation) and data is not None):
            msg = f"{name!r} has no readable generation or data"
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

    async def write(self, lease: Lease, expected: int, record: Record) -> bool:
        # Fenced by the owner: a holder whose lock another took (its lease ran out, or a
        # failover lost it) cannot write. One whose lease ran out with nobody taking the lock
        # takes it back and writes when the generation still matches: it keeps the rotation
        # it fetched.
        lease_ms = str(math.ceil(self.store.lease * 1000))
        written: int = await self._call(
            "write the record",
            self.client.eval(
                _WRITE,
                keys=[self.record_key, self.lock_key],
                args=[
                    lease.token,
                    lease_ms,
                    str(expected),
                    self.absent_as,
                    str(record.generation),
                    record.data,
                ],
            ),
        )
        if written == TAKEN_OVER:
            logger.warning(
                "refresh_middleware: %r: another process took the lock of %r while this one "
                "fetched (its lease ran out); not writing",
                self.store,
                self.key,
            )
            await self._wait_for_the_new_owner()
        return written == 1

    async def _wait_for_the_new_owner(self) -> None:
        """Wait, at most one lease, until the process that took the lock over releases it.

        Then the record read next is the one it wrote, to adopt; or, if it wrote none, the
        lock is free and this holder's next write stores the rotation it fetched.
        """
        import anyio  # noqa: PLC0415

        deadline = time.monotonic() + self.store.lease
        pause = FIRST_POLL
        while await self._call("read the lock", self.client.exists([self.lock_key])):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await anyio.sleep(min(pause, left))
            pause = min(pause * 2, LAST_POLL)

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

    async def _release(self, client: Client, lease: Lease) -> None:
        await self._call(
            "release the lock", client.eval(_RELEASE, keys=[self.lock_key], args=[lease.token])
        )
