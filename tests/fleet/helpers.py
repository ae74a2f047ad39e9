"""Doubles for the fleet tests: a counting fetch, a counting store wrapper, a record planter."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections import Counter
from typing import Any

import pytest
import trio

from refresh_middleware._shared._records import encode
from refresh_middleware.shared import (
    Credential,
    FileStore,
    MemoryStore,
    PostgresStore,
    Record,
    RedisStore,
)

_tokens = itertools.count(1)

# coredis leaves the buffers of a connection that failed to connect to the collector, and
# those of each RedisCluster's layout (never closed): its leaks, not ours, collected before
# the test ends.
LEAK = r"ignore:Unclosed <MemoryObject(Send|Receive)Stream:ResourceWarning"

SENTINEL_NAME = "refresh-primary"
"""The name under which the tests' Sentinel watches its primary."""

TOPOLOGIES: dict[str, dict[str, Any]] = {
    "redis": {},
    "cluster": {"cluster": True},
    "sentinel": {"sentinel": SENTINEL_NAME},
    "valkey": {},
}
"""The RedisStore options of each kind of Redis the fleet tests run on."""

URL_FIXTURES = {
    "redis": "redis_url",
    "cluster": "redis_cluster_url",
    "sentinel": "redis_sentinel_url",
    "valkey": "valkey_url",
}
"""The fixture that starts each kind of Redis and gives its URL (conftest.py, servers.py)."""


def store_of(kind: str, where: str, **options: Any) -> FileStore | PostgresStore | RedisStore:
    """A store of `kind` ("file", "postgres", or a key of `TOPOLOGIES`) on `where`: a folder, a
    DSN or a URL; a PostgreSQL's table is named by `prefix`."""
    if kind == "file":
        return FileStore(where)
    if kind == "postgres":
        return PostgresStore(where, table=options.pop("prefix"), **options)
    return RedisStore(where, **TOPOLOGIES[kind], **options)


@dataclasses.dataclass
class Fetcher:
    """A fetch that counts its calls, records what it was given, and can be slowed or failed."""

    calls: int = 0
    given: list[Credential | None] = dataclasses.field(default_factory=list)
    delay: float = 0.0
    error: Exception | None = None
    started: trio.Event = dataclasses.field(default_factory=trio.Event)

    async def __call__(self, current: Credential | None) -> Credential:
        self.calls += 1
        self.given.append(current)
        self.started.set()
        if self.delay:
            await trio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        number = next(_tokens)
        return Credential(f"access-{number}", f"refresh-{number}", None, {"n": number})


class CountingStore:
    """A store that counts every session operation of the store it wraps."""

    def __init__(self, store: Any, *, refuse_writes: int = 0, lock_delay: float = 0.0) -> None:
        self.store = store
        self.counts: Counter[str] = Counter()
        self.refuse_writes = refuse_writes
        self.lock_delay = lock_delay

    def __repr__(self) -> str:
        return f"Counting({self.store!r})"

    @property
    def lease(self) -> float | None:
        return self.store.lease

    @property
    def operations(self) -> int:
        return sum(self.counts.values())

    @contextlib.asynccontextmanager
    async def open(self, key: str):
        self.counts["open"] += 1
        async with self.store.open(key) as session:
            yield _CountingSession(self, session)


class _CountingSession:
    def __init__(self, owner: CountingStore, session: Any) -> None:
        self.owner = owner
        self.session = session

    async def read(self):
        self.owner.counts["read"] += 1
        return await self.session.read()

    async def lock(self, wait: float):
        self.owner.counts["lock"] += 1
        if self.owner.lock_delay:
            await trio.sleep(self.owner.lock_delay)
        return await self.session.lock(wait)

    def keep(self, lease):
        return self.session.keep(lease)

    async def write(self, lease, expected, record):
        self.owner.counts["write"] += 1
        if self.owner.refuse_writes:
            self.owner.refuse_writes -= 1
            return False
        return await self.session.write(lease, expected, record)

    async def unlock(self, lease):
        self.owner.counts["unlock"] += 1
        await self.session.unlock(lease)


