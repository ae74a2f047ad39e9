"""Faults around a grant: the rotated refresh token survives them (issue 18).

Once the identity provider has answered a refresh grant, the refresh token it was sent is spent:
its answer must end up in the store, or at least in the process that asked, never on the floor.
Real faults where the item is about one: a full tmpfs, a paused or killed redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time

import coredis
import httpx
import pytest
import trio

from examples.fleet import _credential
from refresh_middleware.shared import (
    CorruptRecordError,
    Credential,
    FileStore,
    MemoryStore,
    PostgresStore,
    ReauthenticationRequiredError,
    RedisStore,
    SharedCredential,
    StoreUnavailableError,
)

from .helpers import LEAK, SENTINEL_NAME, CountingStore, Fetcher, delete, held, plant, plant_raw
from .proxy import link_proxy

KEY = "provider/account-1"


def spent_twice(fetch: Fetcher) -> list[str]:
    """The refresh tokens `fetch` was sent more than once: each one a reuse."""
    sent = [each.refresh_token for each in fetch.given if each is not None]
    return sorted({token for token in sent if token is not None and sent.count(token) > 1})


# --------------------------------------------------------------------------------------------------
# 1. a renewal cancelled by its caller


async def test_a_renewal_cancelled_during_its_fetch_stores_the_grant(store):
    """The caller leaves mid-fetch: the grant still lands in the store; no token is sent twice."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    fetch.delay = 0.3
    with trio.move_on_after(0.1):
        await shared.renew(stale)
    fetch.delay = 0.0
    other = SharedCredential(store, key=KEY, fetch=fetch)
    assert (2, 2, []) == ((await other.renew(stale)).generation, fetch.calls, spent_twice(fetch))


async def test_a_renewal_cancelled_during_its_fetch_frees_the_lock_after_the_write(store):
    """Once the shielded fetch and write are done, the lock is released as before."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    fetch.delay = 0.3
    with trio.move_on_after(0.1):
        await shared.renew(stale)
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)


async def test_the_process_keeps_a_grant_whose_caller_left(store):
    """A renewal whose caller was cancelled still leaves its record with the process."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    fetch.delay = 0.3
    with trio.move_on_after(0.1):
        await shared.renew(stale)
    assert (2, 2) == ((await shared.renew(stale)).generation, fetch.calls)


def test_a_renewal_cancelled_under_asyncio_stores_the_grant(tmp_path):
    """Under asyncio too, a task cancelled mid-fetch leaves its grant in the store."""
    fetch_calls: list[Credential | None] = []

    async def fetch(current: Credential | None) -> Credential:
        fetch_calls.append(current)
        await asyncio.sleep(0.2 if current is not None else 0)
        return Credential(f"a{len(fetch_calls)}", f"r{len(fetch_calls)}")

    async def main() -> int:
        shared = SharedCredential(FileStore(tmp_path), key=KEY, fetch=fetch)
        stale = await shared.current()
        task = asyncio.ensure_future(shared.renew(stale))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other = SharedCredential(FileStore(tmp_path), key=KEY, fetch=fetch)
        return (await other.renew(stale)).generation

    assert (2, 2) == (asyncio.run(main()), len(fetch_calls))


# --------------------------------------------------------------------------------------------------
# 2. a write that fails after the grant


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs of the test's own, which fills up; skipped where mounting is refused."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # noqa: S603, S607


