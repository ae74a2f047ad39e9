"""RedisStore on each kind of Redis: key names in one slot, the fenced write, the old names.

The contract tests (test_credential, test_compose) run on every topology through the `store`
fixture; these pin what the topologies add: a record and its lock share a hash tag, a write is
fenced by the lock's owner, records stored under the names before the hash tag are still read,
and the cluster and Sentinel forms are read from their URLs.
"""

from __future__ import annotations

import logging
import ssl
import time
from urllib.parse import urlsplit

import coredis
import pytest
import trio
from coredis._utils import hash_slot
from coredis.connection import TCPLocation
from hypothesis import given
from hypothesis import strategies as st

from refresh_middleware._shared._records import encode
from refresh_middleware._shared._redis import _Names, _nodes
from refresh_middleware.shared import Credential, Record, RedisStore, SharedCredential

from .helpers import LEAK, Fetcher

KEY = "provider/account-1"


# --------------------------------------------------------------------------------------------------
# Names


@given(prefix=st.text(max_size=20), key=st.text(min_size=1, max_size=40))
def test_a_record_and_its_lock_hash_to_one_slot(prefix, key):
    """Whatever the prefix and key, the record and lock names land in one cluster slot."""
    if (prefix + key).startswith("}"):
        return
    names = _Names.of(prefix, key)
    assert hash_slot(names.record.encode()) == hash_slot(names.lock.encode())


def test_a_name_that_would_empty_the_hash_tag_is_refused():
    """prefix + key starting with '}' would hash the whole names apart: a clear ValueError."""
    with pytest.raises(ValueError, match="must not start with '}'"):
        _Names.of("", "}account")


async def test_the_record_and_lock_carry_the_hash_tag(redis_url):
    """The record is {prefix+key}, its lock {prefix+key}:lock, as the docs show."""
    async with RedisStore(redis_url, prefix="app:").open(KEY) as session:
        names = (session.record_key, session.lock_key)
    assert ("{app:provider/account-1}", "{app:provider/account-1}:lock") == names


# --------------------------------------------------------------------------------------------------
# The fenced write


async def test_a_writer_whose_lock_was_taken_over_cannot_write(make_redis_store, caplog):
    """A holder whose lease ran out and whose lock another took writes nothing, even with the
    expected generation."""
    store = make_redis_store(lease=0.2)  # the refused writer waits for the new owner this long
    async with store.open(KEY) as first, store.open(KEY) as second:
        late = await first.lock(0)
        await first.client.delete([first.lock_key])  # the lease ran out
        assert None is not await second.lock(0)
        with caplog.at_level(logging.WARNING, "refresh_middleware"):
            written = await first.write(late, 0, Record(1, b"late"))
        assert (False, None, True) == (
            written,
            await second.read(),
            "another process took the lock" in caplog.text,
        )


async def test_the_new_owner_writes_after_a_takeover(make_redis_store):
    """The holder that took the lock over writes as usual."""
    store = make_redis_store()
    async with store.open(KEY) as first, store.open(KEY) as second:
        await first.lock(0)
        await first.client.delete([first.lock_key])
        lease = await second.lock(0)
        assert (True, 1) == (
            await second.write(lease, 0, Record(1, b"owner")),
            (await second.read()).generation,
        )


async def test_a_holder_whose_lock_was_taken_over_adopts_the_new_owners_record(
    make_redis_store,
):
    """A renewal refused by the fence waits for the new owner and hands out its record."""
    store = make_redis_store(lease=2.0)

    async def new_owner(ready: trio.Event) -> None:
        async with store.open(KEY) as session:
            lease = await session.lock(0)
            ready.set()
            await trio.sleep(0.2)  # fetching, while the first holder tries to write
            await session.write(
                lease, 0, Record(1, encode(Credential("new-owner", "r"), 1, None).data)
            )
            await session.unlock(lease)

    async with trio.open_nursery() as nursery:

        async def taken_over(current: Credential | None) -> Credential:
            async with store.open(KEY) as session:
                await session.client.delete([session.lock_key])  # the lease ran out
            ready = trio.Event()
            nursery.start_soon(new_owner, ready)
            await ready.wait()
            return Credential("first-holder", "r")

        got = await SharedCredential(store, key=KEY, fetch=taken_over).current()
    assert "new-owner" == got.access_token


async def test_a_holder_whose_new_owner_wrote_nothing_keeps_its_rotation(make_redis_store):
    """A renewal refused by the fence whose new owner leaves without writing stores its own."""
    store = make_redis_store(lease=2.0)

    async def new_owner(ready: trio.Event) -> None:
        async with store.open(KEY) as session:
            lease = await session.lock(0)
            ready.set()
            await trio.sleep(0.2)  # its fetch fails: it writes nothing
            await session.unlock(lease)

    async with trio.open_nursery() as nursery:

        async def taken_over(current: Credential | None) -> Credential:
            async with store.open(KEY) as session:
                await session.client.delete([session.lock_key])  # the lease ran out
            ready = trio.Event()
            nursery.start_soon(new_owner, ready)
            await ready.wait()
            return Credential("first-holder", "r")

        got = await SharedCredential(store, key=KEY, fetch=taken_over).current()
    assert ("first-holder", 1) == (got.access_token, got.generation)


async def test_a_refused_writer_waits_at_most_one_lease_for_the_new_owner(redis_url):
    """A new owner that keeps the lock (renewing it) holds up the refused writer one lease."""
    store = RedisStore(redis_url, prefix="patient:", lease=0.1)
    async with store.open(KEY) as first, store.open(KEY) as second:
        late = await first.lock(0)
        await second.client.set(second.lock_key, "renewing-owner")  # no expiry while it runs
        started = time.monotonic()
        written = await first.write(late, 0, Record(1, b"late"))
        waited = time.monotonic() - started
    assert (False, True) == (written, 0.1 <= waited < 2), waited


