"""The SDK clients wrapped in one line, no names: every door of each, sync and async.

`refresh_on_401(client, refresh=...)` finds the client's preset by its class. Each door (a
method, a stream, a helper of a stream, what `with_options`, `with_raw_response`,
`with_streaming_response`, `chats.create` or entering hands out) is driven by twenty callers
on an expired token (trio tasks for the async clients, threads for the sync ones): one token
fetch, one refresh, every text exactly once. Each stream door also retries an auth error
event sent before any text; in a raw response's `parse()` stream, one sent after text is
not retried.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from frameworks.support import Keys, expected, in_threads, outcome, together
from refresh_middleware import refresh_on_401

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|google|httpx|httpx2|httpcore|httpcore2)\.:"
    "ResourceWarning"
)

MESSAGES = [{"role": "user", "content": "hi"}]
ASK: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": MESSAGES}


class Door(NamedTuple):
    """One way to a request: the SDK, what the caller does, the stream dialect if it streams."""

    sdk: str
    name: str
    run: Any
    api: str | None = None


def chunks_text(chunks):
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def deltas_text(events):
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


def chat_events_text(events):
    return "".join(event.delta for event in events if event.type == "content.delta")


def anthropic_events_text(events):
    return "".join(event.delta.text for event in events if event.type == "content_block_delta")


# --------------------------------------------------------------------------------------------------
# the async doors


async def openai_call(client):
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    return completion.choices[0].message.content


async def openai_stream(client):
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        return chunks_text([chunk async for chunk in stream])


async def openai_responses_manager(client):
    async with client.responses.stream(model="m", input="hi") as stream:
        return deltas_text([event async for event in stream])


async def openai_final_response(client):
    """get_final_response() alone: the helper reads the stream itself, through the gate."""
    async with client.responses.stream(model="m", input="hi") as stream:
        return (await stream.get_final_response()).output_text


async def openai_chat_manager_final(client):
    async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        return (await stream.get_final_completion()).choices[0].message.content


async def openai_chat_manager(client):
    async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        return chat_events_text([event async for event in stream])


async def openai_with_options(client):
    return await openai_call(client.with_options(timeout=30))


async def openai_raw(client):
    raw = await client.with_raw_response.chat.completions.create(model="m", messages=MESSAGES)
    return raw.parse().choices[0].message.content


async def openai_streaming_response(client):
    create = client.chat.completions.with_streaming_response.create
    async with create(model="m", messages=MESSAGES) as response:
        return (await response.parse()).choices[0].message.content


async def openai_streaming_response_stream(client):
    """The Agents SDK's way: the stream is what the raw response's parse() returns."""
    create = client.responses.with_streaming_response.create
    async with create(model="m", input="hi", stream=True) as response:
        return deltas_text([event async for event in await response.parse()])


async def openai_raw_stream(client):
    raw = await client.with_raw_response.chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    stream = raw.parse()
    async with stream:
        return chunks_text([chunk async for chunk in stream])


async def anthropic_call(client):
    return (await client.messages.create(**ASK)).content[0].text


async def anthropic_text_stream(client):
    async with client.messages.stream(**ASK) as stream:
        return "".join([text async for text in stream.text_stream])


async def anthropic_final_text(client):
    async with client.messages.stream(**ASK) as stream:
        return await stream.get_final_text()


async def anthropic_with_options(client):
    return await anthropic_call(client.with_options(timeout=30))


async def anthropic_raw(client):
    raw = await client.messages.with_raw_response.create(**ASK)
    return (await raw.parse()).content[0].text


async def anthropic_streaming_response(client):
    async with client.with_streaming_response.messages.create(**ASK) as response:
        return (await response.parse()).content[0].text


async def anthropic_streaming_response_stream(client):
    """The stream is what the raw response's parse() returns."""
    create = client.messages.with_streaming_response.create
    async with create(**ASK, stream=True) as response:
        return anthropic_events_text([event async for event in await response.parse()])


