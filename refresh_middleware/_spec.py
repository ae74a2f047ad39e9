"""What is fixed when a provider is wrapped or a class decorated: the options and the methods.

`Options` is the one place that owns every option of `refresh_on_401`: its default, how it is
normalised, and how it is checked (each error names the option). The public signature takes
them as keyword arguments typed by `RefreshOptions`, which a test keeps equal to `Options`.
`Method` is one intercepted method: its name, its shape, and how to call the original.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import enum
import inspect
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Generic, TypedDict, TypeVar, cast

from ._events import Event, Observed, observers
from ._gate import DEFAULT_USAGE, UsageAccounting
from ._kinds import ItemKind, Preset, kind_of, preset_for
from ._unauthorized import StatusPredicate, is_unauthorized_error

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "REFRESH_AHEAD",
    "Method",
    "Options",
    "RefreshOptions",
    "Shape",
    "check_methods",
    "depth",
    "epoch_seconds",
    "is_async_callable",
    "reach",
]

P = TypeVar("P")

REFRESH_AHEAD: Final = (120.0, 30.0)
"""The windows before expiry by default, `(advisory, mandatory)` seconds: in the advisory one
a caller refreshes while the others go on, in the mandatory one every caller waits."""


class RefreshOptions(TypedDict, Generic[P], total=False):
    """The keyword options of `refresh_on_401` besides `refresh`, for type checkers.

    Defaults and checks live in `Options`; see `refresh_on_401` for what each one means.
    """

    calls: str | Iterable[str]
    streams: str | Iterable[str]
    is_unauthorized: Callable[[object], bool]
    kind_of: Callable[[object], ItemKind]
    usage: UsageAccounting
    statuses: int | Iterable[int]
    refresh_timeout: float | None
    cooldown: tuple[float, float] | None
    on_event: Callable[[Event], object] | None
    expires_at: Callable[[P], float | dt.datetime | None] | None
    clock: Callable[[], float]
    refresh_ahead: tuple[float, float]
    retry_arguments: (
        Callable[[P, tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]
        | None
    )
    hands_out: str | Iterable[str]


def is_async_callable(function: object) -> bool:
    """True for a coroutine function, or an object whose `__call__` is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def _callable(value: object, option: str, *, optional: bool = False) -> Any:
    if (value is None and optional) or callable(value):
        return value
    wanted = "callable or None" if optional else "callable"
    msg = f"{option} must be {wanted}, got {type(value).__name__}"
    raise TypeError(msg)


def _names(value: object, option: str) -> tuple[str, ...]:
    """Method names: one name, or an iterable of them; a dotted name reaches a nested method."""
    names: tuple[object, ...] | None = None
    if isinstance(value, str):
        names = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, bytes):
        names = tuple(cast("Iterable[object]", value))
    if names is None or not all(
        isinstance(name, str) and name and all(part.isidentifier() for part in name.split("."))
        for name in names
    ):
        msg = (
            f"{option} must be a method name or names (dotted names reach nested methods: "
            f"'chat.completions.create'), got {value!r}"
        )
        raise TypeError(msg)
    return cast("tuple[str, ...]", names)


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
    if len(numbers) == 2 and math.inf > numbers[0] >= numbers[1] >= 0:
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
    if not all(
        isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599
        for status in found
    ):
        msg = f"statuses must be HTTP error statuses (400 to 599), got {value!r}"
        raise ValueError(msg)
    return cast("frozenset[int]", found)


