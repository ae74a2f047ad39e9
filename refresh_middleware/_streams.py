"""Streams: every shape a stream method returns, read item by item through the `StreamGate`.

The gate loop (`items_async`, and `items_sync` generated from it) reads the open attempt,
feeds each item and error to the gate and does what it says: forward, stop, or close the
attempt, refresh and open a new one. The shapes differ only in what the consumer gets and
when the first attempt opens:

- an async generator method: the gated async generator, which opens on the first read;
- a coroutine method: awaiting it opens the first attempt (a 401 at the `await` is retried
  there) and gives an `AsyncStreamView` of the SDK's stream object, or a plain value;
- a plain method (shape read per call): a returned async iterator is viewed as it is, a
  returned awaitable is awaited as above, a manager (`anthropic`'s `messages.stream()`,
  pydantic-ai's `request_stream()`) becomes a `PendingStream` that opens when entered, and a
  returned iterator gets a `SyncStreamView`; a plain value is a call's result;
- a generator method: the gated generator;
- a raw response a hand-out returns (`with_streaming_response`): a `RawResponseView`, whose
  `parse()` gives the gated view of the body's stream, read again from the new response
  after a retry.

A view *is* the SDK's stream object of the current attempt (wrapt proxy): iterating it goes
through the gate, and everything else (`get_final_message()`, `get()`, `usage`, `response`)
reaches that object, so SDK helpers keep working. Whatever was opened is closed exactly once:
before a retry, when the consumer breaks, is cancelled, leaves or closes the stream, read or
not, and a manager's `__aexit__` gets the exception that ended the consumer's block.

The attempts themselves live here too: `adopt_async` (and `adopt_sync`) opens what a stream
method returned (awaits it, enters a manager, finds the iterator) and is handed to the retry
engine (`_retry.open_async(..., adopt=adopt_async)`), which knows no streams; `close_async`
(and `close_sync`) ends the open one, shielded and bounded (`_backend.close_shielded`).

Why it is over 600 lines: a fifth of it is the sync gate loop and view generated from the
async ones (`tools/unasync.py`), and the shapes need the attempt primitives beside them. At
about 900 lines the seam is due: the shapes (`stream_*`, `PendingStream`, `RawResponseView`)
apart from the gate loop and the attempts, in a module of their own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Hashable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Self, cast

import wrapt

from ._backend import close_shielded
from ._events import logger
from ._gate import GateAction
from ._refresh import ready_async
from ._retry import (
    OPENED,
    AheadAttempt,
    Call,
    FirstAttempt,
    LaterAttempt,
    RefusedAttempt,
    open_async,
    open_sync,
    recover_async,
    recover_sync,
    runs_attempts,
    start_plain,
)

if TYPE_CHECKING:
    from types import TracebackType

    from ._flight import Current

__all__ = [
    "CLOSE_TIMEOUT",
    "AsyncStreamView",
    "Attempt",
    "PendingStream",
    "RawResponseView",
    "RefusedStream",
    "SyncPendingStream",
    "SyncStreamView",
    "stream_async_generator",
    "stream_coroutine",
    "stream_generator",
    "stream_plain",
]


def _not_a_stream(call: Call, value: object) -> TypeError:
    return TypeError(
        f"{call.method.name} returned {type(value).__name__} where a stream was being read"
    )


CLOSE_TIMEOUT: Final = 5.0
"""Seconds an abandoned attempt gets to close before it is left to itself."""


class Attempt(NamedTuple):
    """An open attempt of a stream (kept in `Call.opened`)."""

    generation: int
    """The credential generation it was started on."""
    provider: Any
    """The provider it was started on."""
    stream: Any
    """What the consumer sees of it: the SDK's stream object, or the iterator itself."""
    items: Any
    """The iterator the gate reads."""
    close: Any
    """Ends it (async or sync, as the stream); takes the exception that ended the consumer's
    block, for a stream manager's `__exit__`."""


def adopted(call: Call, attempt: Attempt) -> Any:
    """Make `attempt` the open one (the view, if any, shows its stream from now on): `OPENED`."""
    call.opened = attempt
    if call.view is not None:
        call.view.follow(attempt.stream)
    return OPENED


# --------------------------------------------------------------------------------------------------
# primitives, written twice: adopting what a method returned, and closing it