def fill(disk) -> object:
    """Fill `disk` to its last page; returns the filler file, to delete to free it."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left on device"):
            _write_forever(descriptor)
    finally:
        os.close(descriptor)
    return filler


def _write_forever(descriptor: int) -> None:
    while True:
        os.write(descriptor, b"\0" * 4096)


async def test_a_grant_whose_write_hits_a_full_disk_is_stored_once_space_returns(small_disk):
    """The disk is full when the grant comes back: the holder writes again until it lands."""
    store = FileStore(small_disk / "credentials")
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await shared.current()
    filler = fill(small_disk)

    async def free_soon() -> None:
        await trio.sleep(0.3)
        filler.unlink()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(free_soon)
        renewed = await shared.renew(stale)
    other = SharedCredential(store, key=KEY, fetch=fetch)
    assert (renewed, 2) == (await other.current(), fetch.calls)


async def test_a_grant_the_store_never_takes_is_kept_by_its_process_and_reported(
    small_disk, caplog
):
    """A disk that stays full: the process goes on with its grant, and the log says so."""
    store = FileStore(small_disk / "credentials")
    shared = SharedCredential(store, key=KEY, fetch=Fetcher(), fetch_timeout=0.2)
    stale = await shared.current()
    fill(small_disk)
    with caplog.at_level(logging.ERROR, "refresh_middleware"):
        renewed = await shared.renew(stale)
    assert (2, renewed, True) == (
        renewed.generation,
        await shared.current(),
        "granted generation 2, but the store could not take it" in caplog.text,
    )


async def test_a_grant_whose_write_finds_redis_paused_is_stored_once_it_answers(own_redis):
    """Redis stops answering (SIGSTOP) as the grant comes back: the write lands after SIGCONT."""
    store = RedisStore(own_redis.url, lease=3.0, timeout=0.2)
    await plant(store, KEY, Credential("first", "r1"))
    stale = Credential("first", "r1", generation=1)

    async def fetch(current: Credential | None) -> Credential:
        own_redis.process.send_signal(signal.SIGSTOP)
        return Credential("granted", "r2")

    async def wake_soon() -> None:
        await trio.sleep(0.6)
        own_redis.process.send_signal(signal.SIGCONT)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_soon)
        renewed = await SharedCredential(store, key=KEY, fetch=fetch).renew(stale)
    stored = await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    assert (2, "granted") == (renewed.generation, stored.access_token)


# --------------------------------------------------------------------------------------------------
# 4. a plain-function fetch that overruns fetch_timeout


async def test_a_plain_fetch_that_overruns_keeps_the_lock_and_its_late_answer_is_stored(store):
    """A thread fetch past fetch_timeout still holds the lock; the next holder adopts its answer."""
    started = threading.Event()

    def slow(current: Credential | None) -> Credential:
        if current is None:
            return Credential("a1", "r1")
        started.set()
        time.sleep(0.5)
        return Credential("late", "r-late")

    one = SharedCredential(store, key=KEY, fetch=slow, fetch_timeout=0.1)
    stale = await one.current()
    fetch = Fetcher()
    two = SharedCredential(store, key=KEY, fetch=fetch, lock_timeout=5)
    got: dict[str, Credential] = {}

    async def first() -> None:
        got["one"] = await one.renew(stale)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.to_thread.run_sync(started.wait)
        await trio.sleep(0.2)  # past fetch_timeout: the thread still runs
        got["two"] = await two.renew(stale)
    assert ("late", "late", 0) == (got["one"].access_token, got["two"].access_token, fetch.calls)


async def test_a_plain_fetch_that_overruns_is_reported(tmp_path, caplog):
    """A thread fetch that took longer than fetch_timeout is logged: give it an HTTP timeout."""

    def slow(current: Credential | None) -> Credential:
        time.sleep(0.15)
        return Credential("late", "r")

    shared = SharedCredential(FileStore(tmp_path), key=KEY, fetch=slow, fetch_timeout=0.05)
    with caplog.at_level(logging.WARNING, "refresh_middleware"):
        await shared.current()
    assert "longer than fetch_timeout" in caplog.text


# --------------------------------------------------------------------------------------------------
# 6. the record lost by the store


async def test_current_after_the_record_was_lost_refreshes_from_the_process_record(store):
    """Nothing stored, but the process holds an expired record: it is refreshed, not signed in."""
    await plant(store, KEY, Credential("old", "r-live", expires_at=time.time() - 1), generation=3)
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    await shared.current()
    await delete(store, KEY)  # a Redis restarted without persistence, a deleted file
    fresh = await shared.current()
    assert (["r-live"], 4, None) == (
        [each.refresh_token for each in fetch.given],
        fresh.generation,
        fresh.expires_at,
    )


# --------------------------------------------------------------------------------------------------
# 7. a provider that does not rotate


async def test_a_provider_that_does_not_rotate_keeps_the_refresh_token(store):
    """A refresh grant answered without a refresh_token keeps the one sent (RFC 6749, 6)."""
    sent: list[str | None] = []

    async def fetch(current: Credential | None) -> Credential:
        sent.append(None if current is None else current.refresh_token)
        return Credential(f"a{len(sent)}", "r-forever" if current is None else None)

    shared = SharedCredential(store, key=KEY, fetch=fetch)
    second = await shared.renew(await shared.current())
    third = await shared.renew(second)
    assert ([None, "r-forever", "r-forever"], "r-forever") == (sent, third.refresh_token)


def test_the_example_token_endpoint_reads_an_answer_without_a_refresh_token():
    """The how-to's fetch accepts a grant without refresh_token (it used to raise KeyError)."""
    answer = httpx.Response(
        200,
        json={"access_token": "a2", "expires_in": 60},
        request=httpx.Request("POST", "http://127.0.0.1/token"),
    )
    assert ("a2", None) == (_credential(answer).access_token, _credential(answer).refresh_token)


