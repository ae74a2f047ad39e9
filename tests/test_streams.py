"""Streams: every shape keeps its shape, the gate decides, and every inner stream is closed."""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from conftest import (
    DONE,
    ERROR_401,
    Harness,
    Script,
    ScriptedStream,
    ServerError,
    Unauthorized,
    checkpoint,
    text,
)

from refresh_middleware import refresh_on_401
from refresh_middleware._streams import CLOSE_TIMEOUT

START = {"type": "message_start", "usage": {"input_tokens": 7, "output_tokens": 1}}
WAIT = 10.0  # seconds a blocked loop or thread may take before the test fails instead of hanging


class Stream(ScriptedStream):
    """An SDK-like stream object: an async iterator with an async `close`."""

    def __init__(self, script: Script, items: list[Any]) -> None:
        super().__init__(items)
        self.script = script

    async def close(self) -> None:
        self.script.closed_streams += 1


class Iterable:
    """An async iterable that is not itself an iterator, as some SDK streams are."""

    def __init__(self, script: Script, items: list[Any]) -> None:
        self.script = script
        self.items = items

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            for item in self.items:
                await checkpoint()
                yield item
        finally:
            self.script.closed_streams += 1


class Manager:
    """An async context manager yielding a stream, like anthropic's `messages.stream()`."""

    def __init__(self, provider: ShapedProvider) -> None:
        self.provider = provider

    async def __aenter__(self) -> Any:
        provider = self.provider
        batch = provider.script.next_batch()
        await checkpoint()
        if provider.key < 1 and provider.script.valid_from:
            raise Unauthorized
        if provider.iterable:
            return Iterable(provider.script, batch)
        return Stream(provider.script, batch)

    async def __aexit__(self, *exc_info: object) -> None:
        self.provider.exits += 1


class ShapedProvider:
    """A provider whose `chat_stream` has the shape under test."""

    def __init__(self, script: Script, key: int = 0, *, iterable: bool = False) -> None:
        self.script = script
        self.key = key
        self.iterable = iterable
        self.exits = 0

    def _check(self) -> None:
        if self.script.valid_from is not None and self.key < self.script.valid_from:
            raise Unauthorized

    async def awaitable(self, request: str) -> Stream:
        batch = self.script.next_batch()
        await checkpoint()
        self._check()
        return Stream(self.script, batch)

    def manager(self, request: str) -> Manager:
        return Manager(self)

    def checked_manager(self, request: str) -> Manager:
        self._check()  # a 401 at the call, as a method that sends at once raises it
        return Manager(self)

    async def call(self, request: str) -> str:
        await checkpoint()
        self._check()
        return "answer"

    def returns_async_iterator(self, request: str) -> Stream:
        return Stream(self.script, self.script.next_batch())

    def returns_iterator(self, request: str) -> Iterator[Any]:
        batch = self.script.next_batch()
        self._check()
        return iter(batch)

    def returns_other(self, request: str) -> dict[str, str]:
        return {"not": "a stream"}


def shaped(shape: str, script: Script, mode: str = "instance", **kwargs: Any) -> Any:
    """A ShapedProvider whose `shape` method is the intercepted stream."""

    def rebuild(stale: ShapedProvider) -> ShapedProvider | None:
        script.refreshes += 1
        if mode == "class":
            stale.key += 1
            return None
        return ShapedProvider(script, stale.key + 1, **kwargs)

    if mode == "class":
        cls = refresh_on_401(refresh=rebuild, calls=(), streams=shape)(
            type("Shaped", (ShapedProvider,), {})
        )
        return cls(script, **kwargs)
    return refresh_on_401(
        ShapedProvider(script, **kwargs), refresh=rebuild, calls=(), streams=shape
    )


async def collect(stream: Any) -> list[Any]:
    async with contextlib.aclosing(stream):
        return [item async for item in stream]


# --------------------------------------------------------------------------------------------------
# shapes


