"""A record adopted from another host and refused at once is renewed, not cooled down on.

Two hosts share one credential. One of them (a clock ahead, say) has stored a newer record
that the other has not used yet; then the provider revokes every access token. A caller of
the other host meets a 401, adopts that stored record (no fetch: someone already did) and
retries once on it: refused again. That caller has had its one retry; the next ones must not
fail the same way, but renew the refused record with one fetch for the whole fleet.
"""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
import trio

from examples.fleet import ChatProvider, TokenEndpoint
from refresh_middleware import refresh_on_401
from refresh_middleware._flight import Adoption, adoption
from refresh_middleware.shared import SharedCredential

from .helpers import Fetcher

KEY = "loopback/account"
CALLS = 20
COOLDOWN = (60.0, 60.0)
"""Long enough that no cooldown ends between two waves, however loaded the machine."""


# A store the two hosts share: a directory, or a redis-server.
pytestmark = pytest.mark.parametrize("make_store", ["file", "redis"], indirect=True)


async def wave(provider: Any) -> int:
    """`CALLS` chats at once on `provider`; how many failed."""
    failed = 0

    async def chat() -> None:
        nonlocal failed
        try:
            await provider.chat("hi")
        except httpx.HTTPStatusError:
            failed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(CALLS):
            nursery.start_soon(chat)
    return failed


async def host(credential: SharedCredential, http: httpx.AsyncClient, base_url: str) -> Any:
    """A host's provider on the fleet's credential (`examples.fleet.fleet_provider`)."""

    async def rebuild(stale: ChatProvider) -> ChatProvider:
        return ChatProvider(stale.http, stale.base_url, await credential.renew(stale.credential))

    provider = ChatProvider(http, base_url, await credential.current())
    return refresh_on_401(provider, refresh=rebuild, cooldown=COOLDOWN)


async def two_hosts_revoked(store, server, http) -> tuple[Any, Any]:
    """The providers of two hosts on generation 1, after the first host stored generation 2
    early (its clock runs ahead) and the provider revoked every access token issued so far."""
    endpoint = TokenEndpoint(server.token_url, server.oauth.authorization_code())
    ahead = SharedCredential(store, key=KEY, fetch=endpoint.fetch)
    behind = SharedCredential(store, key=KEY, fetch=endpoint.fetch)
    providers = (
        await host(ahead, http, server.base_url),
        await host(behind, http, server.base_url),
    )
    await ahead.renew(await ahead.current())  # the host ahead refreshes early, for everyone
    server.rotate()  # the provider revokes every access token
    return providers


async def waves(store, server, count: int) -> list[tuple[int, int]]:
    """How many calls failed on each host, wave after wave."""
    async with httpx.AsyncClient() as http:
        hosts = await two_hosts_revoked(store, server, http)
        return [(await wave(hosts[0]), await wave(hosts[1])) for _ in range(count)]


async def test_a_retry_refused_on_an_adopted_record_is_final(make_store, loopback):
    """The retry of each call goes to the stored record, refused too: one retry per call."""
    assert [(CALLS, CALLS)] == await waves(make_store(), loopback, 1)


async def test_the_next_callers_after_a_refused_adoption_succeed(make_store, loopback):
    """After every retry on an adopted record is refused, the next waves on both hosts succeed."""
    assert [(0, 0), (0, 0)] == (await waves(make_store(), loopback, 3))[1:]


async def test_a_refused_adoption_is_renewed_with_one_grant_for_the_fleet(make_store, loopback):
    """Renewing the refused adopted record takes one refresh grant for both hosts, no reuse."""
    await waves(make_store(), loopback, 3)
    stats = loopback.oauth.stats
    assert (1 + 1, 0) == (stats.refresh_grants, stats.reuse_detections)


async def told(renewal: Any) -> bool:
    """Whether a renewal said it adopted, as `refresh_on_401` asks it around its `refresh`."""
    said = Adoption()
    token = adoption.set(said)
    try:
        await renewal()
    finally:
        adoption.reset(token)
    return said.adopted


async def test_a_renewal_that_finds_another_process_s_record_says_it_adopted(make_store):
    """renew hands over a record another process stored, and says it adopted it."""
    store, fetch = make_store(), Fetcher()
    mine, theirs = (SharedCredential(store, key=KEY, fetch=fetch) for _ in range(2))
    stale = await mine.current()
    await theirs.renew(await theirs.current())
    assert True is await told(functools.partial(mine.renew, stale))


async def test_a_renewal_that_fetches_says_nothing_of_adopting(make_store):
    """renew that fetched the record it hands over does not say it adopted."""
    credential = SharedCredential(make_store(), key=KEY, fetch=Fetcher())
    stale = await credential.current()
    assert False is await told(functools.partial(credential.renew, stale))


async def test_a_sync_renewal_says_it_adopted_through_its_worker_thread(make_store):
    """renew_sync, run on a private loop in a worker thread, says it adopted too."""
    store, fetch = make_store(), Fetcher()
    mine, theirs = (SharedCredential(store, key=KEY, fetch=fetch) for _ in range(2))
    stale = await mine.current()
    await theirs.renew(await theirs.current())
    renew = functools.partial(mine.renew_sync, stale)
    assert True is await told(functools.partial(trio.to_thread.run_sync, renew))
