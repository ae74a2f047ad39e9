"""pydantic-ai's `OpenAIChatModel`: its own methods on trio, `Agent` runs on asyncio.

A model's `request` and `request_stream` run on trio; `Agent.run` starts asyncio tasks, so the
agent tests run under `asyncio.run` against a server on its own thread.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelRequest
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from frameworks.support import Keys, expected, outcome, together
from refresh_middleware import refresh_on_401

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)


def model_on(client):
    return OpenAIChatModel("m", provider=OpenAIProvider(openai_client=client))


def wrap(client, keys):
    """The model wrapped with no names: a refresh builds a new model on a client with a fresh key.

    The pydantic-ai preset intercepts `request` and `request_stream`, and hands the model out
    through `_with_serving_wrapper`, where `Agent` reaches it: a plain `Agent(wrapped)` works.
    """

    async def renew(stale):
        return model_on(client.with_options(api_key=await keys.fetch()))

    return refresh_on_401(model_on(client), refresh=renew)


def openai_client(server):
    return openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
    )


def text_of(response):
    return "".join(part.content for part in response.parts)


async def requested_text(model):
    messages = [ModelRequest.user_text_prompt("hi")]
    return text_of(await model.request(messages, None, ModelRequestParameters()))


async def streamed_text(model):
    """The streamed text, checked against what `get()` gives at the end."""
    messages = [ModelRequest.user_text_prompt("hi")]
    async with model.request_stream(messages, None, ModelRequestParameters()) as stream:
        events = [event async for event in stream]
        final = text_of(stream.get())
    # Each text arrives once as a part start or a delta; the final response holds them all.
    parts = [getattr(event, "part", None) or getattr(event, "delta", None) for event in events]
    pieces = "".join(
        getattr(part, "content", "") or getattr(part, "content_delta", "") or ""
        for event, part in zip(events, parts, strict=True)
        if event.event_kind in {"part_start", "part_delta"}
    )
    return final if pieces == final else f"{pieces!r} but get() {final!r}"


# The model's own methods, on trio


@pytest.fixture
async def client(loopback):
    async with openai_client(loopback) as client:
        yield client


async def test_request_herd_on_an_expired_token(loopback, client):
    """Twenty request() calls on an expired token: one refresh, all answered."""
    keys = Keys(loopback)
    model = wrap(client, keys)
    loopback.expire_all()
    assert expected() == outcome(loopback, keys, await together(lambda: requested_text(model)))


async def test_request_stream_herd_on_an_expired_token(loopback, client):
    """Twenty request_stream() on an expired token (a 401 at enter): one refresh, get() whole."""
    keys = Keys(loopback)
    model = wrap(client, keys)
    loopback.expire_all()
    assert expected() == outcome(loopback, keys, await together(lambda: streamed_text(model)))


async def test_request_stream_401_event_before_text_is_retried(loopback, client):
    """An auth error event before any text is retried: the text comes once, get() is whole."""
    keys = Keys(loopback)
    model = wrap(client, keys)
    loopback.inject_stream_error("before_content", api="openai")
    assert expected(1) == outcome(loopback, keys, [await streamed_text(model)])


# Agent, on asyncio


def on_asyncio(server, main):
    """Run `main(client)` under asyncio with a client on `server`, closed afterwards."""

    async def run():
        async with openai_client(server) as client:
            return await main(client)

    return asyncio.run(run())


async def run_text(agent):
    return (await agent.run("hi")).output


async def run_stream_text(agent):
    async with agent.run_stream("hi") as result:
        return "".join([text async for text in result.stream_text(delta=True)])


def test_agent_run_herd_on_an_expired_token(threaded):
    """Twenty Agent.run on an expired token, the model wrapped: one refresh, all answered."""
    keys = Keys(threaded)

    async def main(client):
        agent = Agent(wrap(client, keys))
        threaded.expire_all()
        return await together(lambda: run_text(agent))

    assert expected() == outcome(threaded, keys, on_asyncio(threaded, main))


def test_agent_run_stream_herd_on_an_expired_token(threaded):
    """Twenty Agent.run_stream on an expired token, the model wrapped: one refresh, texts once."""
    keys = Keys(threaded)

    async def main(client):
        agent = Agent(wrap(client, keys))
        threaded.expire_all()
        return await together(lambda: run_stream_text(agent))

    assert expected() == outcome(threaded, keys, on_asyncio(threaded, main))


def test_agent_run_stream_401_event_before_text_is_retried(threaded):
    """Agent.run_stream with an auth error event before any text: retried, the text comes once."""
    keys = Keys(threaded)

    async def main(client):
        agent = Agent(wrap(client, keys))
        threaded.inject_stream_error("before_content", api="openai")
        return [await run_stream_text(agent)]

    assert expected(1) == outcome(threaded, keys, on_asyncio(threaded, main))


# Class mode on a subclass: the recipe for code that reaches the model's own self


def refreshing_model_class(keys):
    """A subclass of OpenAIChatModel decorated in class mode; refresh sets the client's key."""

    async def renew(model):
        # Requests read the key from the client as they are sent: set it and the model is new.
        model.client.api_key = await keys.fetch()

    @refresh_on_401(refresh=renew, calls=("request",), streams=("request_stream",))
    class RefreshingChatModel(OpenAIChatModel):
        pass

    return RefreshingChatModel


def test_class_mode_agent_run_herd_on_an_expired_token(threaded):
    """A decorated subclass under Agent.run: twenty runs on an expired token, one refresh."""
    keys = Keys(threaded)

    async def main(client):
        model_class = refreshing_model_class(keys)
        agent = Agent(model_class("m", provider=OpenAIProvider(openai_client=client)))
        threaded.expire_all()
        return await together(lambda: run_text(agent))

    assert expected() == outcome(threaded, keys, on_asyncio(threaded, main))


def test_class_mode_agent_run_stream_herd_on_an_expired_token(threaded):
    """A decorated subclass under Agent.run_stream: twenty on an expired token, one refresh."""
    keys = Keys(threaded)

    async def main(client):
        model_class = refreshing_model_class(keys)
        agent = Agent(model_class("m", provider=OpenAIProvider(openai_client=client)))
        threaded.expire_all()
        return await together(lambda: run_stream_text(agent))

    assert expected() == outcome(threaded, keys, on_asyncio(threaded, main))
