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
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType, WrapperDescriptorType
from typing import Any, Final, NamedTuple, Protocol, cast

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


class _Fields(Protocol):
    """The fields of an item or of a value inside one, read by name; None when absent."""

    def get(self, key: str, /) -> Any: ...


# What an item's name, content or class says: a kind, or a closer look at its fields.
_Look = Callable[[_Fields], ItemKind]
_Verdict = ItemKind | _Look
# A check for items that carry no name: a kind, or None when the item is not of its shape.
_Shape = Callable[[_Fields], ItemKind | None]


# --------------------------------------------------------------------------------------------------
# kind_of: what names say
#
# Names are compared after normalisation: words of any case and separator joined by "_", with and
# without the affixes that SDKs put around them ("RawMessageStopEvent" is "message_stop").

_DONE_NAMES: Final = frozenset(
    {
        "done",
        "stop",
        "message_stop",
        "stream_end",
        "end",
        "completed",
        "response_completed",
        # The Responses API's last event when a limit or a filter cut the answer short.
        "response_incomplete",
        # The last event of a pydantic-ai agent run (`run_stream_events`).
        "agent_run_result",
    }
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
        "response_queued",
        "rate_limits_updated",
        # pydantic-ai's marker that the final result has begun: the result's own text follows
        # it, so it is no end (DONE would close the stream and cut that text off).
        "final_result",
    }
)
# The Responses API's last event of a response that failed; any name with the word "error" too.
_ERROR_NAMES: Final = frozenset({"response_failed"})
# "TextDelta" -> "Text_Delta", and acronyms stay whole: "APIError" -> "API_Error".
_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS: Final = re.compile(r"[\s.\-/]+")
_AFFIXES: Final = (("raw_", ""), ("", "_event"), ("", "_delta"), ("", "_chunk"))


def _names_of(name: str) -> list[str]:
    """`name` normalised, then without each of the affixes that SDKs put around names."""
    normal = _SEPARATORS.sub("_", _CAMEL_BOUNDARY.sub("_", name.strip())).lower()
    names = [normal]
    for prefix, suffix in _AFFIXES:
        names.extend(
            each[len(prefix) : len(each) - len(suffix)]
            for each in tuple(names)
            if each.startswith(prefix) and each.endswith(suffix)
        )
    return names


def _verdict_of_text(name: str) -> _Verdict:
    """What the event or class name `name` says about its items."""
    names = _names_of(name)
    words = names[0].split("_")
    named = set(names)
    if "error" in words or named & _ERROR_NAMES:
        return _ERROR
    look = next((_LOOK_INSIDE[each] for each in names if each in _LOOK_INSIDE), None)
    if look is not None:
        return look
    if named & _DONE_NAMES:
        return _DONE
    if named & _METADATA_NAMES:
        return _METADATA
    return _run_event_verdict(words)


def _run_event_verdict(words: list[str]) -> _Verdict:
    """LangChain's `astream_events` names (`on_<run>_start`, `on_<run>_stream`); else OUTPUT."""
    if words[0] == "on" and len(words) > 2:
        # A start announces a run and carries only its input; a stream event carries one chunk
        # of the run's output.
        if words[-1] == "start":
            return _METADATA
        if words[-1] == "stream":
            return _event_chunk_kind
    return _OUTPUT


# Names seen so far and their verdicts. Provider vocabularies are small; the bound keeps a
# stream of odd names from growing it. Races between threads only redo the same work.
_NAME_VERDICTS: dict[object, _Verdict] = {}
_MAX_NAMES: Final = 4096


def _verdict_of_name(name: object, fallback: _Verdict) -> _Verdict:
    """The verdict of a name field's value, remembered; `fallback` when it is no name."""
    text = name.value if isinstance(name, enum.Enum) else name
    if not isinstance(text, str):
        return fallback
    verdict = _verdict_of_text(text)
    if len(_NAME_VERDICTS) >= _MAX_NAMES:
        _NAME_VERDICTS.clear()
    _NAME_VERDICTS[name] = verdict
    return verdict


# --------------------------------------------------------------------------------------------------
# kind_of: items whose name is not enough, or that have none


def _carries(fields: _Fields, names: tuple[str, ...]) -> bool:
    """Whether any of the fields `names` holds something: text, a list with items, an object."""
    # A loop, not any(): no generator to build per streamed item.
    for name in names:  # noqa: SIM110
        if fields.get(name):
            return True
    return False


