"""A scriptable provider double and a counting refresh, for testing your own wiring.

`ScriptedProvider` (async) and `SyncScriptedProvider` answer `chat` and `chat_stream` from
queues that a test fills: values to return, exceptions to raise, items to stream, 401s to
raise before or after a chunk. They count what the wrapper did to them (calls, streams opened,
streams closed) and can play an expired credential. `RefreshCounter` is a refresh callable
that counts its calls and renews the provider it is given.

Example:
    >>> from refresh_middleware import refresh_on_401
    >>> from refresh_middleware.testing import RefreshCounter, SyncScriptedProvider
    >>> provider = SyncScriptedProvider(expired=True).queue_chat("hello")
    >>> refresh = RefreshCounter()
    >>> wrapped = refresh_on_401(provider, refresh=refresh)
    >>> wrapped.chat("hi")
    'hello'
    >>> (refresh.count, provider.calls, provider.expired)
    (1, 2, False)

"""

from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Self

import sniffio

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Generator

__all__ = [
    "AsyncRefreshCounter",
    "RefreshCounter",
    "ScriptExhaustedError",
    "ScriptedProvider",
    "SyncScriptedProvider",
    "UnauthorizedError",
]


class UnauthorizedError(Exception):
    """The 401 the doubles raise: ``status_code`` is 401, as SDK errors have it."""

    status_code = 401

    def __init__(self, message: str = "HTTP 401 Unauthorized: token expired") -> None:
        super().__init__(message)


class ScriptExhaustedError(LookupError):
    """A double was called more often than its script says; the test expected fewer calls."""


