"""Sync `openai.OpenAI` from threads, and the async provider under asyncio, on a threaded server."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing, closing

import openai
import pytest

from examples.providers import OpenAISyncProvider, TokenSource, connect_openai, text_of
from refresh_middleware import refresh_on_401
from refresh_middleware.testing import run_loopback_server_in_thread

FULL_TEXT = "chunk-0 chunk-1 chunk-2 "


@pytest.fixture
def server():
    """A loopback server on its own thread, for code that is not running under trio."""
    with run_loopback_server_in_thread() as server:
        yield server


@pytest.fixture
def provider(server):
    """An OpenAISyncProvider (its class is decorated); its pool is closed afterwards."""
    provider = OpenAISyncProvider(server.openai_base_url, TokenSource(server.token_url))
    yield provider
    provider.close()


def in_threads(count, function):
    """Run `function` in `count` threads started together; their results, in thread order."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(index):
        barrier.wait()
        results[index] = function()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def stream_text(provider):
    with closing(provider.chat_stream("hi")) as chunks:
        return text_of(list(chunks))


def test_sync_chat_recovers_from_an_expired_token(server, provider):
    """A sync chat on an expired token is refreshed and answered."""
    server.expire_all()
    assert FULL_TEXT == provider.chat("hi").choices[0].message.content


def test_sync_stream_recovers_from_an_expired_token(server, provider):
    """A sync stream on an expired token is refreshed and streams the text once."""
    server.expire_all()
    assert FULL_TEXT == stream_text(provider)


def test_sync_stream_error_before_content_is_retried(server, provider):
    """An in-stream 401 before any text is retried in a sync stream; the text arrives once."""
    server.inject_stream_error("before_content", api="openai")
    assert FULL_TEXT == stream_text(provider)


def test_twelve_threads_on_an_expired_token_fetch_one_token(server, provider):
    """Twelve threads failing together on one expired token share a single token fetch."""
    before = server.stats.token_requests
    server.expire_all()
    replies = in_threads(12, lambda: provider.chat("hi").choices[0].message.content)
    assert (1, [FULL_TEXT] * 12) == (server.stats.token_requests - before, replies)


def test_twelve_thread_streams_on_an_expired_token_fetch_one_token(server, provider):
    """Twelve threads streaming on one expired token share a single token fetch."""
    before = server.stats.token_requests
    server.expire_all()
    texts = in_threads(12, lambda: stream_text(provider))
    assert (1, [FULL_TEXT] * 12) == (server.stats.token_requests - before, texts)


def run_async(server, main):
    """Run `main(provider)` under asyncio with a wrapped OpenAIProvider, closed afterwards."""

    async def run():
        provider = await connect_openai(server.openai_base_url, TokenSource(server.token_url))
        try:
            return await main(provider)
        finally:
            await provider.aclose()

    return asyncio.run(run())


async def async_stream_text(provider):
    async with aclosing(provider.chat_stream("hi")) as chunks:
        return text_of([chunk async for chunk in chunks])


def test_asyncio_stream_recovers_from_an_expired_token(server):
    """Under asyncio, a stream on an expired token is refreshed and streams the text once."""

    async def main(provider):
        server.expire_all()
        return await async_stream_text(provider)

    assert FULL_TEXT == run_async(server, main)


def test_asyncio_concurrent_streams_on_an_expired_token_fetch_one_token(server):
    """Under asyncio, sixteen streams failing together share a single token fetch."""
    before = server.stats.token_requests

    async def main(provider):
        server.expire_all()
        return await asyncio.gather(*(async_stream_text(provider) for _ in range(16)))

    texts = run_async(server, main)
    # One token to connect, one for the refresh.
    assert (2, [FULL_TEXT] * 16) == (server.stats.token_requests - before, texts)


def test_one_proxy_works_across_successive_event_loops(server):
    """A proxy made under one asyncio loop refreshes under the next one."""
    tokens = TokenSource(server.token_url)
    provider = asyncio.run(connect_openai(server.openai_base_url, tokens))

    async def after_expiry():
        server.expire_all()
        try:
            return await async_stream_text(provider)
        finally:
            await provider.aclose()

    assert FULL_TEXT == asyncio.run(after_expiry())


def test_sync_responses_stream_read_to_its_end_closes_its_response(server):
    """A sync openai.OpenAI Responses API stream read to its end closes its HTTP response."""
    tokens = TokenSource(server.token_url)
    client = refresh_on_401(
        openai.OpenAI(base_url=server.openai_base_url, api_key=tokens.fetch_sync(), max_retries=0),
        refresh=lambda stale: stale.with_options(api_key=tokens.fetch_sync()),
        calls=(),
        streams=("responses.create",),
    )
    stream = client.responses.create(model="m", input="hi", stream=True)
    events = list(stream)
    closed = stream.response.is_closed
    client.close()
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert (FULL_TEXT, True) == (text, closed)
