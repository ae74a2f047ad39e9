"""LangChain's `ChatOpenAI`, on asyncio (its ainvoke gathers asyncio tasks) and from threads.

Each test hands the model its own httpx client: langchain-openai otherwise shares one cached
client per process, whose pooled connections belong to the first event loop that used them.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from frameworks.support import Keys, expected, in_threads, outcome, together
from refresh_middleware import refresh_on_401

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def chat_model(server, key, http_client, cls=ChatOpenAI):
    return cls(
        model="m",
        base_url=server.openai_base_url,
        api_key=key,
        max_retries=0,
        http_async_client=http_client,
    )


def on_asyncio(server, main):
    """Run `main(http_client)` under asyncio; the httpx client is closed afterwards."""

    async def run():
        async with httpx.AsyncClient() as http_client:
            return await main(http_client)

    return asyncio.run(run())


def wrap(server, keys, http_client):
    """The model wrapped: an async refresh builds a new model on a fresh key."""

    async def renew(stale):
        return chat_model(server, await keys.fetch(), http_client)

    # No names: the LangChain preset says what to intercept and what hands the model out.
    return refresh_on_401(chat_model(server, server.issue_token(), http_client), refresh=renew)


async def content(runnable, value="hi"):
    reply = await runnable.ainvoke(value)
    return reply if isinstance(reply, str) else reply.content


async def streamed(runnable, value="hi"):
    parts = [part async for part in runnable.astream(value)]
    return "".join(part if isinstance(part, str) else part.content for part in parts)


def herd(server, make, one):
    """Twenty callers of `one(runnable)` on an expired token; `make(keys, http)` builds it."""
    keys = Keys(server)

    async def main(http_client):
        runnable = make(keys, http_client)
        server.expire_all()
        return await together(lambda: one(runnable))

    return outcome(server, keys, on_asyncio(server, main))


def in_stream_error(server, make, one):
    """One caller of `one(runnable)` whose stream gets an auth error event before any text."""
    keys = Keys(server)

    async def main(http_client):
        runnable = make(keys, http_client)
        server.inject_stream_error("before_content", api="openai")
        return [await one(runnable)]

    return outcome(server, keys, on_asyncio(server, main))


def wrapped(server):
    return lambda keys, http_client: wrap(server, keys, http_client)


def prompt_model_parser(server):
    prompt = ChatPromptTemplate.from_messages([("user", "{question}")])
    return lambda keys, http_client: prompt | wrap(server, keys, http_client) | StrOutputParser()


# Instance mode: the model wrapped


def test_ainvoke_herd_on_an_expired_token(threaded):
    """Twenty ainvoke on an expired token: one refresh, all answered."""
    assert expected() == herd(threaded, wrapped(threaded), content)


def test_astream_herd_on_an_expired_token(threaded):
    """Twenty astream on an expired token (a 401 at the first chunk): one refresh, text once."""
    assert expected() == herd(threaded, wrapped(threaded), streamed)


def test_astream_401_event_before_text_is_retried(threaded):
    """An auth error event after the role-only chunk, before text, is retried."""
    assert expected(1) == in_stream_error(threaded, wrapped(threaded), streamed)


async def streamed_events(runnable, value="hi"):
    """The text of the chat model's stream events, as `astream_events` sends them."""
    parts = [
        event["data"]["chunk"].content
        async for event in runnable.astream_events(value, version="v2")
        if event["event"] == "on_chat_model_stream"
    ]
    return "".join(parts)


def test_astream_events_herd_on_an_expired_token(threaded):
    """Twenty astream_events on an expired token: one refresh, each text once."""
    assert expected() == herd(threaded, wrapped(threaded), streamed_events)


def test_astream_events_401_event_before_text_is_retried(threaded):
    """astream_events with an auth error event before text: retried, the text comes once."""
    assert expected(1) == in_stream_error(threaded, wrapped(threaded), streamed_events)


def test_prompt_model_parser_ainvoke_herd_on_an_expired_token(threaded):
    """prompt | model | parser: the sequence calls the proxy's ainvoke, so twenty recover."""

    async def one(chain):
        return await chain.ainvoke({"question": "hi"})

    assert expected() == herd(threaded, prompt_model_parser(threaded), one)


def test_prompt_model_parser_astream_herd_on_an_expired_token(threaded):
    """prompt | model | parser streamed: twenty on an expired token, one refresh, text once."""

    async def one(chain):
        return "".join([part async for part in chain.astream({"question": "hi"})])

    assert expected() == herd(threaded, prompt_model_parser(threaded), one)