async def adopt_async(call: Call, current: Current[Any], returned: Any) -> Any:
    """Open what a stream method returned: await an awaitable, enter a manager, find the items.

    It is a stream when it can be iterated asynchronously (`__anext__` or `__aiter__`), a
    manager when it can only be entered (`anthropic`'s `messages.stream()`, pydantic-ai's
    `request_stream()`); anything else is a value, returned as it is. The retry engine calls
    this (`open_async(..., adopt=adopt_async)`); `OPENED` tells it a stream attempt is open.
    """
    reparse = call.reparse
    while True:
        if hasattr(returned, "__aiter__"):
            return adopted(call, _async_attempt(current, returned, None))
        if hasattr(returned, "__aenter__"):
            stream = await returned.__aenter__()
            return adopted(call, _async_attempt(current, stream, returned))
        if not inspect.isawaitable(returned):
            if reparse is None:
                return raw_response_view(call, current, returned)
            # A retry of a raw response's stream: the new response is read as the first was.
            returned, reparse = reparse(returned), None
            continue
        returned = await returned


def adopt_iterable(call: Call, first: FirstAttempt) -> None:
    """Open a returned async iterator at once: nothing needs awaiting to read it."""
    adopted(call, _async_attempt(first.current, first.value, None))


def _async_attempt(current: Current[Any], stream: Any, manager: Any) -> Attempt:
    """An open async attempt: the stream shown, the iterator read, and how to end both.

    An object that is only iterable (pydantic-ai's `StreamedResponse`) is shown as it is and
    read through the iterator it hands out, which is ours to close. A stream that came out of
    a manager is the manager's to close: leaving it (with the consumer's exception, if any)
    does that.
    """
    items = stream if hasattr(stream, "__anext__") else stream.__aiter__()
    closers = [] if items is stream else [_closer_of(items)]
    if manager is None:
        closers.append(_closer_of(stream))

    async def close(error: BaseException | None) -> None:
        try:
            for closer in closers:
                if closer is not None:
                    result = closer()
                    if inspect.isawaitable(result):
                        await result
        finally:
            if manager is not None:
                if error is None:
                    await manager.__aexit__(None, None, None)
                else:
                    await manager.__aexit__(type(error), error, error.__traceback__)

    return Attempt(current.generation, current.value, stream, items, close)


def _closer_of(stream: object) -> Callable[[], object] | None:
    return getattr(stream, "aclose", None) or getattr(stream, "close", None)


def adopt_sync(call: Call, current: Current[Any], returned: Any) -> Any:
    """The sync form of `adopt_async`: a sync stream is an iterator (`__next__`).

    A sync manager (`responses.stream()`, `messages.stream()` of a sync client) is entered
    here, in the consumer's `with` (`SyncPendingStream`); leaving it closes its stream.
    """
    if call.reparse is not None:
        # A retry of a raw response's stream: the new response is read as the first was.
        returned = call.reparse(returned)
    if _is_sync_manager(returned):
        manager, returned = returned, returned.__enter__()

        def leave(error: BaseException | None) -> None:
            if error is None:
                manager.__exit__(None, None, None)
            else:
                manager.__exit__(type(error), error, error.__traceback__)

        return adopted(call, Attempt(current.generation, current.value, returned, returned, leave))
    if not hasattr(returned, "__next__"):
        return raw_response_view(call, current, returned)
    close = getattr(returned, "close", None)

    def closer(_: BaseException | None) -> None:
        if close is not None:
            close()

    return adopted(call, Attempt(current.generation, current.value, returned, returned, closer))


def raw_response_view(call: Call, current: Current[Any], value: object) -> Any:
    """`value` itself, or, if it is a raw response the preset reads (`parses`), its view."""
    parses = call.method.options.parses
    # A class is hashable, which mypy cannot see through `type(value)` of an object.
    if parses and _reads_body(cast("Hashable", type(value)), parses):
        return RawResponseView(call, current, value)
    return value


# Asked of every value a stream method of a preset returns (openai's `create` without a
# stream), where a static lookup on an SDK model class costs about 20 µs: once per class. The
# classes are the SDKs' own, few and long-lived; the bound keeps any others from piling up.
@functools.lru_cache(maxsize=256)
def _reads_body(cls: type, parses: tuple[str, ...]) -> bool:
    """Whether instances of `cls` have a method of `parses` (a raw response's `parse`)."""
    return any(
        isinstance(inspect.getattr_static(cls, name, None), types.FunctionType) for name in parses
    )


