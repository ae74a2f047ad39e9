"""`kind_of`: what a streamed item is, from its name, its shape or its class.

What each SDK's items look like lives in its dialect (`dialects/`); this module reads items. A
name is normalised and judged once, then remembered; how each class keeps its fields is worked
out once per class (its *plan*), then reused, so the cost of an item is a few dictionary reads.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import re
import types
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType, WrapperDescriptorType
from typing import Any, Final, NamedTuple, cast

from ._dialect import DONE, ERROR, METADATA, OUTPUT, Fields, Inside, ItemKind, Shape, Verdict
from ._tables import TABLES

__all__ = ["SETTLED", "ends", "kind_of"]

_DONE_NAMES: Final = TABLES.done
_METADATA_NAMES: Final = TABLES.metadata
_ERROR_NAMES: Final = TABLES.error
_LOOK_INSIDE: Final = dict(TABLES.look_inside)
_SHAPES: Final = TABLES.shapes
_NEVER_DONE: Final = TABLES.never_done
_NAME_RULES: Final = TABLES.name_rules
_MAPPING_NAMES: Final = TABLES.mapping_names
_OBJECT_NAMES: Final = TABLES.object_names
_READ_NAMES: Final = TABLES.read_names

# --------------------------------------------------------------------------------------------------
# what names say
#
# Names are compared after normalisation: words of any case and separator joined by "_", with and
# without the affixes that SDKs put around them ("RawMessageStopEvent" is "message_stop").

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


def _verdict_of_text(name: str) -> Verdict:
    """What the event or class name `name` says about its items."""
    names = _names_of(name)
    words = names[0].split("_")
    named = set(names)
    # Any name with the word "error" is an error, whoever speaks it.
    if "error" in words or named & _ERROR_NAMES:
        return ERROR
    look = next((_LOOK_INSIDE[each] for each in names if each in _LOOK_INSIDE), None)
    if look is not None:
        return look
    if named & _DONE_NAMES:
        return DONE
    if named & _METADATA_NAMES:
        return METADATA
    for rule in _NAME_RULES:
        verdict = rule(words)
        if verdict is not None:
            return verdict
    return OUTPUT


# Names seen so far and their verdicts. Provider vocabularies are small; the bound keeps a
# stream of odd names from growing it. Races between threads only redo the same work.
_NAME_VERDICTS: dict[object, Verdict] = {}
_MAX_NAMES: Final = 4096


def _verdict_of_name(name: object, fallback: Verdict) -> Verdict:
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
# how each class keeps its fields


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
_MISSING: Final = object()


def _no_fields(_item: object) -> Fields:
    return _EMPTY


class _Plan(NamedTuple):
    """How `kind_of` reads and classifies the instances of one class, worked out once."""

    kind: Callable[[Any], ItemKind]
    """Classify an instance."""
    read: Callable[[Any], Fields]
    """Read an instance's fields (for values inside an item)."""
    ends: Callable[[Any], bool]
    """Whether an instance ends a stream: `kind(item) is DONE`, without reading what cannot."""
    errs: bool = True
    """Whether an instance may be an error item. Only a name says ERROR (shapes never do): a
    class that holds no name field, and whose own name says no error, never makes one."""


# The plans of the classes met so far, one table per use: `kind_of` reads the first for every
# item, and the checks read the second for each value inside one. Working a plan out reads the
# class (its fields, attributes and name) and costs microseconds; reusing it keeps `kind_of` to
# a few dictionary reads on SDK objects, where a missed getattr alone costs microseconds
# (pydantic raises and catches inside). The tables are keyed by the class's id, not by the
# class, which they would keep alive: a weak reference to each class drops its entries when a
# class made on the fly goes (a WeakKeyDictionary lookup costs more than a whole
# classification). Races between threads only work the same plan out twice.
_CLASSIFIERS: dict[int, Callable[[Any], ItemKind]] = {}
_READERS: dict[int, Callable[[Any], Fields]] = {}
_ENDERS: dict[int, Callable[[Any], bool]] = {}
_WATCHED: dict[int, weakref.ref[type]] = {}

SETTLED: Final[set[int]] = {id(str)}  # `kind_of` answers text without a plan
"""The ids of the classes met so far whose instances are settled results of a call: never an
error item, and nothing to await. A call that returns one is done without reading it (the call
drivers look here first, and ask `kind_of` only of other values)."""


def _plan_of(cls: type) -> _Plan:
    """The plan of `cls`, worked out and remembered while `cls` lives."""
    plan = _new_plan(cls)
    key = id(cls)
    _WATCHED[key] = weakref.ref(cls, functools.partial(_forget_plan, key))
    _CLASSIFIERS[key] = plan.kind
    _READERS[key] = plan.read
    _ENDERS[key] = plan.ends
    if not plan.errs and not _awaitable(cls):
        SETTLED.add(key)
    return plan


def _forget_plan(key: int, _gone: object) -> None:
    for table in (_CLASSIFIERS, _READERS, _ENDERS, _WATCHED):
        table.pop(key, None)
    SETTLED.discard(key)


def _awaitable(cls: type) -> bool:
    """Whether instances of `cls` may be awaitable (a generator may be a legacy coroutine)."""
    return hasattr(cls, "__await__") or issubclass(cls, types.GeneratorType)


def _fields_of(value: object) -> Fields:
    """The fields of a value inside an item, read as its class's plan says."""
    return (_READERS.get(id(type(value))) or _plan_of(type(value)).read)(value)


