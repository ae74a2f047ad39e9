"""Calls (`chat`, `embed`): what an intercepted call method becomes, for each shape.

A call is an attempt that resolves to a value: `_retry.open_async` (or `open_sync`) starts it,
awaits it if it must, and on a 401 (raised, or an error value returned) refreshes once and
retries once. Only how the first attempt starts differs by shape. A coroutine method's first
attempt runs in the method's own frame (`awaiting_method`): a call that succeeds, nearly every
call, is over there, and the engine takes over only an attempt that failed.

Some frameworks stream a call's output beside it, through callbacks (LangGraph streams the
tokens of a LangChain model's `ainvoke`): once such output went out, the call is committed and
a 401 after it is raised, as in a stream. The framework's dialect knows how to see that output
go out (a `Watch`); `watch_output_of` hooks it when one of its objects is wrapped, and the
running calls of each task or thread are kept in a context variable for `went_out` to commit.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

from ._flight import Current
from ._kinds import SETTLED, ItemKind, watches_for
from ._retry import (
    Call,
    FirstAttempt,
    Site,
    open_async,
    open_sync,
    restart_plain,
    runs_attempts,
    start_plain,
    wrapped_of,
)

if TYPE_CHECKING:
    from ._spec import Method

__all__ = [
    "awaiting_method",
    "call_coroutine",
    "call_plain",
    "calling_method",
    "watch_output_of",
    "went_out",
]

_OUTPUT: Final = ItemKind.OUTPUT
_COROUTINE: Final = CoroutineType

# The calls running in this task or thread, innermost last: output sent out beside an inner
# call was sent beside the outer ones too.
_running: Final[contextvars.ContextVar[tuple[Call, ...]]] = contextvars.ContextVar(
    "refresh_middleware_running_calls", default=()
)


class _Watched:
    """The watches hooked in this process (each once), and whether any is."""

    def __init__(self) -> None:
        self.modules: set[str] = set()
        self.lock = threading.Lock()


_watched: Final = _Watched()


def watch_output_of(cls: type) -> None:
    """Hook the watches of the frameworks `cls` comes from, once per process each."""
    for watch in watches_for(cls):
        with _watched.lock:
            if watch.module in _watched.modules:
                continue
            watch.install(went_out)
            _watched.modules.add(watch.module)


def went_out(item: object) -> None:
    """A framework sent `item` out beside the calls running here: OUTPUT commits each of them."""
    for call in _running.get():
        gate = call.gate
        if not gate.committed and gate.kind_of(item) is _OUTPUT:
            gate.committed = True


async def _watching(call: Call, first: FirstAttempt | None) -> Any:
    running = _running.set((*_running.get(), call))
    try:
        return await open_async(call, first)
    finally:
        _running.reset(running)


def call_coroutine(call: Call, first: FirstAttempt | None = None) -> Any:
    """A coroutine method, or an awaitable a plain method returned: awaiting gives the result.

    The engine's own coroutine is handed over as it is while no framework that streams
    beside calls is watched: a herd of callers waiting on one refresh then waits through the
    fewest frames.
    """
    if not _watched.modules:
        return open_async(call, first)
    return _watching(call, first)


def _quick(method: Method, holder: object, value: object) -> Any:
    """The provider a call's first attempt runs on the quick way, or None where it may not.

    `value` is the flight's provider (None in class mode, where the instance is the provider).
    The quick way needs `Method.quick`, no framework watched, and, for a proxy, the flight's
    provider in it (not one assigned to `proxy.__wrapped__`; see `Call.current`).
    """
    if not method.quick or _watched.modules:
        return None
    if value is None:
        return holder
    return value if value is wrapped_of(holder) else None


def awaiting_method(function: Callable[..., Any], site: Callable[[Any], Site]) -> Any:
    """The `async def` that replaces a coroutine call method `function`.

    Its first attempt runs here, in the method's own frame, the quick way: on the provider the
    flight holds, with nothing built for it. A value of a class that `kind_of` can never call
    an error item, and that is nothing to await (`SETTLED`), is the result. An exception, or
    any other value, goes to the engine as the call's first attempt (`open_async`), which
    decides as for any attempt; so does the whole call when the quick way does not apply
    (`Method.quick`: a refresh ahead of expiry to check, or a `kind_of` of the user's), while
    a framework is watched for output sent beside calls, or when the proxy wraps a provider
    other than the flight's (`proxy.__wrapped__ = other`, as `Call.current` explains).
    `site(self)` says where the call runs.
    """

    @functools.wraps(function)
    async def awaited(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        method, flight, holder = site(self)
        first: FirstAttempt | None = None
        current = flight.current
        provider = _quick(method, holder, current.value)
        if provider is not None:
            try:
                # `Method.invoke`, its two commonest ways written out: a call less.
                if method.original is not None:
                    value: object = await method.original(provider, *args, **kwargs)
                elif method.attribute is not None:
                    value = await getattr(provider, method.attribute)(*args, **kwargs)
                else:
                    value = await method.invoke(provider, args, kwargs)
            except Exception as error:  # noqa: BLE001 - the engine decides, as for any attempt
                # Handed over as an attempt that raises it again when the engine awaits it.
                first = FirstAttempt(Current(current.generation, provider), _raise(error))
            else:
                if id(type(value)) in SETTLED:
                    return value
                first = FirstAttempt(Current(current.generation, provider), value)
        # Named `call` in this frame from here on: `nested` reads it.
        call = Call(method, flight, holder, args, kwargs)
        return await call_coroutine(call, first)

    runs_attempts(awaited)
    return awaited


def calling_method(function: Callable[..., Any], site: Callable[[Any], Site]) -> Any:
    """The function that replaces a plain call method `function`, such as the SDKs' `create`.

    Its first attempt starts here the quick way, as in `awaiting_method`, when that applies:
    a settled value is the result; a coroutine (an async client's `create`) is awaited the
    quick way too (`_settle`); any other value goes to the engine as the first attempt, and
    an exception to `restart_plain`, which refreshes and starts the method again.
    """

    @functools.wraps(function)
    def called(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        where = site(self)
        method, flight, holder = where
        current = flight.current
        provider = _quick(method, holder, current.value)
        if provider is not None:
            try:
                value: object = method.invoke(provider, args, kwargs)
            except Exception as error:  # noqa: BLE001 - restart_plain decides
                failed = error
            else:
                if id(type(value)) in SETTLED:
                    return value
                started = Current(current.generation, provider)
                if type(value) is _COROUTINE:
                    return _settle(where, args, kwargs, started, cast("Awaitable[Any]", value))
                # Named `call` in this frame from here on: `nested` reads it.
                call = Call(method, flight, holder, args, kwargs)
                return _started(call, FirstAttempt(started, value))
            call = Call(method, flight, holder, args, kwargs)
            first = restart_plain(call, Current(current.generation, provider), failed)
            return _started(call, first)
        call = Call(method, flight, holder, args, kwargs)
        return call_plain(call)

    runs_attempts(called)
    return called


async def _settle(
    where: Site,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    current: Current[Any],
    attempt: Awaitable[Any],
) -> Any:
    """Await a coroutine a plain method's quick first attempt returned, the quick way."""
    method, flight, holder = where  # `flight` from the start: `nested` reads this frame
    try:
        value: object = await attempt
    except Exception as error:  # noqa: BLE001 - the engine decides, as for any attempt
        first = FirstAttempt(current, _raise(error))
    else:
        if id(type(value)) in SETTLED:
            return value
        first = FirstAttempt(current, value)
    # Named `call` in this frame from here on: `nested` reads it.
    call = Call(method, flight, holder, args, kwargs)
    return await call_coroutine(call, first)


runs_attempts(_settle)


async def _raise(error: Exception) -> NoReturn:
    raise error


def call_plain(call: Call) -> Any:
    """A plain method: its value now, or, when it returned an awaitable, a coroutine for it.

    The SDKs' `create` methods are plain functions that return a coroutine: awaiting ours
    awaits theirs, so a 401 raised at the `await` is refreshed and retried there.
    """
    running = _running.set((*_running.get(), call)) if _watched.modules else None
    try:
        first = start_plain(call)
        if first is None:
            return call_coroutine(call)
        return _started(call, first)
    finally:
        if running is not None:
            _running.reset(running)


def _started(call: Call, first: FirstAttempt) -> Any:
    """The rest of a plain method's call, from its first attempt: awaited, or now."""
    if inspect.isawaitable(first.value):
        return call_coroutine(call, first)
    return open_sync(call, first)