async def anthropic_raw_stream(client):
    raw = await client.messages.with_raw_response.create(**ASK, stream=True)
    stream = await raw.parse()
    async with stream:
        return anthropic_events_text([event async for event in stream])


async def genai_call(client):
    return (await client.aio.models.generate_content(model="m", contents="hi")).text


async def genai_stream(client):
    stream = await client.aio.models.generate_content_stream(model="m", contents="hi")
    return "".join([chunk.text or "" async for chunk in stream])


async def genai_chat(client):
    return (await client.aio.chats.create(model="m").send_message("hi")).text


async def genai_chat_stream(client):
    stream = await client.aio.chats.create(model="m").send_message_stream("hi")
    return "".join([chunk.text or "" async for chunk in stream])


ASYNC_DOORS = [
    Door("openai", "chat.completions.create", openai_call),
    Door("openai", "chat.completions.create(stream=True)", openai_stream, "openai"),
    Door("openai", "responses.stream", openai_responses_manager, "responses"),
    Door("openai", "responses.stream get_final_response", openai_final_response, "responses"),
    Door("openai", "chat.completions.stream", openai_chat_manager, "openai"),
    Door(
        "openai",
        "chat.completions.stream get_final_completion",
        openai_chat_manager_final,
        "openai",
    ),
    Door("openai", "with_options", openai_with_options),
    Door("openai", "with_raw_response", openai_raw),
    Door("openai", "with_streaming_response", openai_streaming_response),
    Door(
        "openai",
        "responses.with_streaming_response(stream=True) parse",
        openai_streaming_response_stream,
        "responses",
    ),
    Door("openai", "with_raw_response(stream=True) parse", openai_raw_stream, "openai"),
    Door("anthropic", "messages.create", anthropic_call),
    Door("anthropic", "messages.stream text_stream", anthropic_text_stream, "anthropic"),
    Door("anthropic", "messages.stream get_final_text", anthropic_final_text, "anthropic"),
    Door("anthropic", "with_options", anthropic_with_options),
    Door("anthropic", "with_raw_response", anthropic_raw),
    Door("anthropic", "with_streaming_response", anthropic_streaming_response),
    Door(
        "anthropic",
        "messages.with_streaming_response(stream=True) parse",
        anthropic_streaming_response_stream,
        "anthropic",
    ),
    Door("anthropic", "with_raw_response(stream=True) parse", anthropic_raw_stream, "anthropic"),
    Door("genai", "aio.models.generate_content", genai_call),
    Door("genai", "aio.models.generate_content_stream", genai_stream, "gemini"),
    Door("genai", "aio.chats send_message", genai_chat),
    Door("genai", "aio.chats send_message_stream", genai_chat_stream, "gemini"),
]


def ids(doors):
    return [f"{door.sdk}:{door.name}" for door in doors]


@pytest.fixture
async def async_clients(loopback, keys):
    """Each SDK's async client on the in-run server, wrapped with no names; pools closed."""
    async with httpx.AsyncClient() as http:
        options = types.HttpOptions(base_url=loopback.base_url, httpx_async_client=http)

        async def renew(stale):
            return stale.with_options(api_key=await keys.fetch())

        async def renew_genai(stale):
            return genai.Client(api_key=await keys.fetch(), http_options=options)

        async with (
            openai.AsyncOpenAI(
                base_url=loopback.openai_base_url, api_key=loopback.issue_token(), max_retries=0
            ) as openai_client,
            anthropic.AsyncAnthropic(
                base_url=loopback.base_url, api_key=loopback.issue_token(), max_retries=0
            ) as anthropic_client,
        ):
            yield {
                "openai": refresh_on_401(openai_client, refresh=renew),
                "anthropic": refresh_on_401(anthropic_client, refresh=renew),
                "genai": refresh_on_401(
                    genai.Client(api_key=loopback.issue_token(), http_options=options),
                    refresh=renew_genai,
                ),
            }