# --------------------------------------------------------------------------------------------------
# 14. a cancellation that lands on the lock command (the flaky test of CI)


async def _lock_cancelled_in_flight(own_redis) -> tuple[RedisStore, bool]:
    """Cancel a renewal while its SET NX waits on a stopped redis-server; wake it after.

    The renewal polls a lock another session holds; the server is stopped (SIGSTOP) while it
    polls, so the cancellation lands on a command in flight, as in the flaky CI run.
    """
    store = RedisStore(own_redis.url, timeout=2.0)
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    stale = await shared.current()

    async def stop_then_wake() -> None:
        await trio.sleep(0.1)
        own_redis.process.send_signal(signal.SIGSTOP)
        await trio.sleep(0.3)
        own_redis.process.send_signal(signal.SIGCONT)

    async with held(store, KEY), trio.open_nursery() as nursery:
        nursery.start_soon(stop_then_wake)
        with trio.move_on_after(0.2) as scope:
            await shared.renew(stale)
    return store, scope.cancelled_caught


async def test_a_cancellation_that_lands_on_the_lock_command_passes_as_itself(own_redis):
    """Cancelled while SET NX is in flight: a cancellation, not "Connection lost!" as an outage."""
    _, cancelled = await _lock_cancelled_in_flight(own_redis)
    assert cancelled


async def test_a_cancellation_that_lands_on_the_lock_command_leaves_no_lock(own_redis):
    """The command cut short may have taken the lock: it is released, not left for its lease."""
    store, _ = await _lock_cancelled_in_flight(own_redis)
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)


async def _read_while_stopped(process, store, cancel_after: float) -> bool:
    """Read the record while `process` is stopped (SIGSTOP), cancelled after `cancel_after` s;
    whether the cancellation was caught as itself."""
    process.send_signal(signal.SIGSTOP)
    try:
        with trio.move_on_after(cancel_after) as scope:
            async with store.open(KEY) as session:
                await session.read()
    finally:
        process.send_signal(signal.SIGCONT)
    return scope.cancelled_caught


# coredis leaves the buffers of the connection it gave up on: its leak, collected here.
@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
@pytest.mark.parametrize("slow", ["sentinel", "primary"])
async def test_a_cancellation_that_lands_while_connecting_behind_sentinel_passes_as_itself(
    own_sentinel, slow
):
    """Cancelled while the Sentinel or the primary is slow to answer the handshake: a
    cancellation, not PrimaryNotFoundError or "Unable to establish a connection" as an outage
    (the flaky Sentinel runs of the fleet tests under load)."""
    store = RedisStore(own_sentinel.url, sentinel=SENTINEL_NAME, timeout=2.0)
    process = getattr(own_sentinel, slow).process
    assert await _read_while_stopped(process, store, 0.2)