async def test_awaitable_shape_retries_a_401_at_the_await(mode: str) -> None:
    """A coroutine resolving to a stream stays awaitable; a 401 at the await is retried."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a"), DONE]])
    provider = shaped("awaitable", script, mode)

    assert inspect.iscoroutinefunction(provider.awaitable)
    items = await collect(await provider.awaitable("x"))

    assert ([text("a"), DONE], 1, 2) == (items, script.refreshes, script.stream_opens)


async def test_awaitable_shape_resolving_to_a_value_is_a_call() -> None:
    """A stream method whose await gives a plain value (create(stream=False)) returns it."""

    class Odd:
        async def chat_stream(self, request: str) -> int:
            return 42

    provider = refresh_on_401(Odd(), refresh=lambda stale: stale)

    assert 42 == await provider.chat_stream("x")


@pytest.mark.parametrize("iterable", [False, True])
async def test_manager_shape_retries_a_401_at_enter(mode: str, iterable: bool) -> None:
    """An async context manager stays one; a 401 at enter is retried, both managers exited."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a"), DONE]])
    provider = shaped("manager", script, mode, iterable=iterable)

    async with provider.manager("x") as stream:
        items = [item async for item in stream]

    assert ([text("a"), DONE], 1) == (items, script.refreshes)


async def test_manager_shape_retries_a_401_in_the_stream_and_exits_the_first_manager() -> None:
    """A 401 error item before output exits the first manager and enters a new one."""
    script = Script()
    script.streams.extend([[START, ERROR_401], [START, text("a"), DONE]])
    first = ShapedProvider(script)
    replacements: list[ShapedProvider] = []

    def rebuild(stale: ShapedProvider) -> ShapedProvider:
        replacements.append(ShapedProvider(script, 1))
        return replacements[-1]

    provider = refresh_on_401(first, refresh=rebuild, calls=(), streams="manager")
    async with provider.manager("x") as stream:
        items = [item async for item in stream]

    assert [{**START}, {**START, "usage": {"input_tokens": 14, "output_tokens": 2}}] == items[:2]
    assert (1, 1) == (first.exits, replacements[0].exits)


async def test_manager_shape_leaving_without_entering_is_harmless() -> None:
    """Leaving a manager that failed to enter does nothing more."""
    script = Script()
    provider = shaped("manager", script)
    manager = provider.manager("x")

    assert None is await manager.__aexit__(None, None, None)


async def test_returned_async_iterator_shape_is_gated(mode: str) -> None:
    """A plain method returning an async iterator gives a gated async iterator."""
    script = Script()
    script.streams.extend([[ERROR_401], [text("a"), DONE]])
    provider = shaped("returns_async_iterator", script, mode)

    items = await collect(provider.returns_async_iterator("x"))

    assert ([text("a"), DONE], 1, 2) == (items, script.refreshes, script.closed_streams)


def test_returned_iterator_shape_refreshes_a_401_at_the_call(mode: str) -> None:
    """A plain method raising 401 at the call is refreshed synchronously and called again."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a"), DONE]])
    provider = shaped("returns_iterator", script, mode)

    with contextlib.closing(provider.returns_iterator("x")) as stream:
        items = list(stream)

    assert ([text("a"), DONE], 1) == (items, script.refreshes)


def test_returned_iterator_shape_surfaces_a_failed_refresh_at_the_call() -> None:
    """A failed synchronous refresh at the call raises the original 401 with its note."""
    script = Script(valid_from=1)

    def broken(stale: object) -> None:
        raise OSError("down")

    provider = refresh_on_401(
        ShapedProvider(script), refresh=broken, calls=(), streams="returns_iterator"
    )

    with pytest.raises(Unauthorized) as caught:
        provider.returns_iterator("x")

    assert OSError is type(caught.value.__context__)


async def test_refused_stream_used_synchronously_cannot_run_an_async_refresh() -> None:
    """A sync stream refused at its call in a loop, then read with `for`, surfaces a note."""
    script = Script(valid_from=1)

    async def rebuild(stale: ShapedProvider) -> ShapedProvider:
        return ShapedProvider(script, 1)  # pragma: no cover - never reached

    provider = refresh_on_401(
        ShapedProvider(script), refresh=rebuild, calls="awaitable", streams="returns_iterator"
    )
    stream = provider.returns_iterator("x")

    with pytest.raises(Unauthorized) as caught:
        list(stream)

    assert "cannot await it" in str(caught.value.__context__)


def test_returned_shape_passes_other_errors_and_values_through() -> None:
    """A plain stream method's non-401 errors raise as they are; non-streams come back as is."""
    script = Script()
    provider = shaped("returns_other", script)
    broken = shaped("returns_iterator", Script(valid_from=1))
    broken.__wrapped__.script.valid_from = None
    broken.__wrapped__.script.streams.append([])

    assert {"not": "a stream"} == provider.returns_other("x")
    with pytest.raises(ServerError):
        refresh_on_401(
            type("E", (), {"chat_stream": lambda self: (_ for _ in ()).throw(ServerError())})(),
            refresh=lambda stale: stale,
        ).chat_stream()


