"""What each store does on its own: files, modes and locks; Redis leases, outages, clients;
PostgreSQL's table, advisory locks and their lease, outages, passwords."""

from __future__ import annotations

import asyncio
import logging
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Self

import coredis
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from refresh_middleware.shared import (
    CorruptRecordError,
    Credential,
    FetchTimeoutError,
    FileStore,
    Lease,
    PostgresStore,
    Record,
    RedisStore,
    SharedCredential,
    StoreUnavailableError,
)

from .conftest import fresh_table
from .helpers import LEAK, Fetcher, held, plant, sql

KEY = "provider/account-1"


# --------------------------------------------------------------------------------------------------
# FileStore


async def test_files_are_private_to_their_owner(tmp_path):
    """The directory is made 0700, the record and lock files are 0600."""
    store = FileStore(tmp_path / "made" / "here")
    await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    modes = sorted(stat.S_IMODE(path.stat().st_mode) for path in store.path.iterdir())
    assert (0o700, [0o600, 0o600]) == (stat.S_IMODE(store.path.stat().st_mode), modes)


async def test_a_write_leaves_no_temporary_file(tmp_path):
    """A record is written through a temporary file that is renamed: nothing else is left."""
    store = FileStore(str(tmp_path))
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    await shared.renew(await shared.current())
    assert ["provider%2Faccount-1.lock", "provider%2Faccount-1.record"] == sorted(
        path.name for path in tmp_path.iterdir()
    )


async def test_a_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    """A write that fails (a full disk) leaves the old record and no temporary file."""
    store = FileStore(tmp_path)
    shared = SharedCredential(store, key=KEY, fetch=Fetcher(), fetch_timeout=0.1)
    stale = await shared.current()

    def full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("refresh_middleware._shared._file.os.fsync", full)
    await shared.renew(stale)
    assert 2 == len(list(tmp_path.iterdir()))


async def test_a_directory_that_cannot_be_made_is_a_store_unavailable():
    """A directory that cannot be made (here: inside /proc) makes the store unavailable."""
    store = FileStore("/proc/self/refresh-middleware-test")
    with pytest.raises(StoreUnavailableError, match="cannot open the lock file") as caught:
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    assert repr(store) == caught.value.store


async def test_a_record_that_cannot_be_read_is_a_store_unavailable(tmp_path):
    """A record path that is not a readable file makes the store unavailable."""
    store = FileStore(tmp_path)
    (tmp_path / "provider%2Faccount-1.record").mkdir()
    with pytest.raises(StoreUnavailableError, match="cannot read the record"):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()


async def test_a_file_session_writes_only_under_its_lock(tmp_path):
    """Writing without holding the lock is a programming error, said at once."""
    async with FileStore(tmp_path).open(KEY) as session:
        with pytest.raises(RuntimeError, match="only under the lock"):
            await session.write(Lease(KEY, "not held"), 0, Record(1, b"x"))


async def test_a_file_session_releases_a_lock_left_held(tmp_path):
    """Leaving a session releases the lock it still holds."""
    store = FileStore(tmp_path)
    async with store.open(KEY) as session:
        await session.lock(0)
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)


async def test_unlocking_twice_is_harmless(tmp_path):
    """A lease released twice is released once."""
    async with FileStore(tmp_path).open(KEY) as session:
        lease = await session.lock(0)
        await session.unlock(lease)
        await session.unlock(lease)
        assert {} == session.held


def test_a_file_lock_is_waited_for_under_asyncio(tmp_path):
    """Under asyncio, a busy file lock is polled without blocking the loop."""
    store = FileStore(tmp_path)

    async def main() -> int:
        shared = SharedCredential(store, key=KEY, fetch=Fetcher())
        stale = await shared.current()
        async with store.open(KEY) as other:
            lease = await other.lock(0)
            task = asyncio.ensure_future(shared.renew(stale))
            await asyncio.sleep(0.1)
            await other.unlock(lease)
            return (await task).generation

    assert 2 == asyncio.run(main())


def test_a_fetch_that_takes_too_long_under_asyncio_is_a_typed_error(tmp_path):
    """Under asyncio too, fetch is cut short after fetch_timeout."""

    async def hang(current: Credential | None) -> Credential:
        await asyncio.sleep(30)
        raise AssertionError

    async def main() -> None:
        await SharedCredential(
            FileStore(tmp_path), key=KEY, fetch=hang, fetch_timeout=0.05
        ).current()

    with pytest.raises(FetchTimeoutError):
        asyncio.run(main())