# coredis leaves the buffers of the connection it gave up on: its leak, collected here.
@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
def test_a_cancellation_that_lands_while_connecting_passes_as_itself_under_asyncio(own_sentinel):
    """Under asyncio, a timeout that lands while the Sentinel is slow is a TimeoutError."""
    store = RedisStore(own_sentinel.url, sentinel=SENTINEL_NAME, timeout=2.0)

    async def main() -> None:
        async with asyncio.timeout(0.2), store.open(KEY) as session:
            await session.read()

    own_sentinel.sentinel.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError) as caught:
            asyncio.run(main())
    finally:
        own_sentinel.sentinel.process.send_signal(signal.SIGCONT)
    assert TimeoutError is type(caught.value)


# coredis leaves the buffers of the connection it gave up on: its leak, collected here.
@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
def test_an_unreachable_redis_under_asyncio_is_unavailable_not_cancelled(own_redis):
    """Under asyncio, a Redis that is down is StoreUnavailableError: no cancellation to pass."""
    store = RedisStore(own_redis.url, timeout=1.0)
    own_redis.kill()

    async def main() -> None:
        async with store.open(KEY) as session:
            await session.read()

    with pytest.raises(StoreUnavailableError):
        asyncio.run(main())


# --------------------------------------------------------------------------------------------------
# 12. records and places that cannot be used


async def test_a_record_with_an_absurd_generation_is_corrupt(store):
    """A generation of 5,000 digits is a corrupt record, not a bare ValueError from int()."""
    absurd = b"9" * 5000
    if isinstance(store, MemoryStore | PostgresStore):
        pytest.skip("its generations are integers of its own (a Record's, a bigint column)")
    if isinstance(store, FileStore):
        await plant_raw(store, KEY, absurd + b"\n{}")
    else:
        async with store.open(KEY) as session:
            await session.client.hset(session.record_key, {"generation": absurd, "data": b"{}"})
    with pytest.raises(CorruptRecordError):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current()


def test_a_file_store_on_an_empty_path_is_refused_when_made():
    """FileStore("") would use the working directory: a ValueError at once."""
    with pytest.raises(ValueError, match="needs a directory"):
        FileStore("")


async def test_a_key_too_long_for_a_file_name_is_a_clear_error(tmp_path):
    """A key whose file name passes the filesystem's limit says so, naming the limit."""
    shared = SharedCredential(FileStore(tmp_path), key="k" * 300, fetch=Fetcher())
    with pytest.raises(ValueError, match="makes a file name of 307 bytes, over 255"):
        await shared.current()


async def test_a_directory_others_can_write_is_reported(tmp_path, caplog):
    """A store directory writable by other users (tokens live there) is warned about."""
    where = tmp_path / "shared"
    where.mkdir(mode=0o777)
    where.chmod(0o777)
    with caplog.at_level(logging.WARNING, "refresh_middleware"):
        await SharedCredential(FileStore(where), key=KEY, fetch=Fetcher()).current()
    assert "writable by other users (mode 777)" in caplog.text


# --------------------------------------------------------------------------------------------------
# 9. waiters on a slow holder


async def test_waiters_adopt_the_holders_record_while_it_still_holds_the_lock(store):
    """Five 'processes' waiting for the lock adopt the record written meanwhile, not queue on."""
    shared = [SharedCredential(store, key=KEY, fetch=Fetcher()) for _ in range(5)]
    stale = Credential("a1", "r1", generation=1)
    await plant(store, KEY, stale)
    got: list[Credential] = []

    async def renew(each: SharedCredential) -> None:
        got.append(await each.renew(stale))

    async with trio.open_nursery() as nursery, held(store, KEY):  # the holder, fetching
        for each in shared:
            nursery.start_soon(renew, each)
        await trio.sleep(0.1)
        await plant(store, KEY, Credential("a2", "r2"), generation=2)  # its write
        await trio.sleep(0.5)
        adopted_while_held = sorted(each.generation for each in got)
    assert [2] * 5 == adopted_while_held


# --------------------------------------------------------------------------------------------------
# 8. a lost reply to the lock command


async def test_a_lost_reply_to_the_lock_command_is_recognised_as_our_lock(own_redis):
    """The lock's reply is cut on the link: coredis resends it, and it finds its own token."""
    with link_proxy(own_redis.port) as proxy:
        store = RedisStore(proxy.url(), lease=2.0, timeout=1.0)
        await plant(store, KEY, Credential("a1", "r1"))
        shared = SharedCredential(store, key=KEY, fetch=Fetcher())
        proxy.cut_reply_to(b":lock")
        started = time.monotonic()
        renewed = await shared.renew(Credential("a1", "r1", generation=1))
        took = time.monotonic() - started
    assert (2, 1, True) == (renewed.generation, proxy.cuts, took < 1.0)


