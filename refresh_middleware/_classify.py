"""Pure decisions: is this error a 401, what kind of stream item is this, what does the gate do.

Nothing in this module performs I/O or awaits. The decorator's drivers feed it values and act on
its answers, which keeps every decision testable by stepping it directly (the split of httpx's
auth flows).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Final, Protocol, cast

__all__ = [
    "DEFAULT_USAGE",
    "GateAction",
    "ItemKind",
    "StreamGate",
    "UsageAccounting",
    "is_unauthorized_error",
    "kind_of",
]

# --------------------------------------------------------------------------------------------------
# is_unauthorized_error

_STATUS_NAMES: Final = ("status_code", "status", "http_status", "code")
_AUTH_CODES: Final = frozenset(
    {
        "authentication_error",
        "authenticationerror",
        "invalid_api_key",
        "invalid_token",
        "token_expired",
        "expired_token",
        "unauthorized",
        "unauthenticated",
        "401",
    }
)
# Words that put an error out of reach of a credential refresh, checked before the positives:
# a 403 means the credentials are valid but not allowed, a 407 concerns the proxy's credentials.
_NOT_OURS: Final = re.compile(r"\b40[37]\b|forbidden|proxy[ -]?auth")
_UNAUTHORIZED_TEXT: Final = re.compile(
    r"\b401\b"
    r"|unauthori[sz]ed|unauthenticated|authentication"
    r"|token_expired|invalid_api_key|invalid_token"
    r"|invalid (?:x-)?api[ -]?key|incorrect api key"
    r"|token (?:has |is )?expired|expired (?:access |oauth |bearer |auth )?token"
)
_CODE_NAMES: Final = ("type", "code", "error_code")
# Where error objects and bodies nest the error that explains them.
_NESTED_NAMES: Final = ("error", "body", "detail")
# How far the classifier walks into nested errors, chains and groups before it gives up: deep
# enough for any real error, small enough that a hostile object cannot make it slow.
_MAX_NODES: Final = 64


def _field(value: object, name: str) -> object:
    """Read `name` as a key of a mapping or an attribute of anything else; None when absent."""
    if isinstance(value, Mapping):
        fields: Mapping[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        return fields.get(name)
    cls = type(value)
    if hasattr(cls, "__pydantic_fields__"):
        # A missed getattr raises inside pydantic; its fields live in the instance dict.
        found = vars(value).get(name, _MISSING)
        if found is not _MISSING:
            return found
        extra = getattr(value, "__pydantic_extra__", None)
        if extra and name in extra:
            return extra[name]
        if not _on_class(cast("Hashable", cls), name):
            return None
    return getattr(value, name, None)


_MISSING: Final = object()


@functools.lru_cache(maxsize=4096)
def _on_class(cls: Hashable, name: str) -> bool:
    """Whether `cls` itself defines `name` (a property, say), remembered per class and name."""
    return inspect.getattr_static(cast("type", cls), name, _MISSING) is not _MISSING


class _Walk:
    """One classification: the nodes already visited, so cycles and huge graphs end."""

    __slots__ = ("budget", "seen")

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.budget = _MAX_NODES

    def enter(self, value: object) -> bool:
        key = id(value)
        if key in self.seen or self.budget <= 0:
            return False
        self.seen.add(key)
        self.budget -= 1
        return True

    def verdict(self, value: object) -> bool | None:
        """Return True or False when `value` settles the question, None when it says nothing."""
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            return _text_verdict(value)
        if isinstance(value, int):
            return _status_verdict(value)
        if value is None or not self.enter(value):
            return None
        found = self._fields_verdict(value)
        if found is None and isinstance(value, BaseException):
            return self._exception_verdict(value)
        return found

    def _fields_verdict(self, value: object) -> bool | None:
        # Mappings and objects are read alike: SDK errors carry the same names as attributes
        # (`status_code`, `type`, `code`, `body`) that JSON error bodies carry as keys.
        for name in _STATUS_NAMES:
            found = _status_verdict(_field(value, name))
            if found is not None:
                return found
        found = _status_verdict(_field(_field(value, "response"), "status_code"))
        if found is not None:
            return found
        if any(_is_auth_code(_field(value, name)) for name in _CODE_NAMES):
            return True
        for name in _NESTED_NAMES:
            found = self.verdict(_field(value, name))
            if found is not None:
                return found
        message = _field(value, "message")
        return _text_verdict(message) if isinstance(message, str) else None

    def _exception_verdict(self, error: BaseException) -> bool | None:
        if isinstance(error, BaseExceptionGroup):
            group = cast("BaseExceptionGroup[BaseException]", error)
            return self._any_verdict(group.exceptions)
        found = _text_verdict(str(error))
        if found is None:
            # `raise ... from` hides the context: an error raised while handling another is
            # only linked to it by accident, and only the cause counts then.
            context = None if error.__suppress_context__ else error.__context__
            found = self._any_verdict((error.__cause__, context))
        return found

    def _any_verdict(self, values: tuple[object, ...]) -> bool | None:
        verdicts = [self.verdict(each) for each in values]
        if True in verdicts:
            return True
        return False if False in verdicts else None


def _status_verdict(status: object) -> bool | None:
    # Only error statuses settle anything: Anthropic reports a mid-stream error event with the
    # 200 of the stream it arrived on, and its body still has to be read.
    if isinstance(status, str) and len(status) == 3 and status.isdecimal():
        # isdecimal, not isdigit: int() rejects digits such as "²", and a raise here would
        # discard the whole verdict. Three characters: every HTTP status, and no huge ints.
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int):
        return None
    if status == 401:
        return True
    return False if 400 <= status <= 599 else None


def status_of(value: object) -> int | None:
    """The HTTP status an error reports in its own fields, or None; never raises.

    Reads `status_code`, `status`, `http_status` and `code` (as int or three-digit text) of an
    object or mapping, then `response.status_code`. Unlike `is_unauthorized_error` it reads no
    body, message or chained error: it is for opting further statuses in, such as a 403 that a
    provider sends for an expired token.
    """
    try:
        for holder in (value, _field(value, "response")):
            if holder is None:
                continue
            for name in _STATUS_NAMES:
                status = _field(holder, name)
                if isinstance(status, str) and len(status) == 3 and status.isdecimal():
                    status = int(status)
                if isinstance(status, int) and not isinstance(status, bool):
                    return status
    except Exception:  # noqa: BLE001 - as is_unauthorized_error: a classifier never raises
        return None
    return None


class StatusPredicate:
    """`is_unauthorized` extended with more HTTP statuses; picklable, unlike a closure."""

    __slots__ = ("base", "statuses")

    def __init__(self, base: Callable[[object], bool], statuses: frozenset[int]) -> None:
        self.base = base
        self.statuses = statuses

    def __call__(self, value: object) -> bool:
        return self.base(value) or status_of(value) in self.statuses

    def __reduce__(self) -> tuple[Any, ...]:
        return StatusPredicate, (self.base, self.statuses)


def _is_auth_code(code: object) -> bool:
    return isinstance(code, str) and code.strip().lower() in _AUTH_CODES


def _text_verdict(text: str) -> bool | None:
    lowered = text.lower()
    if _NOT_OURS.search(lowered):
        return False
    return True if _UNAUTHORIZED_TEXT.search(lowered) else None


def is_unauthorized_error(value: object) -> bool:
    """Tell whether `value` reports rejected credentials, the kind that a refresh can fix.

    Structure is read first: status attributes (`status_code`, `status`, `code`,
    `http_status`, `response.status_code`), error bodies such as
    `{"error": {"type": "authentication_error"}}`, then the exception's cause, context and, for
    exception groups, members. Message text is the fallback. A 403, `Forbidden` and proxy
    authentication (407) are not unauthorized: new provider credentials cannot fix them.

    Args:
        value: An exception, an error object or mapping, a status code, or a message.

    Returns:
        True when `value` is a 401 or says so; False for anything else, including values that
        raise while being inspected. It never raises itself.

    Example:
        >>> is_unauthorized_error("status=401 Unauthorized")
        True
        >>> is_unauthorized_error({"error": {"type": "authentication_error"}})
        True
        >>> is_unauthorized_error(RuntimeError("rate limited"))
        False

    """
    try:
        if isinstance(value, BaseException):
            # The common case, an SDK error carrying an HTTP error status, settled at once
            # (the walk below would find the same first): every caller of a herd asks this.
            status = getattr(value, "status_code", None)
            if type(status) is int and 400 <= status <= 599:
                return status == 401
        return _Walk().verdict(value) is True
    except Exception:  # noqa: BLE001 - a classifier that raises would turn a 401 into a crash
        return False


# --------------------------------------------------------------------------------------------------
# kind_of


class ItemKind(enum.Enum):
    """What a streamed item means to the gate.

    `OUTPUT` is anything the consumer may already have acted on (text, thinking, tool calls,
    signatures, and every item that is not recognised); once forwarded, a retry would duplicate
    it. `METADATA` (usage, pings, message start) carries no output. `ERROR` is an error reported
    in the stream. `DONE` ends the stream.
    """

    OUTPUT = "output"
    METADATA = "metadata"
    ERROR = "error"
    DONE = "done"


# Module constants: an enum member read through its class costs a lookup per streamed item.
_OUTPUT: Final = ItemKind.OUTPUT
_METADATA: Final = ItemKind.METADATA
_ERROR: Final = ItemKind.ERROR
_DONE: Final = ItemKind.DONE


_DONE_NAMES: Final = frozenset(
    {"done", "stop", "message_stop", "stream_end", "end", "completed", "response_completed"}
)
_METADATA_NAMES: Final = frozenset(
    {
        "usage",
        "ping",
        "heartbeat",
        "keepalive",
        "metadata",
        "message_start",
        "message_delta",
        "content_block_stop",
        "response_created",
        "response_in_progress",
        "rate_limits_updated",
    }
)
# "TextDelta" -> "Text_Delta", and acronyms stay whole: "APIError" -> "API_Error".
_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS: Final = re.compile(r"[\s.\-/]+")
_AFFIXES: Final = (("raw_", ""), ("", "_event"), ("", "_delta"), ("", "_chunk"))


# Provider vocabularies are small; the bound keeps a stream of odd names from growing the cache.
@functools.lru_cache(maxsize=4096)
def _kind_of_name(name: str) -> ItemKind:
    normal = _SEPARATORS.sub("_", _CAMEL_BOUNDARY.sub("_", name.strip())).lower()
    if "error" in normal.split("_"):
        return ItemKind.ERROR
    candidates = {normal}
    for prefix, suffix in _AFFIXES:
        for each in tuple(candidates):
            if each.startswith(prefix) and each.endswith(suffix):
                candidates.add(each[len(prefix) : len(each) - len(suffix)])
    if candidates & _DONE_NAMES:
        return ItemKind.DONE
    if candidates & _METADATA_NAMES:
        return ItemKind.METADATA
    return ItemKind.OUTPUT


_CHUNK: Final = "chat.completion.chunk"
# Fields of an OpenAI-style chunk's delta that carry output; a delta with none of them (the
# first chunk names only the role; the last may carry only usage) commits nothing.
_DELTA_OUTPUT: Final = ("content", "tool_calls", "refusal", "function_call", "reasoning_content")


def _own_fields(value: object) -> Mapping[str, object] | None:
    if isinstance(value, Mapping):
        return cast("Mapping[str, object]", value)
    return cast("Mapping[str, object] | None", getattr(value, "__dict__", None))


def _chunk_kind(choices: object) -> ItemKind:
    """OUTPUT when an OpenAI-style chunk's choices carry output, METADATA otherwise."""
    listed = cast("list[object] | tuple[object, ...]", choices)
    for choice in listed if isinstance(choices, list | tuple) else ():
        delta = _field(choice, "delta")
        if delta is None:
            continue
        # A chunk streams by every few milliseconds: read the delta's fields in one go.
        fields = _own_fields(delta)
        if fields is None or getattr(delta, "__pydantic_extra__", None):
            fields = {name: _field(delta, name) for name in _DELTA_OUTPUT}
        if any(fields.get(name) for name in _DELTA_OUTPUT):
            return ItemKind.OUTPUT
    return ItemKind.METADATA