# What JSON and the SDKs hold choices and candidates in, compared by exact type: cheaper per
# item than isinstance, and leaves the items typed Any rather than unknown for the checkers.
_SEQUENCES: Final = frozenset({list, tuple})
_CHUNK: Final = "chat.completion.chunk"
# Fields of an OpenAI-style chunk's delta that carry output; a delta with none of them (the
# first chunk names only the role; the last may carry only usage) commits nothing.
# Reasoning arrives as `reasoning_content` (DeepSeek, vLLM) or `reasoning` (OpenRouter).
_DELTA_OUTPUT: Final = (
    "content",
    "tool_calls",
    "refusal",
    "function_call",
    "audio",
    "reasoning_content",
    "reasoning",
)


def _chat_chunk_kind(fields: _Fields) -> ItemKind | None:
    """An OpenAI chat chunk: OUTPUT when a choice's delta carries output, METADATA otherwise."""
    if fields.get("object") != _CHUNK:
        return None
    choices = fields.get("choices")
    for choice in choices if type(choices) in _SEQUENCES else ():
        delta = _fields_of(choice).get("delta")
        if delta is not None and _carries(_fields_of(delta), _DELTA_OUTPUT):
            return _OUTPUT
    return _METADATA


# Fields of a Gemini part that carry no output: the thinking flag and the thought signature
# (the SDK's names and the wire's). Everything else that is set, known or new, is output.
_QUIET_PART_FIELDS: Final = frozenset({"thought", "thought_signature", "thoughtSignature"})
_GEMINI_REPORTS: Final = ("usage_metadata", "usageMetadata", "prompt_feedback", "promptFeedback")


def _candidates_kind(fields: _Fields) -> ItemKind | None:
    """A Gemini response chunk: OUTPUT with output in a part, DONE when all finished, or METADATA.

    DONE needs every candidate to have a finish reason and no part to carry output; a chunk
    with only usage, safety ratings or an empty part is METADATA.
    """
    candidates = fields.get("candidates")
    if type(candidates) not in _SEQUENCES:
        # A response without candidates reports usage or why the prompt was blocked.
        return _METADATA if candidates is None and _carries(fields, _GEMINI_REPORTS) else None
    finished = bool(candidates)
    for candidate in candidates:
        candidate_fields = _fields_of(candidate)
        for part in _fields_of(candidate_fields.get("content")).get("parts") or ():
            if _part_carries_output(_fields_of(part)):
                return _OUTPUT
        finished = finished and _has_finished(candidate_fields)
    return _DONE if finished else _METADATA


def _part_carries_output(part: _Fields) -> bool:
    if not isinstance(part, Mapping):
        return True  # fields that cannot be listed might be anything: output, to be safe
    listed = cast("Mapping[str, object]", part)
    return any(value for key, value in listed.items() if key not in _QUIET_PART_FIELDS)


def _has_finished(candidate: _Fields) -> bool:
    reason = candidate.get("finish_reason") or candidate.get("finishReason")
    reason = getattr(reason, "value", reason)  # the SDK's FinishReason is an enum
    return bool(reason) and reason != "FINISH_REASON_UNSPECIFIED"


# Fields of a LangChain message chunk that carry output. `additional_kwargs` holds what older
# integrations put there (a function call, reasoning text); usage and response metadata are none.
_MESSAGE_OUTPUT: Final = (
    "content",
    "tool_call_chunks",
    "tool_calls",
    "invalid_tool_calls",
    "additional_kwargs",
)


def _message_chunk_kind(fields: _Fields) -> ItemKind:
    """A LangChain `AIMessageChunk`: OUTPUT with content or a tool call, METADATA when empty.

    Empty chunks are the role-only first one, usage-only ones and the closing one.
    """
    return _OUTPUT if _carries(fields, _MESSAGE_OUTPUT) else _METADATA


def _generation_chunk_kind(fields: _Fields) -> ItemKind:
    """A LangChain `ChatGenerationChunk` (what a chat model's `_astream` yields): its message's."""
    return kind_of(fields.get("message"))


def _event_chunk_kind(fields: _Fields) -> ItemKind:
    """A LangChain `on_*_stream` event of `astream_events`: the kind of the chunk it carries."""
    return kind_of(_fields_of(fields.get("data")).get("chunk"))