async def plant(store: Any, key: str, data: bytes | Credential, generation: int = 1) -> None:
    """Put a record (or raw bytes) in the store as something else would: no lock, no check."""
    raw = encode(data, generation, None).data if isinstance(data, Credential) else data
    if isinstance(store, FileStore):
        store.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        async with store.open(key) as session:
            session.record_path.write_bytes(b"%d\n%b" % (generation, raw))
        return
    if isinstance(store, PostgresStore):
        async with store.open(key) as session:
            await sql(
                session,
                "INSERT INTO {table} (key, generation, data) VALUES (%s, %s, %s) ON CONFLICT "
                "(key) DO UPDATE SET generation = excluded.generation, data = excluded.data",
                key,
                generation,
                raw,
            )
        return
    if isinstance(store, MemoryStore):
        store._shelf.records[key] = Record(generation, raw)
        return
    assert isinstance(store, RedisStore)
    async with store.open(key) as session:
        await session.client.hset(session.record_key, {"generation": str(generation), "data": raw})


async def sql(session: Any, template: str, *values: object) -> Any:
    """Run a statement on a PostgresStore session's table (made first if need be): its rows."""

    def run(connection: Any) -> Any:
        cursor = session._execute(connection, template, values)
        return cursor.fetchall() if cursor.description else cursor.rowcount

    return await session._run(session.records, "run a test's statement", run)


async def plant_raw(store: Any, key: str, contents: bytes) -> None:
    """Put bytes where the record goes: a record file's contents, a Redis string, or a row
    whose generation is 0 (in a table whose check was dropped, as a hand-made table may)."""
    if isinstance(store, MemoryStore):
        pytest.skip("a MemoryStore keeps Records, never bytes without a generation")
    if isinstance(store, FileStore):
        store.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        async with store.open(key) as session:
            session.record_path.write_bytes(contents)
        return
    if isinstance(store, PostgresStore):
        async with store.open(key) as session:
            check = f"{store.table}_generation_check"  # PostgreSQL's name for the CHECK
            await sql(session, f'ALTER TABLE {{table}} DROP CONSTRAINT "{check}"')
            await sql(
                session,
                "INSERT INTO {table} (key, generation, data) VALUES (%s, 0, %s)",
                key,
                contents,
            )
        return
    async with store.open(key) as session:
        await session.client.set(session.record_key, contents)


async def delete(store: Any, key: str) -> None:
    """Remove the record, as an administrator (or a Redis restarted without persistence) would."""
    if isinstance(store, FileStore):
        async with store.open(key) as session:
            session.record_path.unlink()
        return
    if isinstance(store, PostgresStore):
        async with store.open(key) as session:
            await sql(session, "DELETE FROM {table} WHERE key = %s", key)
        return
    if isinstance(store, MemoryStore):
        del store._shelf.records[key]
        return
    async with store.open(key) as session:
        await session.client.delete([session.record_key])


@contextlib.asynccontextmanager
async def held(store: Any, key: str):
    """Hold the lock of `key` from another session for the block, as another process would."""
    async with store.open(key) as session:
        lease = await session.lock(5.0)
        assert lease is not None
        try:
            yield session
        finally:
            await session.unlock(lease)


PROCESS_WAIT = 120.0
"""How long the tests of real processes wait for a barrier or a report."""


def collect(results: Any, count: int) -> list[Any]:
    """The next `count` reports of the worker processes."""
    return [results.get(timeout=PROCESS_WAIT) for _ in range(count)]


def expiry_rounds(
    server: Any, barrier: Any, results: Any, processes: int, rounds: int
) -> list[Any]:
    """Expire the token `rounds` times, each time releasing the workers for one round.

    Per round: (refresh grants, ok calls, failed calls, seconds, the distinct errors).
    """
    figures = []
    for _ in range(rounds):
        before = server.oauth.stats.refresh_grants
        server.expire_all()
        started = time.monotonic()
        barrier.wait(PROCESS_WAIT)
        reports = collect(results, processes)
        figures.append(
            (
                server.oauth.stats.refresh_grants - before,
                sum(report.ok for report in reports),
                sum(report.failed for report in reports),
                round(time.monotonic() - started, 2),
                sorted({report.errors for report in reports} - {""}),
            )
        )
    return figures
