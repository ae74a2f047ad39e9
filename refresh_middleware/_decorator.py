"""`refresh_on_401`: check the options once, then decorate a class or wrap an instance."""

from __future__ import annotations

import functools
import inspect
import threading
import types
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, Unpack, cast, overload

from ._calls import watch_output_of
from ._flight import Flight
from ._proxy import intercepting, original_of, wrap_instance
from ._retry import Site
from ._spec import Method, Options, RefreshOptions, Shape, check_methods

__all__ = ["refresh_on_401"]

P = TypeVar("P")
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# class mode


class _Flights:
    """The flight of each instance of a decorated class, kept beside it rather than on it.

    Nothing is stored on the instance, so `__slots__`, `__eq__` without `__hash__`, copies and
    pickles all keep working. Entries are dropped when their instance is collected.
    """

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[weakref.ref[Any], Flight[None]]] = {}
        self._lock = threading.Lock()

    def of(self, instance: object, options: Options) -> Flight[None]:
        entry = self.by_id.get(id(instance))
        if entry is None:
            # An id is reused only after its object died, and the weak reference's callback
            # has removed the old entry by then.
            by_id, key = self.by_id, id(instance)
            ref = weakref.ref(instance, lambda _: by_id.pop(key, None))
            with self._lock:  # racing threads must agree on one flight
                entry = by_id.setdefault(
                    key,
                    (ref, Flight(None, cooldown=options.cooldown, clock=options.cooldown_clock)),
                )
        return entry[1]


_flights = _Flights()


def _site_of(method: Method) -> Callable[[Any], Site]:
    """Where a call of a decorated class's method runs: on its instance's flight."""

    def site(instance: object) -> Site:
        return method, _flights.of(instance, method.options), instance

    return site


def decorate_class(cls: type[T], options: Options) -> type[T]:
    """Intercept the methods of `cls` in place; refresh updates each instance in place."""
    if cls.__weakrefoffset__ == 0:
        msg = (
            f"{cls.__name__} cannot be decorated: its instances cannot be weakly referenced; "
            "add '__weakref__' to its __slots__"
        )
        raise TypeError(msg)
    if options.hands_out:
        msg = (
            "hands_out is for a wrapped instance, whose other methods run on the provider; the "
            f"methods of a decorated class run on the instance already, so {cls.__name__} "
            "needs none"
        )
        raise TypeError(msg)
    methods: dict[str, Method] = {}
    for name in options.calls + options.streams:
        if "." in name:
            msg = (
                f"{name!r} is a dotted name, which reaches a nested object of an instance; "
                "wrap an instance to intercept it, or decorate the nested object's class"
            )
            raise TypeError(msg)
        found = original_of(inspect.getattr_static(cls, name, None))  # never stack two
        if found is None:
            continue
        if not isinstance(found, types.FunctionType):
            msg = f"{cls.__name__}.{name} is a {type(found).__name__}, not a plain method"
            raise TypeError(msg)
        methods[name] = Method(name, Shape.of(found), name in options.streams, options, found)
    check_methods(methods, options, cls.__name__, cls)
    watch_output_of(cls)
    for name, method in methods.items():
        original = cast("Callable[..., Any]", method.original)
        replacement = intercepting(original, method.shape, method.stream, _site_of(method))
        setattr(cls, name, replacement)
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


_NO_TARGET: Any = object()
"""The target when none is given: `refresh_on_401(refresh=...)` returns a decorator."""


@overload
def refresh_on_401(
    target: type[P],
    /,
    *,
    refresh: Callable[[P], Awaitable[None] | None],
    **options: Unpack[RefreshOptions[P]],
) -> type[P]: ...
@overload
def refresh_on_401(
    target: P,
    /,
    *,
    refresh: Callable[[P], P | Awaitable[P | None] | None],
    **options: Unpack[RefreshOptions[P]],
) -> P: ...
@overload
def refresh_on_401(
    *,
    refresh: Callable[[P], P | Awaitable[P | None] | None],
    **options: Unpack[RefreshOptions[P]],
) -> _Decorator: ...


