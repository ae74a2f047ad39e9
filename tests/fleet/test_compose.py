"""SharedCredential composed with refresh_on_401 (DESIGN.md form 5), over real HTTP.

The providers are those of the fleet demo (`examples/fleet.py`): chat completions over httpx
against the loopback server, whose identity provider rotates refresh tokens.
"""

from __future__ import annotations

import time

import httpx
import pytest
import trio

from examples.fleet import ChatProvider, TokenEndpoint, fleet_provider
from refresh_middleware import refresh_on_401
from refresh_middleware.shared import SharedCredential, StoreUnavailableError

from .helpers import CountingStore, held

KEY = "loopback/account"
LEAK = r"ignore:Unclosed <MemoryObject(Send|Receive)Stream:ResourceWarning"


def credential_on(store, server, **options) -> SharedCredential:
    endpoint = TokenEndpoint(server.token_url, server.oauth.authorization_code())
    return SharedCredential(store, key=KEY, fetch=endpoint.fetch, **options)


async def test_a_401_in_two_processes_makes_one_grant(store, loopback):
    """Thirty calls in two 'processes' meet an expired token: one refresh grant, no reuse."""
    endpoint = TokenEndpoint(loopback.token_url, loopback.oauth.authorization_code())
    async with httpx.AsyncClient() as http:
        providers = [
            await fleet_provider(
                SharedCredential(store, key=KEY, fetch=endpoint.fetch), http, loopback.base_url
            )
            for _ in range(2)
        ]
        loopback.expire_all()
        answers: list[str] = []
        async with trio.open_nursery() as nursery:
            for index in range(30):
                nursery.start_soon(lambda provider=providers[index % 2]: _chat(provider, answers))
    stats = loopback.oauth.stats
    assert (30, 1, 1, 0) == (
        len(answers),
        stats.code_grants,
        stats.refresh_grants,
        stats.reuse_detections,
    )


async def _chat(provider: ChatProvider, answers: list[str]) -> None:
    answers.append(await provider.chat("hi"))


async def test_steady_state_calls_touch_no_store(store, loopback):
    """Calls that meet no 401 perform no store operation at all (counted)."""
    counting = CountingStore(store)
    async with httpx.AsyncClient() as http:
        provider = await fleet_provider(credential_on(counting, loopback), http, loopback.base_url)
        before = counting.operations
        for _ in range(50):
            await provider.chat("hi")
    assert 0 == counting.operations - before


