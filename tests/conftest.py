"""Shared doubles for the unit tests: the test kit's scripted providers, in every flavour and mode.

A `Script` holds what the providers will answer (chat results, stream batches) and counts what
happened (calls, stream opens, closed streams, refreshes); several providers share one, each
holding a credential `key`, as a provider and its replacements do. It is the public test kit's
script (`refresh_middleware.testing`) under the names these tests have always used. `Harness`
builds a provider on a script in instance mode (a proxy, refresh returns a replacement) or class
mode (a decorated class, refresh updates the instance in place), async or sync, and runs
coroutines on trio or asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import pytest
import trio

from refresh_middleware import refresh_on_401
from refresh_middleware.testing import ScriptedProvider, SyncScriptedProvider
from refresh_middleware.testing import UnauthorizedError as Unauthorized  # noqa: F401 - tests' name
from refresh_middleware.testing._double import _answer, _Script, _sleep


class ServerError(Exception):
    """A provider error that no refresh can fix."""

    def __init__(self, message: str = "internal server error") -> None:
        super().__init__(message)
        self.status_code = 500


async def checkpoint() -> None:
    """Yield to the event loop, whichever is running."""
    await _sleep(0)


class Script(_Script):
    """The test kit's script, with a refresh count and failure for the refresh callables here."""

    def __init__(
        self, *, valid_from: int | None = None, refresh_error: Exception | None = None
    ) -> None:
        super().__init__(latency=0.0, valid_from=valid_from)
        self.refreshes = 0
        """Refreshes run by `Harness` and by the tests' own refresh callables."""
        self.refresh_error = refresh_error
        """What `Harness`'s refresh raises, when set."""

    @property
    def chat_calls(self) -> int:
        return self.calls

    @property
    def closed_streams(self) -> int:
        return self.streams_closed

    @closed_streams.setter
    def closed_streams(self, count: int) -> None:
        self.streams_closed = count

    def next_chat(self, key: int = 0) -> Any:
        """Answer a chat made with credential `key`: a 401 when it is expired, else a result."""
        return _answer(self.take_chat((), {}, expired=self.expired(key)))

    def next_batch(self) -> list[Any]:
        """The items of the next stream, whatever the credential: the caller checks it."""
        return self.open_stream((), {}, expired=False)


class AsyncProvider(ScriptedProvider):
    """The test kit's async double on a shared `Script`, holding credential `key`."""

    def __init__(self, script: Script, key: int = 0) -> None:
        # Not the test kit's __init__: that makes a script of its own, and this one shares.
        self._script = script
        self._generation = key

    @property
    def script(self) -> Script:
        return self._script

    @property
    def key(self) -> int:
        return self._generation

    @key.setter
    def key(self, key: int) -> None:
        self._generation = key


class SyncProvider(SyncScriptedProvider):
    """The test kit's sync double on a shared `Script`, holding credential `key`."""

    __init__ = AsyncProvider.__init__
    script = AsyncProvider.script
    key = AsyncProvider.key


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
