"""`anthropic.AsyncAnthropic` in a class decorated with refresh_on_401, over real HTTP."""

from __future__ import annotations

from contextlib import aclosing

import anthropic
import pytest
import trio

from examples.providers import AnthropicProvider
from refresh_middleware import refresh_on_401

# The SDK leaves its inner SSE generators suspended (see test_loopback_server.py).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|httpx2|httpcore2)\.:ResourceWarning"
)

FULL_TEXT = "chunk-0 chunk-1 chunk-2 "


@pytest.fixture
async def provider(loopback, tokens):
    """An AnthropicProvider (its class is decorated); its pool is closed afterwards."""
    provider = await AnthropicProvider.connect(loopback.base_url, tokens)
    yield provider
    await provider.aclose()


def text_of(events):
    """The text that raw or helper events carry (content_block_delta events only)."""
    return "".join(event.delta.text for event in events if event.type == "content_block_delta")


async def managed_events(provider, received=None):
    """The events of ``async with provider.chat_stream(...)``, kept in `received` on error."""
    received = [] if received is None else received
    async with provider.chat_stream("hi") as events:
        async for event in events:
            received.append(event)
    return received


async def raw_events(provider, received=None):
    """The events of ``provider.chat_events(...)``, kept in `received` on error."""
    received = [] if received is None else received
    async with aclosing(provider.chat_events("hi")) as events:
        async for event in events:
            received.append(event)
    return received


def token_requests(server):
    return server.stats.token_requests


async def test_chat_recovers_from_an_expired_token(loopback, provider):
    """A message on an expired token is refreshed and answered."""
    loopback.expire_all()
    message = await provider.chat("hi")
    assert FULL_TEXT == message.content[0].text


async def test_refresh_is_in_place(loopback, provider):
    """The decorated class refreshes the instance itself: a new client on a new token."""
    stale_client = provider.client
    loopback.expire_all()
    await provider.chat("hi")
    assert True is (provider.client is not stale_client)


async def test_messages_stream_recovers_from_an_expired_token(loopback, provider):
    """messages.stream() on an expired token is refreshed at enter and streams the text once."""
    loopback.expire_all()
    assert FULL_TEXT == text_of(await managed_events(provider))


async def test_create_stream_recovers_from_an_expired_token(loopback, provider):
    """messages.create(stream=True) on an expired token is refreshed and streams the text once."""
    loopback.expire_all()
    assert FULL_TEXT == text_of(await raw_events(provider))


async def test_error_event_before_content_is_retried_without_duplicating_text(loopback, provider):
    """An authentication_error event before content is retried; the text arrives once."""
    loopback.inject_stream_error("before_content")
    assert FULL_TEXT == text_of(await managed_events(provider))


async def test_error_event_before_content_refreshes_once(loopback, provider):
    """Retrying the error event before content costs one token fetch."""
    before = token_requests(loopback)
    loopback.inject_stream_error("before_content")
    await managed_events(provider)
    assert 1 == token_requests(loopback) - before


async def test_error_event_before_content_forwards_only_metadata_from_the_first_attempt(
    loopback, provider
):
    """The abandoned attempt forwarded only its message_start; the retry is complete."""
    loopback.inject_stream_error("before_content")
    events = await raw_events(provider)
    assert ["message_start", "message_start", "content_block_start"] == [
        event.type for event in events[:3]
    ]


async def test_create_stream_error_event_before_content_is_retried(loopback, provider):
    """The raw create(stream=True) events recover from an error before content too."""
    loopback.inject_stream_error("before_content")
    assert FULL_TEXT == text_of(await raw_events(provider))


async def test_error_event_after_content_is_raised(loopback, provider):
    """An authentication_error event after text raises APIStatusError (status 200)."""
    loopback.inject_stream_error("after_content")
    with pytest.raises(anthropic.APIStatusError) as caught:
        await managed_events(provider)
    assert (200, "authentication_error") == (
        caught.value.status_code,
        caught.value.body["error"]["type"],
    )