class Clock:
    """The wall clock, moved ahead by a test to reach the windows before expiry."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


async def proactive(store, server, http, clock: Clock) -> tuple[ChatProvider, SharedCredential]:
    credential = credential_on(store, server)

    async def rebuild(stale: ChatProvider) -> ChatProvider:
        return ChatProvider(stale.http, stale.base_url, await credential.renew(stale.credential))

    provider = ChatProvider(http, server.base_url, await credential.current())
    wrapped = refresh_on_401(
        provider,
        refresh=rebuild,
        expires_at=lambda current: current.credential.expires_at,
        clock=clock,
    )
    return wrapped, credential


async def test_in_the_advisory_window_a_held_lock_lets_calls_go_on(store, loopback):
    """Advisory window, another process on the lock: the call goes on at once, no grant."""
    clock = Clock()
    async with httpx.AsyncClient() as http:
        provider, _ = await proactive(store, loopback, http, clock)
        clock.ahead = 3600 - 60  # a minute before expiry: the advisory window
        async with held(store, KEY):
            started = time.monotonic()
            await provider.chat("hi")
            waited = time.monotonic() - started
    assert (True, 0) == (waited < 1, loopback.oauth.stats.refresh_grants)


async def test_in_the_mandatory_window_calls_wait_for_the_lock(store, loopback):
    """Mandatory window, another process on the lock: the call waits, then one grant."""
    clock = Clock()
    async with httpx.AsyncClient() as http:
        provider, _ = await proactive(store, loopback, http, clock)
        clock.ahead = 3600 - 10  # ten seconds before expiry: the mandatory window
        async with trio.open_nursery() as nursery, held(store, KEY):
            nursery.start_soon(provider.chat, "hi")
            await trio.sleep(0.3)
            grants_while_held = loopback.oauth.stats.refresh_grants
    assert (0, 1) == (grants_while_held, loopback.oauth.stats.refresh_grants)


def test_a_sync_provider_renews_through_the_sync_form(store, tmp_path):
    """A sync provider's refresh calls renew_sync; threads share one grant."""
    from refresh_middleware.testing import run_loopback_server_in_thread

    class SyncChat:
        def __init__(self, base_url: str, credential) -> None:
            self.base_url = base_url
            self.credential = credential

        def chat(self, prompt: str) -> int:
            response = httpx.post(
                f"{self.base_url}/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": prompt}]},
                headers={"authorization": f"Bearer {self.credential.access_token}"},
            )
            response.raise_for_status()
            return response.status_code

    with run_loopback_server_in_thread() as server:
        endpoint = TokenEndpoint(server.token_url, server.oauth.authorization_code())
        credential = SharedCredential(store, key=KEY, fetch=endpoint.fetch_sync)
        provider = refresh_on_401(
            SyncChat(server.base_url, credential.current_sync()),
            refresh=lambda stale: SyncChat(stale.base_url, credential.renew_sync(stale.credential)),
        )
        server.expire_all()
        assert (200, 1) == (provider.chat("hi"), server.oauth.stats.refresh_grants)


def _killable(kind, request):
    """A store on a server of `kind` started for this test, and how to kill that server.

    A cluster loses the node that holds the record (its slot has no replica): the others still
    answer, and the call must not wander between them. Behind Sentinel, the primary dies (no
    replica to fail over to) while the Sentinel still names it.
    """
    from examples.redis_server import cli
    from refresh_middleware.shared import PostgresStore, RedisStore

    from .helpers import TOPOLOGIES

    if kind == "postgres":
        server = request.getfixturevalue("own_postgres")
        return PostgresStore(server.dsn, timeout=1.0), server.kill
    if kind == "cluster":
        cluster = request.getfixturevalue("own_cluster")
        store = RedisStore(cluster.url, cluster=True, timeout=1.0)

        def kill_the_records_node() -> None:
            record = "{" + store.prefix + KEY + "}"
            (holder,) = (
                node
                for node in cluster.nodes
                if cli("-p", str(node.port), "exists", record) == "1\n"
            )
            holder.kill()

        return store, kill_the_records_node
    if kind == "sentinel":
        watched = request.getfixturevalue("own_sentinel")
        return RedisStore(watched.url, **TOPOLOGIES[kind], timeout=1.0), watched.primary.kill
    server = request.getfixturevalue("own_valkey" if kind == "valkey" else "own_redis")
    return RedisStore(server.url, timeout=1.0), server.kill


@pytest.mark.usefixtures("collect_garbage")
@pytest.mark.filterwarnings(LEAK)
@pytest.mark.parametrize("kind", ["redis", "postgres", "cluster", "sentinel", "valkey"])
async def test_a_killed_store_server_fails_the_call_closed(kind, request, loopback):
    """The store's server killed: the 401 surfaces promptly with StoreUnavailableError; nobody
    refreshes."""
    store, kill = _killable(kind, request)
    async with httpx.AsyncClient() as http:
        provider = await fleet_provider(credential_on(store, loopback), http, loopback.base_url)
        kill()
        loopback.expire_all()
        started = time.monotonic()
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await provider.chat("hi")
        elapsed = time.monotonic() - started
    assert (401, True, True, 0) == (
        caught.value.response.status_code,
        isinstance(caught.value.__context__, StoreUnavailableError),
        elapsed < 5,
        loopback.oauth.stats.refresh_grants,
    )