class _Script:
    """The queues and counters shared by the async and the sync double."""

    def __init__(self, *, expired: bool = False, latency: float = 0.0) -> None:
        self.latency = latency
        """Seconds each call and each stream item takes, so concurrent callers overlap."""
        self.expired = expired
        """While True, every call and every stream raises `UnauthorizedError`, consuming no
        script, as an expired credential would; `renew` clears it."""
        self.renewals = 0
        """How many times `renew` was called."""
        self.calls = 0
        """Calls of `chat`, including those that raised."""
        self.stream_opens = 0
        """Streams whose body started (on the first ``next``)."""
        self.streams_closed = 0
        """Streams that ended: exhausted, raised, or closed by their consumer."""
        self.items_sent = 0
        """Stream items handed out, over all streams."""
        self.arguments: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        """The ``(args, kwargs)`` of every `chat` call and stream, in order."""
        self._chats: deque[object] = deque()
        self._streams: deque[list[object]] = deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} expired={self.expired} calls={self.calls} "
            f"stream_opens={self.stream_opens} streams_closed={self.streams_closed}>"
        )

    @property
    def open_streams(self) -> int:
        """Streams started and not yet ended; 0 after a test means nothing was left open."""
        return self.stream_opens - self.streams_closed

    def queue_chat(self, *results: object) -> Self:
        """Queue what the next `chat` calls give, one each: an exception is raised, else returned.

        Returns the double, so a test can write ``ScriptedProvider().queue_chat("ok")``.
        """
        with self._lock:
            self._chats.extend(results)
        return self

    def queue_stream(self, *items: object, unauthorized_after: int | None = None) -> Self:
        """Queue the items of the next stream; an exception among them is raised there.

        Args:
            *items: What the stream yields, in order.
            unauthorized_after: Raise `UnauthorizedError` once this many items were yielded:
                0 is a 401 before the first chunk, 1 a 401 after it.

        """
        script = list(items)
        if unauthorized_after is not None:
            script.insert(unauthorized_after, UnauthorizedError())
        with self._lock:
            self._streams.append(script)
        return self

    def expire(self) -> None:
        """Make the credential expired: every call and stream raises a 401 until `renew`."""
        self.expired = True

    def renew(self) -> None:
        """Refresh the credential in place, as a refresh callable would."""
        with self._lock:
            self.renewals += 1
            self.expired = False

    def _take_chat(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        """The outcome of a call, decided when it starts: a result, or an exception to raise."""
        with self._lock:
            self.calls += 1
            self.arguments.append((args, kwargs))
            if self.expired:
                return UnauthorizedError()
            if not self._chats:
                msg = f"chat was called {self.calls} times, more than its script has results"
                return ScriptExhaustedError(msg)
            return self._chats.popleft()

    def _open_stream(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[object]:
        with self._lock:
            self.stream_opens += 1
            self.arguments.append((args, kwargs))
            if self.expired:
                return [UnauthorizedError()]
            if not self._streams:
                msg = f"stream {self.stream_opens} was opened, more than its script has streams"
                return [ScriptExhaustedError(msg)]
            return self._streams.popleft()

    def _send(self, item: object) -> Any:
        """A scripted stream item as the provider yields it (an error is raised), counted."""
        _answer(item)
        self._sent()
        return item

    def _sent(self) -> None:
        with self._lock:
            self.items_sent += 1

    def _closed(self) -> None:
        with self._lock:
            self.streams_closed += 1


class ScriptedProvider(_Script):
    """An async provider double: `chat` is a coroutine, `chat_stream` an async generator.

    Args:
        expired: Start with an expired credential (see `expire`).
        latency: Seconds each call and each stream item takes. A call's outcome is decided
            when it starts, so callers that start while the credential is expired all get a
            401, however soon one of them refreshes.

    Example:
        A 401 before the first chunk is retried, and the abandoned stream was closed::

            provider = ScriptedProvider()
            provider.queue_stream("Hel", "lo", unauthorized_after=0).queue_stream("Hel", "lo")
            wrapped = refresh_on_401(provider, refresh=RefreshCounter())
            async with contextlib.aclosing(wrapped.chat_stream("hi")) as stream:
                assert ["Hel", "lo"] == [item async for item in stream]
            assert (2, 0) == (provider.stream_opens, provider.open_streams)

    """

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        """Return the next queued result (see `queue_chat`)."""
        outcome = self._take_chat(args, kwargs)
        await _sleep(self.latency)
        return _answer(outcome)

    async def chat_stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        """Stream the next queued script (see `queue_stream`)."""
        script = self._open_stream(args, kwargs)
        try:
            for item in script:
                await _sleep(self.latency)
                yield self._send(item)
        finally:
            self._closed()


class SyncScriptedProvider(_Script):
    """The synchronous form of `ScriptedProvider`: `chat` is a function, `chat_stream` a generator.

    Safe to share between threads: the counters and queues are locked.
    """

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        """Return the next queued result (see `queue_chat`)."""
        outcome = self._take_chat(args, kwargs)
        if self.latency:
            time.sleep(self.latency)
        return _answer(outcome)

    def chat_stream(self, *args: Any, **kwargs: Any) -> Generator[Any]:
        """Stream the next queued script (see `queue_stream`)."""
        script = self._open_stream(args, kwargs)
        try:
            for item in script:
                if self.latency:
                    time.sleep(self.latency)
                yield self._send(item)
        finally:
            self._closed()


def _answer(outcome: object) -> Any:
    """A scripted outcome as the provider gives it: raised when it is an error."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


async def _sleep(seconds: float) -> None:
    """Wait, letting other tasks run as a real request would, under trio or asyncio."""
    if sniffio.current_async_library() == "trio":
        import trio  # noqa: PLC0415 - asyncio users need not install trio

        await trio.sleep(seconds)
    else:
        import asyncio  # noqa: PLC0415

        await asyncio.sleep(seconds)


class RefreshCounter:
    """A refresh callable that counts its calls; a plain function, so any provider accepts it.

    By default it renews the stale provider in place (calls its ``renew()`` when it has one)
    and returns None. Give ``replace`` to return a replacement provider instead, or ``error``
    to make every refresh fail.

    Args:
        replace: Called with the stale provider; returns the replacement.
        error: Raised by every refresh, to test a failing refresh.

    Example:
        >>> refresh = RefreshCounter(replace=lambda stale: "fresh provider")
        >>> refresh("stale provider")
        'fresh provider'
        >>> (refresh.count, refresh.stale)
        (1, ['stale provider'])

    """

    def __init__(
        self,
        *,
        replace: Callable[[Any], Any] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.replace = replace
        self.error = error
        self.count = 0
        """Refreshes so far (failed ones included)."""
        self.stale: list[Any] = []
        """The provider each refresh was given, in order."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} count={self.count}>"

    def __call__(self, stale: Any) -> Any:
        """Count, then fail, replace, or renew in place."""
        with self._lock:
            self.count += 1
            self.stale.append(stale)
        if self.error is not None:
            raise self.error
        if self.replace is not None:
            return self.replace(stale)
        renew = getattr(stale, "renew", None)
        if callable(renew):
            renew()
        return None


class AsyncRefreshCounter(RefreshCounter):
    """A `RefreshCounter` that is a coroutine function, for async providers.

    It yields to other tasks before refreshing, so concurrent callers really pile up behind
    one refresh, as they do behind a slow token endpoint.
    """

    async def __call__(self, stale: Any) -> Any:
        """Let other tasks run, then refresh as `RefreshCounter` does."""
        await _sleep(0)
        result = super().__call__(stale)
        if inspect.isawaitable(result):
            result = await result
        return result
