"""What the drivers need to know about one intercepted method, fixed at decoration time."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import time
from collections.abc import Callable
from typing import Any

from ._classify import ItemKind, UsageAccounting
from ._events import Event
from ._flight import check_replacement

__all__ = ["Driver", "MethodSpec", "Options", "driver_for"]


class Driver(enum.Enum):
    """How a method is driven, chosen once from the original function."""

    CALL_ASYNC = "coroutine call"
    CALL_SYNC = "call"
    STREAM_ASYNC_GENERATOR = "async generator"
    STREAM_AWAITABLE = "awaitable resolving to a stream"
    STREAM_SYNC_GENERATOR = "generator"
    STREAM_RETURNED = "plain function returning a stream"
    """The shape is read from what the call returns: an async context manager, an async
    iterator, or an iterator (`anthropic`'s `messages.stream()` returns a manager)."""

    @property
    def is_async(self) -> bool:
        """True when the method can only be used from async code."""
        return self in {Driver.CALL_ASYNC, Driver.STREAM_ASYNC_GENERATOR, Driver.STREAM_AWAITABLE}


def driver_for(function: Callable[..., Any], *, stream: bool) -> Driver:
    """The driver for `function`, a call method or a stream method."""
    if not stream:
        return Driver.CALL_ASYNC if inspect.iscoroutinefunction(function) else Driver.CALL_SYNC
    if inspect.isasyncgenfunction(function):
        return Driver.STREAM_ASYNC_GENERATOR
    if inspect.iscoroutinefunction(function):
        return Driver.STREAM_AWAITABLE
    if inspect.isgeneratorfunction(function):
        return Driver.STREAM_SYNC_GENERATOR
    return Driver.STREAM_RETURNED


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """The decorator's options, shared by every method it intercepts."""

    refresh: Callable[[Any], Any]
    is_unauthorized: Callable[[object], bool]
    kind_of: Callable[[object], ItemKind]
    usage: UsageAccounting
    calls: tuple[str, ...]
    streams: tuple[str, ...]
    refresh_timeout: float | None = 30.0
    cooldown: tuple[float, float] | None = (1.0, 30.0)
    on_event: Callable[[Event], object] | None = None
    expires_at: Callable[[Any], float | None] | None = None
    clock: Callable[[], float] = time.time
    refresh_ahead: tuple[float, float] = (120.0, 30.0)


@dataclasses.dataclass(frozen=True, slots=True)
class MethodSpec:
    """One intercepted method: its name, driver, and how to call the original on a provider.

    In class mode `original` is the class's own function, called with the instance (never the
    wrapper, which would refresh twice). In instance mode it is None and the method is looked up
    on whichever provider is current.
    """

    name: str
    driver: Driver
    options: Options
    intercepted: tuple[str, ...]
    original: Callable[..., Any] | None
    entry: Callable[..., Any] | None
    """A stream driver's entry point: `entry(spec, flight, holder, args, kwargs)`."""
    ahead: bool = False
    """True when proactive refresh is on: calls look at the expiry first."""
    screen: bool = False
    """True when `kind_of` is the default, which never calls a str, None, number, list or tuple
    an ERROR: results of those types skip the check."""

    @property
    def in_place(self) -> bool:
        """True in class mode, where refresh updates the instance instead of replacing it."""
        return self.original is not None

    def invoke(self, provider: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call the original method of `provider`."""
        if self.original is not None:
            return self.original(provider, *args, **kwargs)
        return getattr(provider, self.name)(*args, **kwargs)

    def installer(self, holder: object) -> Callable[[Any], None] | None:
        """How a replacement provider is put in place: swapped into the proxy, or not at all."""
        if self.in_place:
            return None

        def install(fresh: object) -> None:
            holder.__wrapped__ = fresh  # type: ignore[attr-defined]

        return install

    def check(self, stale: object, result: object) -> Any:
        """The provider that `refresh(stale)` produced, or a TypeError for nonsense."""
        return check_replacement(stale, result, in_place=self.in_place, names=self.intercepted)