async def test_returned_awaitable_shape_is_awaited_and_gated() -> None:
    """A plain method returning a coroutine gives an awaitable of a gated stream."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a")]])

    class Deferred(ShapedProvider):
        def chat_stream(self, request: str) -> Any:
            return self.awaitable(request)

    def rebuild(stale: Deferred) -> Deferred:
        return Deferred(script, stale.key + 1)

    provider = refresh_on_401(Deferred(script), refresh=rebuild)

    assert [text("a")] == await collect(await provider.chat_stream("x"))


# --------------------------------------------------------------------------------------------------
# a 401 at a plain stream method's call, inside an event loop: recovered at the first use


def run_guarded(scenario: Any) -> Any:
    """Run `scenario` on trio (autojump clock) in a thread: a frozen loop fails, never hangs."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0)))
        except BaseException as error:  # raised again in the test's thread
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert outcome, f"the event loop was still blocked after {WAIT:g} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_refused_stream_waits_for_another_tasks_async_refresh_without_freezing() -> None:
    """A 401 at the call while another task refreshes waits in the loop, which goes on."""
    script = Script(valid_from=1)
    script.streams.append([text("a"), DONE])

    async def scenario() -> list[Any]:
        refreshing, release = trio.Event(), trio.Event()

        async def renew(stale: ShapedProvider) -> ShapedProvider:
            script.refreshes += 1
            refreshing.set()
            await release.wait()
            return ShapedProvider(script, stale.key + 1)

        async def release_later() -> None:
            await trio.sleep(1)
            release.set()

        provider = refresh_on_401(
            ShapedProvider(script), refresh=renew, calls="call", streams="checked_manager"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(provider.call, "x")
            await refreshing.wait()
            stream = provider.checked_manager("x")  # the other task's refresh is running
            nursery.start_soon(release_later)
            async with stream as opened:
                return [item async for item in opened]

    assert ([text("a"), DONE], 1) == (run_guarded(scenario), script.refreshes)


@pytest.mark.parametrize("use", ["enter", "await", "iterate"])
async def test_refused_stream_runs_an_async_refresh_at_first_use(use: str) -> None:
    """A 401 at the call in a loop is refreshed by an async refresh when the stream is used."""
    script = Script(valid_from=1)
    script.streams.append([text("a"), DONE])

    async def renew(stale: ShapedProvider) -> ShapedProvider:
        await checkpoint()
        script.refreshes += 1
        return ShapedProvider(script, stale.key + 1)

    provider = refresh_on_401(
        ShapedProvider(script), refresh=renew, calls=(), streams="checked_manager"
    )
    stream = provider.checked_manager("x")
    if use == "enter":
        async with stream as opened:
            items = [item async for item in opened]
    elif use == "await":
        items = await collect(await stream)
    else:
        items = await collect(stream)

    assert ([text("a"), DONE], 1) == (items, script.refreshes)


async def test_refused_stream_runs_a_plain_refresh_without_blocking_the_loop() -> None:
    """A plain refresh for a 401 at the call in a loop runs while the loop's other tasks go on."""
    script = Script(valid_from=1)
    script.streams.append([text("a"), DONE])
    ticked, seen = threading.Event(), list[bool]()

    def renew(stale: ShapedProvider) -> ShapedProvider:
        seen.append(ticked.wait(WAIT))  # only another task of the loop sets it
        return ShapedProvider(script, stale.key + 1)

    async def tick() -> None:
        ticked.set()

    provider = refresh_on_401(
        ShapedProvider(script), refresh=renew, calls=(), streams="checked_manager"
    )
    async with trio.open_nursery() as nursery:
        stream = provider.checked_manager("x")
        nursery.start_soon(tick)
        async with stream as opened:
            items = [item async for item in opened]

    assert ([True], [text("a"), DONE]) == (seen, items)


async def test_refused_stream_raises_the_401_when_its_refresh_fails() -> None:
    """A failed refresh at a refused stream's first use raises the call's 401, with a note."""
    script = Script(valid_from=1)

    async def broken(stale: ShapedProvider) -> None:
        raise OSError("down")

    provider = refresh_on_401(
        ShapedProvider(script), refresh=broken, calls=(), streams="checked_manager"
    )
    stream = provider.checked_manager("x")

    with pytest.raises(Unauthorized) as caught:
        await stream.__aenter__()

    assert OSError is type(caught.value.__context__)


async def test_refused_stream_refreshes_once_when_used_again() -> None:
    """A refused stream used again after its refresh failed calls again, never refreshing."""
    script = Script(valid_from=1)

    async def broken(stale: ShapedProvider) -> None:
        script.refreshes += 1
        raise OSError("down")

    provider = refresh_on_401(
        ShapedProvider(script), refresh=broken, calls=(), streams="checked_manager"
    )
    stream = provider.checked_manager("x")
    with pytest.raises(Unauthorized):
        await stream.__aenter__()

    with pytest.raises(Unauthorized):
        await stream.__aenter__()

    assert 1 == script.refreshes


@pytest.mark.parametrize("use", ["for", "with"])
async def test_refused_stream_used_synchronously_refreshes_synchronously(use: str) -> None:
    """A sync stream refused at its call in a loop, read with `for` or `with`, is refreshed."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a"), DONE]])
    provider = shaped("returns_iterator", script)
    stream = provider.returns_iterator("x")
    if use == "for":
        with contextlib.closing(stream):
            items = list(stream)
    else:
        with stream as opened:
            items = list(opened)

    assert ([text("a"), DONE], 1) == (items, script.refreshes)


async def test_refused_stream_used_synchronously_twice_reads_one_attempt() -> None:
    """Iterating a refused sync stream twice reads the one attempt opened the first time."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a"), DONE]])
    provider = shaped("returns_iterator", script)
    stream = provider.returns_iterator("x")

    assert iter(stream) is iter(stream)


