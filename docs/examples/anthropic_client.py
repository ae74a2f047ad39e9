"""How-to: the `anthropic.AsyncAnthropic` client itself, wrapped in one line."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import anthropic
import httpx
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server

# The loopback server answers any model name. With the real API, use a current model:
# the SDK warns about deprecated ones.
MODEL = "claude-loopback"
MESSAGES = [{"role": "user", "content": "hello"}]


async def fetch_token(token_url: str) -> str:
    """Ask the token endpoint for a fresh access token (OAuth client credentials)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(token_url, data={"grant_type": "client_credentials"})
        response.raise_for_status()
        return response.json()["access_token"]


def wrap(client: anthropic.AsyncAnthropic, token_url: str) -> anthropic.AsyncAnthropic:
    """The client, refreshing: its preset names every door that sends a request."""

    async def new_client(stale: anthropic.AsyncAnthropic) -> anthropic.AsyncAnthropic:
        # A copy of the stale client with a fresh key; it shares the connection pool.
        return stale.with_options(api_key=await fetch_token(token_url))

    return refresh_on_401(client, refresh=new_client)


async def main() -> None:
    async with open_loopback_server() as server:
        client = wrap(
            anthropic.AsyncAnthropic(
                base_url=server.base_url,
                api_key=await fetch_token(server.token_url),
                max_retries=0,
            ),
            server.token_url,
        )

        # The token expired between two calls: create() gets a 401 and is sent again.
        server.expire_all()
        message = await client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
        print("message:", message.content[0].text)

        # The manager: a 401 when it is entered is retried before the block starts.
        server.expire_all()
        async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
            kinds = [event.type async for event in stream]
        print("events:", " ".join(kinds))

        # The token is revoked mid-stream, before any text: the SDK raises, the stream restarts.
        server.inject_stream_error("before_content")
        async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
            texts = [event.text async for event in stream if event.type == "text"]
            final = await stream.get_final_message()
        print("text after a retry:", "".join(texts))
        print("its final message:", final.content[0].text)

        # create(stream=True) is a stream of raw events, gated the same way.
        server.inject_stream_error("before_content")
        events = await client.messages.create(
            model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
        )
        async with events:
            texts = [
                event.delta.text async for event in events if event.type == "content_block_delta"
            ]
        print("create(stream=True):", "".join(texts))

        print("refreshes:", server.stats.token_requests - 1)
        await client.close()


if __name__ == "__main__":
    trio.run(main)