@pytest.mark.parametrize("door", ASYNC_DOORS, ids=ids(ASYNC_DOORS))
async def test_async_door_herd_on_an_expired_token(door, loopback, keys, async_clients):
    """Twenty tasks through one door of an async client on an expired token: one refresh."""
    client = async_clients[door.sdk]
    loopback.expire_all()
    texts = await together(lambda: door.run(client))
    assert expected() == outcome(loopback, keys, texts)


STREAM_DOORS = [door for door in ASYNC_DOORS if door.api]


@pytest.mark.parametrize("door", STREAM_DOORS, ids=ids(STREAM_DOORS))
async def test_async_door_401_event_before_text_is_retried(door, loopback, keys, async_clients):
    """An auth error event before any text, through an async stream door: retried, once."""
    loopback.inject_stream_error("before_content", api=door.api)
    texts = [await door.run(async_clients[door.sdk])]
    assert expected(1) == outcome(loopback, keys, texts)


class Parsed(NamedTuple):
    """A raw response's parsed stream, as the Agents SDK reads the Responses API."""

    resource: str
    ask: dict[str, Any]
    api: str
    text: Any
    ending: str
    """How an auth error event after text ends the stream: the SDK's error raised (anthropic),
    or the last event forwarded as it came (the Responses API's `error` event)."""


PARSED = {
    "openai": Parsed("responses", {"model": "m", "input": "hi"}, "responses", deltas_text, "error"),
    "anthropic": Parsed("messages", ASK, "anthropic", anthropic_events_text, "APIStatusError"),
}


@pytest.mark.parametrize("sdk", list(PARSED))
async def test_async_parsed_stream_401_event_after_text_is_not_retried(
    sdk, loopback, keys, async_clients
):
    """An auth error event after text in a raw response's parsed stream: ends it, text once."""
    parsed = PARSED[sdk]
    create = getattr(async_clients[sdk], parsed.resource).with_streaming_response.create
    loopback.inject_stream_error("after_content", api=parsed.api)
    received = []
    try:
        async with create(**parsed.ask, stream=True) as response:
            async for event in await response.parse():
                received.append(event)  # noqa: PERF401 - what came before the error is kept
        ending = received[-1].type
    except Exception as error:  # which error ended the stream is asserted
        ending = type(error).__name__
    assert (0, 0, "chunk-0 ", parsed.ending) == (
        loopback.stats.token_requests,
        keys.fetches,
        parsed.text(received),
        ending,
    )


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
async def test_an_async_client_entered_is_the_proxy(sdk, loopback, keys, async_clients):
    """`async with wrapped as client`: the client entered is the proxy, its calls refresh."""
    run = {"openai": openai_call, "anthropic": anthropic_call}[sdk]
    wrapped = async_clients[sdk]
    async with wrapped as client:
        loopback.expire_all()
        texts = await together(lambda: run(client))
        assert (True, *expected()) == (client is wrapped, *outcome(loopback, keys, texts))


# --------------------------------------------------------------------------------------------------
# the sync doors, twenty threads each


def sync_openai_call(client):
    completion = client.chat.completions.create(model="m", messages=MESSAGES)
    return completion.choices[0].message.content


def sync_openai_stream(client):
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        return chunks_text(list(stream))


def sync_openai_responses_manager(client):
    with client.responses.stream(model="m", input="hi") as stream:
        return deltas_text(list(stream))


def sync_openai_final_response(client):
    with client.responses.stream(model="m", input="hi") as stream:
        return stream.get_final_response().output_text


def sync_openai_chat_manager(client):
    with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        return chat_events_text(list(stream))


def sync_openai_chat_manager_final(client):
    with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        return stream.get_final_completion().choices[0].message.content


def sync_openai_with_options(client):
    return sync_openai_call(client.with_options(timeout=30))


