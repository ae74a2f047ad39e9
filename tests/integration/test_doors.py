"""Every door on one SharedCredential, with the real SDKs over loopback (issue 20).

The loopback identity provider rotates refresh tokens and revokes a family whose refresh token
is used twice, so `refresh_grants` and `reuse_detections` count what a fleet must keep to one
per expiry and none. openai 3.x and anthropic 2.x send through httpx2: `httpx_auth()` sees
every request they make, whichever door of the client it took.
"""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import httpx2
import openai
import pytest
import trio

from refresh_middleware.shared import (
    Credential,
    MemoryStore,
    OAuth2RefreshGrant,
    SharedCredential,
)
from refresh_middleware.testing import run_loopback_server_in_thread

# The SDKs leave their inner SSE generators suspended (see test_loopback_server.py).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|httpx2|httpcore2)\.:ResourceWarning"
)

KEY = "loopback/account"
FULL_TEXT = "chunk-0 chunk-1 chunk-2 "
MESSAGES = [{"role": "user", "content": "hi"}]
BODY = {"model": "m", "messages": MESSAGES}


def sign_in_sync(server) -> Credential:
    """The tokens of a person's sign-in: an authorization code exchanged once."""
    code = server.oauth.authorization_code()
    body = httpx.post(server.token_url, data={"grant_type": "authorization_code", "code": code})
    tokens = body.json()
    return Credential(
        tokens["access_token"], tokens["refresh_token"], time.time() + tokens["expires_in"]
    )


async def shared_on(server, *, store=None, expires_in: float | None = None) -> SharedCredential:
    """A SharedCredential on the loopback provider, seeded with a sign-in's tokens."""
    credential = SharedCredential(
        store or MemoryStore(),
        key=KEY,
        fetch=OAuth2RefreshGrant(server.token_url, client_id="app"),
    )
    signed_in = await trio.to_thread.run_sync(sign_in_sync, server)
    if expires_in is not None:
        signed_in = Credential(
            signed_in.access_token, signed_in.refresh_token, time.time() + expires_in
        )
    await credential.seed(signed_in)
    return credential


def grants(server) -> tuple[int, int]:
    """(refresh grants, reuse detections) at the loopback identity provider."""
    stats = server.oauth.stats
    return stats.refresh_grants, stats.reuse_detections


# --------------------------------------------------------------------------------------------------
# openai through httpx_auth(): every door of the client


async def openai_doors(client: openai.AsyncOpenAI, index: int) -> str:
    """One call through door `index % 5`: create, stream, with_options, raw, streaming."""
    completions = client.chat.completions
    door = index % 5
    if door == 0:
        reply = await completions.create(model="m", messages=MESSAGES)
        return reply.choices[0].message.content or ""
    if door == 1:
        text = ""
        async for chunk in await completions.create(model="m", messages=MESSAGES, stream=True):
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        return text
    if door == 2:
        options = client.with_options(timeout=30)
        reply = await options.chat.completions.create(model="m", messages=MESSAGES)
        return reply.choices[0].message.content or ""
    if door == 3:
        raw = await completions.with_raw_response.create(model="m", messages=MESSAGES)
        return raw.parse().choices[0].message.content or ""
    async with completions.with_streaming_response.create(
        model="m", messages=MESSAGES, stream=True
    ) as response:
        text = ""
        async for chunk in await response.parse():
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        return text


async def test_twenty_openai_callers_on_an_expired_token_make_one_grant(loopback):
    """20 callers over five doors (calls, streams, with_options, raw, streaming): 1 grant."""
    credential = await shared_on(loopback)
    async with httpx2.AsyncClient(auth=credential.httpx_auth()) as http:
        client = openai.AsyncOpenAI(
            api_key="-", base_url=loopback.openai_base_url, http_client=http, max_retries=0
        )
        await openai_doors(client, 0)
        loopback.expire_all()
        texts: list[str] = []

        async def call(index: int) -> None:
            texts.append(await openai_doors(client, index))

        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(call, index)
    assert ([FULL_TEXT] * 20, (1, 0)) == (texts, grants(loopback))