def test_a_timeout_of_fetch_itself_under_asyncio_is_raised_as_it_is(tmp_path):
    """A TimeoutError that fetch raises (its own HTTP timeout) is not our timeout."""

    async def times_out(current: Credential | None) -> Credential:
        raise TimeoutError("the token endpoint timed out")

    async def main() -> None:
        await SharedCredential(FileStore(tmp_path), key=KEY, fetch=times_out).current()

    with pytest.raises(TimeoutError, match="token endpoint timed out") as caught:
        asyncio.run(main())
    assert not isinstance(caught.value, FetchTimeoutError)


def test_a_file_store_says_where_it_is(tmp_path):
    """repr shows the directory; the lock has no lease (it dies with its holder)."""
    store = FileStore(tmp_path)
    assert (f"FileStore({str(tmp_path)!r})", None) == (repr(store), store.lease)


# --------------------------------------------------------------------------------------------------
# RedisStore, as it is made


def test_a_redis_store_never_shows_a_password():
    """repr shows where the Redis is, without user name or password."""
    store = RedisStore("redis://user:hunter2@127.0.0.1:6379/0")
    assert "RedisStore('redis://127.0.0.1:6379/0')" == repr(store)


def test_a_password_in_the_query_never_shows():
    """A ?password= in the URL's query is masked in repr (and so in every error)."""
    store = RedisStore("redis://127.0.0.1:6379/0?password=hunter2&db=1")
    assert "RedisStore('redis://127.0.0.1:6379/0?password=[REDACTED]&db=1')" == repr(store)


@pytest.mark.parametrize("url", ["localhost:6379", "http://127.0.0.1:6379/0", "127.0.0.1"])
def test_a_url_that_is_not_a_redis_one_is_refused_when_made(url):
    """Only redis://, rediss:// and unix:// URLs are taken: a ValueError names them at once."""
    with pytest.raises(ValueError, match=r"redis://, rediss:// \(TLS\) or unix://"):
        RedisStore(url)


async def test_a_percent_encoded_password_is_decoded(own_redis):
    """A generated password given percent-encoded in the URL authenticates (as redis-py's)."""
    password = "p@ss:w/rd%"  # noqa: S105 - a throwaway redis-server's
    async with coredis.Redis.from_url(own_redis.url) as admin:
        await admin.config_set({"requirepass": password})
    encoded = "p%40ss%3Aw%2Frd%25"
    store = RedisStore(own_redis.url.replace("//", f"//:{encoded}@"))
    assert 1 == (await SharedCredential(store, key=KEY, fetch=Fetcher()).current()).generation


@pytest.mark.parametrize("options", [{"lease": 0}, {"lease": float("inf")}, {"timeout": True}])
def test_a_redis_store_checks_its_seconds(options):
    """lease and timeout must be positive and finite."""
    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        RedisStore("redis://127.0.0.1:6379/0", **options)


def test_a_redis_store_without_coredis_says_which_extra_to_install(monkeypatch):
    """Without coredis, making a RedisStore names the `redis` extra."""
    monkeypatch.setitem(sys.modules, "coredis", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[redis\]'"):
        RedisStore("redis://127.0.0.1:6379/0")


# --------------------------------------------------------------------------------------------------
# RedisStore, against a real redis-server


@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
async def test_a_redis_that_is_not_there_fails_closed_at_once():
    """Nothing listening: StoreUnavailableError within the timeout, and no fetch."""
    fetch = Fetcher()
    store = RedisStore("redis://127.0.0.1:9/0", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="cannot read the record") as caught:
        await SharedCredential(store, key=KEY, fetch=fetch).current()
    assert (0, True, KEY) == (fetch.calls, time.monotonic() - started < 3, caught.value.key)


async def test_a_given_client_is_used_as_it_is(redis_url):
    """A coredis client can be given instead of a URL; repr shows its location."""
    client = coredis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix="given:")
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    async with client:  # the host's own block, above every use
        first = await shared.current()
        renewed = await shared.renew(first)
    assert (2, True) == (renewed.generation, repr(store).startswith("RedisStore(Redis<"))