async def test_refused_stream_used_synchronously_again_does_not_refresh_again() -> None:
    """A refused sync stream read again after its refresh failed calls again, not refreshing."""
    script = Script(valid_from=1)
    script.streams.extend([[], []])

    def broken(stale: ShapedProvider) -> None:
        script.refreshes += 1
        raise OSError("down")

    provider = refresh_on_401(
        ShapedProvider(script), refresh=broken, calls=(), streams="returns_iterator"
    )
    stream = provider.returns_iterator("x")
    with pytest.raises(Unauthorized):
        list(stream)

    with pytest.raises(Unauthorized):
        list(stream)

    assert 1 == script.refreshes


async def test_sync_client_stream_method_refused_in_a_loop_returns_what_it_returns() -> None:
    """A sync client's method refused at its call in a loop is refreshed at once, as it is."""

    class Completions:
        def __init__(self, key: int) -> None:
            self.key = key

        def create(self, *, stream: bool) -> dict[str, bool]:
            if self.key < 1:
                raise Unauthorized
            return {"stream": stream}

    class SyncClient:
        def __init__(self, key: int = 0) -> None:
            self.completions = Completions(key)

    def rebuild(stale: SyncClient) -> SyncClient:
        return SyncClient(stale.completions.key + 1)

    client = refresh_on_401(SyncClient(), refresh=rebuild, calls=(), streams="completions.create")

    assert {"stream": False} == client.completions.create(stream=False)


