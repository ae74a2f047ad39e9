"""Streams close what they open: read or not, left, closed, broken out of, or failed in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Self

import pytest
import trio
from conftest import DONE, ScriptedStream, Unauthorized, checkpoint, text

from refresh_middleware import refresh_on_401

START = {"type": "message_start", "usage": {"input_tokens": 7, "output_tokens": 0}}
RESTART = {"type": "message_start", "usage": {"input_tokens": 5, "output_tokens": 0}}


class Log:
    """What the provider opened, closed and exited, in order."""

    def __init__(self, *batches: list[Any]) -> None:
        self.batches = list(batches)
        self.events: list[str] = []

    def next_batch(self) -> list[Any]:
        self.events.append("open")
        return self.batches.pop(0)


class SdkStream(ScriptedStream):
    """An SDK stream object: async iterator with an async close, usable in `async with`."""

    def __init__(self, log: Log) -> None:
        super().__init__(log.next_batch())
        self.log = log
        self.response = "the HTTP response"

    async def close(self) -> None:
        self.log.events.append("close")

    async def __aenter__(self) -> Self:
        return self  # pragma: no cover - the view must not hand __aenter__ through

    async def __aexit__(self, *exc_info: object) -> None:
        self.log.events.append("close by the SDK's own exit")  # pragma: no cover - ditto


class SdkManager:
    """A stream manager (anthropic's `messages.stream()` shape): entering opens the stream."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def __aenter__(self) -> SdkStream:
        await checkpoint()
        return SdkStream(self.log)

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.log.events.append(f"exit {exc_type.__name__ if exc_type else None}")


class SyncSdkStream:
    """A sync SDK stream object (openai's `Stream`): an iterator with a close."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.items = iter(log.next_batch())

    def __iter__(self) -> SyncSdkStream:
        return self

    def __next__(self) -> Any:
        return next(self.items)

    def close(self) -> None:
        self.log.events.append("close")


class Provider:
    """One stream method of each shape, over one log."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def managed(self, request: str) -> SdkManager:
        return SdkManager(self.log)

    async def awaited(self, request: str) -> SdkStream:
        await checkpoint()
        return SdkStream(self.log)

    def returned(self, request: str) -> SdkStream:
        return SdkStream(self.log)

    def returned_sync(self, request: str) -> SyncSdkStream:
        return SyncSdkStream(self.log)


def wrapped(log: Log) -> Any:
    return refresh_on_401(
        Provider(log),
        refresh=lambda stale: Provider(stale.log),
        calls=(),
        streams=("managed", "awaited", "returned", "returned_sync"),
    )


async def test_a_manager_left_without_reading_exits_the_inner_manager() -> None:
    """Entering and leaving a stream manager without reading exits the SDK's manager."""
    log = Log([text("a"), DONE])

    async with wrapped(log).managed("x"):
        pass

    assert ["open", "exit None"] == log.events


async def test_the_inner_manager_exit_receives_the_consumers_exception() -> None:
    """When the consumer's block raises, the SDK manager's __aexit__ gets that exception."""
    log = Log([text("a"), DONE])

    async def consume() -> None:
        async with wrapped(log).managed("x") as stream:
            await stream.__anext__()
            raise KeyError("the consumer's own error")

    with pytest.raises(KeyError):
        await consume()

    assert ["open", "exit KeyError"] == log.events


@pytest.mark.parametrize("leave", ["aclose", "close", "async with"])
async def test_an_awaited_stream_left_unread_is_closed(leave: str) -> None:
    """An awaited stream's view closed, or left with `async with`, before reading closes it."""
    log = Log([text("a"), DONE])
    stream = await wrapped(log).awaited("x")

    if leave == "async with":
        async with stream:
            pass
    else:
        await getattr(stream, leave)()

    assert ["open", "close"] == log.events


async def test_a_returned_async_iterator_closed_unread_is_closed() -> None:
    """A plain method's returned async iterator, closed before reading, is closed."""
    log = Log([text("a"), DONE])

    await wrapped(log).returned("x").aclose()

    assert ["open", "close"] == log.events


def test_a_returned_iterator_closed_unread_is_closed() -> None:
    """A plain method's returned sync iterator, closed before reading, is closed."""
    log = Log([text("a"), DONE])

    with wrapped(log).returned_sync("x"):
        pass

    assert ["open", "close"] == log.events


async def test_async_with_an_awaited_stream_goes_through_the_gate() -> None:
    """`async with await provider.stream()` retries a 401 at the first chunk and keeps the
    abandoned attempt's usage, as `async for` does: the view never hands __aenter__ through."""
    log = Log([START, Unauthorized()], [RESTART, text("a"), DONE])

    async with await wrapped(log).awaited("x") as stream:
        items = [item async for item in stream]

    carried = {"type": "message_start", "usage": {"input_tokens": 12, "output_tokens": 0}}
    assert [START, carried, text("a"), DONE] == items
    assert ["open", "close", "open", "close"] == log.events


async def test_sdk_helpers_on_a_view_reach_the_current_attempt() -> None:
    """A view is the SDK stream object for every other purpose (here its `response`)."""
    log = Log([text("a"), DONE])

    stream = await wrapped(log).awaited("x")

    assert ("the HTTP response", True) == (stream.response, isinstance(stream, SdkStream))
    await stream.aclose()


async def test_under_asyncio_a_close_is_shielded_from_a_cancellation() -> None:
    """A cancellation landing while an abandoned attempt closes waits for the close to end,
    then is delivered, as under trio."""
    log = Log([START, Unauthorized()], [text("a"), DONE])
    closing = asyncio.Event  # made in the loop that waits on it

    class SlowClose(SdkStream):
        async def close(self) -> None:
            started.set()
            for _ in range(20):
                await asyncio.sleep(0)
            log.events.append("close")

    class Slow(Provider):
        async def awaited(self, request: str) -> SlowClose:
            return SlowClose(self.log)

    async def main() -> list[str]:
        stream = await refresh_on_401(
            Slow(log), refresh=lambda stale: Slow(stale.log), calls=(), streams="awaited"
        ).awaited("x")

        async def read() -> None:
            async with contextlib.aclosing(stream):
                async for _ in stream:
                    pass

        task = asyncio.ensure_future(read())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return log.events

    started = closing()
    assert ["open", "close"] == await trio.to_thread.run_sync(lambda: asyncio.run(main()))


async def test_a_gated_generator_left_to_the_collector_closes_its_attempt() -> None:
    """Breaking out of `async for` and dropping the stream closes the attempt in finally."""

    class Generating:
        def __init__(self, log: Log) -> None:
            self.log = log

        async def chat_stream(self, request: str) -> AsyncIterator[Any]:
            try:
                for item in self.log.next_batch():
                    yield item
            finally:
                await checkpoint()
                self.log.events.append("close")

    log = Log([text("a"), text("b"), DONE])
    provider = refresh_on_401(Generating(log), refresh=lambda stale: stale)

    stream = provider.chat_stream("x")
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break

    assert ["open", "close"] == log.events


# --------------------------------------------------------------------------------------------------
# streams that wait for their first await, enter or read; a retry that gives no stream


class Later:
    """Plain stream methods whose credentials are about to expire: the call must wait for the
    refresh ahead, so what the caller gets opens at its first await, enter or read."""

    def __init__(self, log: Log, expires_at: float) -> None:
        self.log = log
        self.expires_at = expires_at

    def value(self, request: str) -> Any:
        return self.answer(request)

    async def answer(self, request: str) -> str:
        self.log.events.append("sent")
        return f"answer to {request}"

    def returned(self, request: str) -> SdkStream:
        return SdkStream(self.log)


def later(log: Log) -> Any:
    async def renew(stale: Later) -> Later:
        return Later(stale.log, trio.current_time() + 600)

    return refresh_on_401(
        Later(log, trio.current_time() + 10),
        refresh=renew,
        calls=(),
        streams=("value", "returned"),
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
    )


async def test_a_waiting_stream_awaited_for_a_value_gives_the_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Awaited, a stream method that waited for its refresh and resolves to a value gives it."""
    log = Log()

    assert ("answer to x", ["sent"]) == (await later(log).value("x"), log.events)


async def test_a_waiting_stream_read_for_items_that_gives_a_value_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Read with `async for`, a method that gives a value is a clear TypeError."""
    with pytest.raises(TypeError, match="value returned str, not a stream"):
        async for _ in later(Log()).value("x"):
            pass  # pragma: no cover - nothing to read


async def test_a_waiting_stream_closed_before_it_opened_opens_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Closing what was never read reads nothing and closes what the method returned."""
    log = Log([text("a"), DONE])

    await later(log).returned("x").aclose()

    assert ["open", "close"] == log.events


async def test_a_waiting_stream_read_directly_opens_after_the_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Read with `async for`, the stream is refreshed on the first read, started again on the
    fresh provider (the one started on the stale one is closed unread), and closed."""
    log = Log([Unauthorized()], [text("a"), DONE])
    stream = later(log).returned("x")

    async with contextlib.aclosing(stream):
        items = [item async for item in stream]

    assert ([text("a"), DONE], ["open", "close", "open", "close"]) == (items, log.events)


async def test_a_manager_awaited_instead_of_entered_gives_its_stream() -> None:
    """A stream manager awaited (not entered) opens and gives the gated stream all the same."""
    log = Log([text("a"), DONE])

    stream = await wrapped(log).managed("x")
    items = [item async for item in stream]
    await stream.aclose()

    assert ([text("a"), DONE], ["open", "exit None"]) == (items, log.events)


class Turning:
    """A stream method whose retry gives a plain value instead of a stream."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def awaited(self, request: str) -> Any:
        if self.log.events:
            return {"not": "a stream"}
        return SdkStream(self.log)

    def returned_sync(self, request: str) -> Any:
        if self.log.events:
            return {"not": "a stream"}
        return SyncSdkStream(self.log)


async def test_a_retry_that_gives_no_stream_is_a_clear_error() -> None:
    """When the retry of a stream gives a value, reading says so."""
    log = Log([Unauthorized()])
    provider = refresh_on_401(Turning(log), refresh=lambda s: s, calls=(), streams="awaited")

    stream = await provider.awaited("x")
    with pytest.raises(TypeError, match="awaited returned dict where a stream was being read"):
        async for _ in stream:
            pass  # pragma: no cover - nothing to read


def test_a_sync_retry_that_gives_no_stream_is_a_clear_error() -> None:
    """The same for a sync stream."""

    class RaisingSync(SyncSdkStream):
        def __next__(self) -> Any:
            raise Unauthorized

    class TurningSync(Turning):
        def returned_sync(self, request: str) -> Any:
            if self.log.events:
                return {"not": "a stream"}
            return RaisingSync(self.log)

    log = Log([])
    provider = refresh_on_401(
        TurningSync(log), refresh=lambda s: s, calls=(), streams="returned_sync"
    )

    with pytest.raises(TypeError, match="returned_sync returned dict"):
        list(provider.returned_sync("x"))


def test_a_sync_stream_view_follows_the_retry() -> None:
    """A sync SDK stream that says 401 before output is retried; the view shows the new one."""

    class FirstRefused(SyncSdkStream):
        def __next__(self) -> Any:
            if self.log.events.count("open") == 1:
                raise Unauthorized
            return super().__next__()

    class Refusing(Provider):
        def returned_sync(self, request: str) -> FirstRefused:
            return FirstRefused(self.log)

    log = Log([], [text("a"), DONE])
    provider = refresh_on_401(Refusing(log), refresh=lambda s: s, calls=(), streams="returned_sync")

    with provider.returned_sync("x") as stream:
        items = list(stream)
        current = stream.__wrapped__

    assert ([text("a"), DONE], 2) == (items, log.events.count("open"))
    assert current.items is not None


async def test_a_waiting_stream_whose_advisory_refresh_failed_reads_what_was_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In the advisory window, a failed refresh ahead leaves the stream already started to be
    read on the still-valid credentials: started once, closed once."""
    log = Log([text("a"), DONE])

    async def fail(stale: Later) -> Later:
        raise RuntimeError("auth server down")

    stream = refresh_on_401(
        Later(log, trio.current_time() + 100),
        refresh=fail,
        calls=(),
        streams=("returned",),
        expires_at=lambda p: p.expires_at,
        clock=trio.current_time,
    ).returned("x")
    async with contextlib.aclosing(stream):
        items = [item async for item in stream]

    assert ([text("a"), DONE], ["open", "close"]) == (items, log.events)