async def test_a_record_without_data_is_corrupt(redis_url):
    """A hash with a generation but no data is not a record."""
    store = RedisStore(redis_url, prefix="nodata:")
    async with store.open(KEY) as session:
        await session.client.hset(session.record_key, {"generation": "3"})
    with pytest.raises(CorruptRecordError, match="no readable generation or data"):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()


async def test_the_lease_is_renewed_while_a_fetch_runs(redis_url):
    """Every third of the lease, the holder renews it: the lock's time to live goes back up."""
    store = RedisStore(redis_url, prefix="renewed:", lease=0.6)
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch, fetch_timeout=0.55)
    stale = await shared.current()
    fetch.delay, fetch.started = 0.5, trio.Event()
    left: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(shared.renew, stale)
        await fetch.started.wait()
        await trio.sleep(0.45)  # unrenewed, 150 ms would be left; renewed at 0.2 s, 350 ms
        async with store.open(KEY) as session:
            left.append(await session.client.pttl(session.lock_key))
    assert left[0] > 300, left


async def test_a_lease_that_runs_out_under_a_paused_holder_keeps_the_newer_record(redis_url):
    """A holder paused past its lease loses the lock; its late write adopts the newer record."""
    store = RedisStore(redis_url, prefix="paused:", lease=0.5)
    await plant(store, KEY, Credential("first", "r1"), generation=1)
    stale = Credential("first", "r1", generation=1)
    started = threading.Event()

    async def paused(current: Credential | None) -> Credential:
        started.set()
        time.sleep(1.2)  # noqa: ASYNC251 - a GC pause, a frozen VM: its loop (and lease renewal) stand still
        return Credential("paused", "r-paused")

    results: list[Credential] = []
    paused_holder = SharedCredential(store, key=KEY, fetch=paused, fetch_timeout=0.3)
    holder = threading.Thread(target=lambda: results.append(paused_holder.renew_sync(stale)))
    holder.start()
    await trio.to_thread.run_sync(started.wait)
    other = SharedCredential(store, key=KEY, fetch=Fetcher(), lock_timeout=3)
    newer = await other.renew(stale)
    await trio.to_thread.run_sync(holder.join)
    assert (2, newer) == (newer.generation, results[0])


async def test_a_lease_lost_with_nobody_else_writing_keeps_the_fetched_record(redis_url, caplog):
    """A lease that ran out while nobody else wrote: the fetched record is still stored."""
    store = RedisStore(redis_url, prefix="lost:", lease=0.3)

    async def loses_its_lease(current: Credential | None) -> Credential:
        async with store.open(KEY) as session:
            await session.client.delete([session.lock_key])
        await trio.sleep(0.25)
        return Credential("kept", "r")

    shared = SharedCredential(store, key=KEY, fetch=loses_its_lease, fetch_timeout=0.29)
    with caplog.at_level(logging.WARNING, "refresh_middleware"):
        got = await shared.current()
    assert ("kept", True) == (got.access_token, "ran out while fetching" in caplog.text)


@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
async def test_a_redis_killed_during_a_fetch_leaves_the_grant_with_its_process(own_redis, caplog):
    """Redis dies while a holder fetches: renewing the lease, writing and releasing fail; the
    process keeps its grant and says the store did not take it."""
    store = RedisStore(own_redis.url, lease=0.6, timeout=1.0)

    async def fetch(current: Credential | None) -> Credential:
        own_redis.kill()
        await trio.sleep(0.3)  # past a third of the lease: a renewal was tried
        return Credential("lost", "r")

    with caplog.at_level(logging.WARNING, "refresh_middleware"):
        got = await SharedCredential(store, key=KEY, fetch=fetch, fetch_timeout=0.5).current()
    said = ("could not renew the lease", "the store could not take it", "could not release")
    assert ("lost", said) == (got.access_token, tuple(text for text in said if text in caplog.text))