def _usage(value: object) -> UsageAccounting:
    if callable(getattr(value, "read", None)) and callable(getattr(value, "add", None)):
        return cast("UsageAccounting", value)
    msg = f"usage must have read(item) and add(item, extra) methods, got {value!r}"
    raise TypeError(msg)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Options:
    """The options of one `refresh_on_401`, normalised and checked; shared by its methods.

    Compared and hashed by identity (`eq=False`), so option values need not be hashable.
    """

    refresh: Callable[[Any], Any]
    calls: tuple[str, ...] = ("chat", "embed")
    streams: tuple[str, ...] = ("chat_stream",)
    is_unauthorized: Callable[[object], bool] = is_unauthorized_error
    kind_of: Callable[[object], ItemKind] = kind_of
    usage: UsageAccounting = DEFAULT_USAGE
    statuses: frozenset[int] = frozenset()
    refresh_timeout: float | None = 30.0
    cooldown: tuple[float, float] | None = (1.0, 30.0)
    on_event: Callable[[Event], object] | None = None
    expires_at: Callable[[Any], object] | None = None
    clock: Callable[[], float] = time.time
    refresh_ahead: tuple[float, float] = REFRESH_AHEAD
    retry_arguments: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any] | None = None
    hands_out: tuple[str, ...] = ()
    typed: frozenset[str] = frozenset()
    """Which of `calls`, `streams` and `hands_out` the user gave: a preset leaves those alone,
    and the names given in `calls` and `streams` must exist, not be skipped."""
    derives: tuple[str, ...] = ()
    """From a preset: methods that return the provider seen another way (`with_options`)."""
    helpers: Mapping[str, str] = dataclasses.field(default_factory=dict[str, str])
    """From a preset: stream helpers that read the stream, run with the gated view as self."""
    parses: tuple[str, ...] = ()
    """From a preset: methods of a raw response that read its body, a stream read gated."""

    @classmethod
    def from_params(cls, refresh: object, params: Mapping[str, object]) -> Options:
        """Check and normalise the keyword arguments of `refresh_on_401`."""
        keywords = {field.name for field in dataclasses.fields(cls)} - _NOT_KEYWORDS
        unknown = sorted(set(params) - keywords)
        if unknown:
            msg = f"refresh_on_401() got an unexpected keyword argument {unknown[0]!r}"
            raise TypeError(msg)
        given = {**_defaults(), **params}
        statuses = _statuses(given["statuses"])
        return cls(
            refresh=_callable(refresh, "refresh"),
            calls=_names(given["calls"], "calls"),
            streams=_names(given["streams"], "streams"),
            is_unauthorized=_callable(given["is_unauthorized"], "is_unauthorized"),
            kind_of=_callable(given["kind_of"], "kind_of"),
            usage=_usage(given["usage"]),
            statuses=statuses,
            refresh_timeout=_seconds(given["refresh_timeout"], "refresh_timeout"),
            cooldown=_cooldown(given["cooldown"]),
            on_event=_callable(given["on_event"], "on_event", optional=True),
            expires_at=_callable(given["expires_at"], "expires_at", optional=True),
            clock=_callable(given["clock"], "clock"),
            refresh_ahead=_windows(given["refresh_ahead"]),
            retry_arguments=_callable(given["retry_arguments"], "retry_arguments", optional=True),
            hands_out=_names(given["hands_out"], "hands_out"),
            typed=frozenset({"calls", "streams", "hands_out"} & set(params)),
        )

    def preset(self, provider: object) -> Options:
        """These options with the preset of `provider`'s class, if any, where none were given.

        `calls=`, `streams=` and `hands_out=` given by the user each replace the preset's
        names; what the preset says of derived clients, stream helpers and raw responses always
        applies.
        """
        found: Preset | None = preset_for(type(provider))
        if found is None:
            return self
        given = self.typed
        return dataclasses.replace(
            self,
            calls=self.calls if "calls" in given else found.calls,
            streams=self.streams if "streams" in given else found.streams,
            hands_out=self.hands_out if "hands_out" in given else found.hands_out,
            derives=found.derives,
            helpers=found.helpers,
            parses=found.parses,
        )

    def __post_init__(self) -> None:
        if self.statuses and not isinstance(self.is_unauthorized, StatusPredicate):
            # One predicate for the drivers to call: the given one, or it plus the statuses.
            predicate = StatusPredicate(self.is_unauthorized, self.statuses)
            object.__setattr__(self, "is_unauthorized", predicate)
        if observers and not isinstance(self.on_event, Observed):
            # Events reach the process-wide observers (OpenTelemetry) as well as the host's hook;
            # only refreshes and retries emit, so the fast path is untouched.
            object.__setattr__(self, "on_event", Observed(self.on_event))

    def given(self, name: str) -> object:
        """The option `name` as the user gave it, not as `statuses=` or observers extended it."""
        value = getattr(self, name)
        return value.base if isinstance(value, StatusPredicate | Observed) else value

    @property
    def cooldown_clock(self) -> Callable[[], float]:
        """What the cooldown is timed on: the `clock` given, or the process's monotonic clock.

        The default `clock` (wall time, for `expires_at`) may jump; a cooldown needs neither
        that nor a clock of one event loop (each trio run has its own), as it belongs to the
        credential, wherever its failure was seen.
        """
        return time.monotonic if self.clock is time.time else self.clock

    @property
    def refresh_is_async(self) -> bool:
        """True when `refresh` must be awaited (it is a coroutine function)."""
        return is_async_callable(self.refresh)