async def test_refused_stream_closed_unused_refreshes_nothing() -> None:
    """Closing a refused stream that was never used refreshes and opens nothing."""
    script = Script(valid_from=1)
    script.streams.append([])
    provider = shaped("returns_iterator", script)

    provider.returns_iterator("x").close()

    assert (0, 1) == (script.refreshes, script.stream_opens)


# --------------------------------------------------------------------------------------------------
# the gate, driven


def test_a_401_exception_before_output_is_retried(harness: Harness) -> None:
    """An unauthorized exception before any output closes the attempt, refreshes, retries."""
    harness.script.streams.extend([[START, Unauthorized()], [text("a"), DONE]])

    items = harness.run(harness.drain)

    assert [START, text("a"), DONE] == items
    assert (1, 2, 2) == (
        harness.script.refreshes,
        harness.script.stream_opens,
        harness.script.closed_streams,
    )


def test_a_401_exception_after_output_is_raised(harness: Harness) -> None:
    """An unauthorized exception after output is raised: no retry, no duplicated output."""
    harness.script.streams.append([text("a"), Unauthorized()])
    seen: list[Any] = []

    async def consume() -> None:
        stream = harness.provider.chat_stream("x")
        if hasattr(stream, "__aiter__"):
            async with contextlib.aclosing(stream):
                async for item in stream:
                    seen.append(item)  # noqa: PERF401 - keep what arrived before the raise
        else:
            with contextlib.closing(stream):
                for item in stream:
                    seen.append(item)  # noqa: PERF402 - keep what arrived before the raise

    with pytest.raises(Unauthorized):
        harness.run(consume)

    assert ([text("a")], 0, 1) == (seen, harness.script.refreshes, harness.script.closed_streams)


def test_a_failed_refresh_raises_the_original_stream_exception(harness: Harness) -> None:
    """A failed refresh after a 401 exception raises that exception, with the note."""
    original = Unauthorized()
    harness.script.streams.append([original])
    harness.script.refresh_error = OSError("down")

    with pytest.raises(Unauthorized) as caught:
        harness.run(harness.drain)

    assert (original, 1) == (caught.value, len(original.__notes__))


def test_a_failed_refresh_forwards_the_original_error_item(harness: Harness) -> None:
    """A failed refresh after a 401 error item forwards that item and stops."""
    harness.script.streams.append([START, ERROR_401, text("never read")])
    harness.script.refresh_error = OSError("down")

    assert [START, ERROR_401] == harness.run(harness.drain)
    assert 1 == harness.script.closed_streams


async def test_a_failed_refresh_at_open_raises_the_original(mode: str) -> None:
    """A 401 when opening the stream whose refresh fails raises the original 401."""
    script = Script(valid_from=1)
    script.refresh_error = OSError("down")
    provider = shaped("manager", script, mode)

    def broken(stale: object) -> None:
        raise OSError("down")

    provider = refresh_on_401(ShapedProvider(script), refresh=broken, calls=(), streams="manager")

    with pytest.raises(Unauthorized) as caught:
        await provider.manager("x").__aenter__()

    assert OSError is type(caught.value.__context__)


def test_other_exceptions_in_a_stream_are_raised(harness: Harness) -> None:
    """A stream error that is not a 401 is raised as it is, before or after output."""
    harness.script.streams.append([START, ServerError()])

    with pytest.raises(ServerError):
        harness.run(harness.drain)
    assert (0, 1) == (harness.script.refreshes, harness.script.closed_streams)