class RefusingClient:
    """A client double that fails with errors that are not the store's."""

    def __init__(self, when: str) -> None:
        self.when = when
        self.connection_pool = self

    async def __aenter__(self) -> Self:
        if self.when == "enter":
            raise RuntimeError("a bug, not an outage")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.when == "exit":
            raise coredis.exceptions.ConnectionError("connection reset")
        if self.when == "exit in a group":
            raise ExceptionGroup("pool", [coredis.exceptions.ConnectionError("reset")])

    async def hmget(self, key: str, fields: list[str]) -> list[bytes]:
        raise KeyError("a bug, not an outage")


@pytest.mark.parametrize(("when", "error"), [("enter", RuntimeError), ("read", KeyError)])
async def test_errors_that_are_not_outages_are_raised_as_they_are(when, error):
    """Only the errors of an unreachable store become StoreUnavailableError."""
    store = RedisStore(RefusingClient(when))  # type: ignore[arg-type]
    with pytest.raises(error, match="a bug, not an outage"):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()


async def test_a_held_lock_is_held_for_every_other_session(store):
    """While one session holds a key's lock, another gets None from a try-lock."""
    async with held(store, KEY), store.open(KEY) as other:
        assert None is await other.lock(0)


@pytest.mark.parametrize("when", ["exit", "exit in a group"])
async def test_a_connection_that_fails_as_the_session_ends_is_a_store_unavailable(when):
    """Connection errors the pool raises on leaving, bare or grouped, fail closed."""
    store = RedisStore(RefusingClient(when))  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError, match="the connection failed"):
        async with store.open(KEY):
            pass


async def test_a_file_write_that_lost_the_race_writes_nothing(tmp_path):
    """A compare-and-set on a generation that is not the stored one writes nothing."""
    async with FileStore(tmp_path).open(KEY) as session:
        lease = await session.lock(0)
        assert (True, False, 1) == (
            await session.write(lease, 0, Record(1, b"first")),
            await session.write(lease, 0, Record(1, b"second")),
            (await session.read()).generation,
        )


async def test_a_lock_waited_for_is_taken_once_released(store):
    """lock(wait) polls a held lock and takes it as soon as its holder lets go."""
    async with trio.open_nursery() as nursery, store.open(KEY) as waiter:
        async with store.open(KEY) as holder:
            lease = await holder.lock(0)

            async def release_soon() -> None:
                await trio.sleep(0.1)
                await holder.unlock(lease)

            nursery.start_soon(release_soon)
            taken = await waiter.lock(5)
        assert None is not taken


async def test_a_lock_waited_for_in_vain_is_none(store):
    """lock(wait) on a lock held throughout gives up after `wait` seconds with None."""
    async with held(store, KEY), store.open(KEY) as waiter:
        assert None is await waiter.lock(0.1)


def _open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


async def test_failed_file_lock_attempts_leave_no_descriptor_open(tmp_path):
    """Each try-lock on a held file lock closes what it opened (the protocol polls with them)."""
    store = FileStore(tmp_path)
    async with held(store, KEY), store.open(KEY) as waiter:
        before = _open_descriptors()
        for _ in range(20):
            await waiter.lock(0)
        assert before == _open_descriptors()


async def test_a_cancelled_file_lock_wait_leaves_no_descriptor_open(tmp_path):
    """A wait for a held file lock cut short by a cancellation closes what it opened."""
    store = FileStore(tmp_path)
    async with held(store, KEY), store.open(KEY) as waiter:
        before = _open_descriptors()
        with trio.move_on_after(0.05):
            await waiter.lock(5)
        assert before == _open_descriptors()


# --------------------------------------------------------------------------------------------------
# PostgresStore, as it is made


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://app:hunter2@db.internal:5433/fleet",
            "user=app dbname=fleet host=db.internal port=5433",
        ),
        (
            "host=db.internal port=5433 dbname=fleet user=app password=hunter2",
            "user=app dbname=fleet host=db.internal port=5433",
        ),
    ],
)
def test_a_postgres_store_never_shows_a_password(dsn, shown):
    """repr shows where the database is, URL or key=value pairs alike, without the password."""
    assert f"PostgresStore({shown!r}, table='refresh_middleware_credentials')" == repr(
        PostgresStore(dsn)
    )


def test_a_dsn_that_does_not_parse_is_refused_without_echoing_it():
    """A connection string libpq cannot parse is a ValueError that does not repeat it."""
    with pytest.raises(ValueError, match="not a PostgreSQL connection string") as caught:
        PostgresStore("host=db.internal password=hunter2 stray")
    assert "hunter2" not in str(caught.value)