_NOT_KEYWORDS = frozenset({"refresh", "typed", "derives", "helpers", "parses"})
"""Fields of `Options` that are not keyword options of `refresh_on_401`."""


def _defaults() -> dict[str, object]:
    return {
        field.name: field.default
        for field in dataclasses.fields(Options)
        if field.default is not dataclasses.MISSING and field.name not in _NOT_KEYWORDS
    }


def depth(remaining: float, refresh_ahead: tuple[float, float]) -> int:
    """How deep into the windows before expiry credentials are, with `remaining` seconds left.

    0 outside the windows (or an unknown expiry: infinite, NaN), 1 in the advisory one, 2 in
    the mandatory one; `refresh_ahead` is `(advisory, mandatory)` seconds. The one reading of
    the windows for the decorator and for the doors of a shared credential.
    """
    advisory, mandatory = refresh_ahead
    if math.isnan(remaining) or remaining > advisory:
        return 0
    return 1 if remaining > mandatory else 2


def epoch_seconds(expiry: object) -> float | None:
    """What `expires_at` returned, as a number on its clock; None when it does not say.

    Numbers (epoch seconds on the default clock) and aware `datetime`s are accepted; None and
    NaN mean unknown, infinity never expires. Anything else is a mistake in the host's code,
    said at once with a `TypeError` rather than silently ignored.
    """
    if expiry is None:
        return None
    if hasattr(expiry, "tzinfo") and callable(getattr(expiry, "timestamp", None)):
        if getattr(expiry, "tzinfo", None) is None:
            msg = (
                "expires_at returned a naive datetime; return an aware one (with a timezone) "
                "or epoch seconds"
            )
            raise TypeError(msg)
        expiry = cast("Any", expiry).timestamp()
    if isinstance(expiry, bool) or not isinstance(expiry, int | float):
        msg = f"expires_at must return epoch seconds, an aware datetime or None, got {expiry!r}"
        raise TypeError(msg)
    return None if math.isnan(expiry) else float(expiry)


