"""The record of what one SDK or framework looks like: its `Dialect`, and what its checks use.

A dialect module (one per SDK or framework, in `dialects/`) imports this module and nothing
else of the library: it states its names, its checks and the fields they read, and the engine
merges every dialect into its tables once, at import. The checks are plain functions of an
item's fields; what lies inside an item (a delta, a message, a part) they read through the
`Inside` the engine hands them with each item, so a dialect never reaches into the engine.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, Protocol

__all__ = [
    "DONE",
    "ERROR",
    "METADATA",
    "OUTPUT",
    "SEQUENCES",
    "Dialect",
    "EmptyPiece",
    "Fields",
    "Inside",
    "ItemKind",
    "Look",
    "NameRule",
    "Preset",
    "Shape",
    "ShapeKind",
    "Verdict",
    "Watch",
    "carries",
    "first",
]


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
OUTPUT: Final = ItemKind.OUTPUT
METADATA: Final = ItemKind.METADATA
ERROR: Final = ItemKind.ERROR
DONE: Final = ItemKind.DONE

# What JSON and the SDKs hold lists in (choices, candidates, parts), compared by exact type:
# cheaper per item than isinstance, and leaves the items typed Any for the checkers.
SEQUENCES: Final = frozenset({list, tuple})


class Fields(Protocol):
    """The fields of an item or of a value inside one, read by name; None when absent."""

    def get(self, key: str, /) -> Any: ...


class Inside(Protocol):
    """What a check may ask the engine about a value inside an item (a choice, a delta, a part).

    Called with the value, it returns the value's fields, read as its class's plan says.
    """

    kind: Callable[[object], ItemKind]
    """The kind of the value, as `kind_of` says: for items that carry another item."""

    def __call__(self, value: object, /) -> Fields: ...


# What an item's name says after a look at its fields.
Look = Callable[[Fields, Inside], ItemKind]
# What a name says: a kind, or a closer look at the fields.
Verdict = ItemKind | Look
# What a shape may answer: never ERROR, which only a name (or an exception) says. The engine
# relies on it to know, by class, the values that can never be an error item.
ShapeKind = Literal[ItemKind.OUTPUT, ItemKind.METADATA, ItemKind.DONE]
# A check for items that carry no name: a kind, or None when the item is not of its shape.
Shape = Callable[[Fields, Inside], ShapeKind | None]
# What the words of a name that no dialect lists say, or None when they say nothing.
NameRule = Callable[[list[str]], Verdict | None]

_NOTHING: Final[Mapping[str, Any]] = MappingProxyType({})


class Watch(NamedTuple):
    """How a framework sends output beside a call, and how to see it go out.

    Some frameworks stream a model's output through callbacks or events while the caller (and
    the wrapper) sees one call: LangGraph's `stream_mode="messages"` streams the tokens of a
    LangChain model's `ainvoke`. A call whose output went out that way is committed: a 401
    after it is raised, never retried, or the output would be sent twice.
    """

    module: str
    """The framework's package: a wrapped object with a class from it (or below) is watched."""
    install: Callable[[Callable[[object], None]], None]
    """Hooks the framework, once per process: it is handed `went_out`, to call with each item
    the framework sends out (the kind of the item decides: only `OUTPUT` commits). It imports
    the framework itself, so it only runs once an object of the framework is wrapped."""


class Preset(NamedTuple):
    """What `refresh_on_401` intercepts on a known SDK client, found by the client's class.

    The class is named, never imported: `module` is its package (`"openai"`, `"google.genai"`)
    and matches the class's module or any module below it; `qualname` is its qualified name.
    The first class of the wrapped object's MRO that a preset names decides, so subclasses
    (`AzureOpenAI` of `OpenAI`) share their base's preset unless they have their own. Names a
    client lacks (an older SDK) are skipped, as the defaults are.
    """

    module: str
    qualname: str
    calls: tuple[str, ...] = ()
    """Dotted names of the request/response methods."""
    streams: tuple[str, ...] = ()
    """Dotted names of the streaming methods (a call when a call returns no stream)."""
    hands_out: tuple[str, ...] = ()
    """Dotted names of methods or properties that hand the client out (`with_raw_response`,
    genai's `chats`): they run with the proxy as `self`, so what they build calls through it."""
    derives: tuple[str, ...] = ()
    """Names of methods that return the client seen another way (`with_options`, `copy`):
    what they return is a proxy on the same flight, rebuilt from the current client."""
    helpers: Mapping[str, str] = _NOTHING
    """Helpers of the SDK's stream objects that read the stream themselves, and the stream
    class's function to run with the gated view as `self` (`until_done`, or anthropic's
    `text_stream`, an attribute made by `__stream_text__`)."""
    parses: tuple[str, ...] = ()
    """Methods of the raw responses a hand-out returns (`with_streaming_response`'s `parse`)
    that read the body, a stream when the request streams: that stream is read through the
    gate, and a retry sends the request again and reads the new response the same way."""


