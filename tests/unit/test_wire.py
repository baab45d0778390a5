"""medsettle.wire: the fast reader and writer a model gets from its own
fields give exactly what validation and ``model_dump(mode="json")`` give,
for every kind of field the contract uses, so a field added to a model
needs no second edit."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal
from enum import Enum
from typing import Annotated, Literal

import orjson
import pytest
from pydantic import BaseModel, Field

from medsettle import wire
from medsettle.contract import Amount, Frozen, LayerName, Money, Quantity
from medsettle.settings import ROOT


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Part(Frozen):
    price: Money
    size: Quantity = Decimal("1")
    colour: Colour = Colour.RED


class Everything(Frozen):
    name: str
    count: int = 0
    flag: bool = False
    kind: Literal["one", "two"]
    total: Amount
    maybe: Amount | None = None
    day: dt.date
    since: dt.date | None = None
    at: dt.datetime | None = None
    layer: LayerName
    tags: list[Annotated[str, Field(max_length=8)]] = Field(default_factory=list)
    part: Part
    parts: list[Part] = Field(default_factory=list)
    spare: Part | None = None
    kinds: list[Literal["a", "b"]] = Field(default_factory=list)


def examples() -> list[Everything]:
    part = Part(price="12.50", size="2.5", colour="blue")
    return [
        Everything(name="甲", kind="one", total=Decimal("-3.10"), day=dt.date(2024, 3, 1), layer="basic", part=part),
        Everything(name="b", count=3, flag=True, kind="two", total=Decimal("1234.50"), maybe=Decimal("0.00"),
                   day=dt.date(2024, 12, 31), since=dt.date(2024, 1, 1), layer="serious_illness",
                   at=dt.datetime(2024, 3, 10, 2, 0, 0, 120000, tzinfo=dt.UTC), tags=["x", "y"], part=part,
                   parts=[part, Part(price="0.05")], spare=Part(price="1.00", size="0.0001"), kinds=["b", "a"]),
        Everything(name="c", kind="one", total=Decimal("7"), day=dt.date(2024, 3, 1), layer="backstop", part=part,
                   at=dt.datetime(2024, 3, 10, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))),
    ]


@pytest.mark.parametrize("value", examples())
def test_what_the_writer_gives_is_model_dump_and_the_reader_reads_it_back(value: Everything):
    dumped = value.model_dump(mode="json")
    assert wire.writer(Everything)(value) == dumped
    assert orjson.dumps(wire.writer(Everything)(value)) == orjson.dumps(dumped)
    read = wire.reader(Everything)(orjson.loads(orjson.dumps(dumped)))
    assert read == Everything.model_validate(dumped) == value
    assert type(read.part) is Part and type(read.layer) is LayerName


def test_a_field_with_a_default_may_be_absent():
    raw = {"name": "n", "kind": "two", "total": "1.00", "day": "2024-03-01", "layer": "assistance",
           "part": {"price": "2.00"}}
    assert wire.reader(Everything)(raw) == Everything.model_validate(raw)


def test_fields_passed_through_are_taken_as_given():
    value = examples()[1]
    given = {"price": "as it was read"}
    assert wire.writer(Everything, ("part",))(value, given) == {**value.model_dump(mode="json"), "part": given}
    with pytest.raises(TypeError):
        wire.writer(Everything, ("nothing",))


@pytest.mark.parametrize("change", [
    {"total": 1.5},  # a float is never an amount
    {"kind": "three"},
    {"layer": "insurer"},
    {"day": "10 March"},
    {"part": None},
])
def test_a_value_of_the_wrong_shape_is_refused(change: dict[str, object]):
    raw = {**examples()[0].model_dump(mode="json"), **change}
    with pytest.raises((KeyError, TypeError, ValueError, ArithmeticError, AttributeError)):
        wire.reader(Everything)(raw)


def test_a_type_it_does_not_know_fails_at_the_first_use():
    class Odd(BaseModel):
        values: set[int]

    with pytest.raises(TypeError, match="cannot read"):
        wire.reader(Odd)
    with pytest.raises(TypeError, match="cannot write"):
        wire.writer(Odd)


def test_nothing_is_compiled_at_import_time():
    code = ("import medsettle.contract, services.settlement.app, services.basic.app; from medsettle import wire; "
            "print(wire.reader.cache_info().currsize + wire.writer.cache_info().currsize)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": f"{ROOT / 'libs'}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "0"
