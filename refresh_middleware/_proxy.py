"""Instance mode: a wrapt proxy that *is* the provider, except that its intercepted methods refresh.

For each provider class and set of intercepted names there is one generated proxy class. Its
intercepted methods are `wrapt.FunctionWrapper`s around the provider class's own functions, so
`inspect` sees what the provider has (a coroutine function, an async generator function, a
plain function) and the signature is the provider's. The function is only there to be seen:
a call goes to the method of whichever provider is current, so a swapped-in replacement is used
at once. A dotted name (`"chat.completions.create"`) is reached through `PathProxy`s, nested
proxies over the provider's attributes (`client.chat`, `client.chat.completions`), and is
looked up from the current provider at each call too.

Per-proxy state lives in the `_self_core` slot, which wrapt keeps on the proxy instead of
forwarding. Proxy classes are cached in the provider class's own namespace, so a class made at
run time and dropped is collected with its proxy classes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import pickle
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, cast

import wrapt

from ._calls import awaiting_method, call_coroutine, call_plain, calling_method, watch_output_of
from ._events import UnrelatedReplacement, emit, logger
from ._flight import Flight
from ._retry import Call, Site
from ._spec import Method, Options, Shape, check_methods, reach
from ._streams import stream_async_generator, stream_coroutine, stream_generator, stream_plain

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "InterceptingWrapper",
    "RefreshingProxy",
    "intercepting",
    "original_of",
    "wrap_instance",
]

_ENTRIES: Mapping[tuple[Shape, bool], Callable[[Call], Any]] = {
    (Shape.COROUTINE, False): call_coroutine,
    (Shape.ASYNC_GENERATOR, False): call_plain,
    (Shape.GENERATOR, False): call_plain,
    (Shape.PLAIN, False): call_plain,
    (Shape.COROUTINE, True): stream_coroutine,
    (Shape.ASYNC_GENERATOR, True): stream_async_generator,
    (Shape.GENERATOR, True): stream_generator,
    (Shape.PLAIN, True): stream_plain,
}


class InterceptingWrapper(wrapt.FunctionWrapper[..., Any]):
    """A method wrapper of ours; lets the decorator refuse to stack a second refresher."""


SiteOf = Callable[[Any], Site]
"""Where a call of a method runs, from its holder (`self`)."""

ORIGINAL = "__refresh_on_401__"
"""Where an intercepting method keeps the function it replaced."""


def intercepting(function: Callable[..., Any], shape: Shape, stream: bool, site: SiteOf) -> Any:
    """The method that replaces `function` (of a class, or of a proxy class) and refreshes.

    It stays what `inspect` saw: an `async def` for a coroutine function, a plain function for
    a plain one (both dressed by `functools.wraps`, and cheap to look up and call), and for
    generator functions a `wrapt.FunctionWrapper`, through which `inspect` sees the original.
    Each call is handed to the driver of its shape as a `Call`, made where `site` says; a call
    method runs its first attempt itself (`awaiting_method`, `calling_method`).
    """
    entry = _ENTRIES[shape, stream]
    if shape is Shape.COROUTINE and not stream:
        replacement: Any = awaiting_method(function, site)
    elif shape is Shape.COROUTINE:

        @functools.wraps(function)
        async def awaited(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            return await entry(Call(*site(self), args, kwargs))

        replacement = awaited
    elif shape is Shape.PLAIN and not stream:
        replacement = calling_method(function, site)
    elif shape is Shape.PLAIN:

        @functools.wraps(function)
        def plain(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            return entry(Call(*site(self), args, kwargs))

        replacement = plain
    else:

        def wrapper(
            wrapped: object,  # noqa: ARG001 - the current provider's method is called instead
            instance: object,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            # Called through the class (`Provider.chat_stream(p, ...)`), wrapt hands the first
            # argument over as the instance, as Python binds methods.
            return entry(Call(*site(instance), args, kwargs))

        return InterceptingWrapper(function, wrapper)
    setattr(replacement, ORIGINAL, function)
    return replacement


def original_of(found: object) -> Any:
    """The function an intercepting method replaced, or `found` itself."""
    if isinstance(found, InterceptingWrapper):
        return found.__wrapped__
    return getattr(found, ORIGINAL, None) or found


class Core(NamedTuple):
    """What a proxy needs on every intercepted call: its methods, its flight, its options."""

    methods: dict[str, Method]
    flight: Flight[Any]
    options: Options
    holder: Any = None
    """For a proxy of a derived client: the proxy whose provider the flight holds."""


class RefreshingProxy(wrapt.BaseObjectProxy[Any]):
    """Base of the generated proxy classes (see `proxy_class`)."""

    __slots__ = ("_self_core",)
    _refreshing_proxy: ClassVar[bool] = True
    """Marks our proxies by class: a refresh that returns one is unwrapped, never nested."""

    def __init__(self, wrapped: object, core: Core) -> None:
        super().__init__(wrapped)
        self._self_core = core

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    # A client entered hands itself out (`with OpenAI() as client`): that is the proxy.
    def __enter__(self) -> Any:
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    async def __aenter__(self) -> Any:
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    def __copy__(self) -> Any:
        return wrap_instance(copy.copy(self.__wrapped__), self._self_core.options)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return wrap_instance(copy.deepcopy(self.__wrapped__, memo), self._self_core.options)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        options = self._self_core.options
        for field in dataclasses.fields(options):
            part = options.given(field.name)
            try:
                pickle.dumps(part, protocol)
            except Exception:  # noqa: BLE001 - any failure means this option cannot travel
                # The option's type, never its repr: a refresh callable may be a dataclass
                # holding a client secret. Nothing is chained, since pickle's own message may
                # show the object.
                msg = (
                    f"cannot pickle a refresh_on_401 proxy: its {field.name}= option, of type "
                    f"{_type_name(part)}, cannot be pickled; use a module-level function or an "
                    "instance of a module-level class (not a lambda, closure or local class)"
                )
                raise TypeError(msg) from None
        return wrap_instance, (self.__wrapped__, options)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(pickle.DEFAULT_PROTOCOL)


def _type_name(value: object) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class PathProxy(wrapt.BaseObjectProxy[Any]):
    """A nested object of the provider (`client.chat.completions`) on the way to a method.

    It is that object for every other purpose; its `_self_root` is the provider's proxy, where
    the flight and the current provider are.
    """

    __slots__ = ("_self_root",)

    def __init__(self, wrapped: object, root: RefreshingProxy) -> None:
        super().__init__(wrapped)
        self._self_root = root

    def __repr__(self) -> str:
        return repr(self.__wrapped__)


# The proxy's state read through its slot's own descriptor: wrapt's attribute hook, which a
# subclass of its proxy gets, costs more than the rest of `site` on every intercepted call.
_core_of: Final[Callable[[RefreshingProxy], Core]] = RefreshingProxy.__dict__["_self_core"].__get__


def _root(holder: RefreshingProxy | PathProxy) -> RefreshingProxy:
    if isinstance(holder, PathProxy):
        return holder._self_root  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
    return holder


def _site_of(name: str, base: type[Any]) -> SiteOf:
    """Where a call of the proxy's method `name` runs: on the proxy's flight.

    A proxy class knows its base, so the root is found without asking each call's holder what
    it is (an `isinstance` on a proxy also asks the provider's class).
    """
    if base is PathProxy:

        def site_of_path(holder: PathProxy) -> Site:
            root = holder._self_root  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
            core = _core_of(root)
            return core.methods[name], core.flight, core.holder or root

        return site_of_path

    def site(root: RefreshingProxy) -> Site:
        core = _core_of(root)
        return core.methods[name], core.flight, core.holder or root

    return site


class _PerAccess:
    """An intercepted callable that is not a function of the class: wrapped on each access.

    An instance attribute, a callable object or a builtin method gives the proxy class
    nothing to wrap ahead of time.
    """

    __slots__ = ("entry", "name", "part")

    def __init__(self, name: str, part: str, entry: Callable[[Call], Any]) -> None:
        self.name = name
        self.part = part
        self.entry = entry

    def __get__(self, holder: RefreshingProxy | PathProxy | None, owner: object = None) -> Any:
        if holder is None:
            return self
        entry, name = self.entry, self.name

        def bound(
            _wrapped: object, _instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            root = _root(holder)
            core: Core = root._self_core  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
            return entry(Call(core.methods[name], core.flight, root, args, kwargs))

        return wrapt.FunctionWrapper(getattr(holder.__wrapped__, self.part), bound)


class _Branch:
    """A step of a dotted name (`chat` of `chat.completions.create`): gives a `PathProxy`."""

    __slots__ = ("hands_out", "part", "plan")

    def __init__(self, part: str, plan: Plan, hands_out: tuple[str, ...]) -> None:
        self.part = part
        self.plan = plan
        self.hands_out = hands_out

    def __get__(self, holder: RefreshingProxy | PathProxy | None, owner: object = None) -> Any:
        if holder is None:
            return self
        inner: object = getattr(holder.__wrapped__, self.part)
        cls = _proxy_class(type(inner), self.plan, PathProxy, self.hands_out)
        return cls(inner, _root(holder))


class _Recipe:
    """How a derived client is made from the provider: `with_options(...)` of it, say.

    Made again from each provider the flight holds (once per provider), so a derived
    client's calls use the fresh credentials with the options it was made with.
    """

    __slots__ = ("args", "kwargs", "last", "name", "parent")

    def __init__(
        self,
        parent: _Recipe | None,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        last: tuple[object, object],
    ) -> None:
        self.parent = parent
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.last = last  # (provider, what was made of it): most calls find it here

    def __call__(self, provider: object) -> object:
        last = self.last
        if last[0] is provider:
            return last[1]
        base = provider if self.parent is None else self.parent(provider)
        made: object = getattr(base, self.name)(*self.args, **self.kwargs)
        self.last = (provider, made)
        return made


class _Derives:
    """A method of the provider that returns it seen another way (`with_options`, `copy`).

    What it returns is wrapped in a proxy of its own on the same flight: a 401 there
    refreshes the provider once for every door, and its calls go to the client made the
    same way from whichever provider is current.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, holder: RefreshingProxy | None, owner: object = None) -> Any:
        if holder is None:
            return self
        name, method = self.name, getattr(holder.__wrapped__, self.name)

        @functools.wraps(method)
        def derive(*args: Any, **kwargs: Any) -> Any:
            return _derived(holder, name, args, kwargs, method(*args, **kwargs))

        return derive