def test_model_parser_herd_on_an_expired_token(threaded):
    """model | parser: twenty on an expired token, one refresh, all answered."""

    def make(keys, http_client):
        return wrap(threaded, keys, http_client) | StrOutputParser()

    assert expected() == herd(threaded, make, content)


def test_bind_tools_herd_on_an_expired_token(threaded):
    """model.bind_tools([...]): twenty ainvoke on an expired token, one refresh, all answered."""

    def make(keys, http_client):
        return wrap(threaded, keys, http_client).bind_tools([add])

    assert expected() == herd(threaded, make, content)


# Sync callers in threads: a sync refresh


@pytest.fixture
def sync_model(threaded):
    """The model wrapped for sync callers; its sync client's pool is closed afterwards."""
    keys = Keys(threaded)
    with httpx.Client() as http_client:

        def make(key):
            return ChatOpenAI(
                model="m",
                base_url=threaded.openai_base_url,
                api_key=key,
                max_retries=0,
                http_client=http_client,
            )

        yield (
            keys,
            refresh_on_401(
                make(threaded.issue_token()), refresh=lambda stale: make(keys.fetch_sync())
            ),
        )


def test_invoke_from_threads_on_an_expired_token(threaded, sync_model):
    """Twenty threads calling invoke on an expired token: one refresh, all answered."""
    keys, model = sync_model
    threaded.expire_all()
    texts = in_threads(lambda: model.invoke("hi").content)
    assert expected() == outcome(threaded, keys, texts)


def test_stream_from_threads_on_an_expired_token(threaded, sync_model):
    """Twenty threads calling stream on an expired token: one refresh, each text once."""
    keys, model = sync_model
    threaded.expire_all()
    texts = in_threads(lambda: "".join(chunk.content for chunk in model.stream("hi")))
    assert expected() == outcome(threaded, keys, texts)


def test_stream_from_a_thread_401_event_before_text_is_retried(threaded, sync_model):
    """A sync stream with an auth error event before text is retried: the text comes once."""
    keys, model = sync_model
    threaded.inject_stream_error("before_content", api="openai")
    texts = in_threads(lambda: "".join(chunk.content for chunk in model.stream("hi")), count=1)
    assert expected(1) == outcome(threaded, keys, texts)


# Class mode on a subclass: every path (bind_tools, |, astream_events) reaches the model's own
# _agenerate and _astream, where LangChain sends its requests.


def refreshing_model(server, keys, http_client):
    """A decorated subclass of ChatOpenAI whose refresh swaps in a client with a fresh key."""

    async def renew(model):
        key = await keys.fetch()
        model.root_async_client = model.root_async_client.with_options(api_key=key)
        model.async_client = model.root_async_client.chat.completions

    @refresh_on_401(refresh=renew, calls=("_agenerate",), streams=("_astream",))
    class RefreshingChatOpenAI(ChatOpenAI):
        pass

    return chat_model(server, server.issue_token(), http_client, cls=RefreshingChatOpenAI)


def subclassed(server):
    return lambda keys, http_client: refreshing_model(server, keys, http_client)


def test_class_mode_ainvoke_herd_on_an_expired_token(threaded):
    """A decorated subclass: twenty ainvoke on an expired token, one refresh, all answered."""
    assert expected() == herd(threaded, subclassed(threaded), content)


def test_class_mode_astream_herd_on_an_expired_token(threaded):
    """A decorated subclass: twenty astream on an expired token, one refresh, text once."""
    assert expected() == herd(threaded, subclassed(threaded), streamed)


def test_class_mode_bind_tools_herd_on_an_expired_token(threaded):
    """A decorated subclass bound to tools: twenty ainvoke on an expired token, one refresh."""

    def make(keys, http_client):
        return refreshing_model(threaded, keys, http_client).bind_tools([add])

    assert expected() == herd(threaded, make, content)


def test_class_mode_prompt_model_parser_astream_herd(threaded):
    """A decorated subclass in prompt | model | parser, streamed: twenty recover, one refresh."""
    prompt = ChatPromptTemplate.from_messages([("user", "{question}")])

    def make(keys, http_client):
        return prompt | refreshing_model(threaded, keys, http_client) | StrOutputParser()

    async def one(chain):
        return "".join([part async for part in chain.astream({"question": "hi"})])

    assert expected() == herd(threaded, make, one)


def test_class_mode_astream_401_event_before_text_is_retried(threaded):
    """A decorated subclass: an auth error event before text is retried, the text comes once."""
    assert expected(1) == in_stream_error(threaded, subclassed(threaded), streamed)