class _EmptyPiece:
    """An event carrying one piece of a response: METADATA while that piece is empty text.

    The piece is a part, an item or a delta. Such events announce a piece before its text
    streams in, as pydantic-ai's `PartStartEvent` of an empty `TextPart`, or the Responses API's
    `response.output_item.added` of a message with no content: nothing has been shown yet, so
    they must not commit the stream. A piece of any other kind (a tool call with its name, say)
    commits.
    """

    __slots__ = ("_filled_by", "_holders", "_kind_fields", "_kinds", "names")

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
        self.names = (*holders, *kind_fields, *filled_by)

    def __call__(self, fields: _Fields) -> ItemKind:
        piece = _fields_of(_first(fields, self._holders))
        if _first(piece, self._kind_fields) in self._kinds and not _carries(piece, self._filled_by):
            return _METADATA
        return _OUTPUT


def _first(fields: _Fields, names: tuple[str, ...]) -> Any:
    """The first of the fields `names` that holds something, or None."""
    for name in names:
        value = fields.get(name)
        if value:
            return value
    return None


# pydantic-ai's PartStartEvent and PartEndEvent carry a `part`, PartDeltaEvent a `delta`.
_PYDANTIC_AI_PART: Final = _EmptyPiece(
    holders=("part", "delta"),
    kind_fields=("part_kind", "part_delta_kind"),
    kinds=frozenset({"text", "thinking"}),
    filled_by=("content", "content_delta", "signature", "signature_delta"),
)
_RESPONSES_ITEM: Final = _EmptyPiece(
    holders=("item",),
    kind_fields=("type",),
    kinds=frozenset({"message", "reasoning"}),
    filled_by=("content", "summary"),
)
_RESPONSES_PART: Final = _EmptyPiece(
    holders=("part",),
    kind_fields=("type",),
    kinds=frozenset({"output_text", "refusal", "reasoning_text", "summary_text"}),
    filled_by=("text", "refusal", "annotations"),
)
# Normalised names whose items need a look at their fields.
_LOOK_INSIDE: Final[Mapping[str, _Look]] = {
    "ai_message_chunk": _message_chunk_kind,
    "chat_generation_chunk": _generation_chunk_kind,
    "part_start": _PYDANTIC_AI_PART,
    "part_delta": _PYDANTIC_AI_PART,
    "part_end": _PYDANTIC_AI_PART,
    "response_output_item_added": _RESPONSES_ITEM,
    "response_content_part_added": _RESPONSES_PART,
    "response_reasoning_summary_part_added": _RESPONSES_PART,
}
# Items without a name, known by the field that each shape alone has.
_SHAPES: Final[Mapping[str, _Shape]] = {"object": _chat_chunk_kind, "candidates": _candidates_kind}

# Where items keep their name, in the order the names count.
_MAPPING_NAMES: Final = ("type", "kind", "event", "event_kind")
_OBJECT_NAMES: Final = ("type", "kind", "event_kind")
# Every field name the checks above read. A class that supplies one of them from the class
# itself (a property, a slot, a class attribute) is read through getattr, not `__dict__`.
_READ_NAMES: Final = frozenset(
    {
        *_MAPPING_NAMES,
        *_SHAPES,
        *_DELTA_OUTPUT,
        *_MESSAGE_OUTPUT,
        *_GEMINI_REPORTS,
        *_PYDANTIC_AI_PART.names,
        *_RESPONSES_ITEM.names,
        *_RESPONSES_PART.names,
        *("choices", "delta", "content", "parts", "finish_reason", "finishReason"),
        *("message", "data", "chunk"),
    }
)


# --------------------------------------------------------------------------------------------------
# kind_of: how each class keeps its fields


def _itself(item: Any) -> Any:
    return item


def _instance_dict(item: Any) -> Any:
    return item.__dict__


def _instance_dict_and_extras(item: Any) -> Any:
    # Pydantic models that allow extra fields (every openai and anthropic SDK type) keep the
    # fields they did not declare apart; most instances have none.
    extra = item.__pydantic_extra__
    return {**extra, **item.__dict__} if extra else item.__dict__


