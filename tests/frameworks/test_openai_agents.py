"""The OpenAI Agents SDK's models wrapped, under `Runner` (asyncio: it starts asyncio tasks).

`Runner` asks the agent's model for `get_response` or `stream_response` itself, so the wrapped
model sees every call: this already works with instance mode, and must keep working.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import _openai_shared
from agents.models.interface import ModelTracing

from frameworks.support import Keys, expected, outcome, together
from refresh_middleware import refresh_on_401

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|agents|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)

# Traces would be exported to OpenAI's servers.
set_tracing_disabled(disabled=True)

MODELS = [
    pytest.param((OpenAIChatCompletionsModel, "openai"), id="chat-completions"),
    pytest.param((OpenAIResponsesModel, "responses"), id="responses"),
]


@pytest.fixture(params=MODELS)
def model_kind(request):
    """A model class of the SDK and the loopback API it talks to."""
    return request.param


def on_asyncio(server, model_kind, main):
    """Run `main(model, keys)` under asyncio with a wrapped model; its client is closed after."""
    model_class, _ = model_kind
    keys = Keys(server)

    async def run():
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
        ) as client:

            async def renew(stale):
                fresh = client.with_options(api_key=await keys.fetch())
                return model_class(model="m", openai_client=fresh)

            # No names: the Agents SDK preset intercepts get_response and stream_response.
            model = refresh_on_401(model_class(model="m", openai_client=client), refresh=renew)
            return await main(model)

    return outcome(server, keys, asyncio.run(run()))


REQUEST = {
    "system_instructions": None,
    "input": "hi",
    "model_settings": ModelSettings(),
    "tools": [],
    "output_schema": None,
    "handoffs": [],
    "tracing": ModelTracing.DISABLED,
    "previous_response_id": None,
    "conversation_id": None,
    "prompt": None,
}


async def response_text(model):
    response = await model.get_response(**REQUEST)
    return "".join(part.text for item in response.output for part in item.content)


def deltas_text(events):
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


async def streamed_text(model):
    return deltas_text([event async for event in model.stream_response(**REQUEST)])


async def run_text(model):
    return (await Runner.run(Agent(name="a", model=model), "hi")).final_output


async def run_streamed_text(model):
    result = Runner.run_streamed(Agent(name="a", model=model), "hi")
    events = [
        event.data async for event in result.stream_events() if event.type == "raw_response_event"
    ]
    text = deltas_text(events)
    return text if text == result.final_output else f"{text!r} but final {result.final_output!r}"


def herd(server, model_kind, one):
    async def main(model):
        server.expire_all()
        return await together(lambda: one(model))

    return on_asyncio(server, model_kind, main)


def in_stream_error(server, model_kind, one):
    async def main(model):
        server.inject_stream_error("before_content", api=model_kind[1])
        return [await one(model)]

    return on_asyncio(server, model_kind, main)


def test_get_response_herd_on_an_expired_token(threaded, model_kind):
    """Twenty get_response on an expired token: one refresh, all answered."""
    assert expected() == herd(threaded, model_kind, response_text)


def test_stream_response_herd_on_an_expired_token(threaded, model_kind):
    """Twenty stream_response on an expired token (a 401 at the first event): one refresh."""
    assert expected() == herd(threaded, model_kind, streamed_text)


def test_stream_response_401_event_before_text_is_retried(threaded, model_kind):
    """An auth error event before any text is retried: the text comes once."""
    assert expected(1) == in_stream_error(threaded, model_kind, streamed_text)


def test_runner_run_herd_on_an_expired_token(threaded, model_kind):
    """Twenty Runner.run on an expired token: one refresh, every run answered."""
    assert expected() == herd(threaded, model_kind, run_text)


def test_runner_run_streamed_herd_on_an_expired_token(threaded, model_kind):
    """Twenty Runner.run_streamed on an expired token: one refresh, each text once."""
    assert expected() == herd(threaded, model_kind, run_streamed_text)


def test_runner_run_streamed_401_event_before_text_is_retried(threaded, model_kind):
    """Runner.run_streamed with an auth error event before text: retried, the text comes once."""
    assert expected(1) == in_stream_error(threaded, model_kind, run_streamed_text)


# The default client: Agent(model="m") on the client the SDK is given, wrapped with no names.
# The Responses model streams through `responses.with_streaming_response.create`.


@pytest.fixture
def default_client(threaded):
    """The SDK's default client, wrapped; the clients it made, to close in the test's loop."""
    keys = Keys(threaded)
    made = []

    def build(key):
        made.append(
            openai.AsyncOpenAI(base_url=threaded.openai_base_url, api_key=key, max_retries=0)
        )
        return made[-1]

    async def renew(stale):
        return build(await keys.fetch())

    before = _openai_shared.get_default_openai_client()
    set_default_openai_client(refresh_on_401(build(threaded.issue_token()), refresh=renew))
    yield keys, made
    _openai_shared.set_default_openai_client(before)


def on_the_default_client(default_client, main):
    """`main(agent)` under asyncio for an agent on the default client; its clients closed."""
    _, made = default_client

    async def run():
        try:
            return await main(Agent(name="a", model="m"))
        finally:
            for client in made:
                await client.close()

    return asyncio.run(run())


def test_runner_run_streamed_on_the_default_client_herd(threaded, default_client):
    """Twenty run_streamed on a wrapped default client, expired: one refresh, each text once."""

    async def main(agent):
        threaded.expire_all()
        return await together(lambda: agent_streamed_text(agent))

    texts = on_the_default_client(default_client, main)
    assert expected() == outcome(threaded, default_client[0], texts)


def test_runner_run_streamed_on_the_default_client_401_event_before_text(threaded, default_client):
    """run_streamed on the wrapped default client: an auth error event before text is retried."""

    async def main(agent):
        threaded.inject_stream_error("before_content", api="responses")
        return [await agent_streamed_text(agent)]

    texts = on_the_default_client(default_client, main)
    assert expected(1) == outcome(threaded, default_client[0], texts)


async def agent_streamed_text(agent):
    result = Runner.run_streamed(agent, "hi")
    events = [
        event.data async for event in result.stream_events() if event.type == "raw_response_event"
    ]
    text = deltas_text(events)
    return text if text == result.final_output else f"{text!r} but final {result.final_output!r}"
