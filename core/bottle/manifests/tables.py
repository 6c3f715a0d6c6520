"""Profile tables plugins register (``bottle_register_profile_tables``), and how ``extends`` layers merge them.

The core reads only its own fields of a profile (backend, image, limits,
env); every other top-level table (``[git]``, ``[[credentials]]``) belongs to the plugin that registered it, as a pydantic
model with ``extra="forbid"``. A key no loaded plugin registered is an error
naming the file, as any unknown field is.

A table's *merge* turns the layers of an ``extends`` chain, parents first and
only those that set the table, into the one value the profile has.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

Merge = Callable[[Sequence[Any]], Any]


def override_fields(layers: Sequence[BaseModel]) -> BaseModel:
    """Field by field, the last layer that sets a field decides: a child sets only what it changes."""
    model = type(layers[0])
    values: dict[str, Any] = {}
    for layer in layers:
        values.update({name: getattr(layer, name) for name in layer.model_fields_set})
    return model(**values)


def by_key(key: Callable[[Any], Any]) -> Merge:
    """For an array of tables: a later layer's entry replaces an earlier one with the same *key*."""

    def merge(layers: Sequence[Sequence[Any]]) -> tuple:
        entries: dict[Any, Any] = {}
        for layer in layers:
            entries.update({key(entry): entry for entry in layer})
        return tuple(entries.values())

    return merge


@dataclass(frozen=True)
class ProfileTable:
    """A top-level profile key a plugin reads: ``[key]`` (*model*) or, with *many*, ``[[key]]`` (a tuple of them).

    *check_each* sees each file's value, *check* the merged one (fields that
    only make sense together, which a child may complete); each returns
    (field, why) when it cannot work, reported naming the file(s) that set
    the table. *default* makes the value when no layer sets it; None leaves
    the table out of the profile.
    """

    key: str
    model: type[BaseModel]
    many: bool = False
    merge: Merge = override_fields
    check_each: Callable[[Any], tuple[str, str] | None] | None = None
    check: Callable[[Any], tuple[str, str] | None] | None = None
    default: Callable[[], Any] | None = None


@dataclass(frozen=True)
class BuiltinProfile:
    """A profile that needs no file (``bottle_builtin_profile``): its tables as a file would hold them."""

    data: dict[str, Any]
    notes: tuple[str, ...] = field(default=())
