"""How-to: a pydantic-ai model whose agent runs survive an expired token."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import LoopbackLLMServer, run_loopback_server_in_thread


async def fetch_token(token_url: str) -> str:
    """Ask the token endpoint for a fresh access token (OAuth client credentials)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(token_url, data={"grant_type": "client_credentials"})
        response.raise_for_status()
        return response.json()["access_token"]


def wrap(model: OpenAIChatModel, token_url: str) -> OpenAIChatModel:
    """The model, refreshing: no names, the pydantic-ai preset knows them."""

    async def new_model(stale: OpenAIChatModel) -> OpenAIChatModel:
        # A copy of the stale model's client with a fresh key; it shares the connection pool.
        fresh = stale.client.with_options(api_key=await fetch_token(token_url))
        return OpenAIChatModel(stale.model_name, provider=OpenAIProvider(openai_client=fresh))

    return refresh_on_401(model, refresh=new_model)


async def set_fresh_key(model: RefreshingChatModel) -> None:
    """Renew the model in place: its client sends the new key from the next request on."""
    model.client.api_key = await fetch_token(model.token_url)


@refresh_on_401(refresh=set_fresh_key, calls=("request",), streams=("request_stream",))
class RefreshingChatModel(OpenAIChatModel):
    """OpenAIChatModel whose requests refresh their token on a 401 and are retried once."""

    def __init__(self, model_name: str, *, token_url: str, **options: Any) -> None:
        super().__init__(model_name, **options)
        self.token_url = token_url


async def instance_mode(server: LoopbackLLMServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url,
        api_key=await fetch_token(server.token_url),
        max_retries=0,
    ) as client:
        model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
        agent = Agent(wrap(model, server.token_url))

        # The token expired between two runs: the model's request gets a 401, and is sent again.
        server.expire_all()
        result = await agent.run("hello")
        print("Agent.run:", result.output)

        # The token is revoked mid-stream, before any text: the stream restarts.
        server.inject_stream_error("before_content", api="openai")
        async with agent.run_stream("hello") as streamed:
            texts = [text async for text in streamed.stream_text(delta=True)]
        print("Agent.run_stream:", "".join(texts))


async def class_mode(server: LoopbackLLMServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url,
        api_key=await fetch_token(server.token_url),
        max_retries=0,
    ) as client:
        model = RefreshingChatModel(
            "gpt-4o-mini",
            provider=OpenAIProvider(openai_client=client),
            token_url=server.token_url,
        )
        agent = Agent(model)

        server.expire_all()
        result = await agent.run("hello")
        print("class mode, Agent.run:", result.output)

        server.inject_stream_error("before_content", api="openai")
        async with agent.run_stream("hello") as streamed:
            texts = [text async for text in streamed.stream_text(delta=True)]
        print("class mode, Agent.run_stream:", "".join(texts))


def main() -> None:
    # Agent starts asyncio tasks: run it on asyncio, the server on a thread of its own.
    with run_loopback_server_in_thread() as server:
        asyncio.run(instance_mode(server))
        asyncio.run(class_mode(server))
        print("refreshes:", server.stats.token_requests - 2)


if __name__ == "__main__":
    main()
