"""LlamaIndex's OpenAI LLM, on asyncio, over loopback.

llama-index-llms-openai pins openai<3 (httpx): the integrations-openai2 session runs this
module in an environment of its own, where it resolves to a current release.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from frameworks.support import Keys, expected, outcome, together
from refresh_middleware import refresh_on_401

llms = pytest.importorskip("llama_index.llms.openai", reason="the integrations-openai2 session")
core_llms = pytest.importorskip("llama_index.core.llms")

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx|httpx2|httpcore|httpcore2)\.:ResourceWarning"
)

HELLO = [core_llms.ChatMessage(role="user", content="hi")]


def wrapped_llm(server, keys, http_client):
    """The LLM wrapped with no names (the preset's); a refresh builds it on a fresh key."""

    def build(key):
        return llms.OpenAI(
            model="gpt-4o-mini",
            api_base=server.openai_base_url,
            api_key=key,
            max_retries=0,
            async_http_client=http_client,
        )

    async def renew(stale):
        return build(await keys.fetch())

    return refresh_on_401(build(server.issue_token()), refresh=renew)


async def answered(llm):
    return (await llm.achat(HELLO)).message.content


async def streamed(llm):
    return "".join([part.delta async for part in await llm.astream_chat(HELLO)])


def run(server, main):
    keys = Keys(server)

    async def go():
        async with httpx.AsyncClient() as http_client:
            return await main(wrapped_llm(server, keys, http_client))

    return outcome(server, keys, asyncio.run(go()))


def test_achat_herd_on_an_expired_token(threaded):
    """Twenty achat on an expired token: one refresh, all answered."""

    async def main(llm):
        threaded.expire_all()
        return await together(lambda: answered(llm))

    assert expected() == run(threaded, main)


def test_astream_chat_herd_on_an_expired_token(threaded):
    """Twenty astream_chat on an expired token: one refresh, each text once."""

    async def main(llm):
        threaded.expire_all()
        return await together(lambda: streamed(llm))

    assert expected() == run(threaded, main)


def test_astream_chat_401_event_before_text_is_retried(threaded):
    """An auth error event before text is retried: the text comes once."""

    async def main(llm):
        threaded.inject_stream_error("before_content", api="openai")
        return [await streamed(llm)]

    assert expected(1) == run(threaded, main)