# --------------------------------------------------------------------------------------------------
# 11. a refused refresh token


async def test_a_refused_refresh_token_is_sent_once_for_the_whole_fleet(store):
    """One 'process' meets invalid_grant: the others ask for a sign-in without sending it again."""
    await plant(store, KEY, Credential("a1", "r1"))
    stale = Credential("a1", "r1", generation=1)
    refusing = Fetcher(error=ValueError('400 {"error": "invalid_grant"}'))
    others = Fetcher(error=ValueError('400 {"error": "invalid_grant"}'))
    with pytest.raises(ReauthenticationRequiredError):
        await SharedCredential(store, key=KEY, fetch=refusing).renew(stale)
    raised = []
    for shared in [SharedCredential(store, key=KEY, fetch=others) for _ in range(3)]:
        with pytest.raises(ReauthenticationRequiredError, match="another process") as caught:
            await shared.renew(stale)
        raised.append(caught.type)
    with pytest.raises(ReauthenticationRequiredError, match="another process"):
        await SharedCredential(store, key=KEY, fetch=others).current()
    assert (1, 0, 3) == (refusing.calls, others.calls, len(raised))


async def test_a_credential_stored_after_a_refusal_is_used_again(store):
    """A new sign-in (a newer record) lifts the refusal: the fleet renews as before."""
    await plant(store, KEY, Credential("a1", "r1"))
    stale = Credential("a1", "r1", generation=1)
    refusing = Fetcher(error=ValueError("invalid_grant"))
    with pytest.raises(ReauthenticationRequiredError):
        await SharedCredential(store, key=KEY, fetch=refusing).renew(stale)
    await plant(store, KEY, Credential("signed-in", "r-new"), generation=5)
    fetch = Fetcher()
    renewed = await SharedCredential(store, key=KEY, fetch=fetch).renew(
        Credential("signed-in", "r-new", generation=5)
    )
    assert (6, ["r-new"]) == (renewed.generation, [each.refresh_token for each in fetch.given])


async def test_a_refused_initial_grant_asks_for_a_sign_in_and_marks_nothing(store):
    """fetch(None) refused: there is no token to protect; nothing is stored."""
    fetch = Fetcher(error=ValueError("invalid_grant"))
    with pytest.raises(ReauthenticationRequiredError, match="sign in again"):
        await SharedCredential(store, key=KEY, fetch=fetch).current()
    async with store.open(KEY) as session:
        assert None is await session.read()


class FailingStore(CountingStore):
    """A store whose writes (and reads after the first write) fail as if it went away."""

    def __init__(self, store, *, writes: bool = True, reads_after_write: bool = False) -> None:
        super().__init__(store, refuse_writes=0 if writes else 1)
        self.fail_writes = writes
        self.fail_reads_after_write = reads_after_write

    @contextlib.asynccontextmanager
    async def open(self, key: str):
        async with super().open(key) as session:
            yield _FailingSession(self, session)


class _FailingSession:
    def __init__(self, owner: FailingStore, session) -> None:
        self.owner = owner
        self.session = session

    def __getattr__(self, name: str):
        return getattr(self.session, name)

    def _gone(self) -> StoreUnavailableError:
        return StoreUnavailableError("gone", store=repr(self.owner), key=KEY)

    async def read(self):
        if self.owner.fail_reads_after_write and self.owner.counts["write"]:
            raise self._gone()
        return await self.session.read()

    async def write(self, lease, expected, record):
        if self.owner.fail_writes:
            raise self._gone()
        return await self.session.write(lease, expected, record)


