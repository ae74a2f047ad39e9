"""The fleet protocol of SharedCredential, on real stores (a directory, a redis-server).

Two `SharedCredential`s on the same store and key stand for two processes: each has its own
in-process flight, and they meet only in the store.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import trio

from refresh_middleware._flight import trigger
from refresh_middleware.shared import (
    CorruptRecordError,
    Credential,
    FetchTimeoutError,
    FileStore,
    LockTimeoutError,
    ReauthenticationRequiredError,
    RedisStore,
    SharedCredential,
)

from .helpers import CountingStore, Fetcher, delete, held, plant, plant_raw

KEY = "provider/account-1"


async def test_many_first_callers_make_one_initial_grant(store):
    """Twenty callers in two 'processes' find nothing stored: one fetch(None), one record."""
    fetch = Fetcher()
    fleet = [SharedCredential(store, key=KEY, fetch=fetch) for _ in range(2)]
    got: list[Credential] = []

    async def first(shared: SharedCredential) -> None:
        got.append(await shared.current())

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(first, fleet[index % 2])
    assert (1, [None], {1}) == (fetch.calls, fetch.given, {each.generation for each in got})


async def test_current_takes_no_store_operation_once_known(store):
    """A process that knows an unexpired record hands it out without touching the store."""
    counting = CountingStore(store)
    shared = SharedCredential(counting, key=KEY, fetch=Fetcher())
    await shared.current()
    before = counting.operations
    await shared.current()
    assert 0 == counting.operations - before


async def test_current_reads_the_store_again_once_its_record_expired(store):
    """An expired known record is replaced by the stored one, if another process renewed it."""
    await plant(store, KEY, Credential("old", "r1", expires_at=time.time() - 1), generation=1)
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    old = await shared.current()
    await plant(store, KEY, Credential("new", "r2", expires_at=time.time() + 60), generation=2)
    assert ("old", "new") == (old.access_token, (await shared.current()).access_token)


async def test_an_expired_stored_record_is_still_handed_out(store):
    """current() does not fetch for an expired record: the 401 (or the proactive window) does."""
    await plant(store, KEY, Credential("old", "r1", expires_at=time.time() - 1))
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    assert ("old", 0) == ((await shared.current()).access_token, fetch.calls)


async def test_many_renewals_of_one_record_make_one_fetch(store):
    """Fifty tasks renewing the same stale record share one fetch and get the same record."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    got: list[Credential] = []

    async def renew() -> None:
        got.append(await shared.renew(stale))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(renew)
    assert (2, {2}) == (fetch.calls, {each.generation for each in got})


async def test_renew_adopts_what_another_process_stored_without_fetching(store):
    """A 'process' renewing a record another one already renewed adopts the stored record."""
    fetch = Fetcher()
    one, two = (SharedCredential(store, key=KEY, fetch=fetch) for _ in range(2))
    stale = await one.current()
    await two.current()
    renewed = await one.renew(stale)
    assert (renewed, 2) == (await two.renew(stale), fetch.calls)


async def test_fetch_gets_the_record_read_under_the_lock(store):
    """fetch is given the stored record (its refresh token is the latest), not the stale one."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    await plant(store, KEY, Credential("a2", "latest-refresh"), generation=2)
    newer = await SharedCredential(store, key=KEY, fetch=fetch).renew(
        Credential("a2", "latest-refresh", generation=2)
    )
    await shared.renew(stale)
    assert ("latest-refresh", 3) == (fetch.given[-1].refresh_token, newer.generation)


async def test_a_stale_record_older_than_the_known_one_returns_it_at_once(store):
    """Renewing a record older than the one the process knows takes no store operation."""
    counting = CountingStore(store)
    shared = SharedCredential(counting, key=KEY, fetch=Fetcher())
    stale = await shared.current()
    renewed = await shared.renew(stale)
    before = counting.operations
    assert (renewed, 0) == (await shared.renew(stale), counting.operations - before)


async def test_a_renewal_waits_for_the_lock_holder_and_adopts_its_record(store):
    """While another 'process' fetches under the lock, a renewal waits, then adopts."""
    slow, quick = Fetcher(delay=0.3), Fetcher()
    one = SharedCredential(store, key=KEY, fetch=slow)
    two = SharedCredential(store, key=KEY, fetch=quick)
    stale = await one.current()
    slow.started = trio.Event()
    got: list[Credential] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: one.renew(stale))
        await slow.started.wait()
        got.append(await two.renew(stale))
    assert (2, 0) == (got[0].generation, quick.calls)


async def test_an_advisory_renewal_gives_way_to_a_lock_holder(store):
    """In the advisory window, a held lock means someone is on it: the record is returned."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    token = trigger.set("advisory")
    try:
        async with held(store, KEY):
            started = time.monotonic()
            got = await shared.renew(stale)
    finally:
        trigger.reset(token)
    assert (stale, 1, True) == (got, fetch.calls, time.monotonic() - started < 1)