def _new_plan(cls: type[object]) -> _Plan:
    if issubclass(cls, str | bytes | bytearray):
        return _Plan(_always(OUTPUT), _no_fields, _never, errs=False)  # text is output, even "done"
    if issubclass(cls, BaseException):
        return _Plan(_always(ERROR), _no_fields, _never)
    if issubclass(cls, Mapping):
        return _Plan(_kind_of_mapping, _itself, _ends_by(_kind_of_mapping))
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
        # Instances cannot say otherwise than their class.
        return _Plan(_always(by_name), read, _ends_by(_always(by_name)), by_name is ERROR)
    kind = _classifier(read, names, shapes, by_name)
    may_end = bool(names) or (by_name is not OUTPUT and by_name is not METADATA)
    if not may_end and declared is not None:
        may_end = any(field not in _NEVER_DONE for field in _SHAPES if field in declared)
    # A look at the fields (a callable verdict) may find an error item inside.
    errs = bool(names) or not isinstance(by_name, ItemKind) or by_name is ERROR
    return _Plan(kind, read, _ends_by(kind) if may_end else _never, errs)


def _always(kind: ItemKind) -> Callable[[Any], ItemKind]:
    def classify(_item: object) -> ItemKind:
        return kind

    return classify


def _never(_item: object) -> bool:
    return False


def _ends_by(kind: Callable[[Any], ItemKind]) -> Callable[[Any], bool]:
    def ends(item: object) -> bool:
        return kind(item) is DONE

    return ends


def _classifier(
    read: Callable[[Any], Fields] | None,
    names: tuple[str, ...],
    shapes: tuple[Shape, ...],
    fallback: Verdict,
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
                kind = shape(fields, _INSIDE)
                if kind is not None:
                    return kind
            verdict = fallback
        return verdict if isinstance(verdict, ItemKind) else verdict(fields, _INSIDE)

    return classify


def _shape_classifier(
    read: Callable[[Any], Fields], shapes: tuple[Shape, ...], fallback: ItemKind
) -> Callable[[Any], ItemKind]:
    """`_classifier` for classes that declare no name field, such as the SDKs' chat chunks.

    Skipping the name loop saves a tenth of the time of an openai chunk, the commonest SDK item.
    """

    def classify(item: Any) -> ItemKind:
        fields = read(item)
        for shape in shapes:
            kind = shape(fields, _INSIDE)
            if kind is not None:
                return kind
        return fallback

    return classify


# Mappings are their own fields, and are read alike.
_kind_of_mapping: Final = _classifier(None, _MAPPING_NAMES, tuple(_SHAPES.values()), OUTPUT)


def _declared_fields(cls: type) -> frozenset[str] | None:
    """The fields `cls` declares (pydantic models, dataclasses), or None for other classes."""
    pydantic = getattr(cls, "__pydantic_fields__", None)
    if isinstance(pydantic, dict):
        return frozenset(cast("dict[str, Any]", pydantic))
    if dataclasses.is_dataclass(cls):
        return frozenset(field.name for field in dataclasses.fields(cls))
    return None


def _reader(cls: type, declared: frozenset[str]) -> Callable[[Any], Fields]:
    """How to read the fields of instances of `cls`: from `__dict__` wherever that is exact.

    A pydantic model keeps its fields in the instance dict, and reading them there costs
    nanoseconds where getattr of a missing name costs microseconds. A class that supplies a
    name a dialect reads itself (a property, a slot, a class attribute that is no declared
    field), or computes attributes (`__getattr__`, `__getattribute__`), is read with getattr.
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
    enough, or that have none, are read by their content: OpenAI chat chunks and the events of
    its `stream()` helper, the Responses API's `*.added` events, LangChain message chunks,
    pydantic-ai part events, LlamaIndex chat responses and Gemini responses are `METADATA` while
    they carry nothing a consumer could show (a role-only first chunk, an empty part), `OUTPUT`
    once they do. Exceptions are `ERROR`. Anything not recognised is `OUTPUT`: forwarding it
    commits the stream, because duplicated output is worse than a missed retry. The explanation
    of the gate in the docs lists every item known.

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
        return OUTPUT
    try:
        if cls is dict:
            return _kind_of_mapping(item)
        return (_CLASSIFIERS.get(id(cls)) or _plan_of(cls).kind)(item)
    except Exception:  # noqa: BLE001 - an item that cannot be read is treated as output
        return OUTPUT


def ends(item: object) -> bool:
    """Whether `item` ends a stream: `kind_of(item) is DONE`, without reading what cannot.

    After a stream has committed only its end still matters. Most items cannot be one: text,
    and objects whose class names no end and whose shapes never answer DONE (the openai chat
    chunk). For those this is a dictionary read, where `kind_of` reads the item's content.
    """
    cls = type(item)
    if cls is str:
        return False
    try:
        if cls is dict:
            return _kind_of_mapping(item) is DONE
        return (_ENDERS.get(id(cls)) or _plan_of(cls).ends)(item)
    except Exception:  # noqa: BLE001 - as in kind_of: an item that cannot be read is output
        return False


def _inside() -> Inside:
    """What the dialects' checks may ask about a value inside an item: `_fields_of` itself.

    The checks read fields inside an item once or twice per streamed item. Handing them the
    plain function, with `kind_of` as its attribute, costs no attribute lookup per read: a
    record holding both costs 4% more on an openai chunk.
    """
    setattr(_fields_of, "kind", kind_of)  # noqa: B010 - the attribute is the point
    return cast("Inside", _fields_of)


_INSIDE: Final = _inside()
