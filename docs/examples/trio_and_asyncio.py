"""How-to: one wrapped provider, used under trio and then under asyncio."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import asyncio

import httpx
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import run_loopback_server_in_thread


class PerCallProvider:
    """Opens an `httpx.AsyncClient` per call: a client's connections belong to one event loop."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    async def chat(self, prompt: str) -> str:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            response = await http.post(
                "/chat/completions",
                headers={"authorization": f"Bearer {self.token}"},
                json={"model": "m", "messages": [{"role": "user", "content": prompt}]},
            )
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]


def main() -> None:
    with run_loopback_server_in_thread() as server:

        async def refresh(stale: PerCallProvider) -> PerCallProvider:
            async with httpx.AsyncClient() as http:
                response = await http.post(server.token_url)
            response.raise_for_status()
            return PerCallProvider(stale.base_url, response.json()["access_token"])

        provider = refresh_on_401(
            PerCallProvider(server.openai_base_url, server.issue_token()), refresh=refresh
        )

        server.expire_all()
        print("trio:", trio.run(provider.chat, "hello"))
        server.expire_all()
        print("asyncio:", asyncio.run(provider.chat("hello")))
        print("refreshes:", server.stats.token_requests)


if __name__ == "__main__":
    main()
