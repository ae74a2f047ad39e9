"""Shared doubles for the unit tests: scripted providers in every flavour and both modes.

A `Script` holds what the provider will answer (chat results, stream batches) and counts what
happened (calls, stream opens, closed streams, refreshes). `Harness` builds a provider on a script
in instance mode (a proxy, refresh returns a replacement) or class mode (a decorated class,
refresh updates the instance in place), async or sync, and runs coroutines on trio or asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
from collections import deque
from typing import Any

import pytest
import sniffio
import trio

from refresh_middleware import refresh_on_401


class Unauthorized(Exception):
    """A provider error with a 401 status, as SDK errors carry one."""

    def __init__(self, message: str = "401 Unauthorized") -> None:
        super().__init__(message)
        self.status_code = 401


class ServerError(Exception):
    """A provider error that no refresh can fix."""

    def __init__(self, message: str = "internal server error") -> None:
        super().__init__(message)
        self.status_code = 500


async def checkpoint() -> None:
    """Yield to the event loop, whichever is running."""
    if sniffio.current_async_library() == "trio":
        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


@dataclasses.dataclass
class Script:
    """What a scripted provider answers, and what happened to it."""

    chats: deque[Any] = dataclasses.field(default_factory=deque)
    streams: deque[list[Any]] = dataclasses.field(default_factory=deque)
    chat_calls: int = 0
    stream_opens: int = 0
    closed_streams: int = 0
    refreshes: int = 0
    refresh_error: Exception | None = None
    # When set, providers with a smaller key answer every chat with a 401: expired credentials.
    valid_from: int | None = None

    def next_chat(self, key: int = 0) -> Any:
        self.chat_calls += 1
        if self.valid_from is not None and key < self.valid_from:
            raise Unauthorized
        result = self.chats.popleft()
        if isinstance(result, BaseException):
            raise result
        return result

    def next_batch(self) -> list[Any]:
        self.stream_opens += 1
        return self.streams.popleft() if self.streams else [RuntimeError("no queued batch")]


class AsyncProvider:
    def __init__(self, script: Script, key: int = 0) -> None:
        self.script = script
        self.key = key

    async def chat(self, request: str) -> Any:
        key = self.key  # the credentials go out with the request, before the answer comes
        await checkpoint()
        return self.script.next_chat(key)

    async def chat_stream(self, request: str) -> Any:
        batch = self.script.next_batch()
        try:
            for item in batch:
                await checkpoint()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.script.closed_streams += 1


class SyncProvider:
    def __init__(self, script: Script, key: int = 0) -> None:
        self.script = script
        self.key = key

    def chat(self, request: str) -> Any:
        return self.script.next_chat(self.key)

    def chat_stream(self, request: str) -> Any:
        batch = self.script.next_batch()
        try:
            for item in batch:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.script.closed_streams += 1


class ScriptedStream:
    """An SDK-like stream object over scripted items: an async iterator whose exception
    items are raised; subclasses say what closing it does."""

    def __init__(self, items: list[Any]) -> None:
        self.items = iter(items)

    def __aiter__(self) -> ScriptedStream:
        return self

    async def __anext__(self) -> Any:
        await checkpoint()
        item = next(self.items, StopAsyncIteration)
        if isinstance(item, BaseException) or item is StopAsyncIteration:
            raise item
        return item


def text(value: str) -> dict[str, str]:
    return {"type": "text_delta", "text": value}


DONE = {"type": "done"}
# The `message` of an anthropic `message_start` event, as the API sends it.
ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [],
    "model": "claude",
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 1},
}
ERROR_401 = {"type": "error", "message": "status=401 Unauthorized"}


class Harness:
    """A provider on a script, in one mode and flavour, and a way to drive it."""

    def __init__(self, mode: str, flavour: str, backend: str = "trio", **options: Any) -> None:
        self.mode = mode
        self.flavour = flavour
        self.backend = backend
        self.script = Script()
        base = AsyncProvider if flavour == "async" else SyncProvider
        script = self.script

        def renew(stale: Any) -> Any:
            script.refreshes += 1
            if script.refresh_error is not None:
                raise script.refresh_error
            if mode == "instance":
                return base(script, stale.key + 1)
            stale.key += 1
            return None

        async def renew_async(stale: Any) -> Any:
            await checkpoint()  # a real refresh talks to an auth server
            return renew(stale)

        refresh = renew_async if flavour == "async" else renew
        if mode == "instance":
            self.provider = refresh_on_401(base(script), refresh=refresh, **options)
        else:
            decorated = refresh_on_401(refresh=refresh, **options)(type("Decorated", (base,), {}))
            self.provider = decorated(script)

    async def chat(self, request: str = "hello") -> Any:
        result = self.provider.chat(request)
        return await result if inspect.isawaitable(result) else result

    async def drain(self, request: str = "hello") -> list[Any]:
        """Every item of one chat_stream, closing it even when it raises."""
        stream = self.provider.chat_stream(request)
        if hasattr(stream, "__aiter__"):
            async with contextlib.aclosing(stream):
                return [item async for item in stream]
        with contextlib.closing(stream):
            return list(stream)

    def run(self, function: Any, *args: Any) -> Any:
        if self.backend == "trio":
            return trio.run(function, *args)
        return asyncio.run(function(*args))


@pytest.fixture(params=["instance", "class"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["async", "sync"])
def flavour(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def harness(mode: str, flavour: str, backend: str) -> Harness:
    """A scripted provider in every mode, flavour and backend."""
    return Harness(mode, flavour, backend)