def _derived(
    holder: RefreshingProxy, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], made: object
) -> Any:
    """The proxy of `made`, which `holder`'s `name(*args, **kwargs)` returned: same flight."""
    core: Core = holder._self_core  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]
    root = core.holder or holder
    parent = next((m.derive for m in core.methods.values()), None)
    recipe = _Recipe(cast("_Recipe | None", parent), name, args, kwargs, (root.__wrapped__, made))
    methods = {n: dataclasses.replace(m, derive=recipe) for n, m in core.methods.items()}
    doors = _doors(core.options.preset(made))
    cls = _proxy_class(type(made), _plan(methods), RefreshingProxy, *doors)
    return cls(made, Core(methods, core.flight, core.options, root))


class Step(NamedTuple):
    """An intercepted name, as a proxy class on the way to it sees it."""

    name: str
    """The whole dotted name, as the options give it."""
    rest: str
    """What is left of it below this class: a method's name, or a step towards one."""
    shape: Shape
    stream: bool


Plan = tuple[Step, ...]

_CACHE = "__refresh_on_401_proxies__"


def _proxy_class(
    owner: type,
    plan: Plan,
    base: type[Any],
    hands_out: tuple[str, ...],
    derives: tuple[str, ...] = (),
) -> type[Any]:
    """The proxy class for instances of `owner` with these names intercepted (cached).

    The cache lives in `owner`'s own namespace: a class made at run time and dropped takes its
    proxy classes with it, which a global cache keyed by class would keep alive forever.
    """
    key = (plan, base, hands_out, derives)
    cache: dict[tuple[Plan, type[Any], tuple[str, ...], tuple[str, ...]], type[Any]] | None
    cache = owner.__dict__.get(_CACHE)
    if cache is None:
        cache = {}
        try:
            type.__setattr__(owner, _CACHE, cache)
        except (TypeError, AttributeError):  # a builtin or frozen type: build each time
            return _build(owner, *key)
    cls = cache.get(key)
    if cls is None:
        cls = cache[key] = _build(owner, *key)
    return cls