def test_a_dsn_must_be_a_string():
    """A DSN of another type is a TypeError naming the type."""
    with pytest.raises(TypeError, match="got bytes"):
        PostgresStore(b"host=db.internal")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"lease": 0}, {"lease": float("nan")}, {"timeout": True}])
def test_a_postgres_store_checks_its_seconds(options):
    """lease and timeout must be positive and finite."""
    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        PostgresStore("host=db.internal", **options)


@pytest.mark.parametrize("table", ["", "a.b.c", "auth.", 42])
def test_a_postgres_store_checks_its_table_name(table):
    """table is a name, optionally schema-qualified with one dot."""
    with pytest.raises(ValueError, match="table must be a table name"):
        PostgresStore("host=db.internal", table=table)


def test_a_postgres_store_without_psycopg_says_which_extra_to_install(monkeypatch):
    """Without psycopg, making a PostgresStore names the `postgres` extra."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[postgres\]'"):
        PostgresStore("host=db.internal")


def test_the_connection_keeps_what_the_dsn_says():
    """Settings the DSN gives are kept; the store adds only the ones it does not give."""
    store = PostgresStore("host=db.internal connect_timeout=30 application_name=billing")
    settings = conninfo_to_dict(store._conninfo)
    assert ("30", "billing", "3000") == (
        settings["connect_timeout"],
        settings["application_name"],
        settings["tcp_user_timeout"],
    )


def test_the_table_statement_quotes_a_schema_qualified_name():
    """table_statement() names the table as given, quoted, for those who create it themselves."""
    statement = PostgresStore("host=db.internal", table='auth.Odd"Name').table_statement()
    assert statement.startswith('CREATE TABLE IF NOT EXISTS "auth"."Odd""Name" (\n')


def test_the_documented_table_statement_is_the_one_the_store_runs():
    """The choose-a-store page shows, for those who create the table, the store's own statement."""
    page = Path(__file__).parents[2] / "docs" / "howto" / "choose-a-store.md"
    assert f"```sql\n{PostgresStore('host=db.internal').table_statement()}\n```" in page.read_text()


# --------------------------------------------------------------------------------------------------
# PostgresStore, against a real PostgreSQL


async def test_a_postgres_that_is_not_there_fails_closed_at_once():
    """Nothing listening: StoreUnavailableError within the timeout, and no fetch."""
    fetch = Fetcher()
    store = PostgresStore("postgresql://app:hunter2@127.0.0.1:9/fleet", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="cannot read the record") as caught:
        await SharedCredential(store, key=KEY, fetch=fetch).current()
    assert (0, True, False) == (
        fetch.calls,
        time.monotonic() - started < 3,
        "hunter2" in str(caught.value),
    )


async def test_a_wrong_password_fails_closed_without_showing_it(postgres_dsn):
    """A password the server refuses: StoreUnavailableError, the password nowhere in it."""
    wrong = make_conninfo(postgres_dsn, password="hunter2")  # noqa: S106 - refused on purpose
    store = PostgresStore(wrong, table=fresh_table())
    with pytest.raises(StoreUnavailableError, match="password authentication failed") as caught:
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    assert "hunter2" not in str(caught.value) + repr(caught.value.__cause__)


async def test_the_table_is_made_on_first_use_with_the_documented_statement(postgres_dsn):
    """The first use creates the table: its columns are those of table_statement()."""
    store = PostgresStore(postgres_dsn, table=fresh_table())
    await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    async with store.open(KEY) as session:
        columns = await sql(
            session,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY ordinal_position",
            store.table,
        )
    assert [
        ("key", "text"),
        ("generation", "bigint"),
        ("data", "bytea"),
        ("updated_at", "timestamp with time zone"),
    ] == columns


async def test_a_table_made_by_another_process_at_the_same_moment_is_used(postgres_dsn):
    """Two processes creating the table at once: the loser of the race goes on, no error."""
    store = PostgresStore(postgres_dsn, table=fresh_table())
    async with store.open(KEY) as other, store.open(KEY) as session:
        # The other 'process' is creating the table, in a transaction not committed yet.
        await other.lock(0)
        await other._run(other.locking, "create", lambda c: c.execute(store.table_statement()))
        read: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _append(read, session.read()))
            await _waits_on_a_lock(other)  # this one's creation waits for the other's
            await other._run(other.locking, "commit", lambda c: c.execute("COMMIT"))
    assert [None] == read


