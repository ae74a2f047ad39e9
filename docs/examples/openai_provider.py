"""How-to: an OpenAI SDK provider whose calls and streams survive an expired token."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server


class OpenAIProvider:
    """`chat` answers in one piece; `chat_stream` yields the answer's text as it arrives."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def chat(self, prompt: str) -> str:
        completion = await self.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return completion.choices[0].message.content or ""

    async def chat_stream(self, prompt: str) -> AsyncIterator[str]:
        stream = await self.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with stream:
            async for chunk in stream:
                # Callers here want text. Yielding the raw chunks would be retried as well:
                # the role-only first chunk counts as metadata, not output.
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content


async def main() -> None:
    async with open_loopback_server() as server:

        def rebuild(stale: OpenAIProvider) -> OpenAIProvider:
            return OpenAIProvider(stale.client.with_options(api_key=server.issue_token()))

        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
        )
        provider = refresh_on_401(OpenAIProvider(client), refresh=rebuild)

        # The token expired between two calls: the 401 arrives at `create(...)`.
        server.expire_all()
        texts = [text async for text in provider.chat_stream("hello")]
        print("expired before the call:", "".join(texts))

        # The token is revoked mid-stream, before any text: the error arrives in the stream.
        server.inject_stream_error("before_content", api="openai")
        texts = [text async for text in provider.chat_stream("hello")]
        print("error before any text:", "".join(texts))

        # After text has been forwarded, a retry would repeat it: the error is raised instead.
        server.inject_stream_error("after_content", api="openai")
        texts = []
        try:
            async for text in provider.chat_stream("hello"):
                texts.append(text)
        except openai.APIError as error:
            print("error after text:", repr("".join(texts)), "then", type(error).__name__)

        print("refreshes:", server.stats.tokens_issued - 1)
        await provider.client.close()


if __name__ == "__main__":
    trio.run(main)
