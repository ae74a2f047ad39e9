"""The drivers of calls (`chat`, `embed`): call, and on a 401 refresh once and retry once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._classify import ItemKind
from ._flight import attach_refresh_failure

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._flight import Flight
    from ._spec import MethodSpec

__all__ = ["call_async", "call_sync", "current", "installer"]


def current(flight: Flight, holder: object) -> tuple[int, Any]:
    """The generation and provider a call starts on (the holder itself in class mode)."""
    generation, provider = flight.state
    return generation, holder if provider is None else provider


def installer(spec: MethodSpec, holder: object) -> Callable[[Any], None] | None:
    """How a replacement provider is put in place: swapped into the proxy, or not at all."""
    if spec.in_place:
        return None

    def install(fresh: object) -> None:
        holder.__wrapped__ = fresh  # type: ignore[attr-defined]

    return install


def _unauthorized_result(spec: MethodSpec, result: object) -> bool:
    options = spec.options
    return options.kind_of(result) is ItemKind.ERROR and options.is_unauthorized(result)


async def call_async(
    spec: MethodSpec, flight: Flight, holder: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Await the method; after an unauthorized error or result, refresh and await it once more."""
    generation, provider = current(flight, holder)
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
    fresh, refresh_error = await flight.refresh_async(
        generation, provider, spec.options.refresh, spec.check, installer(spec, holder)
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
    generation, provider = current(flight, holder)
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
    fresh, refresh_error = flight.refresh_sync(
        generation, provider, spec.options.refresh, spec.check, installer(spec, holder)
    )
    if refresh_error is not None:
        if failed is None:
            return result
        attach_refresh_failure(failed, refresh_error)
        raise failed
    return spec.invoke(fresh, args, kwargs)