async def test_an_advisory_renewal_fetches_when_the_lock_is_free(store):
    """In the advisory window with nobody on it, the renewal fetches as usual."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    stale = await shared.current()
    token = trigger.set("advisory")
    try:
        assert 2 == (await shared.renew(stale)).generation
    finally:
        trigger.reset(token)


async def test_a_401_renewal_goes_again_after_an_advisory_one_gave_way(store):
    """A caller that needs a newer record does not take another caller's give-way."""
    fetch = Fetcher()
    counting = CountingStore(store, lock_delay=0.1)
    shared = SharedCredential(counting, key=KEY, fetch=fetch)
    stale = await shared.current()
    got: dict[str, Credential] = {}

    async def advisory() -> None:
        trigger.set("advisory")  # in this task only
        got["advisory"] = await shared.renew(stale)

    async def after_a_401() -> None:
        got["401"] = await shared.renew(stale)

    # Steps, not sleeps: under load a fixed pause let the lock go before the advisory renewal
    # had tried it, and it fetched instead of giving way.
    locks = counting.counts["lock"]  # the initial grant's
    async with trio.open_nursery() as nursery, held(store, KEY):
        nursery.start_soon(advisory)
        await _until(lambda: counting.counts["lock"] > locks)  # it is trying the lock
        nursery.start_soon(after_a_401)  # queues behind it
        await _until(lambda: "advisory" in got)  # it gave way while the lock was held
    assert (stale, 2, 2) == (got["advisory"], got["401"].generation, fetch.calls)


async def _until(done) -> None:
    """Wait until `done()` is true, polling."""
    while not done():  # noqa: ASYNC110 - a store's counts and a dict have no event to wait on
        await trio.sleep(0.005)


async def test_a_lock_not_obtained_in_time_is_a_typed_error(store):
    """A renewal that cannot get the lock within lock_timeout says so, naming store and key."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher(), lock_timeout=0.2)
    stale = await shared.current()
    async with held(store, KEY):
        with pytest.raises(LockTimeoutError, match=r"not obtained within 0\.2 s") as caught:
            await shared.renew(stale)
    assert (KEY, repr(store)) == (caught.value.key, caught.value.store)


async def test_invalid_grant_with_nothing_newer_asks_for_a_new_sign_in(store):
    """A refused refresh token, and no newer record: re-authentication is needed."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    fetch.error = ValueError('400: {"error": "invalid_grant"}')
    with pytest.raises(ReauthenticationRequiredError, match="sign in again") as caught:
        await shared.renew(stale)
    assert fetch.error is caught.value.__cause__


async def test_invalid_grant_after_another_holder_rotated_adopts_its_record(store):
    """A refused refresh token, but a newer record stored meanwhile: that record is adopted."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    stale = await shared.current()

    async def rotated_elsewhere(current: Credential | None) -> Credential:
        await plant(store, KEY, Credential("theirs", "r"), generation=2)
        raise ValueError("invalid_grant")

    other = SharedCredential(store, key=KEY, fetch=rotated_elsewhere)
    assert "theirs" == (await other.renew(stale)).access_token


async def test_other_fetch_errors_are_raised_as_they_are(store):
    """An error of fetch that is not invalid_grant reaches the caller unchanged."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    fetch.error = ConnectionError("identity provider down")
    with pytest.raises(ConnectionError) as caught:
        await shared.renew(stale)
    assert fetch.error is caught.value


