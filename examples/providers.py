"""Example providers wrapped with `refresh_on_401`: copy the one closest to yours.

Each provider gets its bearer token from an OAuth client-credentials endpoint (`TokenSource`;
the loopback server of `refresh_middleware.testing` has one at ``/oauth/token``) and has a
``refresh`` that fetches a new token. Two ways of wiring are shown:

- **instance wrapping** (`OpenAIProvider`, `HttpxProvider`): ``refresh(stale)`` returns a new
  provider and the proxy swaps it in;
- **class decoration** (`AnthropicProvider`, `OpenAISyncProvider`): ``refresh(provider)``
  updates the instance in place and returns None.

New SDK clients are made with ``client.with_options(api_key=...)``, which shares the stale
client's connection pool: streams still running on the stale provider are not cut off, and
there is one pool to close at the end.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Self

import anthropic
import httpx
import openai

from refresh_middleware import refresh_on_401

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator

    from anthropic.lib.streaming import AsyncMessageStreamManager
    from anthropic.types import Message, RawMessageStreamEvent
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

MODEL = "loopback-1"


class TokenSource:
    """Bearer tokens from an OAuth 2 client-credentials endpoint."""

    def __init__(self, token_url: str) -> None:
        self.token_url = token_url

    async def fetch(self) -> str:
        """A fresh access token."""
        async with httpx.AsyncClient() as http:
            response = await http.post(self.token_url, data={"grant_type": "client_credentials"})
        return _access_token(response)

    def fetch_sync(self) -> str:
        """A fresh access token, for synchronous code."""
        response = httpx.post(self.token_url, data={"grant_type": "client_credentials"})
        return _access_token(response)


def _access_token(response: httpx.Response) -> str:
    response.raise_for_status()
    return str(response.json()["access_token"])


# --------------------------------------------------------------------------------------------------
# openai.AsyncOpenAI, wrapped per instance


class OpenAIProvider:
    """Chat through `openai.AsyncOpenAI`; wrap instances with `connect_openai`."""

    def __init__(self, client: openai.AsyncOpenAI, tokens: TokenSource) -> None:
        self.client = client
        self.tokens = tokens

    async def chat(self, prompt: str) -> ChatCompletion:
        """One completion."""
        return await self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}]
        )

    async def chat_stream(self, prompt: str) -> AsyncGenerator[ChatCompletionChunk, None]:
        """The chunks of a streamed completion."""
        stream = await self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with stream:  # closes the HTTP response, also when the consumer stops early
            async for chunk in stream:
                yield chunk

    async def aclose(self) -> None:
        """Close the connection pool (shared by every provider made by `renew_openai`)."""
        await self.client.close()


async def renew_openai(stale: OpenAIProvider) -> OpenAIProvider:
    """The refresh of `OpenAIProvider`: a new token, and a new provider that uses it."""
    token = await stale.tokens.fetch()
    return OpenAIProvider(stale.client.with_options(api_key=token), stale.tokens)


async def connect_openai(base_url: str, tokens: TokenSource) -> OpenAIProvider:
    """An `OpenAIProvider` that refreshes its token on 401 (instance wrapping)."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=await tokens.fetch(), max_retries=0)
    return refresh_on_401(OpenAIProvider(client, tokens), refresh=renew_openai)


# --------------------------------------------------------------------------------------------------
# anthropic.AsyncAnthropic, the class decorated


async def renew_anthropic(provider: AnthropicProvider) -> None:
    """The refresh of `AnthropicProvider`: a new token, installed in place."""
    token = await provider.tokens.fetch()
    provider.client = provider.client.with_options(api_key=token)