async def _append(into: list[object], awaitable) -> None:
    into.append(await awaitable)


def _lease_of(session) -> Lease:
    return Lease(session.key, session.held)


async def _waits_on_a_lock(session) -> None:
    """Return once some backend waits on a lock (the creation stuck behind the other one)."""
    for _ in range(500):
        rows = await sql(
            session, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        )
        if rows[0][0]:
            return
        await trio.sleep(0.01)
    raise AssertionError("nobody waited")


async def test_a_table_made_by_hand_is_used_by_a_role_that_cannot_create_tables(postgres_dsn):
    """A role with SELECT, INSERT and UPDATE on a table made beforehand needs no CREATE."""
    admin = PostgresStore(postgres_dsn, table=fresh_table())
    role = f"app_{admin.table}"
    async with admin.open(KEY) as session:
        await sql(session, admin.table_statement())
        await sql(session, f"CREATE ROLE {role} LOGIN PASSWORD 'app-secret'")
        await sql(session, f"GRANT SELECT, INSERT, UPDATE ON {{table}} TO {role}")
    dsn = make_conninfo(postgres_dsn, user=role, password="app-secret")  # noqa: S106 - a test role
    store = PostgresStore(dsn, table=admin.table)
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    assert 2 == (await shared.renew(await shared.current())).generation


async def test_a_role_that_cannot_create_the_missing_table_fails_closed(postgres_dsn):
    """No table, and no right to create one: StoreUnavailableError naming the refusal."""
    admin = PostgresStore(postgres_dsn, table=fresh_table())
    role = f"nobody_{admin.table}"
    async with admin.open(KEY) as session:
        await sql(session, f"CREATE ROLE {role} LOGIN PASSWORD 'app-secret'")
    dsn = make_conninfo(postgres_dsn, user=role, password="app-secret")  # noqa: S106 - a test role
    store = PostgresStore(dsn, table=admin.table)
    with pytest.raises(StoreUnavailableError, match="InsufficientPrivilege"):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()


async def test_a_postgres_session_writes_only_under_its_lock(postgres_dsn):
    """Writing without holding the lock is a programming error, said at once."""
    async with PostgresStore(postgres_dsn, table=fresh_table()).open(KEY) as session:
        with pytest.raises(RuntimeError, match="only under the lock"):
            await session.write(Lease(KEY, "not held"), 0, Record(1, b"x"))


async def test_a_postgres_session_releases_a_lock_left_held(postgres_dsn):
    """Leaving a session closes its lock's connection, which releases the lock."""
    store = PostgresStore(postgres_dsn, table=fresh_table())
    async with store.open(KEY) as session:
        await session.lock(0)
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)


async def test_a_postgres_session_used_after_its_block_connects_no_more(postgres_dsn):
    """A session's connections are gone with its block: using it later fails closed."""
    async with PostgresStore(postgres_dsn, table=fresh_table()).open(KEY) as session:
        pass
    with pytest.raises(StoreUnavailableError, match="the session has ended"):
        await session.read()


async def test_a_postgres_lock_released_twice_is_released_once(postgres_dsn):
    """A lease released twice is released once; another session then takes the lock."""
    store = PostgresStore(postgres_dsn, table=fresh_table())
    async with store.open(KEY) as session, store.open(KEY) as other:
        lease = await session.lock(0)
        await session.unlock(lease)
        await session.unlock(lease)
        assert None is not await other.lock(0)


async def test_a_postgres_write_that_lost_the_race_writes_nothing(postgres_dsn):
    """A compare-and-set on a generation that is not the stored one writes nothing."""
    async with PostgresStore(postgres_dsn, table=fresh_table()).open(KEY) as session:
        lease = await session.lock(0)
        assert (True, False, True, False, 2) == (
            await session.write(lease, 0, Record(1, b"first")),
            await session.write(lease, 0, Record(1, b"second")),
            await session.write(lease, 1, Record(2, b"third")),
            await session.write(lease, 1, Record(2, b"fourth")),
            (await session.read()).generation,
        )