def _hand_out(
    owner: type, hands_out: tuple[str, ...], namespace: dict[str, Any]
) -> dict[str, list[str]]:
    """Put the methods and properties that hand the provider out in `namespace`.

    Returns the dotted names, by their first step, for the branches to hand out below.
    """
    handed: dict[str, list[str]] = {}
    for name in hands_out:
        part, _, below = name.partition(".")
        if below:
            handed.setdefault(part, []).append(below)
            continue
        # The class's own function, found on the proxy's class: Python binds it to the proxy,
        # so the provider it hands out (`wrap(self)`, `RunnableBinding(bound=self)`) is that.
        # A property is read the same way (`with_raw_response`, genai's `chats`), afresh each
        # time: a cached one would be kept on the provider, for its own callers to find.
        function = inspect.getattr_static(owner, name, None)
        if isinstance(function, functools.cached_property):
            function = property(function.func)
        if isinstance(function, types.FunctionType | property):
            namespace[name] = function
    return handed


def _build(
    owner: type, plan: Plan, base: type[Any], hands_out: tuple[str, ...], derives: tuple[str, ...]
) -> type[Any]:
    namespace: dict[str, Any] = {"__slots__": ()}
    handed = _hand_out(owner, hands_out, namespace)
    for name in derives:
        if callable(inspect.getattr_static(owner, name, None)):
            namespace[name] = _Derives(name)
    branches: dict[str, list[Step]] = {}
    for step in plan:
        part, _, below = step.rest.partition(".")
        if below:
            branches.setdefault(part, []).append(step._replace(rest=below))
            continue
        function = inspect.getattr_static(owner, part, None)
        if isinstance(function, types.FunctionType):
            site = _site_of(step.name, base)
            namespace[part] = intercepting(function, step.shape, step.stream, site)
        else:
            namespace[part] = _PerAccess(step.name, part, _ENTRIES[step.shape, step.stream])
    for part in dict.fromkeys([*branches, *handed]):
        namespace[part] = _Branch(part, tuple(branches.get(part, ())), tuple(handed.get(part, ())))
    return type(f"{base.__name__}[{owner.__qualname__}]", (base,), namespace)