class Dialect(NamedTuple):
    """What the stream items and errors of one SDK or framework look like.

    Names are normalised: words of any case and separator joined by `_`, lower case, and the
    affixes SDKs put around names (`raw_`, `_event`, `_delta`, `_chunk`) may be left off
    (`RawMessageStopEvent` is `message_stop`).
    """

    name: str
    """Who speaks it, for messages and the docs."""
    done: frozenset[str] = frozenset()
    """Names of items that end a stream."""
    metadata: frozenset[str] = frozenset()
    """Names of items that carry no output (usage, pings, a message start)."""
    error: frozenset[str] = frozenset()
    """Names of error items that lack the word `error` (which every dialect shares)."""
    look_inside: Mapping[str, Look] = _NOTHING
    """Names whose items need a look at their fields, and the look."""
    shapes: Mapping[str, Shape] = _NOTHING
    """Items without a name, known by a field that only they have, and their check."""
    never_done: frozenset[str] = frozenset()
    """The fields of `shapes` whose check never answers DONE: once a stream of such items
    has committed, no item is read for its end (a check not listed here is asked)."""
    name_rule: NameRule | None = None
    """What the words of a name no dialect lists say (LangChain's `on_<run>_<stage>`)."""
    name_fields: tuple[str, ...] = ()
    """Fields that hold an item's name, in mappings and objects, in the order they count."""
    wire_name_fields: tuple[str, ...] = ()
    """Fields that name a mapping only (the wire's own), counted after `name_fields`."""
    reads: frozenset[str] = frozenset()
    """Every other field the checks read: a class that supplies one of them itself (a
    property, a slot) has its instances read with getattr instead of their `__dict__`."""
    error_wrappers: Mapping[str, tuple[str, ...]] = _NOTHING
    """Class names of errors that wrap another and hide it, with the fields that hold it (the
    `__cause__` and `__context__` are read too): `is_unauthorized_error` judges such a wrapper
    by what it wraps, never by its own status or message."""
    watches: tuple[Watch, ...] = ()
    """Where the framework sends output beside a call, and how to see it go out."""
    presets: tuple[Preset, ...] = ()
    """What to intercept on the SDK's clients, when they are wrapped with no names given."""


def carries(fields: Fields, names: tuple[str, ...]) -> bool:
    """Whether any of the fields `names` holds something: text, a list with items, an object."""
    # A loop, not any(): no generator to build per streamed item.
    for name in names:  # noqa: SIM110
        if fields.get(name):
            return True
    return False


def first(fields: Fields, names: tuple[str, ...]) -> Any:
    """The first of the fields `names` that holds something, or None."""
    for name in names:
        value = fields.get(name)
        if value:
            return value
    return None


class EmptyPiece:
    """A look at an event carrying one piece of a response: METADATA while the piece is empty.

    The piece is a part, an item or a delta. Such events announce a piece before its text
    streams in, as pydantic-ai's `PartStartEvent` of an empty `TextPart`, or the Responses API's
    `response.output_item.added` of a message with no content: nothing has been shown yet, so
    they must not commit the stream. A piece of any other kind (a tool call with its name, say)
    commits.
    """

    __slots__ = ("_filled_by", "_holders", "_kind_fields", "_kinds", "reads")

    def __init__(
        self,
        holders: tuple[str, ...],
        kind_fields: tuple[str, ...],
        kinds: frozenset[str],
        filled_by: tuple[str, ...],
    ) -> None:
        self._holders = holders  # where the event keeps its piece
        self._kind_fields = kind_fields  # where the piece names its kind
        self._kinds = kinds  # kinds of piece that may be empty
        self._filled_by = filled_by  # the piece's fields that carry output
        self.reads = frozenset((*holders, *kind_fields, *filled_by))

    def __call__(self, fields: Fields, inside: Inside) -> ItemKind:
        piece = inside(first(fields, self._holders))
        if first(piece, self._kind_fields) in self._kinds and not carries(piece, self._filled_by):
            return METADATA
        return OUTPUT
