"""How-to: a provider on plain httpx, speaking the OpenAI Chat Completions API."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import open_loopback_server


class StreamError(Exception):
    """An error event inside a stream; `body` keeps the provider's error object."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", "error event in the stream"))
        self.body = body


class HttpxProvider:
    """One shared `httpx.AsyncClient`; the token travels in each request's headers."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token

    def _request(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        return {
            "url": "/chat/completions",
            "headers": {"authorization": f"Bearer {self.token}"},
            "json": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": prompt}],
                "stream": stream,
            },
        }

    async def chat(self, prompt: str) -> str:
        response = await self.http.post(**self._request(prompt, stream=False))
        response.raise_for_status()  # a 401 becomes HTTPStatusError, with .response.status_code
        return response.json()["choices"][0]["message"]["content"]

    async def chat_stream(self, prompt: str) -> AsyncIterator[str]:
        async with self.http.stream("POST", **self._request(prompt, stream=True)) as response:
            response.raise_for_status()
            # aclosing: the line iterator is closed here, also when an error event ends it.
            async with aclosing(response.aiter_lines()) as lines:
                async for line in lines:
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line.removeprefix("data: "))
                    if "error" in event:
                        raise StreamError(event["error"])
                    for choice in event["choices"]:
                        if choice["delta"].get("content"):
                            yield choice["delta"]["content"]


async def main() -> None:
    async with (
        open_loopback_server() as server,
        httpx.AsyncClient(base_url=server.openai_base_url) as http,
    ):

        async def refresh(stale: HttpxProvider) -> HttpxProvider:
            response = await stale.http.post(server.token_url)
            response.raise_for_status()
            return HttpxProvider(stale.http, response.json()["access_token"])

        provider = refresh_on_401(HttpxProvider(http, server.issue_token()), refresh=refresh)

        server.expire_all()
        print("chat:", await provider.chat("hello"))

        server.inject_stream_error("before_content", api="openai")
        print("chat_stream:", "".join([text async for text in provider.chat_stream("hello")]))

        print("refreshes:", server.stats.token_requests)


if __name__ == "__main__":
    trio.run(main)
