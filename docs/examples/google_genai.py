"""How-to: a `google.genai.Client` whose async calls and streams survive an expired key."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import httpx
import trio
from google import genai
from google.genai import types

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server


async def fetch_key(token_url: str) -> str:
    """Ask the token endpoint for a fresh key (OAuth client credentials)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(token_url, data={"grant_type": "client_credentials"})
        response.raise_for_status()
        return response.json()["access_token"]


def wrap(client: genai.Client, token_url: str, options: types.HttpOptions) -> genai.Client:
    """The client, refreshing: its preset names every door that sends a request."""

    async def new_client(_stale: genai.Client) -> genai.Client:
        # A client has no copy with a new key: build one, on the same HTTP options.
        return genai.Client(api_key=await fetch_key(token_url), http_options=options)

    return refresh_on_401(client, refresh=new_client)


async def main() -> None:
    async with open_loopback_server() as server, httpx.AsyncClient() as http:
        # On trio, google-genai needs an httpx client handed in: its own are asyncio's.
        options = types.HttpOptions(base_url=server.base_url, httpx_async_client=http)
        key = await fetch_key(server.token_url)
        client = wrap(genai.Client(api_key=key, http_options=options), server.token_url, options)

        # The key expired between two calls: generate_content gets a 401 and is sent again.
        server.expire_all()
        response = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        print("generate_content:", response.text)

        # The stream sends its request at the first chunk: a 401 there is retried.
        server.expire_all()
        stream = await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi"
        )
        print("stream, expired key:", "".join([chunk.text or "" async for chunk in stream]))

        # An UNAUTHENTICATED error inside the stream, before any text: the stream restarts.
        server.inject_stream_error("before_content", api="gemini")
        stream = await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi"
        )
        print("stream, error before text:", "".join([chunk.text or "" async for chunk in stream]))

        print("refreshes:", server.stats.token_requests - 1)


if __name__ == "__main__":
    trio.run(main)