async def test_a_silent_postgres_holder_loses_its_lock_after_the_lease(postgres_dsn):
    """A holder that says nothing for a lease (hung, cut off): the server ends its lock."""
    store = PostgresStore(postgres_dsn, table=fresh_table(), lease=0.3)
    async with store.open(KEY) as holder, store.open(KEY) as other:
        await holder.lock(0)
        await trio.sleep(0.6)
        assert None is not await other.lock(0)


async def test_the_postgres_lease_is_renewed_while_a_fetch_runs(postgres_dsn):
    """While the holder keeps its lease, it outlives several leases."""
    store = PostgresStore(postgres_dsn, table=fresh_table(), lease=0.3)
    async with store.open(KEY) as holder, store.open(KEY) as other:
        lease = await holder.lock(0)
        async with holder.keep(lease):
            await trio.sleep(0.8)
        assert None is await other.lock(0)


async def test_a_postgres_lease_lost_while_fetching_keeps_the_fetched_record(postgres_dsn, caplog):
    """The lock's connection is cut while fetching: warned; the fetched record is stored."""
    store = PostgresStore(postgres_dsn, table=fresh_table(), lease=0.6)

    async def loses_its_lock(current: Credential | None) -> Credential:
        async with store.open("admin") as admin:
            await sql(
                admin,
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'",
            )
        await trio.sleep(0.3)  # past a third of the lease: a renewal was tried
        return Credential("kept", "r")

    shared = SharedCredential(store, key=KEY, fetch=loses_its_lock, fetch_timeout=0.5)
    with caplog.at_level(logging.WARNING, "refresh_middleware"):
        got = await shared.current()
    assert ("kept", True, True) == (
        got.access_token,
        "ran out while fetching" in caplog.text,
        "could not release the lock" in caplog.text,
    )


async def test_a_statement_that_gets_no_answer_in_time_is_a_store_unavailable(postgres_dsn):
    """A write stuck behind a row lock past the timeout fails closed, naming the wait."""
    store = PostgresStore(postgres_dsn, table=fresh_table(), timeout=0.3)
    async with store.open(KEY) as session, store.open(KEY) as other:
        lease = await session.lock(0)
        await session.write(lease, 0, Record(1, b"first"))
        await other.lock(0)  # a transaction, in which the row is locked
        await other._run(
            other.locking,
            "lock the row",
            lambda c: c.execute(store.statement("SELECT 1 FROM {table} FOR UPDATE")),
        )
        with pytest.raises(StoreUnavailableError, match=r"no answer within 0\.3 s"):
            await session.write(lease, 1, Record(2, b"second"))
        await other.unlock(_lease_of(other))


@pytest.mark.usefixtures("collect_garbage")
async def test_a_postgres_killed_during_a_fetch_leaves_the_grant_with_its_process(
    own_postgres, caplog
):
    """PostgreSQL dies while a holder fetches: renewing the lease, writing and releasing fail;
    the process keeps its grant and says the store did not take it."""
    store = PostgresStore(own_postgres.dsn, lease=0.6, timeout=1.0)

    async def fetch(current: Credential | None) -> Credential:
        own_postgres.kill()
        await trio.sleep(0.3)  # past a third of the lease: a renewal was tried
        return Credential("lost", "r")

    with caplog.at_level(logging.WARNING, "refresh_middleware"):
        got = await SharedCredential(store, key=KEY, fetch=fetch, fetch_timeout=0.5).current()
    said = ("ran out while fetching", "the store could not take it", "could not release the lock")
    assert ("lost", said) == (got.access_token, tuple(text for text in said if text in caplog.text))


def test_a_postgres_lock_is_waited_for_under_asyncio(postgres_dsn):
    """Under asyncio, a busy PostgreSQL lock is polled without blocking the loop."""
    store = PostgresStore(postgres_dsn, table=fresh_table())

    async def main() -> int:
        shared = SharedCredential(store, key=KEY, fetch=Fetcher())
        stale = await shared.current()
        async with store.open(KEY) as other:
            lease = await other.lock(0)
            task = asyncio.ensure_future(shared.renew(stale))
            await asyncio.sleep(0.1)
            await other.unlock(lease)
            return (await task).generation

    assert 2 == asyncio.run(main())