class RawResponseView(wrapt.ObjectProxy[Any]):
    """A raw response (`with_streaming_response`'s) whose body, when a stream, is read gated.

    The body is read by a method the preset names (openai's `parse()`); a stream it returns is
    given as the gated view. The request went through the gate already (a 401 status was
    retried there); an auth error event in the body is retried as in any stream: the request is
    sent again (`Call.reparse` reads the new response the same way) and the consumer reads on
    from the new attempt. Everything else is the raw response's: its headers, `request_id`,
    `close()`, which closes the gated stream too: after a retry, the stream read is another
    response's, which the first one's close (its manager's exit) would not reach.
    """

    __slots__ = ("_self_call", "_self_current", "_self_parsed")

    def __init__(self, call: Call, current: Current[Any], raw: object) -> None:
        super().__init__(raw)
        self._self_call = call
        self._self_current = current
        self._self_parsed: tuple[object, object] | None = None

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.__wrapped__, name)
        if name == "close":
            return self._closing(found)
        if name not in self._self_call.method.options.parses:
            return found

        @functools.wraps(found)
        def parse(*args: Any, **kwargs: Any) -> Any:
            def reparse(raw: Any) -> Any:
                return getattr(raw, name)(*args, **kwargs)

            parsed = found(*args, **kwargs)
            if inspect.isawaitable(parsed):
                return self._awaited(parsed, reparse)
            return self._gated(parsed, reparse)

        return parse

    def _closing(self, close: Callable[..., Any]) -> Callable[..., Any]:
        # Found through `__getattr__`, like the raw response's other attributes, so a raw
        # response without `close()` still has none.
        @functools.wraps(close)
        def closing(*args: Any, **kwargs: Any) -> Any:
            closed = close(*args, **kwargs)
            if inspect.isawaitable(closed):
                return self._close_async(closed)
            view = self._view()
            # A sync close with an async stream (openai's legacy raw response of an async
            # client) cannot await it: that stream is closed when its consumer leaves it.
            if isinstance(view, SyncStreamView):
                view.close()
            return closed

        return closing

    async def _close_async(self, closed: Awaitable[Any]) -> Any:
        result = await closed
        view = self._view()
        if isinstance(view, AsyncStreamView):
            await view.aclose()
        return result

    def _view(self) -> object:
        """The gated stream parsed from this response, if any."""
        parsed = self._self_parsed
        return None if parsed is None else parsed[1]

    async def _awaited(self, parsed: Awaitable[Any], reparse: Callable[[Any], Any]) -> Any:
        return self._gated(await parsed, reparse)

    def _gated(self, parsed: object, reparse: Callable[[Any], Any]) -> Any:
        """The view of `parsed` if it is a stream (the same view when parsed again)."""
        last = self._self_parsed
        if last is not None and last[0] is parsed:
            return last[1]
        call, current = self._self_call, self._self_current
        if last is not None:  # a call has one gated stream: the first one parsed
            return parsed
        if hasattr(parsed, "__aiter__"):
            adopted(call, _async_attempt(current, parsed, None))
            view: object = AsyncStreamView(call)
        elif hasattr(parsed, "__next__"):
            adopt_sync(call, current, parsed)
            view = SyncStreamView(call)
        else:
            return parsed
        # Set after adopting: from now on, an attempt's raw response is read this way.
        call.reparse = reparse
        self._self_parsed = (parsed, view)
        return view


def _is_sync_manager(value: object) -> bool:
    """Entered to give a stream, but no stream itself (a sync SDK stream is a manager too)."""
    return hasattr(value, "__enter__") and not hasattr(value, "__iter__")


async def close_async(call: Call, error: BaseException | None = None) -> None:
    """Close the open attempt, if any: shielded from cancellation, bounded in time, quiet.

    Trio finalizes an abandoned async generator inside a cancelled scope, where an unshielded
    close would be cut short without a word; asyncio gets the same shield from a task of its
    own, which a cancellation landing meanwhile does not interrupt (it is delivered after).
    """
    attempt, call.opened = call.opened, None
    if attempt is None or attempt.close is None:
        return
    closing = cast("Callable[[BaseException | None], Awaitable[object]]", attempt.close)
    try:
        await close_shielded(functools.partial(closing, error), CLOSE_TIMEOUT)
    except Exception as failure:  # noqa: BLE001 - the attempt is abandoned; closing is best effort
        logger.debug("refresh_middleware: closing an abandoned stream failed: %r", type(failure))