def kind_of(item: object) -> ItemKind:
    """Classify a streamed item for the gate.

    Reads a `type` (or `kind`, or `event`) field of a mapping, a `type` or `kind` attribute of
    an object (enum members count by value), and otherwise the class name of a typed delta
    (`TextDelta`, `Usage`, `Done`, ...). OpenAI-style `chat.completion.chunk`s are `OUTPUT`
    when a choice's delta carries content, tool calls or a refusal, `METADATA` otherwise (the
    role-only first chunk, the usage-only last one). Exceptions are `ERROR`. Anything not
    recognised is `OUTPUT`: forwarding it commits the stream, because duplicated output is
    worse than a missed retry.

    Example:
        >>> kind_of({"type": "content_block_delta", "delta": {"text": "Hi"}})
        <ItemKind.OUTPUT: 'output'>
        >>> kind_of({"type": "message_start"})
        <ItemKind.METADATA: 'metadata'>
        >>> kind_of({"type": "error", "error": {"type": "authentication_error"}})
        <ItemKind.ERROR: 'error'>

    """
    cls = type(item)
    if cls is str or cls is bytes:
        return _OUTPUT
    try:
        get: Callable[[str], Any]
        mapping = cls is dict or isinstance(item, Mapping)
        if isinstance(item, BaseException):
            return _ERROR
        if mapping:
            get = cast("Mapping[str, Any]", item).get
            name = get("type") or get("kind") or get("event")
        else:
            get = _fields_of(cls, item)
            name = get("type") or get("kind")
        if name is None and get("object") == _CHUNK:
            return _chunk_kind(get("choices"))
        if isinstance(name, enum.Enum):
            name = name.value
        if not isinstance(name, str):
            if mapping:
                return _OUTPUT
            name = cls.__name__
        return _kind_of_name(name)
    except Exception:  # noqa: BLE001 - an item that cannot be read is treated as output
        return _OUTPUT