async def test_a_lapsed_lease_nobody_took_is_taken_back_by_the_write(make_redis_store):
    """A write after the lease ran out, with nobody else on it, holds the lock again: others
    wait until it releases."""
    store = make_redis_store()
    async with store.open(KEY) as holder, store.open(KEY) as other:
        lease = await holder.lock(0)
        await holder.client.delete([holder.lock_key])
        await holder.write(lease, 0, Record(1, b"kept"))
        taken = await other.lock(0)
        await holder.unlock(lease)
        assert (None, True) == (taken, None is not await other.lock(0))


# --------------------------------------------------------------------------------------------------
# Records stored under the names before the hash tag


async def plant_legacy(store: RedisStore, credential: Credential) -> None:
    """A record as RedisStore stored it before the hash tag: the hash at prefix + key."""
    async with store.open(KEY) as session:
        data = encode(credential, 1, None).data
        await session.client.hset(session.legacy_key, {"generation": "1", "data": data})


async def test_a_record_under_the_old_names_is_adopted_without_a_fetch(make_redis_store):
    """After an upgrade, the record stored before the hash tag is handed out: nobody signs in
    again, nothing is fetched."""
    store = make_redis_store()
    await plant_legacy(store, Credential("before-upgrade", "r1"))
    fetch = Fetcher()
    got = await SharedCredential(store, key=KEY, fetch=fetch).current()
    assert ("before-upgrade", 1, 0) == (got.access_token, got.generation, fetch.calls)


async def test_the_first_renewal_after_an_upgrade_stores_the_next_generation(make_redis_store):
    """A renewal of the old record sends its refresh token and writes generation 2 under the
    new names, which every process reads from then on."""
    store = make_redis_store()
    await plant_legacy(store, Credential("before-upgrade", "r1"))
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    renewed = await shared.renew(await shared.current())
    seen = await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    assert ("r1", 2, renewed) == (fetch.given[0].refresh_token, renewed.generation, seen)


# --------------------------------------------------------------------------------------------------
# How a RedisStore is made


@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
async def test_a_given_cluster_client_is_used_as_it_is(redis_cluster_url):
    """A coredis RedisCluster made by hand (several startup nodes, say) serves as it is."""
    node = urlsplit(redis_cluster_url)
    client = coredis.RedisCluster(startup_nodes=[TCPLocation(node.hostname, node.port)])
    store = RedisStore(client, prefix="given-cluster:")
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    async with client:
        renewed = await shared.renew(await shared.current())
    assert 2 == renewed.generation


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"cluster": True}, "RedisStore('redis://10.0.0.1:7000', cluster=True)"),
        ({"sentinel": "primary"}, "RedisStore('redis://10.0.0.1:7000', sentinel='primary')"),
    ],
)
def test_a_store_says_which_topology_it_is_on_without_a_password(options, where):
    """repr names the cluster or the Sentinel's primary, and never the password."""
    assert where == repr(RedisStore("redis://:hunter2@10.0.0.1:7000", **options))


@pytest.mark.parametrize(
    ("redis", "options", "message"),
    [
        ("redis://h:7000", {"cluster": True, "sentinel": "p"}, "not both"),
        (coredis.Redis(), {"cluster": True}, "go with a URL"),
        (coredis.Redis(), {"sentinel": "p"}, "go with a URL"),
        ("redis://h:26379", {"sentinel": ""}, "must name the primary"),
        ("unix:///run/redis.sock", {"sentinel": "p"}, "redis:// or rediss:// URL"),
        ("redis://", {"cluster": True}, "redis:// or rediss:// URL"),
        ("redis://h:port", {"cluster": True}, "cannot read the cluster node address 'h:port'"),
        ("redis://a:1,:2", {"sentinel": "p"}, "cannot read the Sentinel address ':2'"),
        ("redis://h:26379/one", {"sentinel": "p"}, "must be a number"),
        ("redis://h:7000/1", {"cluster": True}, "0 on a cluster"),
    ],
)
def test_contradictory_or_unreadable_topologies_are_refused(redis, options, message):
    """Options that contradict each other, and URLs that name no server, fail when made."""
    with pytest.raises(ValueError, match=message):
        RedisStore(redis, **options)


def test_a_sentinel_url_names_every_sentinel_and_the_primary_options():
    """Several Sentinels (default port 26379, IPv6 too); the percent-decoded user, password
    and database are the primary's."""
    nodes = _nodes("redis://us%40r:p%3Ass@s1,s2:26380,[::1]:26381/2", sentinel=True)
    assert ([("s1", 26379), ("s2", 26380), ("::1", 26381)], "us@r", "p:ss", 2) == (
        [(each.host, each.port) for each in nodes.locations],
        nodes.username,
        nodes.password,
        nodes.database,
    )


def test_a_cluster_url_may_name_several_startup_nodes():
    """Comma-separated nodes (default port 6379); no user, no password, no TLS."""
    nodes = _nodes("redis://n1,n2:7001", sentinel=False)
    assert ([("n1", 6379), ("n2", 7001)], None, None, None) == (
        [(each.host, each.port) for each in nodes.locations],
        nodes.username,
        nodes.password,
        nodes.ssl_context,
    )


def test_rediss_speaks_tls_to_every_node():
    """rediss:// gives every node a TLS context that checks the certificate."""
    context = _nodes("rediss://n1:7000", sentinel=False).ssl_context
    assert (True, ssl.CERT_REQUIRED) == (
        isinstance(context, ssl.SSLContext),
        context.verify_mode,
    )
