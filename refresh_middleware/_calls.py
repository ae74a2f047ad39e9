"""The drivers of calls (`chat`, `embed`): call, and on a 401 refresh once and retry once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, cast

from ._ahead import ready_async, ready_sync
from ._classify import ItemKind
from ._events import CallRetried, NotReplayableError, RefreshError, RetrySkipped, emit
from ._flight import attach_refresh_failure

if TYPE_CHECKING:
    from ._flight import Flight, RefreshOutcome
    from ._spec import MethodSpec

__all__ = ["call_async", "call_sync", "recover_async", "recover_sync"]


def unreplayable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why the arguments cannot be sent again, or None when they can.

    An iterator or generator argument was consumed by the first attempt; a retry would send
    what is left of it, silently different.
    """
    named = [(f"argument {position}", value) for position, value in enumerate(args)]
    named += [(f"argument {name!r}", value) for name, value in kwargs.items()]
    for name, value in named:
        if isinstance(value, Iterator | AsyncIterator):
            kind = type(cast("object", value)).__name__
            return f"{name} is a one-shot {kind}, consumed by the first attempt"
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
    if failure is None:
        reason = unreplayable(args, kwargs)
        if reason is None:
            emit(spec.options.on_event, CallRetried(type(provider).__name__, spec.name))
            return outcome
        failure = NotReplayableError(f"not retried: {reason}")
    why = str(failure) if isinstance(failure, RefreshError) else "the refresh failed"
    emit(spec.options.on_event, RetrySkipped(type(provider).__name__, spec.name, why))
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


async def call_async(
    spec: MethodSpec, flight: Flight, holder: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Await the method; after an unauthorized error or result, refresh and await it once more."""
    generation, provider = await ready_async(spec, flight, holder)
    result: Any = None
    try:
        result = await spec.invoke(provider, args, kwargs)
    except Exception as error:
        if not spec.options.is_unauthorized(error):
            raise
        failed: BaseException | None = error
    else:
        if not _unauthorized_result(spec, result):
            return result
        failed = None
    fresh, refresh_error = await recover_async(
        spec, flight, holder, generation, provider, args, kwargs
    )
    if refresh_error is not None:
        if failed is None:
            return result
        attach_refresh_failure(failed, refresh_error)
        raise failed
    return await spec.invoke(fresh, args, kwargs)


def call_sync(
    spec: MethodSpec, flight: Flight, holder: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The synchronous form of `call_async`; threads share one refresh per generation."""
    generation, provider = ready_sync(spec, flight, holder)
    result: Any = None
    try:
        result = spec.invoke(provider, args, kwargs)
    except Exception as error:
        if not spec.options.is_unauthorized(error):
            raise
        failed: BaseException | None = error
    else:
        if not _unauthorized_result(spec, result):
            return result
        failed = None
    fresh, refresh_error = recover_sync(spec, flight, holder, generation, provider, args, kwargs)
    if refresh_error is not None:
        if failed is None:
            return result
        attach_refresh_failure(failed, refresh_error)
        raise failed
    return spec.invoke(fresh, args, kwargs)
