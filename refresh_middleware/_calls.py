"""The drivers of calls (`chat`, `embed`): call, and on a 401 refresh once and retry once."""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, cast

from ._ahead import ready_async, ready_sync
from ._classify import ItemKind
from ._events import CallRetried, NotReplayableError, RetrySkipped, emit
from ._flight import attach_refresh_failure, flight_of, flights, skipped_because

if TYPE_CHECKING:
    from ._flight import Flight, RefreshOutcome
    from ._spec import MethodSpec

__all__ = ["async_call", "recover_async", "recover_sync", "sync_call", "unreplayable"]


def unreplayable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why the arguments cannot be sent again, or None when they can.

    An iterator or generator argument was consumed by the first attempt; a retry would send
    what is left of it, silently different.
    """
    named = itertools.chain(enumerate(args), kwargs.items())
    for name, value in named:
        if isinstance(value, Iterator | AsyncIterator):
            kind = type(cast("object", value)).__name__
            where = f"argument {name!r}" if isinstance(name, str) else f"argument {name}"
            return f"{where} is a one-shot {kind}, consumed by the first attempt"
    return None


def _settle(
    spec: MethodSpec,
    provider: object,
    outcome: RefreshOutcome,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> RefreshOutcome:
    """Whether to retry after a refresh, told to the host as an event."""
    failure = outcome[1]
    hook = spec.options.on_event
    if failure is None:
        reason = unreplayable(args, kwargs) if args or kwargs else None
        if reason is None:
            if hook is not None:
                emit(hook, CallRetried(type(provider).__name__, spec.name))
            return outcome
        failure = NotReplayableError(reason)
    if hook is not None:
        emit(hook, RetrySkipped(type(provider).__name__, spec.name, skipped_because(failure)))
    return None, failure


async def recover_async(
    spec: MethodSpec,
    flight: Flight,
    holder: object,
    generation: int,
    provider: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> RefreshOutcome:
    """After a 401: refresh `generation` (shared) and say whether to retry, and on what."""
    outcome = await flight.refresh_async(generation, provider, spec, spec.installer(holder))
    return _settle(spec, provider, outcome, args, kwargs)


def recover_sync(
    spec: MethodSpec,
    flight: Flight,
    holder: object,
    generation: int,
    provider: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> RefreshOutcome:
    """The thread form of `recover_async`."""
    outcome = flight.refresh_sync(generation, provider, spec, spec.installer(holder))
    return _settle(spec, provider, outcome, args, kwargs)


def _unauthorized_result(spec: MethodSpec, result: object) -> bool:
    options = spec.options
    return options.kind_of(result) is ItemKind.ERROR and options.is_unauthorized(result)


# Result types the default kind_of never calls ERROR: a call returning them skips the check.
_PLAIN: Final = frozenset({type(None), str, bytes, int, float, bool, list, tuple})


async def _recover_call_async(
    spec: MethodSpec,
    flight: Flight,
    holder: object,
    attempt: tuple[int, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    failed: BaseException | None,
    result: object = None,
) -> Any:
    """After a 401 raised (`failed`) or returned (`result`): refresh, then retry once.

    Called outside the `except` block that caught `failed`: the retry's own errors must not
    be chained to the first 401, or a classifier reading their context would see a 401.
    """
    generation, provider = attempt
    # recover_async, written out: every caller of a herd passes here, one frame less counts.
    outcome = await flight.refresh_async(generation, provider, spec, spec.installer(holder))
    fresh, refresh_error = _settle(spec, provider, outcome, args, kwargs)
    if refresh_error is not None:
        if failed is None:
            return result
        attach_refresh_failure(failed, refresh_error)
        raise failed
    return await spec.invoke(fresh, args, kwargs)


def _recover_call_sync(
    spec: MethodSpec,
    flight: Flight,
    holder: object,
    attempt: tuple[int, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    failed: BaseException | None,
    result: object = None,
) -> Any:
    """The thread form of `_recover_call_async`."""
    generation, provider = attempt
    fresh, refresh_error = recover_sync(spec, flight, holder, generation, provider, args, kwargs)
    if refresh_error is not None:
        if failed is None:
            return result
        attach_refresh_failure(failed, refresh_error)
        raise failed
    return spec.invoke(fresh, args, kwargs)


def async_call(  # noqa: C901 - the fast path is written out, for two modes
    name: str,
    function: Callable[..., Any],
    class_spec: MethodSpec | None,
    core_of: Callable[[Any], tuple[dict[str, MethodSpec], Flight]] | None = None,
) -> Callable[..., Any]:
    """The intercepting method for an async call, as a plain coroutine function.

    Calls sit on every request, so their fast path is written out here rather than routed
    through a wrapt wrapper and a driver: find the provider, await it, screen the result. In
    class mode (`class_spec` given) the instance is the provider; in instance mode the method
    lives on the proxy, and `core_of(proxy)` reads its specs and flight.
    `functools.wraps` keeps the provider method's name, docstring and signature.
    """
    if class_spec is not None:
        spec = class_spec

        ahead, screen = spec.ahead, spec.screen

        @functools.wraps(function)
        async def in_class(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            entry = flights.by_id.get(id(self))
            flight = flight_of(self) if entry is None else entry[1]
            attempt = await ready_async(spec, flight, self) if ahead else flight.state
            try:
                result = await function(self, *args, **kwargs)
            except Exception as error:
                if not spec.options.is_unauthorized(error):
                    raise
                failed: BaseException | None = error
                result = None
            else:
                if (screen and type(result) in _PLAIN) or not _unauthorized_result(spec, result):
                    return result
                failed = None
            return await _recover_call_async(
                spec, flight, self, (attempt[0], self), args, kwargs, failed, result
            )

        return in_class
    assert core_of is not None  # noqa: S101 - instance mode always passes it

    @functools.wraps(function)
    async def on_proxy(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        specs, flight = core_of(self)
        spec: MethodSpec = specs[name]
        attempt = await ready_async(spec, flight, self) if spec.ahead else flight.state
        try:
            result = await getattr(attempt[1], name)(*args, **kwargs)
        except Exception as error:
            if not spec.options.is_unauthorized(error):
                raise
            failed: BaseException | None = error
            result = None
        else:
            if (spec.screen and type(result) in _PLAIN) or not _unauthorized_result(spec, result):
                return result
            failed = None
        return await _recover_call_async(spec, flight, self, attempt, args, kwargs, failed, result)

    return on_proxy


def sync_call(  # noqa: C901 - as async_call
    name: str,
    function: Callable[..., Any],
    class_spec: MethodSpec | None,
    core_of: Callable[[Any], tuple[dict[str, MethodSpec], Flight]] | None = None,
) -> Callable[..., Any]:
    """The intercepting method for a sync call; see `async_call`."""
    if class_spec is not None:
        spec = class_spec

        ahead, screen = spec.ahead, spec.screen

        @functools.wraps(function)
        def in_class(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            entry = flights.by_id.get(id(self))
            flight = flight_of(self) if entry is None else entry[1]
            attempt = ready_sync(spec, flight, self) if ahead else flight.state
            try:
                result = function(self, *args, **kwargs)
            except Exception as error:
                if not spec.options.is_unauthorized(error):
                    raise
                failed: BaseException | None = error
                result = None
            else:
                if (screen and type(result) in _PLAIN) or not _unauthorized_result(spec, result):
                    return result
                failed = None
            return _recover_call_sync(
                spec, flight, self, (attempt[0], self), args, kwargs, failed, result
            )

        return in_class
    assert core_of is not None  # noqa: S101 - instance mode always passes it

    @functools.wraps(function)
    def on_proxy(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        specs, flight = core_of(self)
        spec: MethodSpec = specs[name]
        attempt = ready_sync(spec, flight, self) if spec.ahead else flight.state
        try:
            result = getattr(attempt[1], name)(*args, **kwargs)
        except Exception as error:
            if not spec.options.is_unauthorized(error):
                raise
            failed: BaseException | None = error
            result = None
        else:
            if (spec.screen and type(result) in _PLAIN) or not _unauthorized_result(spec, result):
                return result
            failed = None
        return _recover_call_sync(spec, flight, self, attempt, args, kwargs, failed, result)

    return on_proxy