async def test_a_fetch_that_takes_too_long_is_a_typed_error(store):
    """fetch is cut short after fetch_timeout, and the lock is released."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch, fetch_timeout=0.1)
    stale = await shared.current()
    fetch.delay = 30
    with pytest.raises(FetchTimeoutError, match=r"within 0.1 s"):
        await shared.renew(stale)
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)


async def test_fetch_must_return_a_credential(store):
    """A fetch that returns something else is a TypeError."""

    async def wrong(current: Credential | None) -> object:
        return "token"

    with pytest.raises(TypeError, match="must return a Credential, got str"):
        await SharedCredential(store, key=KEY, fetch=wrong).current()


async def test_a_plain_fetch_runs_in_a_worker_thread(store):
    """A plain-function fetch does not block the event loop: it runs in a thread."""
    threads: list[int] = []

    def fetch(current: Credential | None) -> Credential:
        threads.append(threading.get_ident())
        return Credential("plain")

    got = await SharedCredential(store, key=KEY, fetch=fetch).current()
    assert ("plain", False) == (got.access_token, threads[0] == threading.get_ident())


async def test_a_plain_fetch_that_returns_an_awaitable_is_awaited(store):
    """A plain callable returning a coroutine (a lambda around an async function) works."""
    fetch = Fetcher()

    def plain(current: Credential | None):
        return fetch(current)

    got = await SharedCredential(store, key=KEY, fetch=plain).current()
    assert (1, 1) == (fetch.calls, got.generation)


def test_the_sync_forms_work_from_threads(store):
    """current_sync and renew_sync serve sync code, sharing one fetch between threads."""
    calls: list[int] = []

    def fetch(current: Credential | None) -> Credential:
        calls.append(1)
        time.sleep(0.05)
        return Credential(f"a{len(calls)}", "r")

    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = shared.current_sync()
    got: list[Credential] = []
    threads = [
        threading.Thread(target=lambda: got.append(shared.renew_sync(stale))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (2, {2}) == (len(calls), {each.generation for each in got})


async def test_a_sync_form_called_inside_an_event_loop_does_not_need_one(store):
    """renew_sync from a sync provider called in async code runs (blocking only this task)."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    stale = await shared.current()
    assert 2 == shared.renew_sync(stale).generation


def test_the_protocol_runs_under_asyncio(store):
    """current and renew work on an asyncio loop too."""

    async def fetch(current: Credential | None) -> Credential:
        await asyncio.sleep(0)
        return Credential("asyncio", "r")

    async def main() -> tuple[int, int]:
        shared = SharedCredential(store, key=KEY, fetch=fetch)
        stale = await shared.current()
        return stale.generation, (await shared.renew(stale)).generation

    assert (1, 2) == asyncio.run(main())


async def test_a_record_lost_by_the_store_is_replaced_from_the_stale_one(store):
    """A store that lost the record: fetch gets the stale record (the latest refresh token)."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    first = await shared.current()
    second = await shared.renew(first)
    await delete(store, KEY)
    third = await SharedCredential(store, key=KEY, fetch=fetch).renew(second)
    assert (second, 3) == (fetch.given[-1], third.generation)


async def test_a_record_that_changed_under_the_lock_without_getting_newer_is_written_over(store):
    """A write refused because the record changed, but not to a newer one, is tried again."""
    counting = CountingStore(store, refuse_writes=1)
    shared = SharedCredential(counting, key=KEY, fetch=Fetcher())
    assert (1, 2) == ((await shared.current()).generation, counting.counts["write"])


async def test_a_record_that_keeps_changing_under_the_lock_is_an_error(store):
    """Writes refused again and again, with nothing newer stored, end in a typed error."""
    shared = SharedCredential(CountingStore(store, refuse_writes=99), key=KEY, fetch=Fetcher())
    with pytest.raises(CorruptRecordError, match="keeps changing under the lock"):
        await shared.current()


async def test_a_corrupt_record_is_reported_and_nothing_is_fetched(store):
    """A record this library did not write is a typed error; fetch is not called."""
    await plant(store, KEY, b"\x00not json")
    fetch = Fetcher()
    with pytest.raises(CorruptRecordError, match="cannot be read: it is not JSON") as caught:
        await SharedCredential(store, key=KEY, fetch=fetch).current()
    assert (0, KEY) == (fetch.calls, caught.value.key)


async def test_a_corrupt_record_stops_a_renewal_too(store):
    """A renewal that finds a corrupt record fails closed."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    await plant(store, KEY, b"{}", generation=2)
    with pytest.raises(CorruptRecordError):
        await shared.renew(stale)
    assert 1 == fetch.calls


async def test_a_record_without_a_readable_generation_is_corrupt(store):
    """Bytes where the record goes, without the store's framing, are a corrupt record."""
    await plant_raw(store, KEY, b"garbage")
    with pytest.raises(CorruptRecordError):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()


async def test_a_failure_is_shared_with_the_callers_queued_behind_it(store):
    """Callers waiting on a renewal that fails get its failure; fetch ran once."""
    fetch = Fetcher(delay=0.1)
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    fetch.error = ConnectionError("down")
    errors: list[BaseException] = []

    async def renew() -> None:
        try:
            await shared.renew(stale)
        except ConnectionError as error:
            errors.append(error)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(renew)
    assert (2, 5) == (fetch.calls, len(errors))