def sync_openai_raw(client):
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    return raw.parse().choices[0].message.content


def sync_openai_streaming_response(client):
    create = client.with_streaming_response.chat.completions.create
    with create(model="m", messages=MESSAGES) as response:
        return response.parse().choices[0].message.content


def sync_openai_streaming_response_stream(client):
    create = client.responses.with_streaming_response.create
    with create(model="m", input="hi", stream=True) as response:
        return deltas_text(list(response.parse()))


def sync_openai_raw_stream(client):
    raw = client.with_raw_response.chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    with raw.parse() as stream:
        return chunks_text(list(stream))


def sync_anthropic_text_stream(client):
    """The anthropic README's example."""
    with client.messages.stream(**ASK) as stream:
        return "".join(stream.text_stream)


def sync_anthropic_final_message(client):
    with client.messages.stream(**ASK) as stream:
        return stream.get_final_message().content[0].text


def sync_anthropic_call(client):
    return client.messages.create(**ASK).content[0].text


def sync_anthropic_with_options(client):
    return sync_anthropic_call(client.with_options(timeout=30))


def sync_anthropic_raw(client):
    raw = client.messages.with_raw_response.create(**ASK)
    return raw.parse().content[0].text


def sync_anthropic_streaming_response(client):
    with client.messages.with_streaming_response.create(**ASK) as response:
        return response.parse().content[0].text


def sync_anthropic_streaming_response_stream(client):
    create = client.messages.with_streaming_response.create
    with create(**ASK, stream=True) as response:
        return anthropic_events_text(list(response.parse()))


def sync_anthropic_raw_stream(client):
    raw = client.messages.with_raw_response.create(**ASK, stream=True)
    with raw.parse() as stream:
        return anthropic_events_text(list(stream))


def sync_genai_call(client):
    return client.models.generate_content(model="m", contents="hi").text


def sync_genai_stream(client):
    return "".join(
        c.text or "" for c in client.models.generate_content_stream(model="m", contents="hi")
    )


def sync_genai_chat(client):
    return client.chats.create(model="m").send_message("hi").text


def sync_genai_chat_stream(client):
    chat = client.chats.create(model="m")
    return "".join(chunk.text or "" for chunk in chat.send_message_stream("hi"))


SYNC_DOORS = [
    Door("openai", "chat.completions.create", sync_openai_call),
    Door("openai", "chat.completions.create(stream=True)", sync_openai_stream, "openai"),
    Door("openai", "responses.stream", sync_openai_responses_manager, "responses"),
    Door("openai", "responses.stream get_final_response", sync_openai_final_response, "responses"),
    Door("openai", "chat.completions.stream", sync_openai_chat_manager, "openai"),
    Door(
        "openai",
        "chat.completions.stream get_final_completion",
        sync_openai_chat_manager_final,
        "openai",
    ),
    Door("openai", "with_options", sync_openai_with_options),
    Door("openai", "with_raw_response", sync_openai_raw),
    Door("openai", "with_streaming_response", sync_openai_streaming_response),
    Door(
        "openai",
        "responses.with_streaming_response(stream=True) parse",
        sync_openai_streaming_response_stream,
        "responses",
    ),
    Door("openai", "with_raw_response(stream=True) parse", sync_openai_raw_stream, "openai"),
    Door("anthropic", "messages.create", sync_anthropic_call),
    Door("anthropic", "messages.stream text_stream", sync_anthropic_text_stream, "anthropic"),
    Door(
        "anthropic", "messages.stream get_final_message", sync_anthropic_final_message, "anthropic"
    ),
    Door("anthropic", "with_options", sync_anthropic_with_options),
    Door("anthropic", "with_raw_response", sync_anthropic_raw),
    Door("anthropic", "with_streaming_response", sync_anthropic_streaming_response),
    Door(
        "anthropic",
        "messages.with_streaming_response(stream=True) parse",
        sync_anthropic_streaming_response_stream,
        "anthropic",
    ),
    Door(
        "anthropic", "with_raw_response(stream=True) parse", sync_anthropic_raw_stream, "anthropic"
    ),
    Door("genai", "models.generate_content", sync_genai_call),
    Door("genai", "models.generate_content_stream", sync_genai_stream, "gemini"),
    Door("genai", "chats send_message", sync_genai_chat),
    Door("genai", "chats send_message_stream", sync_genai_chat_stream, "gemini"),
]


