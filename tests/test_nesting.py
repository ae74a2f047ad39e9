"""Nested intercepted methods: one refresh and one retry per outer call, whatever the depth.

A decorated class whose `chat` reads its own `chat_stream` (which may read a third intercepted
method), or a decorated subclass calling a decorated parent through `super()`: the outer call
handles a 401 of an inner one, which passes it on as it came.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio
from conftest import Unauthorized, checkpoint

from refresh_middleware import refresh_on_401

PERMANENT = 99  # a credential generation never reached: every request is refused


class Server:
    """What the innermost method answers: a 401 below generation `valid_from`, counted."""

    def __init__(self, valid_from: int) -> None:
        self.valid_from = valid_from
        self.requests = 0
        self.refreshes = 0

    def answer(self, key: int) -> str:
        self.requests += 1
        if key < self.valid_from:
            raise Unauthorized
        return "answer"

    def renew(self, stale: Any) -> None:
        self.refreshes += 1
        stale.key += 1


def run(backend: str, function: Callable[[], Any]) -> Any:
    if backend == "trio":
        return trio.run(function)
    return asyncio.run(function())


# --------------------------------------------------------------------------------------------------
# a decorated subclass calling a decorated parent through super()


def async_levels(server: Server, levels: int) -> Any:
    """An async provider `levels` decorated classes deep, each `chat` calling its parent's."""

    @refresh_on_401(refresh=server.renew)
    class Base:
        def __init__(self) -> None:
            self.key = 0

        async def chat(self, prompt: str) -> str:
            await checkpoint()
            return server.answer(self.key)

    cls: type[Any] = Base
    for _ in range(levels - 1):

        @refresh_on_401(refresh=server.renew)
        class Level(cls):  # type: ignore[misc, valid-type]
            async def chat(self, prompt: str) -> str:
                return await super().chat(prompt)  # type: ignore[no-any-return]

        cls = Level
    return cls()


def sdk_levels(server: Server, levels: int) -> Any:
    """As `async_levels` in the SDKs' shape: each `chat` a plain method returning a coroutine."""

    @refresh_on_401(refresh=server.renew)
    class Base:
        def __init__(self) -> None:
            self.key = 0

        def chat(self, prompt: str) -> Any:
            return self.answer()

        async def answer(self) -> str:
            await checkpoint()
            return server.answer(self.key)

    cls: type[Any] = Base
    for _ in range(levels - 1):

        @refresh_on_401(refresh=server.renew)
        class Level(cls):  # type: ignore[misc, valid-type]
            def chat(self, prompt: str) -> Any:
                return self.through(super().chat(prompt))

            async def through(self, parent: Any) -> str:
                return await parent  # type: ignore[no-any-return]

        cls = Level
    return cls()


def sync_levels(server: Server, levels: int) -> Any:
    """A sync provider `levels` decorated classes deep, each `chat` calling its parent's."""

    @refresh_on_401(refresh=server.renew)
    class Base:
        def __init__(self) -> None:
            self.key = 0

        def chat(self, prompt: str) -> str:
            return server.answer(self.key)

    cls: type[Any] = Base
    for _ in range(levels - 1):

        @refresh_on_401(refresh=server.renew)
        class Level(cls):  # type: ignore[misc, valid-type]
            def chat(self, prompt: str) -> str:
                return super().chat(prompt)  # type: ignore[no-any-return]

        cls = Level
    return cls()


ASYNC_SHAPES = pytest.mark.parametrize("build", [async_levels, sdk_levels], ids=["async", "sdk"])


@ASYNC_SHAPES
@pytest.mark.parametrize("levels", [2, 3])
def test_nested_super_calls_refresh_once_for_a_lasting_401(
    backend: str, levels: int, build: Callable[[Server, int], Any]
) -> None:
    """Async subclasses calling decorated parents: a lasting 401 costs 1 refresh, 2 requests."""
    server = Server(PERMANENT)
    provider = build(server, levels)

    with pytest.raises(Unauthorized):
        run(backend, lambda: provider.chat("hi"))

    assert (1, 2) == (server.refreshes, server.requests)


