"""Annual accumulators: per person and year, one set of counters per layer.

A layer's accumulator is a frozen model of counters. Settling a claim adds
the claim's delta; reversing it subtracts exactly that delta again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Generic, NamedTuple, Self, TypeVar

from pydantic import BaseModel, ConfigDict

from medsettle.contract import Layer, LayerName, SettlementDocument
from medsettle.wire import built, constructed


def plus(mine: Any, other: Any, sign: int = 1) -> Any:
    """A counter plus ``sign`` times another: a ``Decimal``, or a mapping of
    name → ``Decimal`` added key by key, keys that reach 0 dropped (a new
    mapping). ``Counters.add`` adds so field by field, and the simulation's
    replay its own counters (``services.simulation.replay.Running``)."""
    if type(mine) is dict:
        merged = dict(mine)
        for key, value in other.items():
            merged[key] = merged.get(key, Decimal(0)) + (value if sign == 1 else sign * value)
        return {k: v for k, v in merged.items() if v != 0}
    # ``1 * other`` is ``other`` to the digit and sign: a settle's add skips the product
    return mine + other if sign == 1 else mine + sign * other


class Counters(BaseModel):
    """Counters are Decimals, or mappings of name → Decimal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def of(cls, **counts: Any) -> Self:
        """A delta a rule computed (``Decimal`` counters, mappings of name →
        ``Decimal``), built without validating again: what ``cls(**counts)``
        gives, the other counters at their defaults and only ``counts`` set
        (``add`` skips a delta of defaults only; the model validators, which
        read older stored states, do not run). Every layer of every claim
        makes one (tests/bench/test_fast_paths.py checks it against validation)."""
        return constructed(cls, counts)  # type: ignore[no-any-return]

    def add(self, delta: Self, sign: int = 1) -> Self:
        """This state plus ``sign`` times ``delta``, field by field (a mapping
        key by key, keys that reach 0 dropped). Built without pydantic's
        ``model_copy``: the stages add a delta per claim, a replay four, and the
        copy cost a fifth of a replay (tests/unit/test_accumulator.py checks the
        result against a validated model)."""
        if not delta.__pydantic_fields_set__:  # a delta of defaults only: nothing to add
            return self
        theirs = delta.__dict__
        return built(type(self), {name: plus(mine, theirs[name], sign) for name, mine in self.__dict__.items()})

    def is_negative(self) -> bool:
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = value.values() if isinstance(value, dict) else [value]
            if any(v < 0 for v in values):
                return True
        return False


A = TypeVar("A", bound=Counters)


class Payment(NamedTuple):
    """A layer's arithmetic for one claim, before it is a ``Layer`` and a
    delta: what the fund pays, what the claim adds to the person's counters
    (the accumulator's fields; ``{}``: nothing), and the explanation (``None``
    when it was not asked for: the simulation replays a year without it)."""

    amount: Decimal
    delta: dict[str, Any]
    explanation: str | None


class LayerOutcome(BaseModel, Generic[A]):
    """A layer's pure result: the enriched document and what the claim adds
    to the person's accumulator."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    document: SettlementDocument
    delta: A

    @classmethod
    def of(cls, document: SettlementDocument, name: LayerName, payment: Payment, kind: type[A],
           **changes: Any) -> LayerOutcome[A]:
        """What a stage's rule returns for the ``payment`` its layer's
        arithmetic computed: ``document`` with the layer ``name`` (and
        ``changes``, see ``SettlementDocument.with_layer``), and the delta as
        a ``kind``; built without validating again what the rule computed."""
        layer = Layer.of(layer=name, amount=payment.amount, explanation=payment.explanation)
        delta = kind.of(**payment.delta)
        return built(cls, {"document": document.with_layer(layer, **changes), "delta": delta})  # type: ignore[no-any-return]