# Per class: whether its instances keep `type`/`kind`/`object` in their `__dict__` alone (True),
# or may have them as class attributes, properties, slots or through `__getattr__` (False).
_DICT_ONLY: dict[type, bool] = {}
_EMPTY: Final[Mapping[str, Any]] = {}


def _fields_of(cls: type, item: Any) -> Callable[[str], Any]:
    """How to read `type` and friends from `item`, without raising AttributeErrors.

    A missed `getattr` on a pydantic model (every openai and anthropic SDK object) raises and
    catches an exception inside pydantic: microseconds per streamed chunk. Reading the instance
    dictionary, where such models keep their fields, costs nanoseconds.
    """
    dict_only = _DICT_ONLY.get(cls)
    if dict_only is None:
        pydantic = hasattr(cls, "__pydantic_fields__")
        dict_only = hasattr(cls, "__dict__") and all(
            inspect.getattr_static(cls, name, None) is None
            for name in ("type", "kind", "object", *(() if pydantic else ("__getattr__",)))
        )
        if len(_DICT_ONLY) >= 4096:
            _DICT_ONLY.clear()
        _DICT_ONLY[cls] = dict_only
    if not dict_only:
        return lambda name: getattr(item, name, None)
    fields = getattr(item, "__dict__", None) or _EMPTY
    extra = getattr(item, "__pydantic_extra__", None)
    return ({**extra, **fields} if extra else fields).get


