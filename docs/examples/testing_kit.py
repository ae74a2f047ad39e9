"""How-to: test your own wiring with `refresh_middleware.testing`, as a test suite would."""

# The examples print what the pages show; the test compares it with the .out files.
# ruff: noqa: T201, S101, SIM300 - tests, written `expected == actual` as the suite is

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import openai
import pytest
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import (
    AsyncRefreshCounter,
    RefreshCounter,
    ScriptedProvider,
    UnauthorizedError,
    open_loopback_server,
    run_loopback_server_in_thread,
)

# -- the application under test --------------------------------------------------------------------


def wrap(provider: Any, refresh: Any) -> Any:
    """The application's wiring: `chat` is a call, `chat_stream` a stream (the defaults, which
    a provider may lack; a name given in `calls=` or `streams=` must exist)."""
    return refresh_on_401(provider, refresh=refresh)


async def answer(provider: Any, prompt: str) -> str:
    """The application's use of a stream: the whole answer as one string."""
    async with aclosing(provider.chat_stream(prompt)) as stream:
        return "".join([text async for text in stream])


class ChunkProvider:
    """A provider on the OpenAI SDK that yields the raw chunks of a stream."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def chat_stream(self, prompt: str) -> AsyncIterator[Any]:
        stream = await self.client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async with stream:
            async for chunk in stream:
                yield chunk


async def answer_from_chunks(provider: Any, prompt: str) -> str:
    """The text of a stream of raw OpenAI chunks."""
    async with aclosing(provider.chat_stream(prompt)) as stream:
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])


# -- tests with the provider double ----------------------------------------------------------------


async def test_a_401_before_the_first_chunk_is_invisible() -> None:
    """A 401 before any output is retried once; both attempts were closed."""
    provider = ScriptedProvider()
    provider.queue_stream("Hel", "lo", unauthorized_after=0).queue_stream("Hel", "lo")
    refresh = RefreshCounter()

    assert "Hello" == await answer(wrap(provider, refresh), "hi")
    assert (1, 2, 0) == (refresh.count, provider.stream_opens, provider.open_streams)


async def test_a_401_after_output_reaches_the_caller() -> None:
    """After the first chunk the 401 is raised, not retried: nothing is shown twice."""
    provider = ScriptedProvider().queue_stream("Hel", "lo", unauthorized_after=1)
    refresh = RefreshCounter()

    with pytest.raises(UnauthorizedError):
        await answer(wrap(provider, refresh), "hi")
    assert (0, 0) == (refresh.count, provider.open_streams)


async def test_concurrent_callers_share_one_refresh() -> None:
    """Twenty callers on an expired credential cause one refresh, and all get an answer."""
    provider = ScriptedProvider(expired=True, latency=0.01).queue_chat(*["ok"] * 20)
    refresh = AsyncRefreshCounter()
    wrapped = wrap(provider, refresh)
    answers = []

    async def ask() -> None:
        answers.append(await wrapped.chat("hi"))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(ask)

    assert (1, ["ok"] * 20) == (refresh.count, answers)


# -- tests with the loopback server ----------------------------------------------------------------


async def test_the_sdk_stream_survives_expiry_and_an_in_stream_401() -> None:
    """Against a real HTTP server: an expired token, then a 401 inside the stream."""
    async with open_loopback_server() as server:

        def rebuild(stale: ChunkProvider) -> ChunkProvider:
            return ChunkProvider(stale.client.with_options(api_key=server.issue_token()))

        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
        )
        provider = wrap(ChunkProvider(client), rebuild)

        server.expire_all()  # the 401 comes as the response to the request
        assert "chunk-0 chunk-1 chunk-2 " == await answer_from_chunks(provider, "hi")

        server.inject_stream_error("before_content", api="openai")  # after the role chunk
        assert "chunk-0 chunk-1 chunk-2 " == await answer_from_chunks(provider, "hi")

        stats = server.stats
        assert (3, 2, 2) == (stats.tokens_issued, stats.unauthorized, stats.streams_completed)
        await client.close()


def test_a_sync_client_against_the_server_in_a_thread() -> None:
    """Sync code gets the server on a thread of its own; its controls work from any thread."""

    class SyncProvider:
        def __init__(self, client: openai.OpenAI) -> None:
            self.client = client

        def chat(self, prompt: str) -> str:
            completion = self.client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": prompt}]
            )
            return completion.choices[0].message.content or ""

    with run_loopback_server_in_thread() as server:
        client = openai.OpenAI(
            base_url=server.openai_base_url, api_key=server.issue_token(), max_retries=0
        )
        provider = wrap(
            SyncProvider(client),
            lambda stale: SyncProvider(stale.client.with_options(api_key=server.issue_token())),
        )
        server.expire_all()
        assert "chunk-0 chunk-1 chunk-2 " == provider.chat("hi")
        assert 1 == server.stats.unauthorized
        client.close()


async def main() -> None:
    for test in [
        test_a_401_before_the_first_chunk_is_invisible,
        test_a_401_after_output_reaches_the_caller,
        test_concurrent_callers_share_one_refresh,
        test_the_sdk_stream_survives_expiry_and_an_in_stream_401,
    ]:
        await test()
        print(test.__name__, "passed")
    # The SDK leaves some of its async generators to the garbage collector; collect them in
    # this trio run, before another trio run (the threaded server's) could meet them.
    gc.collect()
    await trio.to_thread.run_sync(test_a_sync_client_against_the_server_in_a_thread)
    print(test_a_sync_client_against_the_server_in_a_thread.__name__, "passed")


if __name__ == "__main__":
    trio.run(main)
