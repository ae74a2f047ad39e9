"""The classifier against hostile input: what `tests/test_classify.py` does not already try.

Added here: `__getattribute__`, properties and `__class__` that raise; hostile `str`, `int` and
`bytes` subclasses as field values; custom `Mapping`s whose lookups raise; tuples, sets and
bytearrays in nested values; cyclic dicts, lists and namespaces and dict <-> exception cycles;
exception groups nested deep; huge strings; `redact` on arbitrary text; the gate on all of it.

The promise covers `Exception` subclasses only. A `BaseException` raised while an object is
inspected (`KeyboardInterrupt`, trio's `Cancelled`) propagates on purpose, so that cancellation
passes through the classifier; one test pins that boundary.
"""

from __future__ import annotations

import time
import types
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refresh_middleware.classify import ItemKind, StreamGate, is_unauthorized_error, kind_of
from refresh_middleware.events import redact

FIELD_NAMES = (
    "status_code",
    "status",
    "code",
    "http_status",
    "response",
    "type",
    "kind",
    "event",
    "error_code",
    "body",
    "error",
    "detail",
    "message",
    "usage",
    "object",
    "choices",
    "delta",
)
RAISED = (
    RuntimeError,
    KeyError,
    AttributeError,
    TypeError,
    ValueError,
    RecursionError,
    MemoryError,
    UnicodeDecodeError,
    StopIteration,
    NotImplementedError,
)


def _raise(kind: type[Exception]) -> Exception:
    if kind is UnicodeDecodeError:
        return UnicodeDecodeError("utf-8", b"\xff", 0, 1, "hostile")
    return kind("hostile")


def _raiser(kind: type[Exception]) -> Any:
    def method(*_args: object, **_kwargs: object) -> Any:
        raise _raise(kind)

    return method


# --------------------------------------------------------------------------------------------------
# hostile values


class GetattributeRaises:
    """Every attribute read raises, even `__class__` and `__dict__`."""

    def __init__(self, kind: type[Exception]) -> None:
        object.__setattr__(self, "_kind", kind)

    def __getattribute__(self, name: str) -> Any:
        raise _raise(object.__getattribute__(self, "_kind"))