def test_done_stops_forwarding_and_closes(harness: Harness) -> None:
    """After DONE nothing more is forwarded (one read lets the inner stream end), and it closes."""
    harness.script.streams.append([text("a"), DONE, ServerError("read past the end")])

    assert [text("a"), DONE] == harness.run(harness.drain)
    assert 1 == harness.script.closed_streams


def test_usage_of_the_abandoned_attempt_is_carried(harness: Harness) -> None:
    """Usage reported before a retried 401 is added into the usage of the next attempt."""
    final = {"type": "message_delta", "usage": {"output_tokens": 5}}
    harness.script.streams.extend([[START, ERROR_401], [START, text("a"), final, DONE]])

    items = harness.run(harness.drain)

    assert [
        START,
        {"type": "message_start", "usage": {"input_tokens": 14, "output_tokens": 2}},
        text("a"),
        {"type": "message_delta", "usage": {"output_tokens": 6}},
        DONE,
    ] == items


def test_breaking_early_closes_the_inner_stream(harness: Harness) -> None:
    """A consumer that stops after the first item leaves no inner stream open."""
    harness.script.streams.append([text("a"), text("b"), DONE])

    async def first_only() -> Any:
        stream = harness.provider.chat_stream("x")
        if hasattr(stream, "__aiter__"):
            async with contextlib.aclosing(stream):
                return await stream.__anext__()
        with contextlib.closing(stream):
            return next(stream)

    assert (text("a"), 1) == (harness.run(first_only), harness.script.closed_streams)


async def test_cancellation_closes_the_inner_stream(autojump_clock: trio.testing.MockClock) -> None:
    """A consumer cancelled between items still gets the inner stream's cleanup run to its end."""
    closed: list[bool] = []

    class Slow:
        async def chat_stream(self, request: str) -> AsyncIterator[Any]:
            try:
                yield text("a")
                yield text("b")
            finally:
                await trio.sleep(1)  # cleanup that awaits, as closing a connection does
                closed.append(True)

    provider = refresh_on_401(Slow(), refresh=lambda stale: stale)
    with trio.move_on_after(5):
        async with contextlib.aclosing(provider.chat_stream("x")) as stream:
            async for _ in stream:
                await trio.sleep_forever()

    assert [True] == closed


