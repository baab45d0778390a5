"""Policy simulation (补偿方案测算): one person's year of recorded claim events
replayed through a candidate policy. Pure: no I/O, no clock.

The layers' arithmetic is the services' own: ``basic_payment``,
``serious_illness_payment``, ``assistance_payment`` and ``backstop_payment``
are what each stage's rule (``settle_basic``, ...) runs before it wraps the
result into a layer, a delta and the next document. The replay calls them in
the stages' order, each on the amounts the layers before it paid, without the
explanation text and without those models (a year of a province is a million
claims), on counters held here, never on the live ones. Events are applied as
the stages applied them: a settle adds the claim's delta to each layer's
counters; a reversal subtracts the delta that claim's settle added, at the
point in the person's history where the reversal happened.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from medsettle.accumulator import plus
from medsettle.contract import Category, ItemCategory, Level, SettlementDocument, VisitType
from medsettle.money import ZERO
from medsettle.policy import Policy
from services.assistance.rules import assistance_payment
from services.backstop.rules import backstop_payment
from services.basic.rules import basic_payment
from services.insurer.rules import serious_illness_payment
from services.pipeline import layer_functions

FUND_CODES: tuple[str, ...] = ("390100", "390200", "610100", "640100")


class BillItem(msgspec.Struct, frozen=True, gc=False):
    """What the basic layer's ``classify`` reads of an item."""

    category: ItemCategory
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    limit_price: Decimal | None = None


class BillClaim(msgspec.Struct, frozen=True, gc=False):
    """What ``basic_payment`` and the report read of the claim."""

    claim_id: str
    visit_type: VisitType
    discharged_on: dt.date
    items: Annotated[tuple[BillItem, ...], msgspec.Meta(min_length=1)]
    referral: bool = False


class BillPerson(msgspec.Struct, frozen=True, gc=False):
    categories: tuple[Category, ...] = ()
    favoured: bool = False


class BillHospital(msgspec.Struct, frozen=True, gc=False):
    level: Level


class Bill(msgspec.Struct, frozen=True, gc=False):
    """What the replay and its report read of the document eligibility sent
    on to the layers (``SettlementDocument``, at the same paths): the claim's
    items, visit type, referral and service date, the person's categories
    and favoured status on that date, the hospital's level. A province's year
    is a million documents: they are decoded straight into these (msgspec,
    the types checked as it reads, other fields skipped), not into the
    ``SettlementDocument``'s twenty-odd pydantic models a claim."""

    claim: BillClaim
    person: BillPerson
    hospital: BillHospital

    @classmethod
    def of(cls, document: SettlementDocument) -> Bill:
        return read_bill(document.to_json())


@functools.cache
def _bill_decoder() -> msgspec.json.Decoder[Bill]:
    return msgspec.json.Decoder(Bill)


def read_bill(stored: bytes) -> Bill:
    """A stored document (``SettlementDocument.to_json``) as a ``Bill``;
    ``msgspec.ValidationError`` names the field that is not as it should be."""
    return _bill_decoder().decode(stored)


@dataclass(frozen=True, slots=True)
class RecordedClaim:
    """One settled claim as the platform recorded it: the bill eligibility
    sent on to the layers, when the settlement stage confirmed it and (if so)
    reversed it, and what each fund actually paid."""

    bill: Bill
    settled_at: dt.datetime
    reversed_at: dt.datetime | None
    paid: tuple[Decimal, Decimal, Decimal, Decimal]  # 390100, 390200, 610100, 640100 as actually paid
    total: Decimal
    compliant: Decimal
    personal: Decimal


@dataclass(slots=True)
class ReplayedClaim:
    claim: RecordedClaim
    paid: tuple[Decimal, Decimal, Decimal, Decimal]  # as the candidate would have paid
    personal: Decimal

    @property
    def in_force(self) -> bool:
        """Still settled at the end of the record (not reversed)."""
        return self.claim.reversed_at is None


class Running:
    """A person's counters of one layer as the replay keeps them: the fields
    of the layer's accumulator as attributes, which the payment functions
    read as they read a ``Counters`` state, added to in place. A frozen
    ``Counters`` built anew at every add cost a model per layer and claim."""

    def __init__(self, empty: dict[str, Any]) -> None:
        """``empty``: the fields of an empty accumulator (``Counters.__dict__``;
        ``plus`` makes a new mapping, so one is never changed in place)."""
        self.__dict__.update(empty)

    def add(self, delta: dict[str, Any], sign: int = 1) -> None:
        """``Counters.add`` in place: each field of ``delta`` added (``plus``)."""
        mine = self.__dict__
        for name, other in delta.items():
            mine[name] = plus(mine[name], other, sign)