# --------------------------------------------------------------------------------------------------
# usage accounting

Usage = dict[str, int | float]


class UsageAccounting(Protocol):
    """How the gate reads token usage from items and adds usage into them.

    The default handles mappings, dataclasses, pydantic models and plain objects whose usage
    sits in a `usage` field, in `message.usage`, or in the item itself when its kind is
    `usage`. Pass your own to `refresh_on_401(usage=...)` for other shapes.
    """

    def read(self, item: Any) -> Usage | None:
        """Return the numeric usage fields that `item` reports, or None when it reports none."""
        ...

    def add(self, item: Any, extra: Usage) -> Any:
        """Return a copy of `item` whose usage has `extra` added to the fields it reports."""
        ...


def _numbers(value: object) -> Usage | None:
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(value, Mapping):
        fields: Mapping[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        pairs = fields.items()
    elif dataclasses.is_dataclass(value):
        pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    else:
        try:
            pairs = vars(value).items()
        except TypeError:
            return None
    found: Usage = {
        key: number
        for key, number in pairs
        if isinstance(key, str)
        and isinstance(number, int | float)
        and not isinstance(number, bool)
        and not key.startswith("_")
    }
    return found or None


def _replaced(value: Any, changes: Mapping[str, object]) -> Any:
    """Return a copy of `value` with `changes` applied, in the way its shape allows."""
    if isinstance(value, Mapping):
        merged: dict[Any, Any] = dict(value)  # pyright: ignore[reportUnknownArgumentType]
        merged.update(changes)
        return merged
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **changes)
    model_copy = getattr(value, "model_copy", None)
    if callable(model_copy):  # a pydantic model, as the openai and anthropic SDKs use
        return model_copy(update=dict(changes))
    duplicate = copy.copy(value)
    for key, new in changes.items():
        setattr(duplicate, key, new)
    return duplicate


