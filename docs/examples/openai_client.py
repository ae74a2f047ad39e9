"""How-to: the `openai.AsyncOpenAI` client itself, wrapped in one line."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import httpx
import openai
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server

MESSAGES = [{"role": "user", "content": "hello"}]


async def fetch_token(token_url: str) -> str:
    """Ask the token endpoint for a fresh access token (OAuth client credentials)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(token_url, data={"grant_type": "client_credentials"})
        response.raise_for_status()
        return response.json()["access_token"]


def wrap(client: openai.AsyncOpenAI, token_url: str) -> openai.AsyncOpenAI:
    """The client, refreshing: its preset names every door that sends a request."""

    async def new_client(stale: openai.AsyncOpenAI) -> openai.AsyncOpenAI:
        # A copy of the stale client with a fresh key; it shares the connection pool.
        return stale.with_options(api_key=await fetch_token(token_url))

    return refresh_on_401(client, refresh=new_client)


async def main() -> None:
    async with open_loopback_server() as server:
        client = wrap(
            openai.AsyncOpenAI(
                base_url=server.openai_base_url,
                api_key=await fetch_token(server.token_url),
                max_retries=0,
            ),
            server.token_url,
        )

        # The token expired between two calls: create() gets a 401 and is sent again.
        server.expire_all()
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        print("chat completion:", completion.choices[0].message.content)

        # stream=True, and the token is revoked mid-stream before any text: the stream restarts.
        server.inject_stream_error("before_content", api="openai")
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async with stream:
            texts = [
                choice.delta.content or "" async for chunk in stream for choice in chunk.choices
            ]
        print("chat stream:", "".join(texts))

        # The Responses API, in one piece and as a stream with its helpers.
        server.expire_all()
        response = await client.responses.create(model="gpt-4o-mini", input="hello")
        print("response:", response.output_text)

        server.inject_stream_error("before_content", api="responses")
        async with client.responses.stream(model="gpt-4o-mini", input="hello") as events:
            texts = [
                event.delta async for event in events if event.type == "response.output_text.delta"
            ]
            final = await events.get_final_response()
        print("responses stream:", "".join(texts))
        print("its final response:", final.output_text)

        # After text has reached the caller, a retry would repeat it: the error is raised.
        server.inject_stream_error("after_content", api="openai")
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        texts = []
        try:
            async with stream:
                async for chunk in stream:
                    texts.extend(choice.delta.content or "" for choice in chunk.choices)
        except openai.APIError as error:
            print("error after text:", repr("".join(texts)), "then", type(error).__name__)

        print("refreshes:", server.stats.token_requests - 1)
        await client.close()


if __name__ == "__main__":
    trio.run(main)
