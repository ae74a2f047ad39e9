"""`openai.AsyncOpenAI` wrapped as it is, on trio: chat completions and the Responses API."""

from __future__ import annotations

import openai
import pytest

from frameworks.support import Keys, expected, outcome, together
from refresh_middleware import refresh_on_401

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(loopback):
    """The client a user holds; its connection pool is closed afterwards."""
    async with openai.AsyncOpenAI(
        base_url=loopback.openai_base_url, api_key=loopback.issue_token(), max_retries=0
    ) as client:
        yield client


def wrap(client, keys):
    """The client wrapped in one line, as the issue promises it: async refresh, dotted names."""

    async def renew(stale):
        return stale.with_options(api_key=await keys.fetch())

    return refresh_on_401(
        client,
        refresh=renew,
        calls=(),
        streams=("chat.completions.create", "responses.create", "responses.stream"),
    )


def chunks_text(chunks):
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def deltas_text(events):
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


async def chat_stream_text(client):
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        return chunks_text([chunk async for chunk in stream])


async def responses_stream_text(client):
    stream = await client.responses.create(model="m", input="hi", stream=True)
    async with stream:
        return deltas_text([event async for event in stream])


async def responses_manager_text(client):
    """Text from `responses.stream()`, checked against its final response."""
    async with client.responses.stream(model="m", input="hi") as stream:
        text = deltas_text([event async for event in stream])
        final = await stream.get_final_response()
    return text if text == final.output_text else f"{text!r} but final {final.output_text!r}"


# The client as it is


async def test_chat_completion_herd_on_an_expired_token(loopback, client, keys):
    """Twenty chat.completions.create calls on an expired token: one refresh, all answered."""
    wrapped = wrap(client, keys)
    loopback.expire_all()

    async def one():
        completion = await wrapped.chat.completions.create(model="m", messages=MESSAGES)
        return completion.choices[0].message.content

    assert expected() == outcome(loopback, keys, await together(one))


async def test_chat_completion_stream_herd_on_an_expired_token(loopback, client, keys):
    """Twenty create(stream=True) on an expired token: one refresh, each text once."""
    wrapped = wrap(client, keys)
    loopback.expire_all()
    texts = await together(lambda: chat_stream_text(wrapped))
    assert expected() == outcome(loopback, keys, texts)


async def test_chat_completion_stream_401_event_before_text_is_retried(loopback, client, keys):
    """An auth error event after the role chunk, before text, is retried: the text comes once."""
    wrapped = wrap(client, keys)
    loopback.inject_stream_error("before_content", api="openai")
    texts = [await chat_stream_text(wrapped)]
    assert expected(1) == outcome(loopback, keys, texts)


async def test_response_herd_on_an_expired_token(loopback, client, keys):
    """Twenty responses.create calls on an expired token: one refresh, all answered."""
    wrapped = wrap(client, keys)
    loopback.expire_all()

    async def one():
        return (await wrapped.responses.create(model="m", input="hi")).output_text

    assert expected() == outcome(loopback, keys, await together(one))


async def test_response_stream_herd_on_an_expired_token(loopback, client, keys):
    """Twenty responses.create(stream=True) on an expired token: one refresh, each text once."""
    wrapped = wrap(client, keys)
    loopback.expire_all()
    texts = await together(lambda: responses_stream_text(wrapped))
    assert expected() == outcome(loopback, keys, texts)


async def test_response_stream_401_event_before_text_is_retried(loopback, client, keys):
    """An error event after response.created and in_progress is retried: the text comes once."""
    wrapped = wrap(client, keys)
    loopback.inject_stream_error("before_content", api="responses")
    texts = [await responses_stream_text(wrapped)]
    assert expected(1) == outcome(loopback, keys, texts)


async def test_responses_stream_manager_herd_on_an_expired_token(loopback, client, keys):
    """Twenty responses.stream() on an expired token: one refresh, text and final response once."""
    wrapped = wrap(client, keys)
    loopback.expire_all()
    texts = await together(lambda: responses_manager_text(wrapped))
    assert expected() == outcome(loopback, keys, texts)


async def test_responses_stream_manager_401_event_before_text_is_retried(loopback, client, keys):
    """responses.stream() with an error event before text: retried, get_final_response whole."""
    wrapped = wrap(client, keys)
    loopback.inject_stream_error("before_content", api="responses")
    texts = [await responses_manager_text(wrapped)]
    assert expected(1) == outcome(loopback, keys, texts)


async def test_wrapped_client_stays_an_async_openai(client, keys):
    """The wrapped client is still an AsyncOpenAI to isinstance."""
    assert isinstance(wrap(client, keys), openai.AsyncOpenAI)


# What works with today's core: the completions resource, a sync refresh, streams only. A
# sync refresh runs on the event loop, so the server runs on a thread of its own.


@pytest.fixture
async def threaded_client(threaded):
    async with openai.AsyncOpenAI(
        base_url=threaded.openai_base_url, api_key=threaded.issue_token(), max_retries=0
    ) as client:
        yield client


def wrap_completions(client, keys):
    """`client.chat.completions` wrapped; a sync refresh builds a new resource on a new key."""

    def renew(stale):
        return client.with_options(api_key=keys.fetch_sync()).chat.completions

    return refresh_on_401(client.chat.completions, refresh=renew, calls=(), streams=("create",))


async def resource_stream_text(completions):
    stream = await completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        return chunks_text([chunk async for chunk in stream])


async def test_completions_resource_stream_herd_on_an_expired_token(threaded, threaded_client):
    """The completions resource wrapped: twenty streams on an expired token, one refresh."""
    keys = Keys(threaded)
    completions = wrap_completions(threaded_client, keys)
    threaded.expire_all()
    texts = await together(lambda: resource_stream_text(completions))
    assert expected() == outcome(threaded, keys, texts)


async def test_completions_resource_401_event_before_text_is_retried(threaded, threaded_client):
    """The completions resource wrapped: an error event before text is retried."""
    keys = Keys(threaded)
    completions = wrap_completions(threaded_client, keys)
    threaded.inject_stream_error("before_content", api="openai")
    texts = [await resource_stream_text(completions)]
    assert expected(1) == outcome(threaded, keys, texts)
