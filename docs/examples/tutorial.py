"""The tutorial: a provider on the OpenAI SDK that survives an expired token.

It runs against the loopback server of `refresh_middleware.testing`, which issues tokens from
``POST /oauth/token`` and answers like the OpenAI API.
"""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import httpx
import openai
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server


async def fetch_token(token_url: str) -> str:
    """Ask the token endpoint for a fresh access token (OAuth client credentials)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(token_url, data={"grant_type": "client_credentials"})
        response.raise_for_status()
        return response.json()["access_token"]


class OpenAIProvider:
    """A provider: one SDK client, which holds one token, and a `chat` method."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def chat(self, prompt: str) -> str:
        completion = await self.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return completion.choices[0].message.content or ""


async def main() -> None:
    async with open_loopback_server() as server:

        async def rebuild(stale: OpenAIProvider) -> OpenAIProvider:
            token = await fetch_token(server.token_url)
            # A copy of the client with the new key; it shares the connection pool.
            return OpenAIProvider(stale.client.with_options(api_key=token))

        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=await fetch_token(server.token_url)
        )
        provider = refresh_on_401(OpenAIProvider(client), refresh=rebuild)

        print("first answer:", await provider.chat("hello"))
        server.expire_all()  # the token expires, as it would after an hour
        print("after expiry:", await provider.chat("hello again"))
        print("tokens fetched:", server.stats.token_requests)
        await provider.client.close()


if __name__ == "__main__":
    trio.run(main)
