"""How-to: an Anthropic SDK provider, with `messages.stream()` as its stream method."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server

# The loopback server answers any model name. With the real API, use a current model:
# the SDK warns about deprecated ones.
MODEL = "claude-loopback"


class AnthropicProvider:
    """`chat` answers in one piece; `chat_stream` and `chat_text` stream the answer."""

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client

    async def chat(self, prompt: str) -> str:
        message = await self.client.messages.create(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        )
        return "".join(block.text for block in message.content if block.type == "text")

    def chat_stream(self, prompt: str) -> Any:
        # A plain method returning the SDK's async context manager: callers `async with` it.
        return self.client.messages.stream(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        )

    async def chat_text(self, prompt: str) -> AsyncIterator[str]:
        # An async generator over the SDK's text helper: the gate sees only text.
        async with self.client.messages.stream(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            async for text in stream.text_stream:
                yield text


async def main() -> None:
    async with open_loopback_server() as server:

        def rebuild(stale: AnthropicProvider) -> AnthropicProvider:
            return AnthropicProvider(stale.client.with_options(api_key=server.issue_token()))

        client = anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key=server.issue_token(), max_retries=0
        )
        provider = refresh_on_401(
            AnthropicProvider(client), refresh=rebuild, streams=("chat_stream", "chat_text")
        )

        # The token expired before the request: the 401 arrives when the manager is entered.
        server.expire_all()
        async with provider.chat_stream("hello") as stream:
            kinds = [event.type async for event in stream]
        print("events:", " ".join(kinds))

        # The token is revoked mid-stream, before any text: the SDK raises while iterating.
        server.inject_stream_error("before_content")
        async with provider.chat_stream("hello") as stream:
            texts = [event.text async for event in stream if event.type == "text"]
        print("text after a retry:", "".join(texts))

        # Text from the SDK's helper, used inside the provider method.
        server.expire_all()
        texts = [text async for text in provider.chat_text("hello")]
        print("chat_text:", "".join(texts))

        print("refreshes:", server.stats.tokens_issued - 1)
        await provider.client.close()


if __name__ == "__main__":
    trio.run(main)