def _shape(method: Callable[..., Any]) -> Shape:
    """The shape of a found method, read from the function behind a bound method."""
    return Shape.of(getattr(method, "__func__", method))


def wrap_instance(provider: object, options: Options) -> Any:
    """Wrap `provider` in a proxy whose intercepted methods refresh by replacement.

    Raises:
        TypeError: The provider is an instance of a decorated class, has none of the methods,
            or names overlap (a method and a dotted name through it).

    """
    provider = _inner(provider, options)
    given, options = options, options.preset(provider)
    methods: dict[str, Method] = {}
    for name in options.calls + options.streams:
        found = reach(provider, name)
        if found is not None:
            stream = name in options.streams
            methods[name] = Method(name, _shape(found), stream, options)
    check_methods(methods, options, type(provider).__name__, provider)
    _check_overlaps(methods)
    names = tuple(methods)
    # The methods refresh through a watcher of this proxy's own; `Core` keeps the options as
    # given, for copies and pickles.
    watched = dataclasses.replace(options, refresh=_watcher(options, names))
    methods = {name: dataclasses.replace(m, options=watched) for name, m in methods.items()}
    methods = {name: dataclasses.replace(m, intercepted=names) for name, m in methods.items()}
    flight: Flight[Any] = Flight(provider, cooldown=options.cooldown, clock=options.cooldown_clock)
    cls = _proxy_class(type(provider), _plan(methods), RefreshingProxy, *_doors(options))
    watch_output_of(type(provider))
    return cls(provider, Core(methods, flight, given))


