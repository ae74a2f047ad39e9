"""Every dialect merged, once, into the tables `kind_of` and `is_unauthorized_error` read.

Merging at import keeps the cost of a streamed item what it was with one hand-written table: a
name is looked up once in a set, whichever dialect contributed it. Two dialects that give one
name two meanings are a mistake caught here, at import, rather than a silent first-wins.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple, TypeVar

from ._dialect import Dialect, Look, NameRule, Preset, Shape, Watch
from .dialects import DIALECTS

__all__ = ["TABLES", "Tables", "load", "merge", "preset_for", "watches_for"]

_Value = TypeVar("_Value")


class Tables(NamedTuple):
    """What every dialect says, merged."""

    done: frozenset[str]
    metadata: frozenset[str]
    error: frozenset[str]
    look_inside: Mapping[str, Look]
    shapes: Mapping[str, Shape]
    """In the order of the dialects: the first shape an item matches settles it."""
    never_done: frozenset[str]
    """The fields of `shapes` whose check never answers DONE."""
    name_rules: tuple[NameRule, ...]
    object_names: tuple[str, ...]
    """Where objects keep their name, in the order the names count."""
    mapping_names: tuple[str, ...]
    """Where mappings keep their name, in the order the names count."""
    read_names: frozenset[str]
    """Every field a check reads, the name fields included."""
    error_wrappers: Mapping[str, tuple[str, ...]]
    watches: tuple[Watch, ...]
    presets: Mapping[str, tuple[Preset, ...]]
    """The presets of every dialect, by the qualified name of the class they name."""


def load(names: Iterable[str] = DIALECTS) -> tuple[Dialect, ...]:
    """The `DIALECT` of each module `names` lists in `dialects/`."""
    package = f"{__package__}.dialects"
    return tuple(importlib.import_module(f"{package}.{name}").DIALECT for name in names)


def merge(dialects: Iterable[Dialect]) -> Tables:
    """Merge `dialects` into one set of tables.

    Raises:
        ValueError: Two dialects give one name (or shape field, or error class) two meanings.

    """
    dialects = tuple(dialects)
    named: dict[str, str] = {}  # each item name, and who gave it a meaning
    for dialect in dialects:
        for names in (dialect.done, dialect.metadata, dialect.error, dialect.look_inside):
            for name in names:
                _claim(named, name, dialect.name)
    object_names = _unique(name for each in dialects for name in each.name_fields)
    mapping_names = _unique(
        name for each in dialects for name in (*each.name_fields, *each.wire_name_fields)
    )
    shapes = _joined(dialects, "shape field", lambda dialect: dialect.shapes)
    return Tables(
        done=frozenset(name for each in dialects for name in each.done),
        metadata=frozenset(name for each in dialects for name in each.metadata),
        error=frozenset(name for each in dialects for name in each.error),
        look_inside=_joined(dialects, "name", lambda dialect: dialect.look_inside),
        shapes=shapes,
        never_done=frozenset(field for each in dialects for field in each.never_done),
        name_rules=tuple(each.name_rule for each in dialects if each.name_rule is not None),
        object_names=object_names,
        mapping_names=mapping_names,
        read_names=frozenset((*mapping_names, *shapes, *(n for d in dialects for n in d.reads))),
        error_wrappers=_joined(dialects, "error class", lambda dialect: dialect.error_wrappers),
        watches=tuple(watch for each in dialects for watch in each.watches),
        presets=_presets(dialects),
    )


def _presets(dialects: tuple[Dialect, ...]) -> Mapping[str, tuple[Preset, ...]]:
    by_name: dict[str, tuple[Preset, ...]] = {}
    claimed: dict[str, str] = {}
    for dialect in dialects:
        for preset in dialect.presets:
            _claim(claimed, f"{preset.module}.{preset.qualname}", dialect.name, "preset for")
            by_name[preset.qualname] = (*by_name.get(preset.qualname, ()), preset)
    return MappingProxyType(by_name)


def _claim(claimed: dict[str, str], key: str, by: str, what: str = "name") -> None:
    if key in claimed:
        raise ValueError(f"{by} and {claimed[key]} both give the {what} {key!r} a meaning")
    claimed[key] = by


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _joined(
    dialects: tuple[Dialect, ...], what: str, table: Callable[[Dialect], Mapping[str, _Value]]
) -> Mapping[str, _Value]:
    """The tables of every dialect in one, in the dialects' order; a key given twice raises."""
    joined: dict[str, _Value] = {}
    claimed: dict[str, str] = {}
    for dialect in dialects:
        for key, value in table(dialect).items():
            _claim(claimed, key, dialect.name, what)
            joined[key] = value
    return MappingProxyType(joined)


TABLES: Final = merge(load())


def watches_for(cls: type, watches: Iterable[Watch] | None = None) -> tuple[Watch, ...]:
    """The watches of the frameworks that `cls` or one of its bases comes from.

    Classes are matched by module name, so no framework is imported to look.
    """
    modules = {klass.__module__ for klass in cls.__mro__}
    return tuple(
        watch
        for watch in (TABLES.watches if watches is None else watches)
        if any(name == watch.module or name.startswith(f"{watch.module}.") for name in modules)
    )


def preset_for(cls: type, presets: Mapping[str, tuple[Preset, ...]] | None = None) -> Preset | None:
    """The preset of the first class in `cls`'s MRO that one names, or None.

    Classes are matched by module and qualified name, so no SDK is imported to look: a
    client of an SDK the program does not use cannot be one of its classes anyway.
    """
    table = TABLES.presets if presets is None else presets
    for klass in cls.__mro__:
        for preset in table.get(klass.__qualname__, ()):
            module = klass.__module__
            if module == preset.module or module.startswith(f"{preset.module}."):
                return preset
    return None
