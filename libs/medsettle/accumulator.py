"""Annual accumulators: per person and year, one set of counters per layer.

A layer's accumulator is a frozen model of counters. Settling a claim adds
the claim's delta; reversing it subtracts exactly that delta again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict

from medsettle.contract import SettlementDocument


class Counters(BaseModel):
    """Counters are Decimals, or mappings of name → Decimal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def add(self, delta: Self, sign: int = 1) -> Self:
        changes: dict[str, object] = {}
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(delta, name)
            if isinstance(mine, dict):
                merged = dict(mine)
                for key, value in theirs.items():
                    merged[key] = merged.get(key, Decimal(0)) + sign * value
                changes[name] = {k: v for k, v in merged.items() if v != 0}
            else:
                changes[name] = mine + sign * theirs
        return self.model_copy(update=changes)

    def is_negative(self) -> bool:
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = value.values() if isinstance(value, dict) else [value]
            if any(v < 0 for v in values):
                return True
        return False


A = TypeVar("A", bound=Counters)


class LayerOutcome(BaseModel, Generic[A]):
    """A layer's pure result: the enriched document and what the claim adds
    to the person's accumulator."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    document: SettlementDocument
    delta: A