async def test_closing_is_bounded_in_time(autojump_clock: trio.testing.MockClock) -> None:
    """An inner stream whose close hangs is given CLOSE_TIMEOUT seconds, then left."""

    class Hanging:
        async def chat_stream(self, request: str) -> AsyncIterator[Any]:
            try:
                yield text("a")
            finally:
                await trio.sleep_forever()

    provider = refresh_on_401(Hanging(), refresh=lambda stale: stale)
    start = trio.current_time()
    async with contextlib.aclosing(provider.chat_stream("x")) as stream:
        await stream.__anext__()

    assert CLOSE_TIMEOUT == trio.current_time() - start


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_failing_close_is_logged_not_raised(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An inner stream whose close raises is logged at debug level; the consumer sees nothing."""
    harness = Harness("instance", "async", backend)

    class Broken(Stream):
        async def close(self) -> None:
            raise ServerError("close failed")

    provider = refresh_on_401(
        type("P", (), {"chat_stream": lambda self, r: Broken(Script(), [text("a")])})(),
        refresh=lambda stale: stale,
    )

    async def run() -> list[Any]:
        return await collect(provider.chat_stream("x"))

    with caplog.at_level(logging.DEBUG, logger="refresh_middleware"):
        assert [text("a")] == harness.run(run)
    assert "closing an abandoned stream failed" in caplog.text


def test_sync_stream_close_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A sync inner stream whose close raises is logged too."""

    class Broken:
        def __iter__(self) -> Broken:
            return self

        def __next__(self) -> Any:
            raise StopIteration

        def close(self) -> None:
            raise ServerError("close failed")

    provider = refresh_on_401(
        type("P", (), {"chat_stream": lambda self: Broken()})(), refresh=lambda stale: stale
    )
    with caplog.at_level(logging.DEBUG, logger="refresh_middleware"):
        assert [] == list(provider.chat_stream())
    assert "closing an abandoned stream failed" in caplog.text


class Bare:
    """An async iterator with no way to close it."""

    def __init__(self, items: list[Any]) -> None:
        self.items = iter(items)

    def __aiter__(self) -> Bare:
        return self

    async def __anext__(self) -> Any:
        item = next(self.items, None)
        if item is None:
            raise StopAsyncIteration
        return item


class SyncClose(Bare):
    """An async iterator whose close is a plain method."""

    closed = 0

    def close(self) -> None:
        SyncClose.closed += 1


@pytest.mark.parametrize("stream_type", [Bare, SyncClose])
async def test_streams_without_async_close_are_handled(stream_type: type[Bare]) -> None:
    """Inner streams without aclose, or with a sync close, are closed as they allow."""
    batches = [[ERROR_401], [text("a")]]
    provider = refresh_on_401(
        type("P", (), {"chat_stream": lambda self: stream_type(batches.pop(0))})(),
        refresh=lambda stale: stale,
    )

    assert [text("a")] == await collect(provider.chat_stream())


async def test_awaitable_resolving_to_an_async_iterable_is_iterated() -> None:
    """An awaitable resolving to an async iterable (not an iterator) is iterated and closed."""
    script = Script()

    class Provider:
        async def chat_stream(self) -> Iterable:
            return Iterable(script, [text("a"), DONE])

    provider = refresh_on_401(Provider(), refresh=lambda stale: stale)

    assert [text("a"), DONE] == await collect(await provider.chat_stream())
    assert 1 == script.closed_streams


def test_a_401_when_reopening_a_sync_stream_is_final() -> None:
    """After the one retry, a 401 raised by the call that reopens a sync stream is raised."""
    script = Script()
    script.streams.append([ERROR_401])
    answers = [lambda: iter([ERROR_401]), lambda: (_ for _ in ()).throw(Unauthorized())]

    class Provider:
        def chat_stream(self) -> Any:
            return answers.pop(0)()

    provider = refresh_on_401(Provider(), refresh=lambda stale: stale)

    with pytest.raises(Unauthorized):
        list(provider.chat_stream())


async def test_an_empty_stream_object_ends_the_gated_stream() -> None:
    """An inner stream object that ends before any item ends the gated stream, and is closed."""
    provider = refresh_on_401(
        type("P", (), {"chat_stream": lambda self: SyncClose([])})(), refresh=lambda stale: stale
    )
    closed = SyncClose.closed

    assert [] == await collect(provider.chat_stream())
    assert closed + 1 == SyncClose.closed


async def test_stream_callables_set_on_the_instance_are_intercepted() -> None:
    """A stream method that is an instance attribute is gated too."""
    batches = [[ERROR_401], [text("a"), DONE]]

    class Holder:
        def __init__(self) -> None:
            self.chat_stream = lambda: Bare(batches.pop(0))

    provider = refresh_on_401(Holder(), refresh=lambda stale: Holder())

    assert [text("a"), DONE] == await collect(provider.chat_stream())


async def test_a_view_of_an_sdk_stream_reaches_its_attributes_and_closes_it(mode: str) -> None:
    """An awaitable's stream comes back as a view: the SDK's attributes, gated items, one close."""
    script = Script(valid_from=1)
    script.streams.extend([[], [text("a"), DONE]])
    provider = shaped("awaitable", script, mode)

    stream = await provider.awaitable("x")
    items = [item async for item in stream]
    closed_before = script.closed_streams
    await stream.close()

    assert (Stream, [text("a"), DONE]) == (type(stream.__wrapped__), items)
    assert isinstance(stream, Stream)
    assert (1, 1) == (closed_before, script.closed_streams)