async def finish_async(call: Call) -> None:
    """At a DONE item: let the SDK's reader reach its end, then close the attempt.

    The bare SDK reads on past its last event to the end of the body, where its reader closes
    the HTTP response. Stopping at DONE left that reader suspended and the response open,
    and closing the response under it would break a view's helpers that read on
    (`get_final_message()` reads until the end). One more read, never forwarded, lets the
    reader end: the helpers then work on what was read. An item or error found there is
    dropped (the consumer has its answer), bounded like a close, and the attempt is closed.
    """
    items = cast("Attempt", call.opened).items

    async def end() -> None:
        with contextlib.suppress(StopAsyncIteration):
            await items.__anext__()

    try:
        await close_shielded(end, CLOSE_TIMEOUT)
    except Exception as failure:  # noqa: BLE001 - past DONE; nothing more is forwarded
        logger.debug("refresh_middleware: reading past DONE failed: %r", type(failure))
    await close_async(call)


def finish_sync(call: Call) -> None:
    """The sync form of `finish_async`: one more read, never forwarded, then the close."""
    try:
        with contextlib.suppress(StopIteration):
            cast("Attempt", call.opened).items.__next__()
    except Exception as failure:  # noqa: BLE001 - as in finish_async
        logger.debug("refresh_middleware: reading past DONE failed: %r", type(failure))
    close_sync(call)


def close_sync(call: Call, error: BaseException | None = None) -> None:
    """Close the open sync attempt, if any, never raising."""
    attempt, call.opened = call.opened, None
    if attempt is None or attempt.close is None:
        return
    try:
        attempt.close(error)
    except Exception as failure:  # noqa: BLE001 - as in close_async
        logger.debug("refresh_middleware: closing an abandoned stream failed: %r", type(failure))


# --------------------------------------------------------------------------------------------------
# the gate loop and the views (the sync forms below are generated from these)

# unasync source begins


async def items_async(call: Call) -> AsyncGenerator[Any, None]:  # noqa: C901
    """Forward the items of the current attempt through the gate, retrying as it says.

    The attempt is closed here however the loop ends: exhausted, stopped at its DONE item
    (`finish_async`: its reader ends and closes its HTTP response, as with the bare SDK),
    broken off, cancelled or failed. Every streamed item passes here:
    the loops are written out flat, in one function.
    """
    gate = call.gate
    try:
        while not gate.passthrough:
            opened = call.opened or await _reopen_async(call)
            try:
                item = await opened.items.__anext__()
            except StopAsyncIteration:
                return
            except Exception as error:
                if gate.on_exception(error) is not GateAction.RETRY:
                    raise
                failed: BaseException | None = error
                item = None
            else:
                action, item = gate.on_item(item)
                if action is not GateAction.RETRY:
                    yield item
                    if action is GateAction.FORWARD_AND_STOP:
                        await finish_async(call)
                        return
                    continue
                failed = None
            if not await _retry_async(call, opened, failed):
                yield item  # the error item, as it came: the refresh meant to fix it failed
                return
        # The bypass, in this one place. Committed, with no usage left to carry, the gate would
        # forward every later item as it came and raise every error; only a DONE item matters.
        # Asking `gate.ends` alone, which reads nothing of an item that cannot be an end (an
        # openai chat chunk), brings the wrapper's cost per streamed chunk down to that of one
        # forwarding layer (`nox -s bench`).
        next_item, ends = cast("Attempt", call.opened).items.__anext__, gate.ends
        while True:
            try:
                item = await next_item()
            except StopAsyncIteration:
                return
            yield item
            if ends(item):
                await finish_async(call)
                return
    finally:
        await close_async(call)


async def _reopen_async(call: Call) -> Attempt:
    opened = await open_async(call, None, adopt_async)
    if opened is not OPENED:
        raise _not_a_stream(call, opened)
    return cast("Attempt", call.opened)


async def _retry_async(call: Call, opened: Attempt, failed: BaseException | None) -> bool:
    """Close the attempt and refresh; False (or `failed`, raised) when there is no retry."""
    await close_async(call)
    if await recover_async(call, opened.generation, opened.provider, failed):
        return True
    if failed is not None:
        raise failed
    return False


