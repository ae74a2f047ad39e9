"""The stream shapes, each driven through a `StreamGate`.

One async generator (`gated_async`) and one generator (`gated_sync`) do the gating for every
shape; the shapes differ only in what the user gets back and in when the first attempt is
opened:

- an async generator method: the user gets `gated_async(...)`, which opens on first `__anext__`;
- a coroutine method resolving to a stream: the user awaits `open_then_gate(...)`, which opens
  the first attempt (a 401 at the `await` is retried there);
- a plain method returning an async context manager (as `anthropic`'s `messages.stream()`): the
  user enters a `GatedStreamManager`, whose `__aenter__` opens the first attempt;
- a plain method returning an (async) iterator, and a sync generator method.

Where the method hands back a stream *object* (the awaitable, manager and returned-iterator
shapes), the user gets a `GatedStreamView` of it: iteration goes through the gate, every other
attribute reaches the SDK object of the current attempt.

Abandoned inner streams are closed before a retry and when the consumer stops, in `finally`,
under a shielded scope with a time bound: trio finalizes forgotten async generators inside a
cancelled scope, where an unshielded close would be cut short without a word.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import sniffio
import wrapt

from ._ahead import ready_async, ready_sync
from ._calls import recover_async, recover_sync
from ._classify import GateAction, ItemKind, StreamGate
from ._events import logger
from ._flight import attach_refresh_failure

if TYPE_CHECKING:
    from types import TracebackType

    from ._flight import Flight, RefreshOutcome
    from ._spec import MethodSpec

__all__ = ["CLOSE_TIMEOUT", "StreamCall", "gated_async", "gated_sync", "open_then_gate"]

CLOSE_TIMEOUT: Final = 5.0
"""Seconds an abandoned inner stream gets to close before it is left to itself."""

# Module constants: an enum member read through its class costs a lookup per streamed item.
_FORWARD: Final = GateAction.FORWARD
_RETRY: Final = GateAction.RETRY
_DONE: Final = ItemKind.DONE

AsyncCloser = Callable[[], Awaitable[object]] | None
SyncCloser = Callable[[], object] | None
# An open attempt: the generation and provider it runs on, its iterator, and how to close it.
AsyncAttempt = tuple[int, Any, Any, AsyncCloser]
SyncAttempt = tuple[int, Any, Any, SyncCloser]


class StreamCall:
    """One call of a stream method: its arguments, its gate, and where it refreshes."""

    __slots__ = ("args", "flight", "gate", "holder", "kwargs", "spec", "view")

    def __init__(
        self,
        spec: MethodSpec,
        flight: Flight,
        holder: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.spec = spec
        self.flight = flight
        self.holder = holder
        self.args = args
        self.kwargs = kwargs
        self.view: GatedStreamView | None = None
        options = spec.options
        self.gate = StreamGate(
            is_unauthorized=options.is_unauthorized, kind_of=options.kind_of, usage=options.usage
        )

    def finish(self, closer: AsyncCloser) -> AsyncCloser:
        """How to close a stream that ended normally: now, or when its view is closed.

        The SDK helpers of a view (`get_final_message()`) may still read the finished attempt,
        so its owner closes it, by closing the view or leaving the stream manager.
        """
        if self.view is None:
            return closer
        self.view._self_pending = closer  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
        return None

    def start(self, provider: object) -> Any:
        """Call the original method on `provider`: a new attempt, not yet opened."""
        return self.spec.invoke(provider, self.args, self.kwargs)

    async def refresh_async(self, generation: int, provider: object) -> RefreshOutcome:
        """Refresh the credentials of `generation`, shared with every concurrent caller."""
        return await recover_async(
            self.spec, self.flight, self.holder, generation, provider, self.args, self.kwargs
        )

    def refresh_sync(self, generation: int, provider: object) -> RefreshOutcome:
        """The thread form of `refresh_async`."""
        return recover_sync(
            self.spec, self.flight, self.holder, generation, provider, self.args, self.kwargs
        )


# --------------------------------------------------------------------------------------------------
# closing


def _async_closer(stream: object) -> AsyncCloser:
    close = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if close is None:
        return None

    async def closer() -> None:
        result = close()
        if inspect.isawaitable(result):
            await result

    return closer


async def close_async(closer: AsyncCloser) -> None:
    """Close an abandoned stream: shielded from cancellation, bounded in time, never raising."""
    if closer is None:
        return
    try:
        if sniffio.current_async_library() == "trio":
            import trio  # noqa: PLC0415 - asyncio users need not install trio

            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await closer()
        else:
            import asyncio  # noqa: PLC0415

            async with asyncio.timeout(CLOSE_TIMEOUT):
                await closer()
    except Exception as error:  # noqa: BLE001 - the stream is abandoned; its close is best effort
        logger.debug("refresh_middleware: closing an abandoned stream failed: %r", type(error))


def close_sync(closer: SyncCloser) -> None:
    """Close an abandoned sync stream, never raising."""
    if closer is None:
        return
    try:
        closer()
    except Exception as error:  # noqa: BLE001 - as in close_async
        logger.debug("refresh_middleware: closing an abandoned stream failed: %r", type(error))


# --------------------------------------------------------------------------------------------------
# opening an attempt


async def _adopt_async(started: Any) -> tuple[Any, AsyncCloser]:
    """The async iterator of a started attempt, and how to close it.

    Accepts what stream methods return: an async iterator, an awaitable resolving to one, or an
    async context manager yielding one (entered here; closing exits it).
    """
    if not hasattr(started, "__anext__"):
        if inspect.isawaitable(started):
            return await _adopt_async(await started)
        if hasattr(started, "__aenter__"):
            stream = await started.__aenter__()
            iterator = stream if hasattr(stream, "__anext__") else stream.__aiter__()

            async def leave() -> None:
                try:
                    if iterator is not stream:
                        await close_async(_async_closer(iterator))
                finally:
                    await started.__aexit__(None, None, None)

            return iterator, leave
        if hasattr(started, "__aiter__"):
            started = started.__aiter__()
        else:
            msg = f"a stream method returned {type(started).__name__}, not an async stream"
            raise TypeError(msg)
    return started, _async_closer(started)


async def open_async(call: StreamCall, started: object = None) -> AsyncAttempt:
    """Open an attempt; a 401 at call, await or enter is refreshed and retried as the gate allows.

    `started` is a first attempt already started on the current provider.
    """
    while True:
        if started is None:
            generation, provider = await ready_async(call.spec, call.flight, call.holder)
        else:
            generation, provider = call.flight.current(call.holder)
        try:
            iterator, closer = await _adopt_async(
                call.start(provider) if started is None else started
            )
        except Exception as error:
            started = None
            if call.gate.on_exception(error) is not _RETRY:
                raise
            _, refresh_error = await call.refresh_async(generation, provider)
            if refresh_error is not None:
                attach_refresh_failure(error, refresh_error)
                raise
        else:
            return generation, provider, iterator, closer


def _adopt_sync(started: Any) -> tuple[Any, SyncCloser]:
    iterator = started if hasattr(started, "__next__") else iter(started)
    return iterator, getattr(iterator, "close", None)


def open_sync(call: StreamCall) -> SyncAttempt:
    """Open a sync attempt on the current provider.

    Unlike `open_async` this never retries: a sync stream's first attempt is opened by the call
    itself (`gate_returned`) or cannot fail on opening (a generator function), so reaching here
    means the one retry is under way and its errors are final.
    """
    generation, provider = ready_sync(call.spec, call.flight, call.holder)
    return (generation, provider, *_adopt_sync(call.start(provider)))


# --------------------------------------------------------------------------------------------------
# gating


async def gated_async(  # noqa: C901, PLR0912, PLR0915 - one flat loop: the per-item path
    call: StreamCall, opened: AsyncAttempt | None = None
) -> AsyncGenerator[Any, None]:
    """Forward the items of the current attempt through the gate, retrying as it says."""
    gate = call.gate
    on_item = gate.on_item
    generation, provider, iterator, closer = opened or (0, None, None, None)
    next_item = None if iterator is None else iterator.__anext__
    try:
        while True:
            if next_item is None:
                generation, provider, iterator, closer = await open_async(call)
                next_item = iterator.__anext__
                if call.view is not None:
                    call.view.__wrapped__ = iterator  # the SDK helpers follow the new attempt
            try:
                item = await next_item()
            except StopAsyncIteration:
                # An exhausted async generator is finalized already.
                closer = None if inspect.isasyncgen(iterator) else call.finish(closer)
                return
            except Exception as error:
                if gate.on_exception(error) is not _RETRY:
                    raise
                await close_async(closer)
                next_item = closer = None
                _, refresh_error = await call.refresh_async(generation, provider)
                if refresh_error is not None:
                    attach_refresh_failure(error, refresh_error)
                    raise
                continue
            action, forwarded = on_item(item)
            if action is _FORWARD:
                yield forwarded
                if not gate.passthrough:
                    continue
                # Committed with nothing to add: forward as they come; only DONE matters now.
                kind_of = gate.kind_of
                while True:
                    try:
                        item = await next_item()
                    except StopAsyncIteration:
                        closer = None if inspect.isasyncgen(iterator) else call.finish(closer)
                        return
                    yield item
                    if kind_of(item) is _DONE:
                        closer = call.finish(closer)
                        return
            if action is _RETRY:
                await close_async(closer)
                next_item = closer = None
                _, refresh_error = await call.refresh_async(generation, provider)
                if refresh_error is None:
                    continue
            yield forwarded
            closer = call.finish(closer)
            return
    finally:
        await close_async(closer)


def gated_sync(  # noqa: C901, PLR0912 - as gated_async
    call: StreamCall, opened: SyncAttempt | None = None
) -> Generator[Any]:
    """The sync form of `gated_async`."""
    gate = call.gate
    on_item = gate.on_item
    generation, provider, iterator, closer = opened or (0, None, None, None)
    next_item = None if iterator is None else iterator.__next__
    try:
        while True:
            if next_item is None:
                generation, provider, iterator, closer = open_sync(call)
                next_item = iterator.__next__
            try:
                item = next_item()
            except StopIteration:
                return
            except Exception as error:
                if gate.on_exception(error) is not _RETRY:
                    raise
                close_sync(closer)
                next_item = closer = None
                _, refresh_error = call.refresh_sync(generation, provider)
                if refresh_error is not None:
                    attach_refresh_failure(error, refresh_error)
                    raise
                continue
            action, forwarded = on_item(item)
            if action is _FORWARD:
                yield forwarded
                if not gate.passthrough:
                    continue
                kind_of = gate.kind_of  # as in gated_async
                while True:
                    try:
                        item = next_item()
                    except StopIteration:
                        return
                    yield item
                    if kind_of(item) is _DONE:
                        return
            if action is _RETRY:
                close_sync(closer)
                next_item = closer = None
                _, refresh_error = call.refresh_sync(generation, provider)
                if refresh_error is None:
                    continue
            yield forwarded
            return
    finally:
        close_sync(closer)


class GatedStreamView(wrapt.ObjectProxy[Any]):
    """The gated stream, dressed as the SDK's stream object of the current attempt.

    Iterating it goes through the gate. Everything else (`text_stream`, `get_final_message()`,
    `response`, `isinstance`) reaches the inner stream of whichever attempt is current, so SDK
    helpers keep working; they read that stream directly, without the gate. Closing it closes
    the gated stream, and with it the current attempt.
    """

    __slots__ = ("_self_gated", "_self_pending")

    def __init__(self, inner: object, gated: AsyncGenerator[Any, None]) -> None:
        super().__init__(inner)
        self._self_gated = gated
        self._self_pending: AsyncCloser = None

    def __aiter__(self) -> GatedStreamView:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._self_gated.__anext__()

    async def aclose(self) -> None:
        """Close the gated stream and the current attempt."""
        await self._self_gated.aclose()
        pending, self._self_pending = self._self_pending, None
        await close_async(pending)

    async def close(self) -> None:
        """Close, as the SDK streams name it."""
        await self.aclose()


def _view(call: StreamCall, opened: AsyncAttempt) -> GatedStreamView:
    """The gated stream over `opened`, as a view that follows each attempt's inner stream."""
    view = call.view = GatedStreamView(opened[2], gated_async(call, opened))
    return view


