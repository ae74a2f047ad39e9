"""`openai.AsyncOpenAI` wrapped with refresh_on_401, over real HTTP to the loopback server."""

from __future__ import annotations

from contextlib import aclosing

import openai
import pytest
import trio

from examples.providers import OpenAIProvider, connect_openai, text_of
from refresh_middleware import refresh_on_401

# The SDK leaves its inner SSE generators suspended (see test_loopback_server.py); ours are
# closed, and a warning about them would still fail the test.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|httpx2|httpcore2)\.:ResourceWarning"
)

FULL_TEXT = "chunk-0 chunk-1 chunk-2 "


@pytest.fixture
async def provider(loopback, tokens):
    """An OpenAIProvider wrapped as the examples wrap it; its pool is closed afterwards."""
    wrapped = await connect_openai(loopback.openai_base_url, tokens)
    yield wrapped
    await wrapped.aclose()


async def stream_text(provider, received=None):
    """The text of one chat_stream, chunk texts kept in `received` if an error stops it."""
    received = [] if received is None else received
    async with aclosing(provider.chat_stream("hi")) as chunks:
        async for chunk in chunks:
            received.append(chunk)
    return text_of(received)


async def test_chat_recovers_from_an_expired_token(loopback, provider):
    """A chat on an expired token is refreshed and answered."""
    loopback.expire_all()
    completion = await provider.chat("hi")
    assert FULL_TEXT == completion.choices[0].message.content


async def test_chat_on_an_expired_token_fetches_one_token(loopback, provider):
    """Recovering a chat fetches exactly one new token."""
    before = loopback.stats.token_requests
    loopback.expire_all()
    await provider.chat("hi")
    assert 1 == loopback.stats.token_requests - before


async def test_stream_recovers_from_an_expired_token(loopback, provider):
    """A stream on an expired token is refreshed at create() and streams the whole text once."""
    loopback.expire_all()
    assert FULL_TEXT == await stream_text(provider)


async def test_refresh_swaps_in_a_new_provider(loopback, provider):
    """After the refresh the proxy holds a new OpenAIProvider, still an OpenAIProvider."""
    stale = provider.__wrapped__
    loopback.expire_all()
    await provider.chat("hi")
    assert (True, True) == (provider.__wrapped__ is not stale, isinstance(provider, OpenAIProvider))


async def test_forty_concurrent_streams_on_an_expired_token_fetch_one_token(loopback, provider):
    """Forty streams failing together on one expired token share a single token fetch."""
    before = loopback.stats.token_requests
    loopback.expire_all()
    texts = []

    async def one():
        texts.append(await stream_text(provider))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
    assert (1, [FULL_TEXT] * 40) == (loopback.stats.token_requests - before, texts)


async def test_forty_concurrent_streams_each_got_a_401(loopback, provider):
    """The forty streams really failed: the server served forty 401s, then forty streams."""
    before = loopback.stats
    loopback.expire_all()
    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(stream_text, provider)
    after = loopback.stats
    assert (40, 40) == (
        after.unauthorized - before.unauthorized,
        after.streams_completed - before.streams_completed,
    )


async def test_error_before_content_is_retried_without_duplicating_text(loopback, provider):
    """An in-stream 401 after the role chunk, before any text, is retried: text arrives once."""
    before = loopback.stats.token_requests
    loopback.inject_stream_error("before_content", api="openai")
    text = await stream_text(provider)
    assert (FULL_TEXT, 1) == (text, loopback.stats.token_requests - before)


async def test_error_after_content_is_raised_not_retried(loopback, provider):
    """An in-stream 401 after text raises APIError; nothing is repeated and nothing refreshed."""
    before = loopback.stats.token_requests
    loopback.inject_stream_error("after_content", api="openai")
    received = []
    with pytest.raises(openai.APIError):
        await stream_text(provider, received)
    assert ("chunk-0 ", 0) == (text_of(received), loopback.stats.token_requests - before)


async def test_stale_client_keeps_streaming_after_a_refresh(loopback, provider):
    """A stream already running on the stale provider finishes after another caller refreshed."""
    stale = provider.__wrapped__
    received = []
    async with aclosing(stale.chat_stream("hi")) as chunks:
        async for chunk in chunks:
            received.append(chunk)
            if len(received) == 1:
                loopback.expire_all()
                await provider.chat("hi")
    assert FULL_TEXT == text_of(received)


async def test_responses_stream_read_to_its_end_closes_its_response(loopback, tokens):
    """A Responses API stream (`create(stream=True)`) read to its end closes its response."""

    async def renew(stale):
        return stale.with_options(api_key=await tokens.fetch())

    client = refresh_on_401(
        openai.AsyncOpenAI(
            base_url=loopback.openai_base_url, api_key=loopback.issue_token(), max_retries=0
        ),
        refresh=renew,
        calls=(),
        streams=("responses.create",),
    )
    stream = await client.responses.create(model="m", input="hi", stream=True)
    events = [event async for event in stream]
    closed = stream.response.is_closed
    await client.close()
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert (FULL_TEXT, True) == (text, closed)
