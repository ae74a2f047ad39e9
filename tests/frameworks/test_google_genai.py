"""`google.genai.Client` wrapped, on trio: `aio.models.generate_content` and its stream.

google-genai keeps one connection pool per asyncio loop unless it is handed an httpx client:
with `HttpOptions(httpx_async_client=...)` it runs on trio.
"""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import types

from frameworks.support import expected, outcome, together
from refresh_middleware import refresh_on_401

# The SDKs leave async generators of their own to the garbage collector even when used bare
# (checked without refresh_middleware): trio warns about those, not about ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(google|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)


@pytest.fixture
async def options(loopback):
    """HTTP options on the loopback server, with an httpx client that runs on trio."""
    async with httpx.AsyncClient() as http:
        yield types.HttpOptions(base_url=loopback.base_url, httpx_async_client=http)


def wrap(loopback, options, keys):
    """The client wrapped in one line, with an async refresh and dotted names."""

    async def renew(stale):
        return genai.Client(api_key=await keys.fetch(), http_options=options)

    return refresh_on_401(
        genai.Client(api_key=loopback.issue_token(), http_options=options),
        refresh=renew,
        calls=("aio.models.generate_content",),
        streams=("aio.models.generate_content_stream",),
    )


def wrap_models(loopback, options, keys):
    """What works with today's core: the `client.aio.models` resource wrapped."""

    async def renew(stale):
        return genai.Client(api_key=await keys.fetch(), http_options=options).aio.models

    return refresh_on_401(
        genai.Client(api_key=loopback.issue_token(), http_options=options).aio.models,
        refresh=renew,
        calls=("generate_content",),
        streams=("generate_content_stream",),
    )


async def generated_text(models):
    return (await models.generate_content(model="m", contents="hi")).text


async def streamed_text(models):
    stream = await models.generate_content_stream(model="m", contents="hi")
    return "".join([chunk.text or "" async for chunk in stream])


async def test_client_generate_content_herd_on_an_expired_key(loopback, options, keys):
    """Twenty generate_content calls on an expired key: one refresh, all answered."""
    client = wrap(loopback, options, keys)
    loopback.expire_all()
    texts = await together(lambda: generated_text(client.aio.models))
    assert expected() == outcome(loopback, keys, texts)


async def test_client_stream_herd_on_an_expired_key(loopback, options, keys):
    """Twenty generate_content_stream on an expired key (a 401 at the first item): one refresh."""
    client = wrap(loopback, options, keys)
    loopback.expire_all()
    texts = await together(lambda: streamed_text(client.aio.models))
    assert expected() == outcome(loopback, keys, texts)


async def test_client_stream_401_chunk_before_text_is_retried(loopback, options, keys):
    """An UNAUTHENTICATED error chunk before any text is retried: the text comes once."""
    client = wrap(loopback, options, keys)
    loopback.inject_stream_error("before_content", api="gemini")
    texts = [await streamed_text(client.aio.models)]
    assert expected(1) == outcome(loopback, keys, texts)


async def test_models_generate_content_herd_on_an_expired_key(loopback, options, keys):
    """The aio.models resource wrapped: twenty calls on an expired key, one refresh."""
    models = wrap_models(loopback, options, keys)
    loopback.expire_all()
    texts = await together(lambda: generated_text(models))
    assert expected() == outcome(loopback, keys, texts)


async def test_models_stream_herd_on_an_expired_key(loopback, options, keys):
    """The aio.models resource wrapped: twenty streams on an expired key, one refresh."""
    models = wrap_models(loopback, options, keys)
    loopback.expire_all()
    texts = await together(lambda: streamed_text(models))
    assert expected() == outcome(loopback, keys, texts)


async def test_models_stream_401_chunk_before_text_is_retried(loopback, options, keys):
    """The aio.models resource wrapped: an error chunk before any text is retried."""
    models = wrap_models(loopback, options, keys)
    loopback.inject_stream_error("before_content", api="gemini")
    texts = [await streamed_text(models)]
    assert expected(1) == outcome(loopback, keys, texts)
