"""`anthropic.AsyncAnthropic` wrapped as it is, on trio: messages.create and messages.stream."""

from __future__ import annotations

import anthropic
import pytest

from frameworks.support import Keys, expected, outcome, together
from refresh_middleware import refresh_on_401

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(anthropic|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(loopback):
    """The client a user holds; its connection pool is closed afterwards."""
    async with anthropic.AsyncAnthropic(
        base_url=loopback.base_url, api_key=loopback.issue_token(), max_retries=0
    ) as client:
        yield client


def wrap(client, keys):
    """The client wrapped in one line: async refresh, dotted names."""

    async def renew(stale):
        return stale.with_options(api_key=await keys.fetch())

    return refresh_on_401(
        client, refresh=renew, calls=(), streams=("messages.create", "messages.stream")
    )


async def managed_text(messages):
    """Text from `messages.stream()`, checked against its final message.

    The stream itself is iterated, which goes through the gate; its `text_stream` helper reads
    the SDK stream directly and would bypass it.
    """
    async with messages.stream(model="m", max_tokens=16, messages=MESSAGES) as stream:
        events = [event async for event in stream]
        text = "".join(event.text for event in events if event.type == "text")
        final = await stream.get_final_message()
    return text if text == final.content[0].text else f"{text!r} but final {final!r}"


async def test_message_herd_on_an_expired_token(loopback, client, keys):
    """Twenty messages.create calls on an expired token: one refresh, all answered."""
    wrapped = wrap(client, keys)
    loopback.expire_all()

    async def one():
        message = await wrapped.messages.create(model="m", max_tokens=16, messages=MESSAGES)
        return message.content[0].text

    assert expected() == outcome(loopback, keys, await together(one))


async def test_message_stream_herd_on_an_expired_token(loopback, client, keys):
    """Twenty messages.stream() on an expired token: one refresh, text and final message once."""
    wrapped = wrap(client, keys)
    loopback.expire_all()
    texts = await together(lambda: managed_text(wrapped.messages))
    assert expected() == outcome(loopback, keys, texts)


async def test_message_stream_401_event_before_text_is_retried(loopback, client, keys):
    """An authentication_error event after message_start is retried: the text comes once."""
    wrapped = wrap(client, keys)
    loopback.inject_stream_error("before_content")
    texts = [await managed_text(wrapped.messages)]
    assert expected(1) == outcome(loopback, keys, texts)


# What works with today's core: the messages resource, a sync refresh (the server on a thread,
# as a sync refresh runs on the event loop), messages.stream only.


@pytest.fixture
async def threaded_client(threaded):
    async with anthropic.AsyncAnthropic(
        base_url=threaded.base_url, api_key=threaded.issue_token(), max_retries=0
    ) as client:
        yield client


def wrap_messages(client, keys):
    """`client.messages` wrapped; a sync refresh builds a new resource on a new key."""

    def renew(stale):
        return client.with_options(api_key=keys.fetch_sync()).messages

    return refresh_on_401(client.messages, refresh=renew, calls=(), streams=("stream",))


async def test_messages_resource_stream_herd_on_an_expired_token(threaded, threaded_client):
    """The messages resource wrapped: twenty messages.stream() on an expired token, one refresh."""
    keys = Keys(threaded)
    messages = wrap_messages(threaded_client, keys)
    threaded.expire_all()
    texts = await together(lambda: managed_text(messages))
    assert expected() == outcome(threaded, keys, texts)


async def test_messages_resource_401_event_before_text_is_retried(threaded, threaded_client):
    """The messages resource wrapped: an error event before text is retried."""
    keys = Keys(threaded)
    messages = wrap_messages(threaded_client, keys)
    threaded.inject_stream_error("before_content")
    texts = [await managed_text(messages)]
    assert expected(1) == outcome(threaded, keys, texts)