def _plan(methods: Mapping[str, Method]) -> Plan:
    return tuple(Step(name, name, m.shape, m.stream) for name, m in sorted(methods.items()))


def _doors(options: Options) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What hands the provider out, as such and seen another way (`_proxy_class` arguments)."""
    return options.hands_out, options.derives


class _Watcher:
    """The proxy's `refresh`: the user's, and one warning if it swaps in an unrelated class.

    A replacement that lacks the intercepted methods is refused by the engine; one that has
    them is swapped in whatever its class. When neither its class nor the stale provider's is a
    subclass of the other, that is likely a mistake, said once per proxy through the events and
    the log (class names only, never a repr).
    """

    __slots__ = ("names", "options", "warned")

    def __init__(self, options: Options, names: tuple[str, ...]) -> None:
        self.options = options
        self.names = names
        self.warned = False

    def __call__(self, stale: object) -> Any:
        result = self.options.refresh(stale)
        self.check(stale, result)
        return result

    def check(self, stale: object, result: object) -> None:
        """Warn the first time `result` is an unrelated replacement the engine will take."""
        fresh: object = result
        while getattr(type(fresh), "_refreshing_proxy", False):
            fresh = cast("Any", fresh).__wrapped__
        old: type[object] = type(stale)
        new: type[object] = type(fresh)
        if (
            self.warned
            or result is None
            or issubclass(new, old)
            or issubclass(old, new)
            or inspect.isawaitable(result)  # a plain refresh's coroutine: the engine decides
            or any(reach(fresh, name) is None for name in self.names)  # refused anyway
        ):
            return
        self.warned = True
        logger.warning(
            "refresh_middleware: refresh returned a %s for a %s provider; it has the "
            "intercepted methods and was swapped in, but the classes are unrelated",
            new.__name__,
            old.__name__,
        )
        emit(self.options.on_event, UnrelatedReplacement(old.__name__, new.__name__))


class _AsyncWatcher(_Watcher):
    """`_Watcher` for a coroutine-function refresh: it stays one, as the engine reads it."""

    __slots__ = ()

    async def __call__(self, stale: object) -> Any:
        result = await self.options.refresh(stale)
        self.check(stale, result)
        return result


def _watcher(options: Options, names: tuple[str, ...]) -> _Watcher:
    return (_AsyncWatcher if options.refresh_is_async else _Watcher)(options, names)


def _inner(provider: object, options: Options) -> object:
    """The provider to wrap: never one of our proxies, never an instance of a decorated class."""
    if getattr(type(provider), "_refreshing_proxy", False):
        # Wrapping twice would stack two refreshers; the newest options win instead. (The
        # type, not isinstance: a proxy's __class__ is its provider's.)
        return _inner(provider.__wrapped__, options)  # type: ignore[attr-defined]
    for name in options.calls + options.streams:
        found = inspect.getattr_static(type(provider), name.partition(".")[0], None)
        if original_of(found) is not found:
            msg = (
                f"{type(provider).__name__} is a class decorated with refresh_on_401 already; "
                "its instances refresh on their own and must not be wrapped again"
            )
            raise TypeError(msg)
    return provider


def _check_overlaps(methods: Mapping[str, Method]) -> None:
    for name in methods:
        for other in methods:
            if other.startswith(f"{name}."):
                msg = (
                    f"{name!r} and {other!r} overlap: a method cannot also be the way to "
                    "another one; intercept one of them"
                )
                raise TypeError(msg)