@ASYNC_SHAPES
@pytest.mark.parametrize("levels", [2, 3])
def test_nested_super_calls_recover_from_an_expired_credential(
    backend: str, levels: int, build: Callable[[Server, int], Any]
) -> None:
    """Async subclasses calling decorated parents recover from an expiry with one refresh."""
    server = Server(1)
    provider = build(server, levels)

    answer = run(backend, lambda: provider.chat("hi"))

    assert ("answer", 1, 2) == (answer, server.refreshes, server.requests)


@pytest.mark.parametrize("levels", [2, 3])
def test_nested_sync_super_calls_refresh_once_for_a_lasting_401(levels: int) -> None:
    """Sync subclasses calling decorated parents: a lasting 401 costs 1 refresh, 2 requests."""
    server = Server(PERMANENT)
    provider = sync_levels(server, levels)

    with pytest.raises(Unauthorized):
        provider.chat("hi")

    assert (1, 2) == (server.refreshes, server.requests)


@pytest.mark.parametrize("levels", [2, 3])
def test_nested_sync_super_calls_recover_from_an_expired_credential(levels: int) -> None:
    """Sync subclasses calling decorated parents recover from an expiry with one refresh."""
    server = Server(1)
    provider = sync_levels(server, levels)

    assert ("answer", 1, 2) == (provider.chat("hi"), server.refreshes, server.requests)


# --------------------------------------------------------------------------------------------------
# a chat built on the class's own streams


def async_stack(server: Server, levels: int) -> Any:
    """`chat` reads `chat_stream`, which reads `raw`: `levels` of them are intercepted."""
    streams = ("chat_stream", "raw")[: levels - 1]

    @refresh_on_401(refresh=server.renew, calls=("chat",), streams=streams)
    class Stacked:
        def __init__(self) -> None:
            self.key = 0

        async def raw(self, prompt: str) -> AsyncIterator[str]:
            await checkpoint()
            yield server.answer(self.key)

        async def chat_stream(self, prompt: str) -> AsyncIterator[str]:
            async for item in self.raw(prompt):
                yield item

        async def chat(self, prompt: str) -> str:
            return "".join([item async for item in self.chat_stream(prompt)])

    return Stacked()


def sync_stack(server: Server, levels: int) -> Any:
    """The sync `async_stack`: `chat` reads `chat_stream`, which reads `raw`."""
    streams = ("chat_stream", "raw")[: levels - 1]

    @refresh_on_401(refresh=server.renew, calls=("chat",), streams=streams)
    class Stacked:
        def __init__(self) -> None:
            self.key = 0

        def raw(self, prompt: str) -> Iterator[str]:
            yield server.answer(self.key)

        def chat_stream(self, prompt: str) -> Iterator[str]:
            yield from self.raw(prompt)

        def chat(self, prompt: str) -> str:
            return "".join(self.chat_stream(prompt))

    return Stacked()


@pytest.mark.parametrize("levels", [2, 3])
def test_chat_on_its_own_streams_refreshes_once_for_a_lasting_401(
    backend: str, levels: int
) -> None:
    """An async chat reading its own intercepted streams: a lasting 401 costs 1 refresh."""
    server = Server(PERMANENT)
    provider = async_stack(server, levels)

    with pytest.raises(Unauthorized):
        run(backend, lambda: provider.chat("hi"))

    assert (1, 2) == (server.refreshes, server.requests)


@pytest.mark.parametrize("levels", [2, 3])
def test_chat_on_its_own_streams_recovers_from_an_expired_credential(
    backend: str, levels: int
) -> None:
    """An async chat reading its own intercepted streams recovers with one refresh."""
    server = Server(1)
    provider = async_stack(server, levels)

    answer = run(backend, lambda: provider.chat("hi"))

    assert ("answer", 1, 2) == (answer, server.refreshes, server.requests)