class ErrorWhoseGetattributeRaises(Exception):
    """An exception whose attributes (`__cause__`, `args`, `status_code`) cannot be read."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(name)


def with_raising_properties(names: frozenset[str], kind: type[Exception], base: type) -> Any:
    """An instance of `base` whose properties `names` raise `kind` when read."""
    namespace = {name: property(_raiser(kind)) for name in names}
    cls = type("RaisingProperties", (base,), namespace)
    return cls("HTTP 401") if issubclass(base, BaseException) else cls()


class HostileMapping(Mapping[Any, Any]):
    """A real `Mapping` (not a dict) whose lookups, length and iteration raise."""

    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind

    def __getitem__(self, key: object) -> Any:
        raise _raise(self.kind)

    def __len__(self) -> int:
        raise _raise(self.kind)

    def __iter__(self) -> Iterator[Any]:
        raise _raise(self.kind)


class MappingOfHostiles(Mapping[Any, Any]):
    """A `Mapping` that answers every key with a value whose every dunder raises."""

    def __getitem__(self, key: object) -> Any:
        return hostile_str("authentication_error", RuntimeError)

    def __len__(self) -> int:
        return len(FIELD_NAMES)

    def __iter__(self) -> Iterator[Any]:
        return iter(FIELD_NAMES)


STR_METHODS = ("lower", "strip", "__hash__", "__eq__", "__len__", "isdecimal", "__bool__")


def hostile_str(text: str, kind: type[Exception], methods: tuple[str, ...] = STR_METHODS) -> str:
    """A `str` subclass holding `text` whose `methods` raise."""
    return type("HostileStr", (str,), dict.fromkeys(methods, _raiser(kind)))(text)


def hostile_int(number: int, kind: type[Exception]) -> int:
    """An `int` subclass whose comparisons, hash and truth raise."""
    methods = ("__eq__", "__le__", "__ge__", "__lt__", "__hash__", "__bool__", "__index__")
    return type("HostileInt", (int,), dict.fromkeys(methods, _raiser(kind)))(number)


def hostile_bytes(data: bytes, kind: type[Exception]) -> bytes:
    """A `bytes` subclass whose decoding and conversion raise."""
    methods = ("decode", "__bytes__", "__len__", "__iter__")
    return type("HostileBytes", (bytes,), dict.fromkeys(methods, _raiser(kind)))(data)


# Hypothesis draws recipes (plain data it can print and shrink) and the test realises them:
# hostile objects must never pass through Hypothesis itself, which would trip over them.
raised = st.sampled_from(RAISED)
hostile_recipes = st.one_of(
    st.tuples(st.just("getattribute"), raised),
    st.tuples(st.just("error getattribute")),
    st.tuples(
        st.just("properties"),
        st.frozensets(st.sampled_from((*FIELD_NAMES, "__class__")), min_size=1),
        raised,
        st.sampled_from([object, RuntimeError]),
    ),
    st.tuples(st.just("mapping"), raised),
    st.tuples(st.just("mapping of hostiles")),
    st.tuples(
        st.just("str"), st.sampled_from(["401", "error", "authentication_error", "x"]), raised
    ),
    st.tuples(st.just("int"), st.sampled_from([401, 403, 200]), raised),
    st.tuples(st.just("bytes"), st.sampled_from([b"HTTP 401", b"\xff\xfe"]), raised),
)
plain_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.sampled_from(["401", 401, "error", "usage", "done", "authentication_error", "Forbidden"]),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    fields = st.lists(st.tuples(st.sampled_from(FIELD_NAMES), children), max_size=4)
    error = st.tuples(st.just("error"), st.text(max_size=20), fields, children)
    return st.one_of(
        st.tuples(st.just("list"), st.lists(children, max_size=4)),
        st.tuples(st.just("tuple"), st.lists(children, max_size=4)),
        st.tuples(st.just("frozenset"), st.frozensets(st.sampled_from([1, "401", None]))),
        st.tuples(st.just("bytearray"), st.binary(max_size=10)),
        st.tuples(
            st.just("dict"),
            st.lists(st.tuples(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), children)),
        ),
        st.tuples(st.just("namespace"), fields),
        error,
        st.tuples(st.just("group"), st.lists(error, min_size=1, max_size=3)),
    )


recipes = st.recursive(
    plain_leaves.map(lambda value: ("plain", value)) | hostile_recipes, _containers, max_leaves=25
)


def realise(recipe: tuple[Any, ...]) -> Any:
    """The value a recipe describes."""
    kind, *parts = recipe
    simple = {
        "plain": lambda: parts[0],
        "getattribute": lambda: GetattributeRaises(parts[0]),
        "error getattribute": lambda: ErrorWhoseGetattributeRaises("HTTP 401"),
        "properties": lambda: with_raising_properties(*parts),
        "mapping": lambda: HostileMapping(parts[0]),
        "mapping of hostiles": MappingOfHostiles,
        "str": lambda: hostile_str(*parts),
        "int": lambda: hostile_int(*parts),
        "bytes": lambda: hostile_bytes(*parts),
        "list": lambda: [realise(each) for each in parts[0]],
        "tuple": lambda: tuple(realise(each) for each in parts[0]),
        "frozenset": lambda: parts[0],
        "bytearray": lambda: bytearray(parts[0]),
        "dict": lambda: {key: realise(each) for key, each in parts[0]},
        "namespace": lambda: types.SimpleNamespace(**{k: realise(v) for k, v in parts[0]}),
        "group": lambda: ExceptionGroup("g", [realise(each) for each in parts[0]]),
    }
    if kind in simple:
        return simple[kind]()
    message, fields, cause = parts
    error = RuntimeError(message)
    for name, value in fields:
        setattr(error, name, realise(value))
    cause = realise(cause)
    if issubclass(type(cause), BaseException):  # isinstance reads __class__, which may raise
        error.__cause__ = cause
    return error


# --------------------------------------------------------------------------------------------------
# never raises, whatever the value


@settings(max_examples=400)
@given(recipes)
def test_is_unauthorized_error_returns_a_bool_for_any_value(recipe: Any) -> None:
    """Nested values holding hostile objects of every kind get a plain bool."""
    assert bool is type(is_unauthorized_error(realise(recipe)))


@settings(max_examples=400)
@given(recipes)
def test_kind_of_returns_an_item_kind_for_any_value(recipe: Any) -> None:
    """Nested values holding hostile objects of every kind get an ItemKind."""
    assert ItemKind is type(kind_of(realise(recipe)))


@settings(max_examples=200)
@given(hostile_recipes, st.sampled_from(FIELD_NAMES), st.sampled_from(["mapping", "object"]))
def test_hostile_field_values_never_break_classification(
    recipe: Any, name: str, holder: str
) -> None:
    """A hostile value in any field the classifier reads gives a bool and an ItemKind."""
    value = realise(recipe)
    item = {name: value} if holder == "mapping" else types.SimpleNamespace(**{name: value})
    assert (bool, ItemKind) == (type(is_unauthorized_error(item)), type(kind_of(item)))


@settings(max_examples=200)
@given(st.lists(recipes, min_size=1, max_size=8))
def test_the_gate_never_raises_on_any_items(item_recipes: list[Any]) -> None:
    """A StreamGate fed arbitrary items and errors answers every one of them."""
    items = [realise(each) for each in item_recipes]
    gate = StreamGate(max_retries=2)
    answered = 0
    for item in items:
        if issubclass(type(item), BaseException):
            gate.on_exception(item)
        else:
            gate.on_item(item)
        answered += 1
    assert len(items) == answered


# --------------------------------------------------------------------------------------------------
# cycles and depth


def _graph(shapes: list[str], links: list[tuple[int, str, int]]) -> list[Any]:
    """Nodes of the given shapes, linked `node.field = other` (cycles and self-loops allowed)."""
    nodes: list[Any] = []
    for shape in shapes:
        if shape == "dict":
            nodes.append({})
        elif shape == "list":
            nodes.append([])
        elif shape == "namespace":
            nodes.append(types.SimpleNamespace())
        else:
            nodes.append(RuntimeError("wrapper"))
    for source, field, target in links:
        node, other = nodes[source % len(nodes)], nodes[target % len(nodes)]
        if isinstance(node, dict):
            node[field] = other
        elif isinstance(node, list):
            node.append(other)
        elif isinstance(node, BaseException) and field in ("__cause__", "__context__"):
            if isinstance(other, BaseException):
                setattr(node, field, other)
        else:
            setattr(node, field, other)
    return nodes


graphs = st.builds(
    _graph,
    st.lists(st.sampled_from(["dict", "list", "namespace", "error"]), min_size=1, max_size=8),
    st.lists(
        st.tuples(
            st.integers(0, 7),
            st.sampled_from((*FIELD_NAMES, "__cause__", "__context__")),
            st.integers(0, 7),
        ),
        max_size=24,
    ),
)


@settings(max_examples=300)
@given(graphs)
def test_cyclic_dicts_lists_and_errors_are_classified(nodes: list[Any]) -> None:
    """Dicts, lists, objects and errors linked into cycles give a bool and an ItemKind."""
    answers = [(type(is_unauthorized_error(node)), type(kind_of(node))) for node in nodes]
    assert [(bool, ItemKind)] * len(nodes) == answers


def _nested_groups(depth: int, breadth: int, leaf: BaseException) -> BaseException:
    group: BaseException = leaf
    for level in range(depth):
        siblings = [RuntimeError(f"sibling {level}.{i}") for i in range(breadth)]
        group = ExceptionGroup(f"level {level}", [*siblings, group])
    return group


@settings(max_examples=100)
@given(
    st.integers(1, 400),
    st.integers(0, 3),
    st.sampled_from([RuntimeError("HTTP 401"), RuntimeError("rate limited"), ValueError()]),
)
def test_deeply_nested_exception_groups_are_classified(depth: int, breadth: int, leaf: Any) -> None:
    """Exception groups nested hundreds deep, with siblings at each level, give a bool."""
    assert bool is type(is_unauthorized_error(_nested_groups(depth, breadth, leaf)))


def test_exception_groups_nested_ten_thousand_deep_are_classified() -> None:
    """A group nested 10,000 deep, deeper than the recursion limit, gives a bool."""
    group = _nested_groups(10_000, 0, RuntimeError("HTTP 401"))
    assert (bool, ItemKind.ERROR) == (type(is_unauthorized_error(group)), kind_of(group))


def test_dicts_nested_ten_thousand_deep_are_classified() -> None:
    """A body nested 10,000 deep under `error` keys gives a bool and an ItemKind."""
    body: dict[str, Any] = {"type": "authentication_error"}
    for _ in range(10_000):
        body = {"error": body}
    assert (bool, ItemKind.OUTPUT) == (type(is_unauthorized_error(body)), kind_of(body))


# --------------------------------------------------------------------------------------------------
# huge input

HUGE = 4_000_000


@pytest.mark.parametrize(
    "value",
    [
        "x" * HUGE + " HTTP 401",
        "401 " * (HUGE // 4),
        b"\xff" * HUGE,
        RuntimeError("a" * HUGE),
        {"error": {"message": "token " * (HUGE // 6)}},
        {"type": "Text" * (HUGE // 4)},
        {"status_code": "4" * HUGE},
    ],
    ids=["text", "many 401s", "bytes", "message", "body", "type name", "status"],
)
def test_huge_values_are_classified_quickly(value: Any) -> None:
    """Megabytes of text, bytes or digits are classified in well under a second each."""
    # CPU time of this process, not the wall clock: other work on a loaded machine does not
    # count, a quadratic scan of megabytes (minutes) still does.
    start = time.process_time()
    answers = (type(is_unauthorized_error(value)), type(kind_of(value)))
    assert ((bool, ItemKind), True) == (answers, time.process_time() - start < 2.0)


# --------------------------------------------------------------------------------------------------
# redact

SECRET_PIECES = st.sampled_from(
    [
        "Bearer ",
        "Basic ",
        "bearer",
        "sk-",
        "sk-live-",
        "AIza",
        "eyJ",
        ".",
        "-",
        "_",
        "token",
        "api_key",
        "x-api-key",
        "Authorization",
        "password",
        "secret",
        ":",
        "=",
        '"',
        "'",
        " ",
        "\n",
        ",",
        "}",
        "abcdefgh",
        "0123456789",
        "é",
        "\x00",
        "\ud7ff",
    ]
)
secretish = st.lists(SECRET_PIECES, max_size=40).map("".join)


@settings(max_examples=500)
@given(st.text() | secretish)
def test_redact_returns_text_for_any_text(text: str) -> None:
    """Arbitrary text, and text built from secret-shaped pieces, is redacted without raising."""
    assert str is type(redact(text))


@settings(max_examples=300)
@given(secretish)
def test_redact_is_idempotent(text: str) -> None:
    """Redacting twice changes nothing more than redacting once."""
    once = redact(text)
    assert once == redact(once)


@pytest.mark.parametrize(
    "piece",
    ["eyJ-", "eyJabcdefgh.", "sk-", "Bearer ", "token: ", "AIza-", "api_key=x "],
)
def test_redact_takes_linear_time_on_repeated_secret_prefixes(piece: str) -> None:
    """100 kB of a repeated secret-shaped prefix is redacted in well under a second."""
    text = piece * (100_000 // len(piece))
    # This process's CPU time, which a loaded machine does not stretch (wall time reached
    # 0.5 s at a load of 25 for 0.05 s of work).
    start = time.process_time()
    redact(text)
    assert True is (time.process_time() - start < 0.5)


# --------------------------------------------------------------------------------------------------
# the boundary: BaseException passes


class Interrupting:
    """An error object whose message cannot be read without a KeyboardInterrupt."""

    def __getattr__(self, name: str) -> Any:
        raise KeyboardInterrupt


def test_a_base_exception_raised_while_inspecting_propagates() -> None:
    """Only Exceptions are swallowed: a KeyboardInterrupt during inspection still propagates."""
    outcomes = []
    for classify in (is_unauthorized_error, kind_of):
        try:
            classify(Interrupting())
        except KeyboardInterrupt:
            outcomes.append("propagated")
    assert ["propagated", "propagated"] == outcomes
