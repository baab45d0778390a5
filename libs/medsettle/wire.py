"""Fast readers and writers of a model's JSON form, derived from its fields.

The stages read and write a settlement document per claim at every hop.
Pydantic's validation of a document we wrote ourselves costs about ten times
what reading it needs, and its serializer calls back into Python for every
amount; so the hot path uses these instead, and they are *compiled from the
model's own field definitions*: adding a field to a model needs no second
edit, and a type these do not know fails at the first use, loudly.

- ``reader(Model)``: a function from the dict ``orjson`` gives to a model
  instance built without validation (as ``model_construct`` does), each field
  converted from JSON by its type: ``Decimal`` from its string, dates and
  times from ISO 8601, enums by value, ``Literal`` checked, nested models,
  lists and optionals in turn. A field with a default may be absent. A value
  of the wrong shape raises ``KeyError``, ``TypeError``, ``ValueError`` or
  ``ArithmeticError``: the caller then validates in full.
- ``writer(Model, through=...)``: a function from an instance to exactly
  ``model_dump(mode="json")``, with the model's own ``PlainSerializer`` for
  each amount. ``through`` names fields passed in already as JSON (a
  document's claim exactly as it was read) instead of being written again.

Each is compiled once per model, at its first use (nothing at import time),
into plain Python source like the hand-written functions it replaces.
"""

from __future__ import annotations

import datetime as dt
import functools
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, PlainSerializer
from pydantic_core import PydanticUndefined, to_jsonable_python

_new = object.__new__
# BaseModel's own slots, set through their descriptors: a quarter faster than ``object.__setattr__``
# (``__dict__`` a third: every model's is BaseModel's, which declares it as a slot)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def built(model: type[Any], values: dict[str, Any], fields_set: set[str] | None = None) -> Any:
    """An instance of ``model`` holding ``values``, which must be complete and
    valid; ``fields_set``: the fields given explicitly (else all of them)."""
    instance = _new(model)
    _set_dict(instance, values)
    _set_fields_set(instance, set(values) if fields_set is None else fields_set)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


@functools.cache
def _defaults(model: type[BaseModel]) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """Every field in the model's order with its default as validation fills
    it in (``PydanticUndefined`` for a required one), the required fields,
    and those whose default is a mutable container, which each instance
    needs a copy of (made at first use)."""
    defaults = {name: field.get_default(call_default_factory=True) for name, field in model.model_fields.items()}
    return (defaults, tuple(name for name, value in defaults.items() if value is PydanticUndefined),
            tuple(name for name, value in defaults.items() if type(value) in (dict, list, set)))


def constructed(model: type[Any], given: dict[str, Any]) -> Any:
    """What ``model(**given)`` gives when ``given`` is already valid, built
    without validating it again: the fields in the model's order (which the
    writers keep), the others at their defaults (a mutable one copied, as
    validation copies it), only ``given`` counted as set. A required field
    missing or an unknown one is a ``TypeError``. tests/bench/test_fast_paths.py
    checks its callers against validation."""
    defaults, required, mutable = _defaults(model)
    values = {**defaults, **given}
    if len(values) != len(defaults) or (required and any(values[name] is PydanticUndefined for name in required)):
        raise TypeError(f"{model.__name__}: unknown fields {sorted(given.keys() - defaults.keys())}, "
                        f"missing {sorted(name for name in required if name not in given)}")
    for name in mutable:
        if name not in given:
            values[name] = values[name].copy()
    return built(model, values, set(given))


def _number(value: Any) -> Decimal:
    if type(value) is not str:
        raise TypeError(f"an amount must be a decimal string, not {value!r}")
    return Decimal(value)


