"""`refresh_on_401`: check the options, then decorate a class or wrap an instance."""

from __future__ import annotations

import inspect
import time
import types
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, overload

from ._calls import async_call, sync_call
from ._classify import (
    DEFAULT_USAGE,
    ItemKind,
    StatusPredicate,
    UsageAccounting,
    is_unauthorized_error,
    kind_of,
)
from ._events import Event
from ._flight import Flight, flight_of
from ._proxy import InterceptingWrapper, RefreshingProxy, proxy_class
from ._spec import Driver, MethodSpec, Options, driver_for
from ._streams import StreamCall, gate_returned, gated_async, gated_sync, open_then_gate

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["refresh_on_401", "wrap_instance"]

P = TypeVar("P")
T = TypeVar("T")


def _stream_entry(
    shape: Callable[[StreamCall], Any],
) -> Callable[[MethodSpec, Flight, object, tuple[Any, ...], dict[str, Any]], Any]:
    def entry(
        spec: MethodSpec,
        flight: Flight,
        holder: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return shape(StreamCall(spec, flight, holder, args, kwargs))

    return entry


_ENTRIES: Mapping[Driver, Callable[..., Any] | None] = {
    Driver.CALL_ASYNC: None,  # calls are methods of their own: _calls.async_call, sync_call
    Driver.CALL_SYNC: None,
    Driver.STREAM_ASYNC_GENERATOR: _stream_entry(gated_async),
    Driver.STREAM_AWAITABLE: _stream_entry(open_then_gate),
    Driver.STREAM_SYNC_GENERATOR: _stream_entry(gated_sync),
    Driver.STREAM_RETURNED: _stream_entry(gate_returned),
}


def _is_async_callable(function: object) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def _seconds(value: object, option: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        msg = f"{option} must be a positive number of seconds or None, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _cooldown(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = cast("tuple[object, ...]", value) if isinstance(value, tuple) else ()
    if len(parts) == 2:
        first, cap = (_seconds(part, "cooldown") for part in parts)
        if first is not None and cap is not None and first <= cap:
            return first, cap
    msg = f"cooldown must be (first, cap) seconds with first <= cap, or None; got {value!r}"
    raise ValueError(msg)


def _windows(value: object) -> tuple[float, float]:
    parts = cast("tuple[object, ...]", value) if isinstance(value, tuple) else ()
    numbers = [part for part in parts if isinstance(part, int | float) and part is not True]
    if len(numbers) == 2 and numbers[0] >= numbers[1] >= 0:
        return float(numbers[0]), float(numbers[1])
    msg = (
        "refresh_ahead must be (advisory, mandatory) seconds with advisory >= mandatory >= 0; "
        f"got {value!r}"
    )
    raise ValueError(msg)


def _statuses(value: object) -> frozenset[int]:
    items = (value,) if isinstance(value, int | str) else value
    try:
        found = frozenset(cast("Iterable[object]", items))
    except TypeError:
        found = frozenset({value})
    if not all(isinstance(status, int) and 400 <= status <= 599 for status in found):
        msg = f"statuses must be HTTP error statuses (400 to 599), got {value!r}"
        raise ValueError(msg)
    return cast("frozenset[int]", found)


def _names(value: str | Iterable[object], option: str) -> tuple[str, ...]:
    names: tuple[object, ...] = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(name, str) and name.isidentifier() for name in names):
        msg = f"{option} must be method names, got {value!r}"
        raise TypeError(msg)
    return cast("tuple[str, ...]", names)


def _specs(
    methods: Mapping[str, Callable[..., Any]],
    options: Options,
    owner: str,
    *,
    in_class: bool,
) -> dict[str, MethodSpec]:
    """The specs of the methods found, after the checks that need to see them."""
    if not methods:
        wanted = ", ".join(options.calls + options.streams)
        msg = f"{owner} has none of the methods to intercept ({wanted}); pass calls= or streams="
        raise TypeError(msg)
    drivers = {
        name: driver_for(method, stream=name in options.streams) for name, method in methods.items()
    }
    if _is_async_callable(options.refresh) and not any(d.is_async for d in drivers.values()):
        msg = (
            f"refresh is a coroutine function, but every intercepted method of {owner} is "
            "synchronous and cannot await it; pass a plain function"
        )
        raise TypeError(msg)
    intercepted = tuple(methods)
    return {
        name: MethodSpec(
            name=name,
            driver=driver,
            options=options,
            intercepted=intercepted,
            original=methods[name] if in_class else None,
            entry=_ENTRIES[driver],
            ahead=options.expires_at is not None,
            screen=options.kind_of is kind_of,
        )
        for name, driver in drivers.items()
    }


# --------------------------------------------------------------------------------------------------
# instance mode


def wrap_instance(provider: object, options: Options) -> Any:
    """Wrap `provider` in a proxy whose intercepted methods refresh by replacement."""
    if issubclass(type(provider), RefreshingProxy):
        # Wrapping twice would stack two refreshers; the newest options win instead. (The
        # type, not isinstance: a proxy's __class__ is its provider's.)
        provider = cast("RefreshingProxy", provider).__wrapped__
    key = (type(provider), options)
    specs = _instance_specs.get(key)
    if specs is None:
        methods: dict[str, Callable[..., Any]] = {}
        for name in options.calls + options.streams:
            if _original(inspect.getattr_static(type(provider), name, None)) is not None:
                msg = (
                    f"{type(provider).__name__} is a class decorated with refresh_on_401 "
                    "already; its instances refresh on their own and must not be wrapped again"
                )
                raise TypeError(msg)
            method = getattr(provider, name, None)
            if callable(method):
                methods[name] = method
        specs = _specs(methods, options, type(provider).__name__, in_class=False)
        if callable_attributes_only(type(provider), specs):
            if len(_instance_specs) >= _SPECS_KEPT:
                _instance_specs.clear()
            _instance_specs[key] = specs
    return proxy_class(type(provider), specs)(provider, specs)


# Specs shared by the proxies of one provider class and one set of options: most programs wrap
# many providers with a few decorators, and each proxy then costs only itself and its flight.
_instance_specs: dict[tuple[type, Options], dict[str, MethodSpec]] = {}
_SPECS_KEPT = 256


def callable_attributes_only(provider_type: type, specs: Mapping[str, MethodSpec]) -> bool:
    """True when every intercepted name is a function of the class, the same for all instances."""
    return all(
        isinstance(inspect.getattr_static(provider_type, name, None), types.FunctionType)
        for name in specs
    )


# --------------------------------------------------------------------------------------------------
# class mode


def _original(found: object) -> Callable[..., Any] | None:
    """The undecorated function behind a method we intercepted, or None for anything else."""
    if isinstance(found, InterceptingWrapper):
        return found.__wrapped__
    original = getattr(found, "__refresh_on_401__", None) if callable(found) else None
    return cast("Callable[..., Any] | None", original)


def _class_wrapper(
    spec: MethodSpec,
) -> Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]:
    entry = spec.entry
    assert entry is not None  # noqa: S101 - streams only

    def wrapper(
        wrapped: object,  # noqa: ARG001 - the original is spec.original, called on retry too
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return entry(spec, flight_of(instance), instance, args, kwargs)

    return wrapper


def _class_method(name: str, spec: MethodSpec, function: Callable[..., Any]) -> Any:
    """The decorated class's method: plain functions for calls, wrapt wrappers for streams."""
    if spec.driver is Driver.CALL_ASYNC:
        method = async_call(name, function, spec)
    elif spec.driver is Driver.CALL_SYNC:
        method = sync_call(name, function, spec)
    else:
        return InterceptingWrapper(function, _class_wrapper(spec))
    method.__refresh_on_401__ = function  # type: ignore[attr-defined]
    return method


def decorate_class(cls: type[T], options: Options) -> type[T]:
    """Intercept the methods of `cls` in place; refresh updates each instance in place."""
    if cls.__weakrefoffset__ == 0:
        msg = (
            f"{cls.__name__} cannot be decorated: its instances cannot be weakly referenced; "
            "add '__weakref__' to its __slots__"
        )
        raise TypeError(msg)
    methods: dict[str, Callable[..., Any]] = {}
    for name in options.calls + options.streams:
        found = inspect.getattr_static(cls, name, None)
        found = _original(found) or found  # decorated before: replace, never stack
        if found is None:
            continue
        if not isinstance(found, types.FunctionType):
            msg = f"{cls.__name__}.{name} is a {type(found).__name__}, not a plain method"
            raise TypeError(msg)
        methods[name] = found
    for name, spec in _specs(methods, options, cls.__name__, in_class=True).items():
        setattr(cls, name, _class_method(name, spec, methods[name]))
    return cls


# --------------------------------------------------------------------------------------------------
# the public decorator


class _Decorator(Protocol):
    """What `refresh_on_401(refresh=...)` returns: it keeps the type of what it is given.

    Not generic in the provider type on purpose: a decorated subclass must stay itself, not
    become the base class that `refresh` was written for.
    """

    @overload
    def __call__(self, target: type[T], /) -> type[T]: ...
    @overload
    def __call__(self, target: T, /) -> T: ...


@overload
def refresh_on_401(
    target: type[P],
    /,
    *,
    refresh: Callable[[P], Awaitable[None] | None],
    calls: str | Iterable[str] = ...,
    streams: str | Iterable[str] = ...,
    is_unauthorized: Callable[[object], bool] = ...,
    kind_of: Callable[[object], ItemKind] = ...,
    usage: UsageAccounting = ...,
    statuses: Iterable[int] = ...,
    refresh_timeout: float | None = ...,
    cooldown: tuple[float, float] | None = ...,
    on_event: Callable[[Event], object] | None = ...,
    expires_at: Callable[[P], float | None] | None = ...,
    clock: Callable[[], float] = ...,
    refresh_ahead: tuple[float, float] = ...,
) -> type[P]: ...
@overload
def refresh_on_401(
    target: P,
    /,
    *,
    refresh: Callable[[P], P | Awaitable[P | None] | None],
    calls: str | Iterable[str] = ...,
    streams: str | Iterable[str] = ...,
    is_unauthorized: Callable[[object], bool] = ...,
    kind_of: Callable[[object], ItemKind] = ...,
    usage: UsageAccounting = ...,
    statuses: Iterable[int] = ...,
    refresh_timeout: float | None = ...,
    cooldown: tuple[float, float] | None = ...,
    on_event: Callable[[Event], object] | None = ...,
    expires_at: Callable[[P], float | None] | None = ...,
    clock: Callable[[], float] = ...,
    refresh_ahead: tuple[float, float] = ...,
) -> P: ...
@overload
def refresh_on_401(
    *,
    refresh: Callable[[P], P | Awaitable[P | None] | None],
    calls: str | Iterable[str] = ...,
    streams: str | Iterable[str] = ...,
    is_unauthorized: Callable[[object], bool] = ...,
    kind_of: Callable[[object], ItemKind] = ...,
    usage: UsageAccounting = ...,
    statuses: Iterable[int] = ...,
    refresh_timeout: float | None = ...,
    cooldown: tuple[float, float] | None = ...,
    on_event: Callable[[Event], object] | None = ...,
    expires_at: Callable[[P], float | None] | None = ...,
    clock: Callable[[], float] = ...,
    refresh_ahead: tuple[float, float] = ...,
) -> _Decorator: ...
def refresh_on_401(
    target: Any = None,
    /,
    *,
    refresh: Callable[[Any], Any],
    calls: str | Iterable[str] = ("chat", "embed"),
    streams: str | Iterable[str] = ("chat_stream",),
    is_unauthorized: Callable[[object], bool] = is_unauthorized_error,
    kind_of: Callable[[object], ItemKind] = kind_of,
    usage: UsageAccounting = DEFAULT_USAGE,
    statuses: Iterable[int] = (),
    refresh_timeout: float | None = 30.0,
    cooldown: tuple[float, float] | None = (1.0, 30.0),
    on_event: Callable[[Event], object] | None = None,
    expires_at: Callable[[Any], float | None] | None = None,
    clock: Callable[[], float] = time.time,
    refresh_ahead: tuple[float, float] = (120.0, 30.0),
) -> Any:
    """Refresh a provider's credentials when it reports a 401, and retry once.

    Applied to an **instance**, returns a proxy that is the provider for every other purpose;
    on a 401, `refresh(stale)` returns a replacement provider that the proxy swaps in (or None
    after refreshing the stale one in place). Applied to a **class** (as a decorator), the
    class's methods are intercepted and `refresh(instance)` updates the instance in place.
    Without a target, returns a decorator for either.

    Calls are retried once after a refresh. Streams are retried only while nothing but metadata
    has been forwarded, so output is never duplicated. Concurrent 401s on the same credentials
    share one refresh.

    Args:
        target: The provider instance or class. Omit it to get a decorator.
        refresh: Called with the stale provider; a plain function, or a coroutine function for
            async providers. Returns the replacement provider, or None.
        calls: Names of the request/response methods; names the provider lacks are skipped.
        streams: Names of the streaming methods; names the provider lacks are skipped.
        is_unauthorized: Whether an exception or error value means "refresh and retry".
        kind_of: Classifies streamed items for the gate (see `classify.kind_of`).
        usage: Reads and adds token usage, so an abandoned attempt's usage is not lost.
        statuses: More HTTP statuses that mean "credentials expired", for providers that answer
            403 to an expired token: `statuses={403}`. Added to what `is_unauthorized`
            recognises; by default only 401s are refreshed.
        refresh_timeout: Seconds a refresh may take before it is abandoned and the original 401
            surfaces (None: no limit). A sync refresh with a limit runs in a helper thread.
        cooldown: `(first, cap)` seconds during which new 401s after a failed refresh get that
            failure at once instead of refreshing again; the delay doubles with each failure up
            to `cap`, and the first success clears it. None turns it off.
        on_event: Called with each `refresh_middleware.events` event (refresh started,
            succeeded, failed, timed out; call retried; retry skipped). Exceptions it raises are
            logged and ignored.
        expires_at: Turns on proactive refresh: called with the provider, returns when its
            credentials expire (a time on `clock`), or None when unknown.
        clock: The clock `expires_at` reads on; `time.time` (epoch seconds) by default.
        refresh_ahead: `(advisory, mandatory)` seconds before expiry. In the advisory window one
            caller refreshes while the others go on; in the mandatory window everyone waits for
            the refresh, and a failure raises `refresh_middleware.events.RefreshError`.

    Raises:
        TypeError: `refresh` is not callable; the target has none of the methods; `refresh` is
            async but every intercepted method is synchronous; the class cannot be tracked.

    Example:
        >>> class Provider:
        ...     def __init__(self, key):
        ...         self.key = key
        ...     def chat(self, prompt):
        ...         if self.key == "expired":
        ...             raise PermissionError("HTTP 401 Unauthorized")
        ...         return f"echo: {prompt}"
        >>> provider = refresh_on_401(Provider("expired"), refresh=lambda stale: Provider("fresh"))
        >>> provider.chat("hi")
        'echo: hi'
        >>> provider.key
        'fresh'

    """
    if not callable(refresh):
        msg = f"refresh must be callable, got {type(refresh).__name__}"
        raise TypeError(msg)
    for option, value in (("is_unauthorized", is_unauthorized), ("kind_of", kind_of)):
        if not callable(value):
            msg = f"{option} must be callable, got {type(value).__name__}"
            raise TypeError(msg)
    if not (callable(getattr(usage, "read", None)) and callable(getattr(usage, "add", None))):
        msg = f"usage must have read(item) and add(item, extra) methods, got {usage!r}"
        raise TypeError(msg)
    for option, hook in (("on_event", on_event), ("expires_at", expires_at)):
        if hook is not None and not callable(hook):
            msg = f"{option} must be callable or None, got {type(hook).__name__}"
            raise TypeError(msg)
    if not callable(clock):
        msg = f"clock must be callable, got {type(clock).__name__}"
        raise TypeError(msg)
    extra = _statuses(statuses)
    options = Options(
        refresh=refresh,
        is_unauthorized=StatusPredicate(is_unauthorized, extra) if extra else is_unauthorized,
        kind_of=kind_of,
        usage=usage,
        calls=_names(calls, "calls"),
        streams=_names(streams, "streams"),
        refresh_timeout=_seconds(refresh_timeout, "refresh_timeout"),
        cooldown=_cooldown(cooldown),
        on_event=on_event,
        expires_at=expires_at,
        clock=clock,
        refresh_ahead=_windows(refresh_ahead),
    )

    def apply(target: Any) -> Any:
        if isinstance(target, type):
            return decorate_class(cast("type[Any]", target), options)
        return wrap_instance(target, options)

    return apply if target is None else apply(target)