async def test_two_keys_never_block_each_other(store):
    """While one key's lock is held, another key renews at once."""
    shared = SharedCredential(store, key="other/key", fetch=Fetcher(), lock_timeout=0.5)
    stale = await shared.current()
    # Blocked by the other key's lock, the renewal would raise LockTimeoutError after 0.5 s; a
    # bound on the time it took failed on a loaded machine.
    async with held(store, KEY):
        assert 2 == (await shared.renew(stale)).generation


async def test_a_renewal_cancelled_while_waiting_for_the_lock_leaves_it_free(store):
    """Cancelling a renewal that waits for the lock leaves no lock behind."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    stale = await shared.current()
    async with held(store, KEY):
        with trio.move_on_after(0.2):
            await shared.renew(stale)
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)


# --------------------------------------------------------------------------------------------------
# options


def test_the_timeouts_of_a_file_store_default_to_a_ten_second_fetch(tmp_path):
    """Without a lease, fetch_timeout is 10 s and the lock wait covers it."""
    timeouts = SharedCredential(FileStore(tmp_path), key=KEY, fetch=Fetcher()).timeouts
    assert (10.0, 12.0) == (timeouts.fetch, timeouts.lock)


def test_the_timeouts_of_a_short_lease_fit_inside_it():
    """With a 3 s lease, fetch_timeout is two thirds of it; the lock wait covers the lease."""
    store = RedisStore("redis://127.0.0.1:6379/0", lease=3.0)
    timeouts = SharedCredential(store, key=KEY, fetch=Fetcher()).timeouts
    assert (2.0, 5.0) == (timeouts.fetch, timeouts.lock)


def test_a_fetch_timeout_as_long_as_the_lease_is_refused():
    """A given fetch_timeout that could outlast the lease is refused, not trimmed."""
    store = RedisStore("redis://127.0.0.1:6379/0", lease=3.0)
    with pytest.raises(ValueError, match="shorter than the store's lease"):
        SharedCredential(store, key=KEY, fetch=Fetcher(), fetch_timeout=3)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"key": ""}, ValueError),
        ({"key": 5}, ValueError),
        ({"fetch": "not callable"}, TypeError),
        ({"lock_timeout": 0}, ValueError),
        ({"fetch_timeout": True}, ValueError),
        ({"fetch_timeout": float("inf")}, ValueError),
    ],
)
def test_options_are_checked_when_made(store, options, error):
    """A bad key, fetch or timeout is refused when the credential is made."""
    with pytest.raises(error):
        SharedCredential(store, **{"key": KEY, "fetch": Fetcher(), **options})


async def test_renew_takes_a_credential(store):
    """renew of something else than a Credential is a TypeError."""
    with pytest.raises(TypeError, match="takes the Credential to replace, got str"):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).renew("token")  # type: ignore[arg-type]


def test_the_repr_names_the_store_and_key(store):
    """repr says where the credential lives, which is what a log line needs."""
    assert f"SharedCredential({store!r}, key='{KEY}')" == repr(
        SharedCredential(store, key=KEY, fetch=Fetcher())
    )


class FernetCodec:
    """The codec of the docs: records encrypted at rest with cryptography's Fernet."""

    def __init__(self, key: bytes) -> None:
        from cryptography.fernet import Fernet

        self.fernet = Fernet(key)

    def encode(self, data: bytes) -> bytes:
        return self.fernet.encrypt(data)

    def decode(self, data: bytes) -> bytes:
        return self.fernet.decrypt(data)


async def test_a_fernet_codec_keeps_tokens_encrypted_at_rest(store):
    """With Fernet as the codec, no token is stored in clear, and records read back."""
    from cryptography.fernet import Fernet

    from refresh_middleware._shared._records import encode

    codec = FernetCodec(Fernet.generate_key())
    shared = SharedCredential(store, key=KEY, fetch=Fetcher(), codec=codec)
    first = await shared.current()
    async with store.open(KEY) as session:
        stored = await session.read()
    other = SharedCredential(store, key=KEY, fetch=Fetcher(), codec=codec)
    assert (False, first) == (
        first.access_token.encode() in stored.data or encode(first, 1, None).data in stored.data,
        await other.current(),
    )


async def test_a_record_encrypted_with_another_key_is_corrupt(store):
    """A record the codec cannot decrypt (another key) is a CorruptRecordError."""
    from cryptography.fernet import Fernet

    first = FernetCodec(Fernet.generate_key())
    await SharedCredential(store, key=KEY, fetch=Fetcher(), codec=first).current()
    other = FernetCodec(Fernet.generate_key())
    with pytest.raises(CorruptRecordError, match="written with another key"):
        await SharedCredential(store, key=KEY, fetch=Fetcher(), codec=other).current()