class Shape(enum.Enum):
    """What the original function is, read once: it decides how a call of it is driven."""

    COROUTINE = "coroutine function"
    ASYNC_GENERATOR = "async generator function"
    GENERATOR = "generator function"
    PLAIN = "plain function"
    """Read per call from what it returns: a value, an awaitable, a stream or a manager."""

    @classmethod
    def of(cls, function: object) -> Shape:
        """The shape of `function`, as `inspect` reads it.

        A wrapper that returns a coroutine is a plain function: its shape is read per call.
        """
        if inspect.iscoroutinefunction(function):
            return cls.COROUTINE
        if inspect.isasyncgenfunction(function):
            return cls.ASYNC_GENERATOR
        if inspect.isgeneratorfunction(function):
            return cls.GENERATOR
        return cls.PLAIN


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Method:
    """One intercepted method: its name, its shape, and how to call the original.

    In class mode `original` is the class's own function, called with the instance (never the
    wrapper, which would refresh twice). In instance mode it is None and `path` is looked up on
    whichever provider is current at each call, so a swapped-in replacement is used at once.
    """

    name: str
    shape: Shape
    stream: bool
    options: Options
    original: Callable[..., Any] | None = None
    intercepted: tuple[str, ...] = ()
    """Every name intercepted beside this one: a replacement provider must have them all."""
    derive: Callable[[object], object] | None = None
    """For a proxy of a derived client (`client.with_options(...)`): makes that client from
    the provider the flight holds now, on which `path` is then looked up."""
    path: tuple[str, ...] = dataclasses.field(init=False)
    attribute: str | None = dataclasses.field(init=False)
    """The name of the original on the provider itself, when it is one (instance mode, not
    dotted, not derived): the commonest way, looked up without walking the path."""
    quick: bool = dataclasses.field(init=False)
    """Whether a call can take the quick way (`_calls._quick`): no refresh ahead of
    expiry to check first, and the default `kind_of`, which knows by class which values are
    settled results."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(self.name.split(".")))
        undotted = self.original is None and self.derive is None and "." not in self.name
        object.__setattr__(self, "attribute", self.name if undotted else None)
        quick = self.options.expires_at is None and self.options.kind_of is kind_of
        object.__setattr__(self, "quick", quick)

    @property
    def in_place(self) -> bool:
        """True in class mode, where refresh updates the instance instead of replacing it."""
        return self.original is not None

    def invoke(self, provider: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call the original method of `provider`."""
        if self.original is not None:
            return self.original(provider, *args, **kwargs)
        if self.attribute is not None:
            return getattr(provider, self.attribute)(*args, **kwargs)
        target: Any = provider if self.derive is None else self.derive(provider)
        for part in self.path:
            target = getattr(target, part)
        return target(*args, **kwargs)


def reach(provider: object, name: str) -> Any:
    """What a dotted name reaches on `provider` when it is callable there, else None."""
    target: object = provider
    for part in name.split("."):
        target = getattr(target, part, None)
    return target if callable(target) else None


def check_methods(
    methods: Mapping[str, Method], options: Options, owner: str, target: object
) -> None:
    """Refuse what cannot work, once the methods to intercept are found on `target`.

    Raises:
        TypeError: A name the user gave in `calls` or `streams` is not a method of `target`
            (only the default names are skipped when missing); `owner` has none of the
            methods; or `refresh` must be awaited while every method found is a generator
            function, which nothing could await in.

    """
    for option in sorted(options.typed - {"hands_out"}):
        missing = [name for name in getattr(options, option) if name not in methods]
        if missing:
            name = missing[0]
            closest = _closest(target, name)
            hint = f"did you mean {closest!r}?" if closest else "check the spelling"
            msg = (
                f"{option}= names {name!r}, which is not a method of {owner}; {hint} (only the "
                "default names are skipped when a provider lacks them)"
            )
            raise TypeError(msg)
    if not methods:
        wanted = ", ".join(options.calls + options.streams)
        msg = f"{owner} has none of the methods to intercept ({wanted}); pass calls= or streams="
        raise TypeError(msg)
    if options.refresh_is_async and all(m.shape is Shape.GENERATOR for m in methods.values()):
        msg = (
            f"refresh is a coroutine function, but every intercepted method of {owner} is a "
            "generator function, where it cannot be awaited; pass a plain function"
        )
        raise TypeError(msg)


def _closest(target: object, name: str) -> str | None:
    """The existing dotted name nearest to `name`: its first step that fails, respelt."""
    parts = name.split(".")
    holder, index = target, 0
    while index < len(parts) - 1 and (inner := getattr(holder, parts[index], None)) is not None:
        holder, index = inner, index + 1
    part = parts[index]
    # Private names are offered only to a user who typed one.
    candidates = [
        other
        for other in dir(holder)
        if other != part and (part.startswith("_") or not other.startswith("_"))
    ]
    matches = difflib.get_close_matches(part, candidates, n=1)
    return ".".join([*parts[:index], matches[0], *parts[index + 1 :]]) if matches else None
