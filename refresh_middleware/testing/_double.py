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

import copy
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
    """What a double and its replacements share: the queues, the counters, which credentials hold.

    Credentials are numbered: a double holds one generation, and every generation below
    `valid_from` is expired, as a key rotation expires every key issued before it (``None``:
    none has expired).
    """

    def __init__(self, *, latency: float, valid_from: int | None) -> None:
        self.latency = latency
        self.valid_from = valid_from
        self.renewals = 0
        self.calls = 0
        self.stream_opens = 0
        self.streams_closed = 0
        self.items_sent = 0
        self.arguments: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.chats: deque[object] = deque()
        self.streams: deque[list[object]] = deque()
        self.lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A lock cannot be pickled or copied, and a copy needs a lock of its own anyway.
        return {name: value for name, value in vars(self).items() if name != "lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, lock=threading.Lock())

    def expired(self, generation: int) -> bool:
        """Whether a credential of this generation is refused."""
        return self.valid_from is not None and generation < self.valid_from

    def holding(self, generation: int) -> int:
        """The oldest generation from ``generation`` on that is not expired."""
        return generation if self.valid_from is None else max(generation, self.valid_from)

    def expire(self, generation: int) -> None:
        """Expire this generation and every one before it."""
        self.valid_from = self.holding(generation + 1)

    def renewed(self, generation: int) -> int:
        """The generation that renewing this one gives (the next that holds), counted."""
        with self.lock:
            self.renewals += 1
        return self.holding(generation + 1)

    def take_chat(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, expired: bool) -> object:
        """The outcome of a call, decided when it starts: a result, or an exception to raise."""
        with self.lock:
            self.calls += 1
            self.arguments.append((args, kwargs))
            if expired:
                return UnauthorizedError()
            if not self.chats:
                msg = f"chat was called {self.calls} times, more than its script has results"
                return ScriptExhaustedError(msg)
            return self.chats.popleft()

    def open_stream(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, expired: bool
    ) -> list[object]:
        """The items of a stream that starts now; an expired credential gets a 401 instead."""
        with self.lock:
            self.stream_opens += 1
            self.arguments.append((args, kwargs))
            if expired:
                return [UnauthorizedError()]
            if not self.streams:
                msg = f"stream {self.stream_opens} was opened, more than its script has streams"
                return [ScriptExhaustedError(msg)]
            return self.streams.popleft()

    def send(self, item: object) -> Any:
        """A scripted stream item as the provider yields it (an error is raised), counted."""
        _answer(item)
        with self.lock:
            self.items_sent += 1
        return item

    def closed(self) -> None:
        with self.lock:
            self.streams_closed += 1


class _Double:
    """What the async and the sync double share: a script, and the credential they hold."""

    def __init__(self, *, expired: bool = False, latency: float = 0.0) -> None:
        self._script = _Script(latency=latency, valid_from=1 if expired else None)
        self._generation = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} expired={self.expired} calls={self.calls} "
            f"stream_opens={self.stream_opens} streams_closed={self.streams_closed}>"
        )

    @property
    def latency(self) -> float:
        """Seconds each call and each stream item takes, so concurrent callers overlap."""
        return self._script.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._script.latency = seconds

    @property
    def expired(self) -> bool:
        """Whether the credential is expired; `expire` and `renew` change it, as may a test.

        While True, every call and every stream raises `UnauthorizedError`, consuming no
        script, as an expired credential would.
        """
        return self._script.expired(self._generation)

    @expired.setter
    def expired(self, expired: bool) -> None:
        if expired:
            self.expire()
        else:
            self._generation = self._script.holding(self._generation)

    @property
    def renewals(self) -> int:
        """How many times a credential was renewed: by `renew`, or by a `replacement`."""
        return self._script.renewals

    @property
    def calls(self) -> int:
        """Calls of `chat`, including those that raised."""
        return self._script.calls

    @property
    def stream_opens(self) -> int:
        """Streams whose body started (on the first ``next``)."""
        return self._script.stream_opens

    @property
    def streams_closed(self) -> int:
        """Streams that ended: exhausted, raised, or closed by their consumer."""
        return self._script.streams_closed

    @property
    def items_sent(self) -> int:
        """Stream items handed out, over all streams."""
        return self._script.items_sent

    @property
    def arguments(self) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The ``(args, kwargs)`` of every `chat` call and stream, in order."""
        return self._script.arguments

    @property
    def open_streams(self) -> int:
        """Streams started and not yet ended; 0 after a test means nothing was left open."""
        return self.stream_opens - self.streams_closed

    def queue_chat(self, *results: object) -> Self:
        """Queue what the next `chat` calls give, one each: an exception is raised, else returned.

        Returns the double, so a test can write ``ScriptedProvider().queue_chat("ok")``.
        """
        with self._script.lock:
            self._script.chats.extend(results)
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
        with self._script.lock:
            self._script.streams.append(script)
        return self

    def expire(self) -> None:
        """Make the credential expired: every call and stream raises a 401 until `renew`.

        Credentials of replacements made before are expired too, as a key rotation would.
        """
        self._script.expire(self._generation)

    def renew(self) -> None:
        """Refresh the credential in place, as a refresh callable would."""
        self._generation = self._script.renewed(self._generation)

    def replacement(self) -> Self:
        """A new double with a fresh credential that shares this one's script and counters.

        What a refresh that builds a new provider returns:
        ``RefreshCounter(replace=lambda stale: stale.replacement())``. This double keeps its
        credential, expired or not, as a client built on an old token does.
        """
        replacement = copy.copy(self)
        replacement._generation = self._script.renewed(self._generation)  # noqa: SLF001
        return replacement


class ScriptedProvider(_Double):
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
        outcome = self._script.take_chat(args, kwargs, expired=self.expired)
        await _sleep(self.latency)
        return _answer(outcome)

    async def chat_stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        """Stream the next queued script (see `queue_stream`)."""
        script = self._script.open_stream(args, kwargs, expired=self.expired)
        try:
            for item in script:
                await _sleep(self.latency)
                yield self._script.send(item)
        finally:
            self._script.closed()


class SyncScriptedProvider(_Double):
    """The synchronous form of `ScriptedProvider`: `chat` is a function, `chat_stream` a generator.

    Safe to share between threads: the counters and queues are locked.
    """

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        """Return the next queued result (see `queue_chat`)."""
        outcome = self._script.take_chat(args, kwargs, expired=self.expired)
        if self.latency:
            time.sleep(self.latency)
        return _answer(outcome)

    def chat_stream(self, *args: Any, **kwargs: Any) -> Generator[Any]:
        """Stream the next queued script (see `queue_stream`)."""
        script = self._script.open_stream(args, kwargs, expired=self.expired)
        try:
            for item in script:
                if self.latency:
                    time.sleep(self.latency)
                yield self._script.send(item)
        finally:
            self._script.closed()


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