class _DefaultUsage:
    """Usage in `usage`, in `message.usage`, or the item itself for items of kind `usage`."""

    def _locate(self, item: object) -> tuple[str, ...] | None:
        if _field(item, "usage") is not None:
            return ("usage",)
        message = _field(item, "message")
        if message is not None and _field(message, "usage") is not None:
            return ("message", "usage")
        name = _field(item, "type")
        if (isinstance(name, str) and name.lower() == "usage") or type(item).__name__ == "Usage":
            return ()
        return None

    def read(self, item: Any) -> Usage | None:
        path = self._locate(item)
        if path is None:
            return None
        value = item
        for name in path:
            value = _field(value, name)
        return _numbers(value)

    def add(self, item: Any, extra: Usage) -> Any:
        path = self._locate(item)
        if path is None:
            return item
        return self._add_at(item, path, extra)

    def _add_at(self, value: Any, path: tuple[str, ...], extra: Usage) -> Any:
        if path:
            inner = _field(value, path[0])
            return _replaced(value, {path[0]: self._add_at(inner, path[1:], extra)})
        own = _numbers(value) or {}
        changes = {key: own[key] + extra[key] for key in own.keys() & extra.keys()}
        return _replaced(value, changes) if changes else value


DEFAULT_USAGE: Final[UsageAccounting] = _DefaultUsage()


# --------------------------------------------------------------------------------------------------
# StreamGate


class GateAction(enum.Enum):
    """What the driver does with the item or error it just fed to the gate."""

    FORWARD = "forward"
    """Hand the item to the consumer and read on."""
    FORWARD_AND_STOP = "forward and stop"
    """Hand the item to the consumer, close the inner stream, end."""
    RETRY = "retry"
    """Drop the item or error, close the inner stream, refresh, open a new attempt."""
    RAISE = "raise"
    """Let the exception propagate to the consumer."""


# Module constants: an enum member read through its class costs a lookup per streamed item.
_FORWARD: Final = GateAction.FORWARD
_FORWARD_AND_STOP: Final = GateAction.FORWARD_AND_STOP
_RETRY: Final = GateAction.RETRY


_KIND_OF: Final = kind_of  # the default, named apart from the gate's `kind_of` attribute