class AsyncStreamView(wrapt.ObjectProxy[Any]):
    """The gated stream, dressed as the SDK's stream object of the current attempt."""

    __slots__ = ("_self_call", "_self_items")

    def __init__(self, call: Call) -> None:
        super().__init__(cast("Attempt", call.opened).stream)
        self._self_call = call
        self._self_items: AsyncGenerator[Any, None] | None = None
        call.view = self

    def follow(self, stream: object) -> None:
        """Show `stream`, the SDK object of a new attempt, from now on."""
        self.__wrapped__ = stream

    def __getattr__(self, name: str) -> Any:
        # A helper of the SDK's stream that reads the stream itself (`until_done()`,
        # anthropic's `text_stream`) runs with this view as `self`, so it reads through the
        # gate; the preset names them. Everything else is the SDK stream's.
        stream: object = self.__wrapped__
        helper = self._self_call.method.options.helpers.get(name)
        function = inspect.getattr_static(type(stream), helper or name, None)
        if helper is None or not isinstance(function, types.FunctionType):
            return getattr(stream, name)
        return types.MethodType(function, self) if helper == name else function(self)

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> Any:
        items = self._self_items
        if items is None:
            items = self._self_items = items_async(self._self_call)
        return items.__anext__()

    async def aclose(self) -> None:
        """Close the gated stream and the attempt open now, read or not."""
        await self._end_async(None)

    close = aclose  # async only

    async def _end_async(self, error: BaseException | None) -> None:
        # The attempt first, with the consumer's exception for a manager's __aexit__; the
        # gated generator then finds nothing left to close.
        items, self._self_items = self._self_items, None
        try:
            await close_async(self._self_call, error)
        finally:
            if items is not None:
                await items.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._end_async(exc)


# unasync source ends
# unasync output begins
# Written by tools/unasync.py from the source above: edit that, then run it.


def items_sync(call: Call) -> Generator[Any]:  # noqa: C901
    """Forward the items of the current attempt through the gate, retrying as it says.

    The attempt is closed here however the loop ends: exhausted, stopped at its DONE item
    (`finish_sync`: its reader ends and closes its HTTP response, as with the bare SDK),
    broken off, cancelled or failed. Every streamed item passes here:
    the loops are written out flat, in one function.
    """
    gate = call.gate
    try:
        while not gate.passthrough:
            opened = call.opened or _reopen_sync(call)
            try:
                item = opened.items.__next__()
            except StopIteration:
                return
            except Exception as error:
                if gate.on_exception(error) is not GateAction.RETRY:
                    raise
                failed: BaseException | None = error
                item = None
            else:
                action, item = gate.on_item(item)
                if action is not GateAction.RETRY:
                    yield item
                    if action is GateAction.FORWARD_AND_STOP:
                        finish_sync(call)
                        return
                    continue
                failed = None
            if not _retry_sync(call, opened, failed):
                yield item  # the error item, as it came: the refresh meant to fix it failed
                return
        # The bypass, in this one place. Committed, with no usage left to carry, the gate would
        # forward every later item as it came and raise every error; only a DONE item matters.
        # Asking `gate.ends` alone, which reads nothing of an item that cannot be an end (an
        # openai chat chunk), brings the wrapper's cost per streamed chunk down to that of one
        # forwarding layer (`nox -s bench`).
        next_item, ends = cast("Attempt", call.opened).items.__next__, gate.ends
        while True:
            try:
                item = next_item()
            except StopIteration:
                return
            yield item
            if ends(item):
                finish_sync(call)
                return
    finally:
        close_sync(call)


def _reopen_sync(call: Call) -> Attempt:
    opened = open_sync(call, None, adopt_sync)
    if opened is not OPENED:
        raise _not_a_stream(call, opened)
    return cast("Attempt", call.opened)


def _retry_sync(call: Call, opened: Attempt, failed: BaseException | None) -> bool:
    """Close the attempt and refresh; False (or `failed`, raised) when there is no retry."""
    close_sync(call)
    if recover_sync(call, opened.generation, opened.provider, failed):
        return True
    if failed is not None:
        raise failed
    return False


