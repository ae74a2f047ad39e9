"""How-to: a synchronous provider shared by threads; concurrent 401s cause one refresh."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import run_loopback_server_in_thread


class SyncProvider:
    """A provider on `httpx.Client`: `chat` returns the answer, `chat_stream` yields text."""

    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http = http
        self.token = token

    def _request(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        return {
            "url": "/chat/completions",
            "headers": {"authorization": f"Bearer {self.token}"},
            "json": {
                "model": "m",
                "messages": [{"role": "user", "content": prompt}],
                "stream": stream,
            },
        }

    def chat(self, prompt: str) -> str:
        response = self.http.post(**self._request(prompt, stream=False))
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    def chat_stream(self, prompt: str) -> Iterator[str]:
        with self.http.stream("POST", **self._request(prompt, stream=True)) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line.removeprefix("data: "))["choices"]:
                        if choice["delta"].get("content"):
                            yield choice["delta"]["content"]


def main() -> None:
    with (
        run_loopback_server_in_thread() as server,
        httpx.Client(base_url=server.openai_base_url) as http,
    ):

        def refresh(stale: SyncProvider) -> SyncProvider:
            # A plain function: a synchronous provider cannot await a coroutine.
            response = stale.http.post(server.token_url)
            response.raise_for_status()
            return SyncProvider(stale.http, response.json()["access_token"])

        provider = refresh_on_401(SyncProvider(http, server.issue_token()), refresh=refresh)

        server.expire_all()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(provider.chat, [f"question {n}" for n in range(8)]))
        print("answers:", len(answers), "refreshes:", server.stats.token_requests)

        # A generator method: a 401 at the first next() is retried, as in async code.
        server.expire_all()
        print("chat_stream:", "".join(provider.chat_stream("hello")))
        print("refreshes:", server.stats.token_requests)


if __name__ == "__main__":
    main()