class StreamGate:
    """The stream gate of the design: forward, commit, or retry, one decision per event.

    A stream is *committed* once an `OUTPUT` item has been forwarded: the consumer may have
    shown it, so from then on a retry would duplicate output and errors pass through. Before
    commit, an unauthorized error item or exception asks for a retry, at most `max_retries`
    times per call. Usage that an abandoned attempt reported is carried into the usage items
    of the attempt that follows, so the last usage the consumer sees covers every attempt.

    The gate is pure: it never reads a stream and never awaits. Drivers call `on_item` and
    `on_exception` and act on the returned `GateAction`. Once `passthrough` is true (committed,
    with no usage left to add), every later item would be forwarded as it is, exceptions
    raised, and only a `DONE` item (by `kind_of`) ends the stream: a driver may then skip
    `on_item` and check that alone, which saves its cost on every remaining item.

    Example:
        >>> gate = StreamGate()
        >>> gate.on_item({"type": "error", "message": "HTTP 401"})
        (<GateAction.RETRY: 'retry'>, {'type': 'error', 'message': 'HTTP 401'})
        >>> gate.on_item("Hello")
        (<GateAction.FORWARD: 'forward'>, 'Hello')
        >>> gate.committed, gate.retries
        (True, 1)

    """

    __slots__ = (
        "_attempt_usage",
        "_carried",
        "_is_unauthorized",
        "_kind_of",
        "_usage",
        "committed",
        "kind_of",
        "max_retries",
        "passthrough",
        "retries",
    )

    def __init__(
        self,
        *,
        is_unauthorized: Callable[[object], bool] = is_unauthorized_error,
        kind_of: Callable[[object], ItemKind] = _KIND_OF,
        usage: UsageAccounting = DEFAULT_USAGE,
        max_retries: int = 1,
    ) -> None:
        self._is_unauthorized = is_unauthorized
        self._kind_of = self.kind_of = kind_of
        self._usage = usage
        self.max_retries = max_retries
        self.committed = False
        self.passthrough = False
        self.retries = 0
        self._attempt_usage: Usage = {}
        self._carried: Usage = {}

    def on_item(self, item: object) -> tuple[GateAction, object]:
        """Decide what happens to `item`; returns the action and the item to forward.

        The returned item differs from `item` only when usage of an abandoned attempt was
        added into it.
        """
        kind = self._kind_of(item)
        if self.committed:
            if self._carried:
                item = self._with_carried(item)
            return (_FORWARD_AND_STOP if kind is _DONE else _FORWARD), item
        if kind is _ERROR and self._may_retry(item):
            return _RETRY, item
        if kind is _OUTPUT:
            self.committed = True
            self.passthrough = not self._carried
        elif kind is _METADATA:
            self._remember_usage(item)
        elif kind is _DONE:
            return _FORWARD_AND_STOP, self._with_carried(item)
        return _FORWARD, self._with_carried(item)

    def on_exception(self, error: BaseException) -> GateAction:
        """Decide whether an exception from the inner stream is retried or raised."""
        if not self.committed and isinstance(error, Exception) and self._may_retry(error):
            return GateAction.RETRY
        return GateAction.RAISE

    def _may_retry(self, error: object) -> bool:
        if self.retries >= self.max_retries or not self._is_unauthorized(error):
            return False
        self.retries += 1
        for key, number in self._attempt_usage.items():
            self._carried[key] = self._carried.get(key, 0) + number
        self._attempt_usage = {}
        return True

    def _remember_usage(self, item: object) -> None:
        # Usage items are cumulative snapshots of one attempt: the largest value of each field
        # is what that attempt cost.
        try:
            reported = self._usage.read(item)
        except Exception:  # noqa: BLE001 - accounting must never break the stream it counts
            return
        if reported:
            for key, number in reported.items():
                self._attempt_usage[key] = max(number, self._attempt_usage.get(key, 0))

    def _with_carried(self, item: object) -> object:
        if not self._carried:
            return item
        try:
            if self._usage.read(item) is None:
                return item
            return self._usage.add(item, self._carried)
        except Exception:  # noqa: BLE001 - a shape we cannot copy is forwarded as it came
            return item