class _Attributes:
    """The fields of an object whose class keeps some outside `__dict__`, read with getattr."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def get(self, key: str, /) -> Any:
        return getattr(self._value, key, None)


_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _no_fields(_item: object) -> _Fields:
    return _EMPTY


class _Plan(NamedTuple):
    """How `kind_of` reads and classifies the instances of one class, worked out once."""

    kind: Callable[[Any], ItemKind]
    """Classify an instance."""
    read: Callable[[Any], _Fields]
    """Read an instance's fields (for values inside an item)."""


# The plans of the classes met so far, one table per use: `kind_of` reads the first for every
# item, and the checks above read the second for each value inside one. Working a plan out
# reads the class (its fields, attributes and name) and costs microseconds; reusing it keeps
# `kind_of` to a few dictionary reads on SDK objects, where a missed getattr alone costs
# microseconds (pydantic raises and catches inside). The tables are keyed by the class's id,
# not by the class, which they would keep alive: a weak reference to each class drops its
# entries when a class made on the fly goes (a WeakKeyDictionary lookup costs more than a whole
# classification). Races between threads only work the same plan out twice.
_CLASSIFIERS: dict[int, Callable[[Any], ItemKind]] = {}
_READERS: dict[int, Callable[[Any], _Fields]] = {}
_WATCHED: dict[int, weakref.ref[type]] = {}


def _plan_of(cls: type) -> _Plan:
    """The plan of `cls`, worked out and remembered while `cls` lives."""
    plan = _new_plan(cls)
    key = id(cls)
    _WATCHED[key] = weakref.ref(cls, functools.partial(_forget_plan, key))
    _CLASSIFIERS[key] = plan.kind
    _READERS[key] = plan.read
    return plan


def _forget_plan(key: int, _gone: object) -> None:
    for table in (_CLASSIFIERS, _READERS, _WATCHED):
        table.pop(key, None)


def _fields_of(value: object) -> _Fields:
    """The fields of a value inside an item, read as its class's plan says."""
    return (_READERS.get(id(type(value))) or _plan_of(type(value)).read)(value)


def _new_plan(cls: type[object]) -> _Plan:
    if issubclass(cls, str | bytes | bytearray):
        return _Plan(_always(_OUTPUT), _no_fields)  # text is output, even when it spells "done"
    if issubclass(cls, BaseException):
        return _Plan(_always(_ERROR), _no_fields)
    if issubclass(cls, Mapping):
        return _Plan(_kind_of_mapping, _itself)
    declared = _declared_fields(cls)
    read = _reader(cls, declared or frozenset())
    by_name = _verdict_of_text(cls.__name__)
    names: tuple[str, ...]
    if declared is None:
        names, shapes = _OBJECT_NAMES, tuple(_SHAPES.values())
    else:
        # A model is known by the fields it declares: skip the names and shapes it lacks.
        # Extra fields a pydantic model did not expect are read as content, never as its name.
        names = tuple(name for name in _OBJECT_NAMES if name in declared)
        shapes = tuple(shape for field, shape in _SHAPES.items() if field in declared)
    if isinstance(by_name, ItemKind) and (read is _no_fields or not (names or shapes)):
        return _Plan(_always(by_name), read)  # instances cannot say otherwise than their class
    return _Plan(_classifier(read, names, shapes, by_name), read)


def _always(kind: ItemKind) -> Callable[[Any], ItemKind]:
    def classify(_item: object) -> ItemKind:
        return kind

    return classify


def _classifier(
    read: Callable[[Any], _Fields] | None,
    names: tuple[str, ...],
    shapes: tuple[_Shape, ...],
    fallback: _Verdict,
) -> Callable[[Any], ItemKind]:
    """Classify items by their first field of `names` holding a name, else shape, else class.

    `shapes` settle items that have no name; `fallback` is the class name's verdict (OUTPUT for
    mappings). `read` is None for mappings, which are their own fields.
    """
    if not names and read is not None and isinstance(fallback, ItemKind):
        return _shape_classifier(read, shapes, fallback)

    def classify(item: Any) -> ItemKind:
        fields = item if read is None else read(item)
        for key in names:
            name = fields.get(key)
            if name:
                verdict = _NAME_VERDICTS.get(name) or _verdict_of_name(name, fallback)
                break
        else:
            for shape in shapes:
                kind = shape(fields)
                if kind is not None:
                    return kind
            verdict = fallback
        return verdict if isinstance(verdict, ItemKind) else verdict(fields)

    return classify


