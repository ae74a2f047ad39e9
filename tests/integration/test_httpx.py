"""A raw `httpx.AsyncClient` provider (SSE parsed by hand) wrapped with refresh_on_401."""

from __future__ import annotations

from contextlib import aclosing

import httpx
import pytest
import trio

from examples.providers import connect_httpx

FULL_TEXT = "chunk-0 chunk-1 chunk-2 "


@pytest.fixture
async def provider(loopback, tokens):
    """An HttpxProvider wrapped as the examples wrap it, on a client closed afterwards."""
    async with httpx.AsyncClient() as http:
        yield await connect_httpx(http, loopback.base_url, tokens)


def text_of(events):
    return "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")


async def events_of(provider, received=None):
    """The events of one chat_stream, kept in `received` if an error stops it."""
    received = [] if received is None else received
    async with aclosing(provider.chat_stream("hi")) as events:
        async for event in events:
            received.append(event)
    return received


async def test_chat_recovers_from_an_expired_token(loopback, provider):
    """A 401 response (HTTPStatusError) is refreshed and the request retried."""
    loopback.expire_all()
    reply = await provider.chat("hi")
    assert FULL_TEXT == reply["content"][0]["text"]


async def test_stream_recovers_from_an_expired_token(loopback, provider):
    """A 401 at the start of a stream is refreshed and the whole text streamed once."""
    loopback.expire_all()
    assert FULL_TEXT == text_of(await events_of(provider))


async def test_error_item_before_content_is_retried_and_not_forwarded(loopback, provider):
    """An error event yielded before content is retried; the consumer never sees it."""
    loopback.inject_stream_error("before_content")
    events = await events_of(provider)
    assert (FULL_TEXT, []) == (text_of(events), [e for e in events if e["type"] == "error"])


async def test_error_item_after_content_is_forwarded_and_ends_the_stream(loopback, provider):
    """An error event yielded after text is forwarded as the last item, without a retry."""
    before = loopback.stats.token_requests
    loopback.inject_stream_error("after_content")
    events = await events_of(provider)
    assert ("chunk-0 ", "authentication_error", 0) == (
        text_of(events),
        events[-1]["error"]["type"],
        loopback.stats.token_requests - before,
    )


async def test_forty_concurrent_streams_on_an_expired_token_fetch_one_token(loopback, provider):
    """Forty streams failing together share one token fetch and all finish."""
    before = loopback.stats.token_requests
    loopback.expire_all()
    texts = []

    async def one():
        texts.append(text_of(await events_of(provider)))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
    assert (1, [FULL_TEXT] * 40) == (loopback.stats.token_requests - before, texts)


# httpx's own line and byte generators are left suspended when a response is closed before
# its end; the provider's generator and the wrapper's are closed and still checked.
@pytest.mark.filterwarnings(r"ignore:Async generator '(httpx|httpcore)\.:ResourceWarning")
async def test_consumer_stopping_early_leaves_the_client_usable(loopback, provider):
    """A consumer that stops after the first text event frees the connection for the next call."""
    async with aclosing(provider.chat_stream("hi")) as events:
        async for event in events:
            if event["type"] == "content_block_delta":
                break
    reply = await provider.chat("hi")
    assert FULL_TEXT == reply["content"][0]["text"]
