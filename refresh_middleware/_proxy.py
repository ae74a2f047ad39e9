"""The wrapt proxy for instances: it *is* the provider, except that its intercepted methods refresh.

For each provider class and set of intercepted names there is one generated proxy class whose
intercepted methods are `wrapt.FunctionWrapper`s around the provider class's own functions.
Binding them is done by wrapt's C extension; the functions are wrapped only so that
`inspect.signature` and `inspect.iscoroutinefunction` see the provider's methods. The call always
goes to the method of whichever provider is current, so a swapped-in replacement is used at once.

Per-proxy state lives in `_self_*` slots, which wrapt keeps on the proxy instead of forwarding.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import types
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

import wrapt

from ._flight import Flight

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._spec import MethodSpec, Options

__all__ = ["InterceptingWrapper", "RefreshingProxy", "proxy_class"]


class InterceptingWrapper(wrapt.FunctionWrapper[..., Any]):
    """A method wrapper of ours; lets the decorator refuse to stack a second refresher."""


class RefreshingProxy(wrapt.BaseObjectProxy[Any]):
    """Base of the generated proxy classes (see `proxy_class`)."""

    __slots__ = ("_self_flight", "_self_options", "_self_specs")
    _self_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, wrapped: object, options: Options, specs: dict[str, MethodSpec]) -> None:
        super().__init__(wrapped)
        self._self_flight = Flight(wrapped)
        self._self_options = options
        self._self_specs = specs

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __copy__(self) -> Any:
        return type(self)(copy.copy(self.__wrapped__), self._self_options, self._self_specs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        wrapped = copy.deepcopy(self.__wrapped__, memo)
        return type(self)(wrapped, self._self_options, self._self_specs)

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


def _restore(wrapped: object, options: Options) -> Any:
    from ._decorator import wrap_instance  # noqa: PLC0415 - the decorator imports this module

    return wrap_instance(wrapped, options)


def _dispatch(name: str) -> Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]:
    """The wrapt wrapper of one intercepted name: hand the call to the method's driver."""

    def wrapper(
        wrapped: object,  # noqa: ARG001 - the current provider's method is called instead
        proxy: RefreshingProxy,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        spec = proxy._self_specs[name]  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
        flight = proxy._self_flight  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
        return spec.entry(spec, flight, proxy, args, kwargs)

    wrapper.__name__ = name
    return wrapper


class _PerAccess:
    """Fallback for a callable that is not a function of the provider's class.

    Such a callable (an instance attribute, a callable object) has nothing for the proxy class
    to wrap, so a wrapper is made on each access.
    """

    __slots__ = ("dispatch", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dispatch = _dispatch(name)

    def __get__(self, proxy: RefreshingProxy | None, owner: type | None = None) -> Any:
        if proxy is None:
            return self
        dispatch = self.dispatch

        def wrapper(
            wrapped: object, _instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            return dispatch(wrapped, proxy, args, kwargs)

        return wrapt.FunctionWrapper(getattr(proxy.__wrapped__, self.name), wrapper)


_classes: weakref.WeakKeyDictionary[type, dict[tuple[str, ...], type[RefreshingProxy]]] = (
    weakref.WeakKeyDictionary()
)


def proxy_class(provider_type: type, names: tuple[str, ...]) -> type[RefreshingProxy]:
    """The proxy class for providers of `provider_type` with `names` intercepted (cached)."""
    by_names = _classes.setdefault(provider_type, {})
    cls = by_names.get(names)
    if cls is None:
        namespace: dict[str, Any] = {"__slots__": (), "_self_names": names}
        for name in names:
            function = inspect.getattr_static(provider_type, name, None)
            if isinstance(function, types.FunctionType):
                namespace[name] = InterceptingWrapper(function, _dispatch(name))
            else:
                namespace[name] = _PerAccess(name)
        cls = by_names[names] = type(
            f"RefreshingProxy[{provider_type.__qualname__}]", (RefreshingProxy,), namespace
        )
    return cls
