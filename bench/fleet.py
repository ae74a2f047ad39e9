"""What a fleet refresh adds: `SharedCredential.renew` on a file store, loopback Redis and
loopback PostgreSQL.

A renewal that fetches reads the record, takes the lock, reads again, calls `fetch`, writes
with a compare-and-set and releases the lock; one that finds a newer record stored by another
process only reads. Both are timed against `fetch` alone (here an in-memory fetch, so the
figure is the store's whole cost; a real token request adds tens of milliseconds on top). Calls
that meet no 401 never reach the store, so they are not measured here: they cost nothing more.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from measure import Config, Table, us

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples`, for the servers

from examples.postgres_server import binaries, postgres_server
from examples.redis_server import redis_server
from refresh_middleware.shared import (
    Credential,
    FileStore,
    PostgresStore,
    RedisStore,
    SharedCredential,
)

KEY = "bench/account"


async def fetch(current: Credential | None) -> Credential:
    """The cheapest fetch there is: what is left of a renewal is the store's cost."""
    return Credential("access", "refresh")


def per_renewal(store: Any, renewals: int) -> Callable[[], tuple[float, float, float]]:
    """Nanoseconds per fetch alone, per renewal that fetches, per renewal that adopts."""

    async def run() -> tuple[float, float, float]:
        one = SharedCredential(store, key=KEY, fetch=fetch)
        two = SharedCredential(store, key=KEY, fetch=fetch)
        latest = await one.current()
        await two.current()
        alone = fetching = adopting = 0
        for _ in range(renewals):
            start = time.perf_counter_ns()
            await fetch(latest)
            alone += time.perf_counter_ns() - start
            stale = latest
            start = time.perf_counter_ns()
            latest = await one.renew(stale)
            fetching += time.perf_counter_ns() - start
            start = time.perf_counter_ns()
            adopted = await two.renew(stale)  # another process: the record is newer already
            adopting += time.perf_counter_ns() - start
            if adopted != latest:
                raise RuntimeError("the second process did not adopt the stored record")
        return alone / renewals, fetching / renewals, adopting / renewals

    return lambda: trio.run(run)


def run(config: Config) -> list[Table]:
    """The file store, a loopback redis-server and PostgreSQL, best of `fleet_rounds` rounds."""
    table = Table(
        f"A fleet refresh: SharedCredential.renew against an in-memory fetch "
        f"({config.fleet_renewals} renewals a round, best of {config.fleet_rounds})",
        ("Store", "fetch alone", "renewal that fetches", "renewal that adopts"),
    )
    print(f"\n== {table.title}", flush=True)
    with contextlib.ExitStack() as servers:
        folder = servers.enter_context(tempfile.TemporaryDirectory())
        redis = servers.enter_context(redis_server())
        stores = {
            "FileStore (a temporary directory, fsync)": FileStore(Path(folder, "credentials")),
            "RedisStore (loopback, a connection each)": RedisStore(redis.url),
        }
        if binaries() is None:
            table.notes.append("PostgreSQL is not installed: no PostgresStore row.")
        else:
            postgres = servers.enter_context(postgres_server())
            name = "PostgresStore (loopback, a connection or two each)"
            stores[name] = PostgresStore(postgres.dsn)
        for name, store in stores.items():
            best = (float("inf"),) * 3
            for _ in range(config.fleet_rounds):
                figures = per_renewal(store, config.fleet_renewals)()
                best = tuple(min(pair) for pair in zip(best, figures, strict=True))
            table.add(name, us(best[0]), us(best[1]), us(best[2]))
    table.notes.append(
        "A renewal that fetches: read, lock, read, fetch, compare-and-set, unlock. One that "
        "adopts: a read. PostgresStore opens a connection to read and write and another for "
        "the lock (its transaction), and runs each statement in a worker thread. A real "
        "refresh grant adds its own round trip to the identity provider (tens of "
        "milliseconds); calls that meet no 401 never reach the store."
    )
    return [table]