@refresh_on_401(refresh=renew_anthropic, streams=("chat_stream", "chat_events"))
class AnthropicProvider:
    """Chat through `anthropic.AsyncAnthropic`; every instance refreshes in place."""

    def __init__(self, client: anthropic.AsyncAnthropic, tokens: TokenSource) -> None:
        self.client = client
        self.tokens = tokens

    @classmethod
    async def connect(cls, base_url: str, tokens: TokenSource) -> Self:
        """A provider with a fresh token."""
        token = await tokens.fetch()
        return cls(
            anthropic.AsyncAnthropic(base_url=base_url, api_key=token, max_retries=0), tokens
        )

    async def chat(self, prompt: str) -> Message:
        """One message."""
        return await self.client.messages.create(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        )

    def chat_stream(self, prompt: str) -> AsyncMessageStreamManager:
        """``messages.stream()``: use as ``async with provider.chat_stream(p) as stream:``.

        Through the wrapper, the block gets a view of the SDK's ``AsyncMessageStream``:
        iterating it goes through the gate, and its helpers (``get_final_message()``,
        ``text_stream``) read the attempt that is current.
        """
        return self.client.messages.stream(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}]
        )

    async def chat_events(self, prompt: str) -> AsyncGenerator[RawMessageStreamEvent, None]:
        """The raw events of ``messages.create(stream=True)``."""
        stream = await self.client.messages.create(
            model=MODEL, max_tokens=256, messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with stream:
            async for event in stream:
                yield event

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.close()


# --------------------------------------------------------------------------------------------------
# raw httpx, Anthropic's wire format, wrapped per instance


class HttpxProvider:
    """Anthropic's Messages API over a bare `httpx.AsyncClient`, SSE parsed by hand.

    A 401 response raises `httpx.HTTPStatusError` (the classifier reads its
    ``response.status_code``). An error the server reports inside the stream is *yielded* as
    an ``{"type": "error", ...}`` event: the gate retries it before any output and forwards it
    after.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str) -> None:
        self.http = http
        self.url = f"{base_url}/v1/messages"
        self.headers = {"x-api-key": token}

    def _body(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        return {
            "model": MODEL,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
        }

    async def chat(self, prompt: str) -> dict[str, Any]:
        """One message, as the decoded JSON body."""
        response = await self.http.post(
            self.url, json=self._body(prompt, stream=False), headers=self.headers
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def chat_stream(self, prompt: str) -> AsyncGenerator[dict[str, Any], None]:
        """The decoded server-sent events of a streamed message."""
        body = self._body(prompt, stream=True)
        async with self.http.stream("POST", self.url, json=body, headers=self.headers) as response:
            response.raise_for_status()
            data: list[str] = []
            last: dict[str, Any] | None = None
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line.removeprefix("data:").strip())
                elif not line and data:
                    event = json.loads("\n".join(data))
                    data.clear()
                    if event["type"] in {"message_stop", "error"}:
                        # The last event: read the body to its end before handing it over, so
                        # httpx's own generators finish instead of being left to the collector.
                        last = event
                    else:
                        yield event
            if last is not None:
                yield last


async def connect_httpx(
    http: httpx.AsyncClient, base_url: str, tokens: TokenSource
) -> HttpxProvider:
    """An `HttpxProvider` that refreshes its token on 401 (instance wrapping, refresh inline)."""

    async def renew(stale: HttpxProvider) -> HttpxProvider:
        return HttpxProvider(stale.http, base_url, await tokens.fetch())

    return refresh_on_401(HttpxProvider(http, base_url, await tokens.fetch()), refresh=renew)


# --------------------------------------------------------------------------------------------------
# openai.OpenAI (threads), the class decorated


def renew_openai_sync(provider: OpenAISyncProvider) -> None:
    """The refresh of `OpenAISyncProvider`: threads that hit the same 401 share one call."""
    provider.client = provider.client.with_options(api_key=provider.tokens.fetch_sync())


@refresh_on_401(refresh=renew_openai_sync)
class OpenAISyncProvider:
    """Chat through the synchronous `openai.OpenAI`, safe to share between threads."""

    def __init__(self, base_url: str, tokens: TokenSource) -> None:
        self.tokens = tokens
        self.client = openai.OpenAI(base_url=base_url, api_key=tokens.fetch_sync(), max_retries=0)

    def chat(self, prompt: str) -> ChatCompletion:
        """One completion."""
        return self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}]
        )

    def chat_stream(self, prompt: str) -> Iterator[ChatCompletionChunk]:
        """The chunks of a streamed completion."""
        with self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
        ) as stream:
            yield from stream

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    """The text that OpenAI chunks carry."""
    return "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)