async def open_then_gate(call: StreamCall, started: object = None) -> GatedStreamView:
    """The awaitable shape: open the first attempt now, then hand over the gated stream."""
    return _view(call, await open_async(call, started))


class GatedStreamManager:
    """The async context manager shape: entering opens the first attempt and yields the stream.

    Leaving closes the gated stream, which exits the inner manager of whichever attempt is
    current.
    """

    __slots__ = ("_call", "_started", "_stream")

    def __init__(self, call: StreamCall, started: object) -> None:
        self._call = call
        self._started = started
        self._stream: GatedStreamView | None = None

    async def __aenter__(self) -> GatedStreamView:
        started, self._started = self._started, None
        self._stream = _view(self._call, await open_async(self._call, started))
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


def gate_returned(call: StreamCall) -> Any:
    """The plain-function shape: call now, and give back what was returned, gated.

    A 401 raised by the call itself can only be refreshed synchronously; an async `refresh`
    cannot run here, so that error surfaces with a note (and a refresh ahead of expiry waits
    for the async shapes' first await or enter).
    """
    if inspect.iscoroutinefunction(call.spec.options.refresh):
        generation, provider = call.flight.current(call.holder)
    else:
        generation, provider = ready_sync(call.spec, call.flight, call.holder)
    try:
        started = call.start(provider)
    except Exception as error:
        if call.gate.on_exception(error) is not _RETRY:
            raise
        if inspect.iscoroutinefunction(call.spec.options.refresh):
            error.add_note(
                f"refresh_middleware: {call.spec.name} raised this 401 synchronously, where an "
                "async refresh cannot run; the call was not retried"
            )
            raise
        fresh, refresh_error = call.refresh_sync(generation, provider)
        if refresh_error is not None:
            attach_refresh_failure(error, refresh_error)
            raise
        generation, provider = call.flight.current(call.holder)
        started = call.start(fresh)
    if hasattr(started, "__anext__"):
        return _view(call, (generation, provider, started, _async_closer(started)))
    if hasattr(started, "__aenter__"):
        return GatedStreamManager(call, started)
    if inspect.isawaitable(started):
        return open_then_gate(call, started)
    if isinstance(started, str | bytes | Mapping) or not hasattr(started, "__iter__"):
        return cast("Any", started)
    return gated_sync(call, (generation, provider, *_adopt_sync(started)))