async def test_a_refusal_the_store_cannot_take_is_still_reported(tmp_path, caplog):
    """invalid_grant with a store that fails the mark: the caller is still told to sign in."""
    store = FailingStore(FileStore(tmp_path))
    await plant(store.store, KEY, Credential("a1", "r1"))
    shared = SharedCredential(store, key=KEY, fetch=Fetcher(error=ValueError("invalid_grant")))
    with (
        caplog.at_level(logging.WARNING, "refresh_middleware"),
        pytest.raises(ReauthenticationRequiredError),
    ):
        await shared.renew(Credential("a1", "r1", generation=1))
    assert "could not share the refusal" in caplog.text


async def test_a_grant_whose_write_is_refused_then_unreadable_is_kept(tmp_path, caplog):
    """A compare-and-set refused, then the store gone before the re-read: the process keeps it."""
    store = FailingStore(FileStore(tmp_path), writes=False, reads_after_write=True)
    await plant(store.store, KEY, Credential("a1", "r1"))
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    with caplog.at_level(logging.ERROR, "refresh_middleware"):
        renewed = await shared.renew(Credential("a1", "r1", generation=1))
    assert (2, True) == (renewed.generation, "could not take it" in caplog.text)


# --------------------------------------------------------------------------------------------------
# 3. a store that can never take the write


async def test_a_redis_user_without_eval_is_refused_before_anything_is_sent(own_redis):
    """An ACL user that may not run scripts fails at the lock (a script too), before fetch."""
    async with coredis.Redis.from_url(own_redis.url) as admin:
        await admin.acl_setuser("no-scripts", "on", ">pw", "~*", "+@all", "-@scripting")
    await plant(RedisStore(own_redis.url), KEY, Credential("a1", "r1"))
    store = RedisStore(own_redis.url.replace("//", "//no-scripts:pw@"))
    fetch = Fetcher()
    with pytest.raises(StoreUnavailableError, match="cannot take the lock"):
        await SharedCredential(store, key=KEY, fetch=fetch).renew(
            Credential("a1", "r1", generation=1)
        )
    assert 0 == fetch.calls


class _Racing:
    """A session whose lock is obtained just after another holder wrote a newer record."""

    def __init__(self, session, plant_newer) -> None:
        self.session = session
        self.plant_newer = plant_newer

    def __getattr__(self, name: str):
        return getattr(self.session, name)

    async def lock(self, wait: float):
        lease = await self.session.lock(wait)
        if lease is not None:
            await self.plant_newer()
        return lease


async def test_a_record_written_just_before_the_lock_was_obtained_is_adopted(store):
    """The holder before us wrote as we took the lock: the read under the lock adopts it."""
    await plant(store, KEY, Credential("a1", "r1"))

    async def plant_newer() -> None:
        await plant(store, KEY, Credential("a2", "r2"), generation=2)

    class RacingStore(CountingStore):
        @contextlib.asynccontextmanager
        async def open(self, key: str):
            async with self.store.open(key) as session:
                yield _Racing(session, plant_newer)

    fetch = Fetcher()
    shared = SharedCredential(RacingStore(store), key=KEY, fetch=fetch)
    renewed = await shared.renew(Credential("a1", "r1", generation=1))
    assert ("a2", 0) == (renewed.access_token, fetch.calls)


async def test_a_write_whose_reply_was_lost_is_recognised_on_the_retry(store):
    """The write landed but its reply was lost: the retry's compare-and-set finds our record."""
    await plant(store, KEY, Credential("a1", "r1"))

    class LostReply:
        def __init__(self, session) -> None:
            self.session = session
            self.lost = False

        def __getattr__(self, name: str):
            return getattr(self.session, name)

        async def write(self, lease, expected, record):
            written = await self.session.write(lease, expected, record)
            if not self.lost:
                self.lost = True
                raise StoreUnavailableError("reply lost", store="test", key=KEY)
            return written

    class LosingStore(CountingStore):
        @contextlib.asynccontextmanager
        async def open(self, key: str):
            async with self.store.open(key) as session:
                yield LostReply(session)

    fetch = Fetcher()
    shared = SharedCredential(LosingStore(store), key=KEY, fetch=fetch)
    renewed = await shared.renew(Credential("a1", "r1", generation=1))
    stored = await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    assert (2, renewed, 1) == (renewed.generation, stored, fetch.calls)
