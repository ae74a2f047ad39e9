"""What MemoryStore does on its own: one process, its tasks, threads and event loops.

The protocol's behaviour on it is pinned by the store-parametrized tests of test_credential.py
and test_compose.py; these pin what only a memory store has.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import trio

from refresh_middleware.shared import Credential, Lease, MemoryStore, Record, SharedCredential

from .helpers import Fetcher

KEY = "provider/account-1"


def test_a_memory_store_says_what_it_is():
    """Its repr names the kind of store, and its locks have no lease."""
    store = MemoryStore()
    assert ("MemoryStore()", None) == (repr(store), store.lease)


async def test_a_memory_session_writes_only_under_its_lock():
    """A write without the session's own lease is a programming error."""
    async with MemoryStore().open(KEY) as session:
        with pytest.raises(RuntimeError, match="only under the lock"):
            await session.write(Lease(KEY, "not held"), 0, Record(1, b"{}"))


async def test_a_memory_session_releases_a_lock_left_held():
    """A session that ends holding the lock releases it; another session then takes it."""
    store = MemoryStore()
    async with store.open(KEY) as session:
        assert None is not await session.lock(0)
    async with store.open(KEY) as other:
        assert None is not await other.lock(0)


async def test_unlocking_a_memory_lock_twice_is_harmless():
    """A second unlock of the same lease does nothing (the lock may be someone else's now)."""
    store = MemoryStore()
    async with store.open(KEY) as session, store.open(KEY) as other:
        lease = await session.lock(0)
        await session.unlock(lease)
        taken = await other.lock(0)
        await session.unlock(lease)
        assert (True, None) == (taken is not None, await session.lock(0))


async def test_a_lock_waiter_is_woken_when_the_holder_releases(autojump_clock):
    """A session waiting for the lock takes it as soon as its holder lets go."""
    store = MemoryStore()
    async with store.open(KEY) as holder, store.open(KEY) as waiter:
        lease = await holder.lock(0)
        started = trio.current_time()
        got: list[object] = []

        async def wait() -> None:
            got.append((await waiter.lock(60), trio.current_time() - started))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(5)
            await holder.unlock(lease)
        assert (True, 5.0) == (got[0][0] is not None, got[0][1])


def test_threads_and_loops_share_one_fetch():
    """Threads, each running its own asyncio loop, renew one record: one fetch."""
    store = MemoryStore()
    calls: list[int] = []

    async def fetch(current: Credential | None) -> Credential:
        calls.append(1)
        await asyncio.sleep(0.05)
        return Credential(f"a{len(calls)}", "r")

    shared = SharedCredential(store, key=KEY, fetch=fetch)
    stale = shared.current_sync()
    others = [SharedCredential(store, key=KEY, fetch=fetch) for _ in range(4)]
    got: list[int] = []

    def renew(credential: SharedCredential) -> None:
        got.append(asyncio.run(credential.renew(stale)).generation)

    threads = [threading.Thread(target=renew, args=(each,)) for each in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (2, [2, 2, 2, 2]) == (len(calls), got)


async def test_a_fork_frees_a_lock_taken_in_the_parent(monkeypatch):
    """In a forked child, a lock held by the parent is free, and the records are kept."""
    store = MemoryStore()
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    first = await shared.current()
    async with store.open(KEY) as parent:
        lease = await parent.lock(0)
        monkeypatch.setattr("refresh_middleware._shared._memory.os.getpid", lambda: -1)
        async with store.open(KEY) as child:
            free = await child.lock(0)
            await child.unlock(free)
        await parent.unlock(lease)
        again = await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
        assert (True, first) == (free is not None, again)


async def test_a_memory_store_keeps_nothing_between_stores():
    """Two MemoryStore objects are two stores: a record in one is not in the other."""
    await SharedCredential(MemoryStore(), key=KEY, fetch=Fetcher()).current()
    async with MemoryStore().open(KEY) as session:
        assert None is await session.read()


def test_a_lock_wait_blocks_no_loop_in_another_thread():
    """A thread's loop waits for a lock held elsewhere and gives up at its bound, on time."""
    store = MemoryStore()

    async def hold_then_try() -> tuple[bool, float]:
        async with store.open(KEY) as holder:
            await holder.lock(0)
            started = time.monotonic()
            result: list[object] = []
            thread = threading.Thread(target=lambda: result.append(asyncio.run(_try(store))))
            thread.start()
            await asyncio.to_thread(thread.join)
            return result[0] is None, time.monotonic() - started

    timed_out, elapsed = asyncio.run(hold_then_try())
    assert (True, True) == (timed_out, 0.1 <= elapsed < 2)


async def _try(store: MemoryStore) -> object:
    async with store.open(KEY) as session:
        return await session.lock(0.1)


async def test_a_memory_write_that_lost_the_race_writes_nothing():
    """A compare-and-set on a generation that is no longer stored returns False."""
    store = MemoryStore()
    async with store.open(KEY) as session:
        lease = await session.lock(0)
        first = await session.write(lease, 0, Record(1, b"one"))
        second = await session.write(lease, 0, Record(1, b"two"))
        assert (True, False, Record(1, b"one")) == (first, second, await session.read())
