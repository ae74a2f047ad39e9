"""The wrapt proxy for instances: it *is* the provider, except that its intercepted methods refresh.

For each provider class and set of intercepted names there is one generated proxy class. Its
call methods are plain functions (made by `_calls.async_call` / `sync_call`, dressed with
`functools.wraps`), since they sit on every request; its stream methods are
`wrapt.FunctionWrapper`s around the provider class's own functions, so `inspect` sees an async
generator function where the provider has one. Either way the provider's function is only there
for introspection: the call goes to the method of whichever provider is current, so a swapped-in
replacement is used at once.

Per-proxy state lives in a `_self_core` slot, which wrapt keeps on the proxy instead of
forwarding.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import types
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

import wrapt

from ._calls import async_call, sync_call
from ._flight import Flight
from ._spec import Driver

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._spec import MethodSpec, Options

__all__ = ["InterceptingWrapper", "RefreshingProxy", "proxy_class"]


class InterceptingWrapper(wrapt.FunctionWrapper[..., Any]):
    """A method wrapper of ours; lets the decorator refuse to stack a second refresher."""


class RefreshingProxy(wrapt.BaseObjectProxy[Any]):
    """Base of the generated proxy classes (see `proxy_class`)."""

    # (specs by method name, flight): one slot, so the hot path reads the proxy once.
    __slots__ = ("_self_core",)
    _self_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, wrapped: object, specs: dict[str, MethodSpec]) -> None:
        super().__init__(wrapped)
        self._self_core = (specs, Flight(wrapped))

    @property
    def _self_options(self) -> Options:
        return next(iter(self._self_core[0].values())).options

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __copy__(self) -> Any:
        return type(self)(copy.copy(self.__wrapped__), self._self_core[0])

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return type(self)(copy.deepcopy(self.__wrapped__, memo), self._self_core[0])

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        options = self._self_options
        for part in (options.refresh, options.is_unauthorized, options.kind_of, options.usage):
            try:
                pickle.dumps(part, protocol)
            except Exception as error:
                msg = (
                    f"cannot pickle a refresh_on_401 proxy whose option {part!r} cannot be "
                    "pickled; use a module-level function (not a lambda or closure)"
                )
                raise TypeError(msg) from error
        return _restore, (self.__wrapped__, options)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(pickle.DEFAULT_PROTOCOL)


# Reads the core slot through its descriptor: half the cost of `proxy._self_core`, which goes
# through wrapt's attribute lookup. Every call through a proxy pays it once.
_core_of = RefreshingProxy.__dict__["_self_core"].__get__


def _restore(wrapped: object, options: Options) -> Any:
    from ._decorator import wrap_instance  # noqa: PLC0415 - the decorator imports this module

    return wrap_instance(wrapped, options)


def _dispatch(name: str) -> Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]:
    """The wrapt wrapper of one intercepted stream: hand the call to the stream's driver."""

    def wrapper(
        wrapped: object,  # noqa: ARG001 - the current provider's method is called instead
        proxy: RefreshingProxy,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        specs, flight = _core_of(proxy)
        spec = specs[name]
        return spec.entry(spec, flight, proxy, args, kwargs)

    wrapper.__name__ = name
    return wrapper


def _method(name: str, driver: Driver, function: Callable[..., Any]) -> Any:
    """The proxy's method for `name`: a plain function for calls, a wrapt wrapper for streams.

    Streams keep `wrapt.FunctionWrapper` so that `inspect.isasyncgenfunction` and friends see
    the provider's function; calls are plain functions, as their fast path is every request.
    """
    if driver is Driver.CALL_ASYNC:
        return async_call(name, function, None, _core_of)
    if driver is Driver.CALL_SYNC:
        return sync_call(name, function, None, _core_of)
    return InterceptingWrapper(function, _dispatch(name))


class _PerAccess:
    """Fallback for a callable that is not a function of the provider's class.

    Such a callable (an instance attribute, a callable object) has nothing for the proxy class
    to wrap, so a method is made on each access.
    """

    __slots__ = ("driver", "name")

    def __init__(self, name: str, driver: Driver) -> None:
        self.name = name
        self.driver = driver

    def __get__(self, proxy: RefreshingProxy | None, owner: type | None = None) -> Any:
        if proxy is None:
            return self
        target = getattr(proxy.__wrapped__, self.name)
        if self.driver in {Driver.CALL_ASYNC, Driver.CALL_SYNC}:
            return types.MethodType(_method(self.name, self.driver, target), proxy)
        dispatch = _dispatch(self.name)

        def wrapper(
            wrapped: object, _instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            return dispatch(wrapped, proxy, args, kwargs)

        return wrapt.FunctionWrapper(target, wrapper)


_classes: weakref.WeakKeyDictionary[type, dict[tuple[tuple[str, Driver], ...], type[Any]]] = (
    weakref.WeakKeyDictionary()
)


def proxy_class(provider_type: type, specs: dict[str, MethodSpec]) -> type[RefreshingProxy]:
    """The proxy class for providers of `provider_type` intercepted as `specs` say (cached)."""
    plan = tuple((name, spec.driver) for name, spec in specs.items())
    by_plan = _classes.setdefault(provider_type, {})
    cls = by_plan.get(plan)
    if cls is None:
        namespace: dict[str, Any] = {"__slots__": (), "_self_names": tuple(specs)}
        for name, driver in plan:
            function = inspect.getattr_static(provider_type, name, None)
            if isinstance(function, types.FunctionType):
                namespace[name] = _method(name, driver, function)
            else:
                namespace[name] = _PerAccess(name, driver)
        cls = by_plan[plan] = type(
            f"RefreshingProxy[{provider_type.__qualname__}]", (RefreshingProxy,), namespace
        )
    return cls