async def test_twenty_anthropic_callers_on_an_expired_key_make_one_grant(loopback):
    """AsyncAnthropic with the token as x-api-key: calls and streams, 20 at once, 1 grant."""
    credential = await shared_on(loopback)
    auth = credential.httpx_auth(header="x-api-key", scheme=None)
    async with httpx2.AsyncClient(auth=auth) as http:
        client = anthropic.AsyncAnthropic(
            api_key="-", base_url=loopback.base_url, http_client=http, max_retries=0
        )
        loopback.expire_all()
        texts: list[str] = []

        async def call(index: int) -> None:
            if index % 2:
                async with client.messages.stream(
                    model="m", max_tokens=10, messages=MESSAGES
                ) as stream:
                    texts.append("".join([text async for text in stream.text_stream]))
                return
            reply = await client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
            texts.append(reply.content[0].text)

        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(call, index)
    assert ([FULL_TEXT] * 20, (1, 0)) == (texts, grants(loopback))


def test_eight_threads_with_the_sync_openai_client_make_one_grant():
    """The sync OpenAI client in 8 threads on an expired token: every call answered, 1 grant."""
    with run_loopback_server_in_thread() as server:
        credential = SharedCredential(
            MemoryStore(), key=KEY, fetch=OAuth2RefreshGrant(server.token_url, client_id="app")
        )
        credential.seed_sync(sign_in_sync(server))
        with httpx2.Client(auth=credential.httpx_auth()) as http:
            client = openai.OpenAI(
                api_key="-", base_url=server.openai_base_url, http_client=http, max_retries=0
            )
            client.chat.completions.create(model="m", messages=MESSAGES)
            server.expire_all()
            barrier = threading.Barrier(8)
            texts: list[str] = []

            def call() -> None:
                barrier.wait()
                reply = client.chat.completions.create(model="m", messages=MESSAGES)
                texts.append(reply.choices[0].message.content or "")

            threads = [threading.Thread(target=call) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert ([FULL_TEXT] * 8, (1, 0)) == (texts, grants(server))


# --------------------------------------------------------------------------------------------------
# the Auth's own rules, on plain httpx2


async def test_a_body_that_cannot_be_replayed_gets_the_401_back_and_the_next_request_works(
    loopback,
):
    """A streamed request body is not resent: its 401 returns as it is; the renewal stands."""
    credential = await shared_on(loopback)

    async def body():
        yield b'{"model": "m", "messages": []}'

    async with httpx2.AsyncClient(auth=credential.httpx_auth()) as http:
        loopback.expire_all()
        url = f"{loopback.openai_base_url}/chat/completions"
        first = await http.post(url, content=body())
        second = await http.post(url, json=BODY)
    assert (401, 200, (1, 0)) == (first.status_code, second.status_code, grants(loopback))


async def test_a_401_that_renewing_cannot_fix_is_returned_as_it_is(loopback, caplog):
    """The family revoked: renewing fails (re-authentication needed), the 401 comes back."""
    credential = await shared_on(loopback)
    async with httpx2.AsyncClient(auth=credential.httpx_auth()) as http:
        loopback.oauth.revoke_all()
        response = await http.post(f"{loopback.openai_base_url}/chat/completions", json=BODY)
    assert (401, True) == (
        response.status_code,
        "could not renew after a 401 (ReauthenticationRequiredError" in caplog.text,
    )


async def test_a_token_in_the_advisory_window_is_renewed_before_the_request(loopback):
    """A credential a minute from expiry is renewed ahead: the request never sees a 401."""
    credential = await shared_on(loopback, expires_in=60)
    async with httpx2.AsyncClient(auth=credential.httpx_auth()) as http:
        statuses = [
            (await http.post(f"{loopback.openai_base_url}/chat/completions", json=BODY)).status_code
            for _ in range(3)
        ]
    assert ([200, 200, 200], (1, 0), 0) == (statuses, grants(loopback), loopback.stats.unauthorized)


# --------------------------------------------------------------------------------------------------
# the SDKs' own hooks


async def test_twenty_anthropic_callers_through_its_credentials_hook_make_one_grant(loopback):
    """AsyncAnthropic(credentials=anthropic_provider()): 20 callers after expiry, 1 grant.

    The SDK drops the refused token on a 401 and asks the provider with force_refresh=True
    on the next request; it does not resend the refused one (max_retries=0 here), so each
    caller tries again once, as its own code would.
    """
    credential = await shared_on(loopback)
    client = anthropic.AsyncAnthropic(
        credentials=credential.anthropic_provider(), base_url=loopback.base_url, max_retries=0
    )
    await client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    loopback.expire_all()
    texts: list[str] = []

    async def call() -> None:
        try:
            reply = await client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        except anthropic.AuthenticationError:
            reply = await client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        texts.append(reply.content[0].text)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(call)
    await client.close()
    assert ([FULL_TEXT] * 20, (1, 0)) == (texts, grants(loopback))


async def test_force_refresh_renews_the_credential_the_provider_handed_out(loopback):
    """force_refresh after another door renewed: the newer record, with no grant of its own."""
    credential = await shared_on(loopback)
    provider = credential.anthropic_provider()
    handed_out = await provider()
    newer = await credential.renew(await credential.current())  # another door's renewal
    forced = await provider(force_refresh=True)
    again = await provider(force_refresh=True)  # now the refused one is the newest: renew it
    assert (True, newer.access_token, True, 2) == (
        handed_out.token != newer.access_token,
        forced.token,
        again.token not in {handed_out.token, newer.access_token},
        grants(loopback)[0],
    )


async def test_the_anthropic_token_carries_the_expiry_in_whole_seconds(loopback):
    """The AccessToken's expires_at is the credential's, as the int the SDK caches by."""
    credential = await shared_on(loopback)
    token = await credential.anthropic_provider()()
    assert int((await credential.current()).expires_at) == token.expires_at


async def test_an_openai_key_hook_renews_ahead_of_expiry(loopback):
    """AsyncOpenAI(api_key=openai_api_key()) a minute from expiry: 1 grant, no 401 seen."""
    credential = await shared_on(loopback, expires_in=60)
    client = openai.AsyncOpenAI(
        api_key=credential.openai_api_key(), base_url=loopback.openai_base_url, max_retries=0
    )
    texts = [
        (await client.chat.completions.create(model="m", messages=MESSAGES))
        .choices[0]
        .message.content
        for _ in range(3)
    ]
    await client.close()
    assert ([FULL_TEXT] * 3, (1, 0), 0) == (texts, grants(loopback), loopback.stats.unauthorized)


def test_the_sync_hooks_serve_the_sync_clients():
    """OpenAI(api_key=openai_api_key_sync()) and Anthropic(credentials=...sync()) answer."""
    with run_loopback_server_in_thread() as server:
        credential = SharedCredential(
            MemoryStore(), key=KEY, fetch=OAuth2RefreshGrant(server.token_url, client_id="app")
        )
        credential.seed_sync(sign_in_sync(server))
        with (
            openai.OpenAI(
                api_key=credential.openai_api_key_sync(), base_url=server.openai_base_url
            ) as chat,
            anthropic.Anthropic(
                credentials=credential.anthropic_provider_sync(), base_url=server.base_url
            ) as messages,
        ):
            texts = [
                chat.chat.completions.create(model="m", messages=MESSAGES)
                .choices[0]
                .message.content,
                messages.messages.create(model="m", max_tokens=10, messages=MESSAGES)
                .content[0]
                .text,
            ]
    assert [FULL_TEXT, FULL_TEXT] == texts


# --------------------------------------------------------------------------------------------------
# a client wired twice: httpx_auth() and refresh_on_401 on one credential


async def test_a_client_wired_twice_makes_one_grant_per_expiry(loopback):
    """Auth plus proxy: status 401s end at the Auth, an in-stream one at the proxy; 2 expiries,
    2 grants, and the proxy refreshed only for the error inside the 200 stream."""
    from refresh_middleware import refresh_on_401

    credential = await shared_on(loopback)
    refreshes: list[int] = []

    async def renew_in_place(stale: openai.AsyncOpenAI) -> None:
        refreshes.append(1)
        await credential.renew(await credential.current())

    async with httpx2.AsyncClient(auth=credential.httpx_auth()) as http:
        client = refresh_on_401(
            openai.AsyncOpenAI(
                api_key="-", base_url=loopback.openai_base_url, http_client=http, max_retries=0
            ),
            refresh=renew_in_place,
            calls=(),
            streams=("chat.completions.create",),
        )
        loopback.expire_all()  # expiry 1: a status 401, seen by the Auth only
        texts: list[str] = []

        async def call(index: int) -> None:
            texts.append(await openai_doors(client, index))

        async with trio.open_nursery() as nursery:
            for index in range(10):
                nursery.start_soon(call, index)
        loopback.inject_stream_error("before_content", api="openai")  # expiry 2: in the stream
        texts.append(await openai_doors(client, 1))
    assert ([FULL_TEXT] * 11, (2, 0), [1]) == (texts, grants(loopback), refreshes)