class SyncStreamView(wrapt.ObjectProxy[Any]):
    """The gated stream, dressed as the SDK's stream object of the current attempt."""

    __slots__ = ("_self_call", "_self_items")

    def __init__(self, call: Call) -> None:
        super().__init__(cast("Attempt", call.opened).stream)
        self._self_call = call
        self._self_items: Generator[Any] | None = None
        call.view = self

    def follow(self, stream: object) -> None:
        """Show `stream`, the SDK object of a new attempt, from now on."""
        self.__wrapped__ = stream

    def __getattr__(self, name: str) -> Any:
        # A helper of the SDK's stream that reads the stream itself (`until_done()`,
        # anthropic's `text_stream`) runs with this view as `self`, so it reads through the
        # gate; the preset names them. Everything else is the SDK stream's.
        stream: object = self.__wrapped__
        helper = self._self_call.method.options.helpers.get(name)
        function = inspect.getattr_static(type(stream), helper or name, None)
        if helper is None or not isinstance(function, types.FunctionType):
            return getattr(stream, name)
        return types.MethodType(function, self) if helper == name else function(self)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        items = self._self_items
        if items is None:
            items = self._self_items = items_sync(self._self_call)
        return items.__next__()

    def close(self) -> None:
        """Close the gated stream and the attempt open now, read or not."""
        self._end_sync(None)

    def _end_sync(self, error: BaseException | None) -> None:
        # The attempt first, with the consumer's exception for a manager's __exit__; the
        # gated generator then finds nothing left to close.
        items, self._self_items = self._self_items, None
        try:
            close_sync(self._self_call, error)
        finally:
            if items is not None:
                items.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end_sync(exc)


# unasync output ends

runs_attempts(items_async, items_sync)


# --------------------------------------------------------------------------------------------------
# the shapes


async def stream_coroutine(call: Call) -> Any:
    """A coroutine method: awaiting opens the first attempt, then the consumer gets its view."""
    opened = await open_async(call, None, adopt_async)
    return AsyncStreamView(call) if opened is OPENED else opened


def stream_async_generator(call: Call) -> AsyncGenerator[Any, None]:
    """An async generator method: the gated generator, which opens on the first read."""
    return items_async(call)


def stream_generator(call: Call) -> Generator[Any]:
    """A generator method: the gated generator, which opens on the first read."""
    return items_sync(call)


async def _view_when_awaited(call: Call, first: FirstAttempt) -> Any:
    opened = await open_async(call, first, adopt_async)
    return AsyncStreamView(call) if opened is OPENED else opened


def _of_an_async_client(call: Call, provider: object) -> bool:
    """Whether the method belongs to an async client: its owner's class has coroutine methods.

    Asked after a 401 at the call inside an event loop. An async client's plain stream method
    (`AsyncAnthropic().messages.stream()`, beside `async def create`) can hand back a stream
    that refreshes when first used, without blocking the loop; a sync client's
    (`openai.OpenAI` in an async handler or a notebook, whose `create` is the one method)
    returns what it returns, a value or a stream, so it is refreshed at once, as the sync
    client blocks the loop for its own requests anyway.
    """
    owner = provider
    for part in call.method.path[:-1]:
        owner = getattr(owner, part)
    return any(
        inspect.iscoroutinefunction(member)
        for cls in type(owner).__mro__
        for member in vars(cls).values()
    )


def stream_plain(call: Call) -> Any:
    """A plain method: called now, and what it returned decides how it is read."""
    first = start_plain(call, defer=_of_an_async_client)
    if first is None or isinstance(first, LaterAttempt):
        return _later(call, first)
    value = first.value
    if hasattr(value, "__aiter__"):
        adopt_iterable(call, first)  # nothing to await: it opens on the first read
        return AsyncStreamView(call)
    if hasattr(value, "__aenter__"):
        return PendingStream(call, first)
    if hasattr(value, "__await__"):
        return _view_when_awaited(call, first)
    if _is_sync_manager(value):
        return SyncPendingStream(call, first)
    opened = open_sync(call, first, adopt_sync)
    return SyncStreamView(call) if opened is OPENED else opened


def _later(call: Call, first: LaterAttempt | None) -> PendingStream:
    """The stream of an attempt that starts at the first use: refused at the call, or ahead."""
    if isinstance(first, RefusedAttempt):
        return RefusedStream(call, first)
    return PendingStream(call, first)


async def _drop_async(first: FirstAttempt) -> None:
    """Close an async stream that was never read; a manager never entered has nothing open."""
    if hasattr(first.value, "__aiter__"):
        await _async_attempt(first.current, first.value, None).close(None)