@pytest.mark.parametrize("levels", [2, 3])
def test_sync_chat_on_its_own_streams_refreshes_once_for_a_lasting_401(levels: int) -> None:
    """A sync chat reading its own intercepted streams: a lasting 401 costs 1 refresh."""
    server = Server(PERMANENT)
    provider = sync_stack(server, levels)

    with pytest.raises(Unauthorized):
        provider.chat("hi")

    assert (1, 2) == (server.refreshes, server.requests)


@pytest.mark.parametrize("levels", [2, 3])
def test_sync_chat_on_its_own_streams_recovers_from_an_expired_credential(levels: int) -> None:
    """A sync chat reading its own intercepted streams recovers with one refresh."""
    server = Server(1)
    provider = sync_stack(server, levels)

    assert ("answer", 1, 2) == (provider.chat("hi"), server.refreshes, server.requests)


# --------------------------------------------------------------------------------------------------
# what is not nested


async def test_a_task_started_inside_a_call_still_retries_its_own_401() -> None:
    """A task an intercepted call starts, calling the provider later, refreshes and retries."""
    server = Server(1)
    provider = async_levels(server, 1)
    later: list[str] = []

    async with trio.open_nursery() as nursery:

        class Starting(type(provider)):  # type: ignore[misc]
            async def chat(self, prompt: str) -> str:
                nursery.start_soon(self.later)
                return "started"

            async def later(self) -> None:
                await trio.lowlevel.checkpoint()
                later.append(await super().chat("later"))

        starting = refresh_on_401(refresh=server.renew)(Starting)()
        await starting.chat("hi")

    assert (["answer"], 1) == (later, server.refreshes)


def test_a_thread_started_inside_a_call_still_retries_its_own_401() -> None:
    """A thread an intercepted call runs, calling the provider, refreshes and retries itself."""
    server = Server(1)
    provider = sync_levels(server, 1)
    answers: list[str] = []

    class Threading(type(provider)):  # type: ignore[misc]
        def chat(self, prompt: str) -> str:
            parent = super().chat
            thread = threading.Thread(target=lambda: answers.append(parent(prompt)))
            thread.start()
            thread.join()
            return "joined"

    threading_provider = refresh_on_401(refresh=server.renew)(Threading)()

    assert ("joined", ["answer"], 1) == (
        threading_provider.chat("hi"),
        answers,
        server.refreshes,
    )


async def test_an_inner_call_after_the_outer_stream_committed_retries_itself() -> None:
    """Once an outer stream has forwarded output it cannot retry: an inner call retries itself."""
    server = Server(1)

    @refresh_on_401(refresh=server.renew, calls=("chat",), streams=("chat_stream",))
    class Committed:
        def __init__(self) -> None:
            self.key = 0

        async def chat(self, prompt: str) -> str:
            await checkpoint()
            return server.answer(self.key)

        async def chat_stream(self, prompt: str) -> AsyncIterator[str]:
            yield "first"
            yield await self.chat(prompt)

    items = [item async for item in Committed().chat_stream("hi")]

    assert (["first", "answer"], 1, 2) == (items, server.refreshes, server.requests)


async def test_an_inner_call_on_another_flight_retries_itself() -> None:
    """A call of another provider inside an outer call refreshes that provider and retries it."""
    inner_server, outer_server = Server(1), Server(0)
    inner = async_levels(inner_server, 1)

    @refresh_on_401(refresh=outer_server.renew)
    class Outer:
        async def chat(self, prompt: str) -> str:
            return await inner.chat(prompt)  # type: ignore[no-any-return]

    assert ("answer", 1, 0) == (
        await Outer().chat("hi"),
        inner_server.refreshes,
        outer_server.refreshes,
    )