@pytest.fixture
def sync_clients(threaded):
    """Each SDK's sync client on the threaded server, wrapped with no names; and its keys."""
    keys = Keys(threaded)
    options = types.HttpOptions(base_url=threaded.base_url)

    def renew(stale):
        return stale.with_options(api_key=keys.fetch_sync())

    def renew_genai(stale):
        return genai.Client(api_key=keys.fetch_sync(), http_options=options)

    token = threaded.issue_token
    with (
        openai.OpenAI(base_url=threaded.openai_base_url, api_key=token(), max_retries=0) as bare,
        anthropic.Anthropic(base_url=threaded.base_url, api_key=token(), max_retries=0) as bare2,
    ):
        yield (
            keys,
            {
                "openai": refresh_on_401(bare, refresh=renew),
                "anthropic": refresh_on_401(bare2, refresh=renew),
                "genai": refresh_on_401(
                    genai.Client(api_key=token(), http_options=options), refresh=renew_genai
                ),
            },
        )


@pytest.mark.parametrize("door", SYNC_DOORS, ids=ids(SYNC_DOORS))
def test_sync_door_herd_on_an_expired_token(door, threaded, sync_clients):
    """Twenty threads through one door of a sync client on an expired token: one refresh."""
    keys, clients = sync_clients
    threaded.expire_all()
    texts = in_threads(lambda: door.run(clients[door.sdk]))
    assert expected() == outcome(threaded, keys, texts)


SYNC_STREAM_DOORS = [door for door in SYNC_DOORS if door.api]


@pytest.mark.parametrize("door", SYNC_STREAM_DOORS, ids=ids(SYNC_STREAM_DOORS))
def test_sync_door_401_event_before_text_is_retried(door, threaded, sync_clients):
    """An auth error event before any text, through a sync stream door: retried, once."""
    keys, clients = sync_clients
    threaded.inject_stream_error("before_content", api=door.api)
    texts = [door.run(clients[door.sdk])]
    assert expected(1) == outcome(threaded, keys, texts)


@pytest.mark.parametrize("sdk", list(PARSED))
def test_sync_parsed_stream_401_event_after_text_is_not_retried(sdk, threaded, sync_clients):
    """An auth error event after text in a sync raw response's parsed stream: ends it, once."""
    keys, clients = sync_clients
    parsed = PARSED[sdk]
    create = getattr(clients[sdk], parsed.resource).with_streaming_response.create
    threaded.inject_stream_error("after_content", api=parsed.api)
    received = []
    try:
        with create(**parsed.ask, stream=True) as response:
            for event in response.parse():
                received.append(event)  # noqa: PERF402 - what came before the error is kept
        ending = received[-1].type
    except Exception as error:  # which error ended the stream is asserted
        ending = type(error).__name__
    assert (0, 0, "chunk-0 ", parsed.ending) == (
        threaded.stats.token_requests,
        keys.fetches,
        parsed.text(received),
        ending,
    )


def test_a_sync_client_entered_is_the_proxy(threaded, sync_clients):
    """`with wrapped as client`: the client entered is the proxy, its calls refresh."""
    keys, clients = sync_clients
    wrapped = clients["openai"]
    with wrapped as client:
        threaded.expire_all()
        texts = in_threads(lambda: sync_openai_call(client))
        assert (True, *expected()) == (client is wrapped, *outcome(threaded, keys, texts))