def _one_of(value: Any, allowed: frozenset[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {sorted(allowed)}")
    return value


_HELPERS: dict[str, Any] = {
    "_built": built, "_number": _number, "_one_of": _one_of, "_jsonable": to_jsonable_python, "_Decimal": Decimal,
    "_date": dt.date.fromisoformat, "_datetime": dt.datetime.fromisoformat,
}


class _Source:
    """The source of one generated function and the objects it refers to."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = dict(_HELPERS)

    def name(self, value: Any) -> str:
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return name

    def function(self, arguments: str, body: str) -> Callable[..., Any]:
        source = f"def generated({arguments}):\n    {body}\n"
        exec(compile(source, "<medsettle.wire>", "exec"), self.names)  # noqa: S102 - our own source, as dataclasses do
        return self.names["generated"]  # type: ignore[no-any-return]


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under ``Annotated``, and its metadata."""
    if typing.get_origin(annotation) is Annotated:
        inner, *metadata = typing.get_args(annotation)
        return inner, metadata
    return annotation, []


def _optional(annotation: Any) -> Any | None:
    """``X`` of ``X | None``; ``None`` for anything else."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = typing.get_args(annotation)
        if len(args) == 2 and type(None) in args:
            return args[0] if args[1] is type(None) else args[1]
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


Convert = Callable[[Any, str, "_Source"], str]


def _composite(annotation: Any, value: str, source: _Source, convert: Convert,
               compiled: Callable[[type[BaseModel]], Callable[..., Any]]) -> str | None:
    """The expression for an optional, a list or a model: ``convert`` for
    what it holds, ``compiled`` for a model; ``None`` for a simple type."""
    inner = _optional(annotation)
    if inner is not None:
        expression = convert(inner, value, source)
        return value if expression == value else f"None if {value} is None else {expression}"
    if _is_model(annotation):
        return f"{source.name(compiled(annotation))}({value})"
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        expression = convert(item, "x", source)
        return f"list({value})" if expression == "x" else f"[{expression} for x in {value}]"
    return None


def _read(annotation: Any, value: str, source: _Source) -> str:
    """A Python expression converting ``value``, the JSON of ``annotation``, to the field's value."""
    annotation, _ = _strip(annotation)
    composite = _composite(annotation, value, source, _read, reader)
    if composite is not None:
        return composite
    origin = typing.get_origin(annotation)
    if annotation in (str, Any):
        return value
    if annotation in (bool, int):
        return f"{annotation.__name__}({value})"
    if annotation is Decimal:  # ``_number``'s common case inline, a call fewer per amount read
        return f"(_Decimal({value}) if type({value}) is str else _number({value}))"
    if annotation is dt.datetime:
        return f"_datetime({value})"
    if annotation is dt.date:
        return f"_date({value})"
    if origin is Literal:
        allowed = source.name(frozenset(typing.get_args(annotation)))
        return f"({value} if {value} in {allowed} else _one_of({value}, {allowed}))"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return f"{source.name({member.value: member for member in annotation})}[{value}]"
    raise TypeError(f"medsettle.wire cannot read a field of type {annotation!r}: teach it that type")


def _write(annotation: Any, value: str, source: _Source) -> str:
    """A Python expression giving ``model_dump(mode="json")`` of ``value``, a value of ``annotation``."""
    annotation, metadata = _strip(annotation)
    for meta in metadata:
        if isinstance(meta, PlainSerializer) and meta.when_used in ("always", "json"):
            return f"{source.name(meta.func)}({value})"
    composite = _composite(annotation, value, source, _write, writer)
    if composite is not None:
        return composite
    origin = typing.get_origin(annotation)
    if annotation in (str, bool, int, Any):
        return value
    if origin is Literal and all(type(a) in (str, bool, int) for a in typing.get_args(annotation)):
        return value
    if annotation is Decimal:
        return f"str({value})"
    if annotation is dt.date:
        return f"{value}.isoformat()"
    if annotation is dt.datetime:
        return f"_jsonable({value})"  # pydantic's own form of a time (``Z`` for UTC, say)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return f"{value}.value"
    raise TypeError(f"medsettle.wire cannot write a field of type {annotation!r}: teach it that type")


def _field_type(field: Any) -> Any:
    """A field's full type: pydantic keeps the metadata of ``Annotated`` apart."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


@functools.cache
def reader(model: type[BaseModel]) -> Callable[[dict[str, Any]], Any]:
    """``model`` from its JSON (a dict), without validation; see the module's doc."""
    source = _Source()
    lines, values = [], []
    for n, (name, field) in enumerate(model.model_fields.items()):
        if field.is_required():
            lines.append(f"v{n} = raw[{name!r}]")
        else:  # absent: its default, as it would be written
            default = field.get_default(call_default_factory=True)
            lines.append(f"v{n} = raw.get({name!r}, {source.name(to_jsonable_python(default))})")
        values.append(f"{name!r}: {_read(_field_type(field), f'v{n}', source)}")
    lines.append(f"return _built({source.name(model)}, {{{', '.join(values)}}})")
    return source.function("raw", "\n    ".join(lines))


@functools.cache
def writer(model: type[BaseModel], through: tuple[str, ...] = ()) -> Callable[..., dict[str, Any]]:
    """``model_dump(mode="json")`` of a ``model``, built directly; the fields
    named in ``through`` are the function's further arguments, already JSON."""
    missing = set(through) - set(model.model_fields)
    if missing:
        raise TypeError(f"{model.__name__} has no field {sorted(missing)}")
    source = _Source()
    lines, values = [], []
    for n, (name, field) in enumerate(model.model_fields.items()):
        if name in through:
            values.append(f"{name!r}: {name}")
        else:
            lines.append(f"v{n} = o.{name}")
            values.append(f"{name!r}: {_write(_field_type(field), f'v{n}', source)}")
    lines.append(f"return {{{', '.join(values)}}}")
    return source.function(", ".join(("o", *through)), "\n    ".join(lines))