async def test_error_event_after_content_is_not_retried(loopback, provider):
    """After text, the error is not retried: no token fetch, and the text is not repeated."""
    before = token_requests(loopback)
    loopback.inject_stream_error("after_content")
    received = []
    with pytest.raises(anthropic.APIStatusError):
        await raw_events(provider, received)
    assert ("chunk-0 ", 0) == (text_of(received), token_requests(loopback) - before)


async def test_forty_concurrent_streams_on_an_expired_token_fetch_one_token(loopback, provider):
    """Forty messages.stream() calls failing together share one token fetch and all finish."""
    before = token_requests(loopback)
    loopback.expire_all()
    texts = []

    async def one():
        texts.append(text_of(await managed_events(provider)))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
    assert (1, [FULL_TEXT] * 40) == (token_requests(loopback) - before, texts)


async def test_breaking_out_of_messages_stream_leaves_the_provider_usable(loopback, provider):
    """Leaving the async with block after the first text closes the stream; the next chat works."""
    async with provider.chat_stream("hi") as events:
        async for event in events:
            if event.type == "content_block_delta":
                break
    message = await provider.chat("hi")
    assert FULL_TEXT == message.content[0].text


@pytest.mark.parametrize("loopback_options", [{"chunk_delay": 0.05}])
async def test_cancelled_stream_is_closed_and_the_provider_stays_usable(loopback, provider):
    """A stream cancelled mid-way (trio move_on_after) is closed; the next stream is whole."""
    received = []
    with trio.move_on_after(0.075):
        await raw_events(provider, received)
    assert (True, FULL_TEXT) == (
        0 < len(received) < 8,
        text_of(await raw_events(provider)),
    )


async def test_messages_stream_helpers_work_through_the_wrapper(loopback, provider):
    """The block gets a view of the SDK's stream: its helpers work, on the fresh attempt."""
    loopback.expire_all()
    async with provider.chat_stream("hi") as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()

    assert isinstance(stream, anthropic.AsyncMessageStream)
    assert (FULL_TEXT, FULL_TEXT) == (text, final.content[0].text)


async def test_final_message_follows_the_retried_attempt(loopback, provider):
    """After a 401 event before content, get_final_message() reads the attempt that succeeded."""
    loopback.inject_stream_error("before_content")
    async with provider.chat_stream("hi") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()

    assert (FULL_TEXT, FULL_TEXT) == (text_of(events), final.content[0].text)


def wrapped_client(loopback, tokens):
    """`anthropic.AsyncAnthropic` itself wrapped, its raw stream and manager intercepted."""

    async def renew(stale):
        return stale.with_options(api_key=await tokens.fetch())

    client = anthropic.AsyncAnthropic(
        base_url=loopback.base_url, api_key=loopback.issue_token(), max_retries=0
    )
    return refresh_on_401(
        client, refresh=renew, calls=(), streams=("messages.create", "messages.stream")
    )


async def test_raw_stream_read_to_its_end_closes_its_response(loopback, tokens):
    """A raw stream (messages.create(stream=True)) read to its end closes its HTTP response."""
    client = wrapped_client(loopback, tokens)
    stream = await client.messages.create(
        model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    events = [event async for event in stream]
    closed = stream.response.is_closed
    await client.close()
    assert (FULL_TEXT, True) == (text_of(events), closed)


async def test_final_message_after_a_stream_read_to_its_end_is_whole(loopback, tokens):
    """messages.stream() read to its end: the response is closed, the final message whole."""
    client = wrapped_client(loopback, tokens)
    async with client.messages.stream(
        model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        events = [event async for event in stream]
        closed = stream.response.is_closed
        final = await stream.get_final_message()
    await client.close()
    assert (FULL_TEXT, True, FULL_TEXT) == (text_of(events), closed, final.content[0].text)
