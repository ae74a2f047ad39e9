"""LiteLLM's `Router`, on asyncio, over loopback: the router wrapped, a refresh builds a new one."""

from __future__ import annotations

import asyncio
import os

import pytest

# LiteLLM fetches its model price list from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm import Router

from frameworks.support import Keys, expected, outcome, together
from refresh_middleware import refresh_on_401

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning",
    # LiteLLM's own deprecations and unclosed clients, which are not this library's.
    "ignore::DeprecationWarning",
    "ignore::ResourceWarning",
    "ignore:Items? .* (is|are) using the .ReadOnly. qualifier:UserWarning",
)

HELLO = [{"role": "user", "content": "hi"}]


def router(server, key):
    return Router(
        model_list=[
            {
                "model_name": "m",
                "litellm_params": {
                    "model": "openai/m",
                    "api_base": server.openai_base_url,
                    "api_key": key,
                },
            }
        ],
        num_retries=0,
    )


def wrapped_router(server, keys):
    async def renew(stale):
        return router(server, await keys.fetch())

    return refresh_on_401(router(server, server.issue_token()), refresh=renew)


async def answered(wrapped):
    reply = await wrapped.acompletion(model="m", messages=HELLO)
    return reply.choices[0].message.content


async def streamed(wrapped):
    parts = [
        chunk.choices[0].delta.content or ""
        async for chunk in await wrapped.acompletion(model="m", messages=HELLO, stream=True)
    ]
    return "".join(parts)


def run(server, main):
    keys = Keys(server)
    return outcome(server, keys, asyncio.run(main(wrapped_router(server, keys))))


def test_acompletion_herd_on_an_expired_token(threaded):
    """Twenty acompletion on an expired token: one refresh, all answered."""

    async def main(wrapped):
        threaded.expire_all()
        return await together(lambda: answered(wrapped))

    assert expected() == run(threaded, main)


def test_acompletion_stream_herd_on_an_expired_token(threaded):
    """Twenty streamed acompletion on an expired token: one refresh, each text once."""

    async def main(wrapped):
        threaded.expire_all()
        return await together(lambda: streamed(wrapped))

    assert expected() == run(threaded, main)


def test_acompletion_stream_401_event_before_text_is_retried(threaded):
    """An auth error event before text (LiteLLM wraps it in MidStreamFallbackError): retried."""

    async def main(wrapped):
        threaded.inject_stream_error("before_content", api="openai")
        return [await streamed(wrapped)]

    assert expected(1) == run(threaded, main)
