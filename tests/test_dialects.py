"""The dialects behind `kind_of`: one record per SDK, merged once into the tables it reads."""

from __future__ import annotations

from typing import Any

import pytest

from refresh_middleware._kinds import _tables
from refresh_middleware._kinds._dialect import OUTPUT, Dialect, ItemKind
from refresh_middleware._kinds.dialects import DIALECTS


class Recorder:
    """Fields that hold nothing and remember every name a check asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def get(self, key: str, /) -> Any:
        self.asked.add(key)
        return None


class RecordingInside:
    """An `Inside` whose values inside an item are recorders too."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __call__(self, value: object, /) -> Recorder:
        return self.recorder

    def kind(self, value: object) -> ItemKind:
        return OUTPUT


def checks(dialect: Dialect) -> list[Any]:
    return [*dialect.look_inside.values(), *dialect.shapes.values()]


@pytest.mark.parametrize("dialect", _tables.load(), ids=DIALECTS)
def test_every_field_a_dialect_checks_is_among_the_fields_read(dialect):
    """The fields read, from which kind_of decides how to read a class, cover every check."""
    recorder = Recorder()
    for check in checks(dialect):
        check(recorder, RecordingInside(recorder))
    assert set() == recorder.asked - _tables.TABLES.read_names


def test_the_registry_lists_each_dialect_once():
    """Each module of the registry is one dialect with its own name."""
    names = [dialect.name for dialect in _tables.load()]
    assert (len(DIALECTS), len(DIALECTS)) == (len(set(DIALECTS)), len(set(names)))


def test_the_fields_read_are_derived_from_the_dialects():
    """A field a dialect reads, or a shape it knows items by, is read without a hand-kept list."""
    extra = Dialect(name="extra", reads=frozenset({"novel"}), shapes={"odd": lambda f, i: None})
    assert {"novel", "odd"} <= _tables.merge((*_tables.load(), extra)).read_names


@pytest.mark.parametrize(
    "clash",
    [
        Dialect(name="clash", metadata=frozenset({"message_stop"})),
        Dialect(name="clash", done=frozenset({"part_start"})),
        Dialect(name="clash", shapes={"object": lambda fields, inside: None}),
        Dialect(name="clash", error_wrappers={"Wrapper": ()}),
    ],
    ids=["name", "look", "shape", "error class"],
)
def test_two_dialects_giving_one_name_two_meanings_fail_at_import(clash):
    """A name, a shape field or an error class claimed twice is an error, not first-wins."""
    first = Dialect(name="first", error_wrappers={"Wrapper": ("cause",)})
    with pytest.raises(ValueError, match="both give"):
        _tables.merge((*_tables.load(), first, clash))


def test_name_fields_keep_the_registry_order():
    """Fields naming items count in the order of the registry; wire fields name mappings only."""
    tables = _tables.merge(_tables.load())
    assert (("type", "kind", "event_kind"), ("type", "kind", "event", "event_kind")) == (
        tables.object_names,
        tables.mapping_names,
    )