def refresh_on_401(target: Any = _NO_TARGET, /, *, refresh: Any, **options: Any) -> Any:
    """Refresh a provider's credentials when it reports a 401, and retry once.

    Applied to an **instance**, returns a proxy that is the provider for every other purpose;
    on a 401, `refresh(stale)` returns a replacement provider that the proxy swaps in (or None
    after refreshing the stale one in place). Applied to a **class** (as a decorator), the
    class's methods are intercepted and `refresh(instance)` updates the instance in place.
    Without a target, returns a decorator for either.

    Calls are retried once after a refresh. Streams are retried only while nothing but metadata
    has been forwarded, so output is never duplicated. Concurrent 401s on the same credentials
    share one refresh, across every task, thread and event loop of the process.

    Args:
        target: The provider instance or class. Omit it to get a decorator.
        refresh: Called with the stale provider; a plain function (run in a worker thread when
            called from async code) or a coroutine function. Returns the replacement provider,
            or None.
        **options: Keyword options, each with a default that fits the common case:

            - `calls`: names of the request/response methods (default `("chat", "embed")`).
              The default names are skipped when the provider lacks them; a name you give must
              exist. A dotted name (`"chat.completions.create"`) reaches a method of a nested
              object of an instance.
            - `streams`: names of the streaming methods (default `("chat_stream",)`). The
              shape is read per call: a stream method whose call returns a plain value (an
              SDK's `create(stream=False)`) is a call.
            - `is_unauthorized`: whether an exception or error value means "refresh and retry"
              (default `classify.is_unauthorized_error`).
            - `kind_of`: classifies streamed items for the gate (default `classify.kind_of`).
            - `usage`: reads and adds token usage, so an abandoned attempt's usage is not lost.
            - `statuses`: more HTTP statuses that mean "credentials expired", for providers
              that answer 403 to an expired token: `statuses={403}`.
            - `refresh_timeout`: seconds a refresh may take before it is abandoned and the
              original 401 surfaces (default 30; None: no limit).
            - `cooldown`: `(first, cap)` seconds during which new 401s after a failed refresh
              get that failure at once; doubles with each failure up to `cap`, cleared by the
              first success (default `(1, 30)`; None turns it off).
            - `on_event`: called with each `refresh_middleware.events` event; exceptions it
              raises are logged and ignored.
            - `expires_at`: turns on proactive refresh: called with the provider, returns when
              its credentials expire (a time on `clock`, or an aware `datetime`), or None.
            - `clock`: the clock `expires_at` reads on (default `time.time`); a clock given is
              also the one the cooldown is timed on (by default `time.monotonic`).
            - `refresh_ahead`: `(advisory, mandatory)` seconds before expiry (default
              `(120, 30)`). In the advisory window one caller refreshes while the others go
              on; in the mandatory one everyone waits, and a failure raises `RefreshError`.
            - `retry_arguments`: for APIs that take the key per call, called with the fresh
              provider and the call's `args` and `kwargs` before a retry; returns the
              `(args, kwargs)` to retry with, so a stale key is never sent twice.
            - `hands_out`: names of the provider's methods that hand the provider itself out
              (return it, or build something around it, as pydantic-ai's
              `_with_serving_wrapper` and LangChain's `bind` do). They run with the proxy as
              `self`, so what they hand out is the proxy and its calls still refresh.

    Raises:
        TypeError: The target is None or a function (wrap the object that has the method,
            or decorate its class); `refresh` or a hook is not callable; an option has the
            wrong type; a name given in `calls` or `streams` is not a method of the target
            (the error names the closest one); the target has none of the methods; `refresh`
            is async but every intercepted method is a generator function; the class cannot
            be tracked.
        ValueError: A number or window option is out of range.

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
    checked = Options.from_params(refresh, options)

    def apply(target: Any) -> Any:
        _check_target(target)
        if isinstance(target, type):
            return decorate_class(cast("type[Any]", target), checked)
        return wrap_instance(target, checked)

    return apply if target is _NO_TARGET else apply(target)


def _check_target(target: object) -> None:
    """Refuse targets that cannot be providers, with what to wrap instead.

    Raises:
        TypeError: `target` is None (a missing provider, not a request for a decorator), or a
            function or method, whose object or class is what refreshes.

    """
    if target is None:
        msg = (
            "refresh_on_401() got None as the provider to wrap; pass the provider instance or "
            "class, or leave the target out to get a decorator: refresh_on_401(refresh=...)"
        )
        raise TypeError(msg)
    if inspect.isroutine(target) or isinstance(target, functools.partial):
        function = target.func if isinstance(target, functools.partial) else target
        name = getattr(function, "__name__", type(function).__name__)
        msg = (
            f"refresh_on_401() got the function {name!r}, but it wraps the object that has the "
            f"method (refresh_on_401(provider, refresh=..., calls=({name!r},))) or decorates "
            "its class; a bare function has no provider to refresh"
        )
        raise TypeError(msg)