def _shape_classifier(
    read: Callable[[Any], _Fields], shapes: tuple[_Shape, ...], fallback: ItemKind
) -> Callable[[Any], ItemKind]:
    """`_classifier` for classes that declare no name field, such as the SDKs' chat chunks.

    Skipping the name loop saves a tenth of the time of an openai chunk, the commonest SDK item.
    """

    def classify(item: Any) -> ItemKind:
        fields = read(item)
        for shape in shapes:
            kind = shape(fields)
            if kind is not None:
                return kind
        return fallback

    return classify


# Mappings are their own fields, and are read alike.
_kind_of_mapping: Final = _classifier(None, _MAPPING_NAMES, tuple(_SHAPES.values()), _OUTPUT)


def _declared_fields(cls: type) -> frozenset[str] | None:
    """The fields `cls` declares (pydantic models, dataclasses), or None for other classes."""
    pydantic = getattr(cls, "__pydantic_fields__", None)
    if isinstance(pydantic, dict):
        return frozenset(cast("dict[str, Any]", pydantic))
    if dataclasses.is_dataclass(cls):
        return frozenset(field.name for field in dataclasses.fields(cls))
    return None


def _reader(cls: type, declared: frozenset[str]) -> Callable[[Any], _Fields]:
    """How to read the fields of instances of `cls`: from `__dict__` wherever that is exact.

    A pydantic model keeps its fields in the instance dict, and reading them there costs
    nanoseconds where getattr of a missing name costs microseconds. A class that supplies a
    name we read itself (a property, a slot, a class attribute that is no declared field), or
    computes attributes (`__getattr__`, `__getattribute__`), is read with getattr.
    """
    pydantic = isinstance(getattr(cls, "__pydantic_fields__", None), dict)
    # Every class in C (builtins, most of the standard library) has a slot wrapper here; one
    # written in Python computes what it returns.
    getattribute = inspect.getattr_static(cls, "__getattribute__", None)
    computed = not isinstance(getattribute, WrapperDescriptorType) or (
        # pydantic's own __getattr__ serves private attributes and the extras read apart.
        not pydantic and inspect.getattr_static(cls, "__getattr__", None) is not None
    )
    supplied = any(
        name not in declared and inspect.getattr_static(cls, name, _MISSING) is not _MISSING
        for name in _READ_NAMES
    )
    if computed or supplied:
        return _Attributes
    if not cls.__dictoffset__:
        return _no_fields  # no instance dict and nothing supplied: instances hold no fields
    config = cast("Mapping[str, object]", getattr(cls, "model_config", {}))
    extras = pydantic and config.get("extra") == "allow"
    return _instance_dict_and_extras if extras else _instance_dict


# --------------------------------------------------------------------------------------------------
# kind_of


def kind_of(item: object) -> ItemKind:
    """Classify a streamed item for the gate.

    Reads a name: the `type`, `kind`, `event` or `event_kind` field of a mapping, the `type`,
    `kind` or `event_kind` attribute of an object (enum members count by value), and otherwise
    the class name of a typed delta (`TextDelta`, `Usage`, `Done`, ...). Items whose name is not
    enough, or that have none, are read by their content: OpenAI chat chunks, the Responses
    API's `*.added` events, LangChain message chunks, pydantic-ai part events and Gemini
    responses are `METADATA` while they carry nothing a consumer could show (a role-only first
    chunk, an empty part), `OUTPUT` once they do. Exceptions are `ERROR`. Anything not
    recognised is `OUTPUT`: forwarding it commits the stream, because duplicated output is
    worse than a missed retry. The explanation of the gate in the docs lists every item known.

    Example:
        >>> kind_of({"type": "content_block_delta", "delta": {"text": "Hi"}})
        <ItemKind.OUTPUT: 'output'>
        >>> kind_of({"type": "message_start"})
        <ItemKind.METADATA: 'metadata'>
        >>> kind_of({"type": "error", "error": {"type": "authentication_error"}})
        <ItemKind.ERROR: 'error'>

    """
    cls = type(item)
    # The commonest items of hand-written providers, text and dicts, skip the plan lookup.
    if cls is str:
        return _OUTPUT
    try:
        if cls is dict:
            return _kind_of_mapping(item)
        return (_CLASSIFIERS.get(id(cls)) or _plan_of(cls).kind)(item)
    except Exception:  # noqa: BLE001 - an item that cannot be read is treated as output
        return _OUTPUT


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