class SyncPendingStream:
    """A sync manager's stream: its first attempt opens when the consumer enters this.

    Entering enters the SDK's manager (a 401 there is refreshed and retried) and gives the
    view of its stream, gated per item; leaving leaves the manager.
    """

    __slots__ = ("_call", "_first", "_view")

    def __init__(self, call: Call, first: FirstAttempt) -> None:
        self._call = call
        self._first: FirstAttempt | None = first
        self._view: SyncStreamView | None = None

    def __enter__(self) -> SyncStreamView:
        first, self._first = self._first, None
        open_sync(self._call, first, adopt_sync)
        self._view = SyncStreamView(self._call)
        return self._view

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Python leaves only what it entered, and entering made the view.
        cast("SyncStreamView", self._view).__exit__(exc_type, exc, traceback)


class PendingStream:
    """A stream whose first attempt opens at the consumer's first await, enter or read.

    A plain method's stream manager is entered only when the consumer enters this; a stream
    that must wait for a refresh ahead of expiry (`first` is None) starts then. Entering
    gives the view of the stream; leaving closes it, handing a manager the exception that
    ended the block.
    """

    __slots__ = ("_call", "_first", "_view")

    def __init__(self, call: Call, first: FirstAttempt | None) -> None:
        self._call = call
        self._first = first
        self._view: AsyncStreamView | None = None

    async def _open(self) -> Any:
        first, self._first = self._first, None
        if isinstance(first, AheadAttempt):
            # Started inside a window before expiry: refresh ahead now. Nothing was sent yet
            # (a manager sends when entered, an iterator when read), so one started on
            # credentials refreshed meanwhile is dropped and the method called anew.
            current = await ready_async(self._call)
            if current.generation != first.current.generation:
                await _drop_async(first)
                first = None
        opened = await open_async(self._call, first, adopt_async)
        if opened is not OPENED:
            return opened
        self._view = AsyncStreamView(self._call)
        return self._view

    def __await__(self) -> Generator[Any, None, Any]:
        return self._open().__await__()

    async def __aenter__(self) -> Any:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        view, self._view = self._view, None
        if view is not None:
            await view.__aexit__(exc_type, exc, traceback)

    def __aiter__(self) -> PendingStream:
        return self

    async def __anext__(self) -> Any:
        if self._view is None:
            stream = await self._open()
            if self._view is None:
                raise TypeError(
                    f"{self._call.method.name} returned {type(stream).__name__}, not a stream"
                )
        return await self._view.__anext__()

    async def aclose(self) -> None:
        """Close the stream, if it was opened (or what the method returned, if not entered)."""
        first, self._first = self._first, None
        if first is not None:
            await _drop_async(first)
        view, self._view = self._view, None
        if view is not None:
            await view.aclose()


class RefusedStream(PendingStream):
    """An async client's plain stream method refused (401) at its call in a loop, for later.

    Refreshing at the call would block the loop for the whole refresh, wait for good on a
    refresh another task of that loop runs, and could not await a coroutine `refresh` at all.
    The consumer's first `async with`, await or read refreshes as any async caller does, then
    calls the method again and opens what it returns. Nobody knows what the refused call would
    have returned, so a synchronous `with` or `for` (a sync stream of a class that has async
    methods too) works as well: it refreshes synchronously, as the call does outside a loop.
    """

    __slots__ = ("_sync",)

    def __init__(self, call: Call, first: RefusedAttempt) -> None:
        super().__init__(call, first)
        self._sync: Any = None

    def _refused(self) -> RefusedAttempt | None:
        refused, self._first = self._first, None
        return cast("RefusedAttempt | None", refused)

    async def _open(self) -> Any:
        refused = self._refused()
        if refused is not None:
            current, error = refused.current, refused.value
            if not await recover_async(self._call, current.generation, current.value, error):
                raise error
        return await super()._open()

    def _open_sync(self) -> Any:
        if self._sync is None:
            call, refused = self._call, self._refused()
            if refused is not None:
                current, error = refused.current, refused.value
                if not recover_sync(call, current.generation, current.value, error):
                    raise error
            opened = open_sync(call, None, adopt_sync)
            self._sync = SyncStreamView(call) if opened is OPENED else opened
        return self._sync

    def __enter__(self) -> Any:
        return self._open_sync().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Any:
        return self._sync.__exit__(exc_type, exc, traceback)

    def __iter__(self) -> Any:
        return iter(self._open_sync())

    def close(self) -> None:
        """Close what a synchronous use opened, if anything."""
        self._first = None
        closer = getattr(self._sync, "close", None)
        if closer is not None:
            closer()