@dataclass(slots=True)
class PersonYear:
    """One person's replayed year: every claim, and the final counters of each stage."""

    person_id: str
    claims: list[ReplayedClaim]
    accumulators: dict[str, Running] = field(default_factory=dict)

    @property
    def serious_illness_base(self) -> Decimal:
        state = self.accumulators.get("insurer")
        return getattr(state, "base", ZERO) if state is not None else ZERO


def events(claims: Sequence[RecordedClaim]) -> list[tuple[str, int]]:
    """The person's settles and reversals in the order they happened:
    ``("settle" | "cancel", index into claims)``. A reversal never precedes
    its own settle; equal times keep the claims' order."""
    if all(claim.reversed_at is None for claim in claims) and all(
            claims[i].settled_at <= claims[i + 1].settled_at for i in range(len(claims) - 1)):
        return [("settle", index) for index in range(len(claims))]  # what the sort below gives, without it
    timeline: list[tuple[dt.datetime, int, int, str]] = []
    for index, claim in enumerate(claims):
        timeline.append((claim.settled_at, 0, index, "settle"))
        if claim.reversed_at is not None:
            timeline.append((max(claim.reversed_at, claim.settled_at), 1, index, "cancel"))
    timeline.sort(key=lambda e: (e[0], e[2], e[1]))
    return [(kind, index) for _, _, index, kind in timeline]


class Replayer:
    """Applies the services' layer arithmetic with one candidate policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.favoured: dict[tuple[str, ...], bool] = {}  # the candidate's decision, per set of categories
        # the stages in order (basic, insurer, assistance, backstop) and the fields of their empty accumulators,
        # which every person's year starts from
        self.stages = [(stage, kind().__dict__) for stage, _, kind in layer_functions()]

    def _favoured(self, categories: Sequence[str]) -> bool:
        """Eligibility decides who is favoured with the policy in force
        (``policy.favoured(categories)``); the candidate may decide otherwise."""
        key = tuple(categories)
        favoured = self.favoured.get(key)
        if favoured is None:
            favoured = self.favoured[key] = self.policy.favoured(list(key))
        return favoured

    def person_year(self, person_id: str, claims: Sequence[RecordedClaim]) -> PersonYear:
        """Replay one person's claims (of one accumulation year)."""
        policy = self.policy
        counters = [Running(empty) for _, empty in self.stages]
        basic_counters, serious_counters, assistance_counters, backstop_counters = counters
        deltas: dict[int, tuple[dict[str, Any], ...]] = {}  # of the claims reversed later
        replayed: list[ReplayedClaim | None] = [None] * len(claims)
        for kind, index in events(claims):
            claim = claims[index]
            if kind == "settle":
                bill = claim.bill
                visit, level, categories = bill.claim.visit_type, bill.hospital.level, bill.person.categories
                favoured = self._favoured(categories)
                basic, breakdown, _ = basic_payment(policy, bill.claim, level, favoured, categories, basic_counters,
                                                    False)
                compliant, total = breakdown.compliant, breakdown.total
                b = basic.amount
                serious = serious_illness_payment(policy, visit, favoured, compliant, total, b, serious_counters, False)
                s = serious.amount
                assistance = assistance_payment(policy, categories, compliant, total, b, s, assistance_counters, False)
                a = assistance.amount
                # the funds so far added as SettlementDocument.funds_so_far adds them, from ZERO
                backstop = backstop_payment(policy, level, visit, categories, compliant, ZERO + b + s + a,
                                            backstop_counters, False)
                k = backstop.amount
                added = (basic.delta, serious.delta, assistance.delta, backstop.delta)
                for running, delta in zip(counters, added):
                    running.add(delta)
                if claim.reversed_at is not None:
                    deltas[index] = added
                replayed[index] = ReplayedClaim(claim, (b, s, a, k), total - b - s - a - k)
            else:  # the reversal takes out exactly what the settle put in, layer by layer
                for running, delta in zip(counters, deltas.pop(index)):
                    running.add(delta, -1)
        return PersonYear(person_id, replayed,  # type: ignore[arg-type]
                          {stage: running for (stage, _), running in zip(self.stages, counters)})
