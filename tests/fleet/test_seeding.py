"""SharedCredential.seed: the tokens of a person's sign-in become the key's first record."""

from __future__ import annotations

import threading

import pytest
import trio

from refresh_middleware.shared import (
    Credential,
    LockTimeoutError,
    ReauthenticationRequiredError,
    SharedCredential,
)

from .helpers import Fetcher, held

KEY = "provider/account-1"
SIGN_IN = Credential("signed-in-access", "signed-in-refresh", 4102444800.0, {"scope": "chat"})


async def test_a_seed_is_the_first_record_and_nothing_is_fetched(store):
    """Seeding an empty key stores generation 1; current() hands it out without a fetch."""
    fetch = Fetcher()
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    seeded = await shared.seed(SIGN_IN)
    other = SharedCredential(store, key=KEY, fetch=fetch)
    assert (1, "signed-in-access", seeded, 0) == (
        seeded.generation,
        seeded.access_token,
        await other.current(),
        fetch.calls,
    )


async def test_a_seed_keeps_a_record_already_stored(store):
    """Without replace, a stored record (perhaps rotated since) is kept and returned."""
    fetch = Fetcher()
    first = await SharedCredential(store, key=KEY, fetch=fetch).current()
    kept = await SharedCredential(store, key=KEY, fetch=fetch).seed(SIGN_IN)
    assert first == kept


async def test_a_seed_with_replace_overwrites_as_the_next_generation(store):
    """replace=True writes the new sign-in over the record, one generation up; others adopt it."""
    fetch = Fetcher()
    elsewhere = SharedCredential(store, key=KEY, fetch=fetch)
    stale = await elsewhere.current()
    replaced = await SharedCredential(store, key=KEY, fetch=fetch).seed(SIGN_IN, replace=True)
    adopted = await elsewhere.renew(stale)
    assert (2, replaced, 1) == (replaced.generation, adopted, fetch.calls)


async def test_a_seed_is_what_this_process_hands_out_next(store):
    """After a seed with replace, the same SharedCredential's current() is the new record."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    await shared.current()
    await shared.seed(SIGN_IN, replace=True)
    assert "signed-in-access" == (await shared.current()).access_token


async def test_a_seed_takes_a_credential(store):
    """seed of something else than a Credential is a TypeError, before the store is touched."""
    with pytest.raises(TypeError, match="seed takes a Credential, got dict"):
        await SharedCredential(store, key=KEY, fetch=Fetcher()).seed({"access_token": "a"})  # type: ignore[arg-type]


async def test_a_seed_waits_for_the_lock_at_most_lock_timeout(store):
    """A lock held elsewhere for longer than lock_timeout makes the seed a typed error."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher(), lock_timeout=0.2)
    async with held(store, KEY):
        with pytest.raises(LockTimeoutError):
            await shared.seed(SIGN_IN)


def test_seed_sync_serves_threads(store):
    """seed_sync from several threads stores one record; every thread gets that record."""
    shared = SharedCredential(store, key=KEY, fetch=Fetcher())
    got: list[Credential] = []
    threads = [
        threading.Thread(target=lambda: got.append(shared.seed_sync(SIGN_IN))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {1} == {each.generation for each in got}


async def test_a_seed_during_an_initial_grant_keeps_the_granted_record(store):
    """A seed that waits behind this process's initial grant then finds it stored, and keeps it."""
    fetch = Fetcher(delay=0.2)
    shared = SharedCredential(store, key=KEY, fetch=fetch)
    granted: list[Credential] = []

    async def first() -> None:
        granted.append(await shared.current())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await fetch.started.wait()
        seeded = await shared.seed(SIGN_IN)
    assert (granted[0], 1) == (seeded, fetch.calls)


async def test_a_seed_replaces_a_record_whose_refresh_token_was_refused(store):
    """After an invalid_grant marked the record refused, a plain seed stores the new sign-in."""
    await SharedCredential(store, key=KEY, fetch=Fetcher()).current()
    refusing = SharedCredential(store, key=KEY, fetch=Fetcher(error=ValueError("invalid_grant")))
    with pytest.raises(ReauthenticationRequiredError):
        await refusing.renew(await refusing.current())
    seeded = await SharedCredential(store, key=KEY, fetch=Fetcher()).seed(SIGN_IN)
    assert ("signed-in-access", seeded) == (
        seeded.access_token,
        await SharedCredential(store, key=KEY, fetch=Fetcher()).current(),
    )
