"""The stream gate: forward, commit or retry, one decision per streamed item or error.

`StreamGate` is the state machine of the design's table, pure and I/O-free, so the drivers only
feed it and tests step it directly (the split of httpx's auth flows). Usage accounting lives
here too: the gate carries the usage an abandoned attempt reported into the next attempt's.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from ._kinds import ItemKind, ends, kind_of
from ._unauthorized import field_of, is_unauthorized_error

__all__ = ["DEFAULT_USAGE", "GateAction", "StreamGate", "UsageAccounting"]

# Module constants: an enum member read through its class costs a lookup per streamed item.
_OUTPUT: Final = ItemKind.OUTPUT
_METADATA: Final = ItemKind.METADATA
_ERROR: Final = ItemKind.ERROR
_DONE: Final = ItemKind.DONE

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
        if field_of(item, "usage") is not None:
            return ("usage",)
        message = field_of(item, "message")
        if message is not None and field_of(message, "usage") is not None:
            return ("message", "usage")
        name = field_of(item, "type")
        if (isinstance(name, str) and name.lower() == "usage") or type(item).__name__ == "Usage":
            return ()
        return None

    def read(self, item: Any) -> Usage | None:
        path = self._locate(item)
        if path is None:
            return None
        value = item
        for name in path:
            value = field_of(value, name)
        return _numbers(value)

    def add(self, item: Any, extra: Usage) -> Any:
        path = self._locate(item)
        if path is None:
            return item
        return self._add_at(item, path, extra)

    def _add_at(self, value: Any, path: tuple[str, ...], extra: Usage) -> Any:
        if path:
            inner = field_of(value, path[0])
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


def _ends_by(kind_of: Callable[[object], ItemKind]) -> Callable[[object], bool]:
    def is_done(item: object) -> bool:
        return kind_of(item) is _DONE

    return is_done


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
    `on_item` and ask `ends(item)` alone, which saves its cost on every remaining item (with
    the default `kind_of`, `ends` skips reading items that cannot be an end).

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
        "ends",
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
        self.ends: Callable[[object], bool] = ends if kind_of is _KIND_OF else _ends_by(kind_of)
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
