"""Policy simulation (补偿方案测算): one person's year of recorded claim events
replayed through a candidate policy. Pure: no I/O, no clock.

The layers are the services' own functions (``services.pipeline.layer_functions``:
``settle_basic``, ``settle_serious_illness``, ``settle_assistance``,
``settle_backstop``), applied in the stages' order to accumulators held here,
never to the live ones. Events are applied as the stages applied them: a
settle adds the claim's delta to each layer's accumulator; a reversal
subtracts the delta that claim's settle added (``Counters.add(delta, -1)``),
at the point in the person's history where the reversal happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from medsettle.accumulator import Counters, LayerOutcome
from medsettle.contract import LayerName, SettlementDocument
from medsettle.money import ZERO
from medsettle.policy import Policy
from services.pipeline import layer_functions

FUND_CODES: tuple[str, ...] = ("390100", "390200", "610100", "640100")
FUND_LAYERS: tuple[LayerName, ...] = (
    LayerName.BASIC, LayerName.SERIOUS_ILLNESS, LayerName.ASSISTANCE, LayerName.BACKSTOP,
)
_FUND_INDEX = {layer: index for index, layer in enumerate(FUND_LAYERS)}


@dataclass(frozen=True, slots=True)
class RecordedClaim:
    """One settled claim as the platform recorded it: the document the
    eligibility stage sent on to the layers, when the settlement stage
    confirmed it and (if so) reversed it, and what each fund actually paid."""

    document: SettlementDocument
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


@dataclass(slots=True)
class PersonYear:
    """One person's replayed year: every claim, and the final accumulators."""

    person_id: str
    claims: list[ReplayedClaim]
    accumulators: dict[str, Counters] = field(default_factory=dict)

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


LayerFunction = Callable[[Policy, SettlementDocument, Any], LayerOutcome]


class Replayer:
    """Applies the services' layer functions with one candidate policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.layers: list[tuple[str, LayerFunction, type[Counters]]] = layer_functions()
        # every person's year starts from these: frozen, and ``Counters.add`` makes a new state, so they are shared
        self.empty: tuple[Counters, ...] = tuple(kind() for _, _, kind in self.layers)
        self.favoured: dict[tuple[str, ...], bool] = {}  # the candidate's decision, per set of categories

    def _as_candidate_sees(self, document: SettlementDocument) -> SettlementDocument:
        """Eligibility decides who is favoured with the policy in force
        (``policy.favoured(categories)``); the candidate may decide otherwise."""
        person = document.person
        categories = tuple(person.categories)
        favoured = self.favoured.get(categories)
        if favoured is None:
            favoured = self.favoured[categories] = self.policy.favoured(list(categories))
        if favoured == person.favoured:
            return document
        return document.model_copy(update={"person": person.model_copy(update={"favoured": favoured})})

    def person_year(self, person_id: str, claims: Sequence[RecordedClaim]) -> PersonYear:
        """Replay one person's claims (of one accumulation year)."""
        policy = self.policy
        layers = self.layers
        states: list[Counters] = list(self.empty)
        deltas: dict[int, list[Counters]] = {}  # of the claims reversed later
        replayed: list[ReplayedClaim | None] = [None] * len(claims)
        for kind, index in events(claims):
            claim = claims[index]
            if kind == "settle":
                document = self._as_candidate_sees(claim.document)
                added: list[Counters] = []
                for position, (_, apply, _) in enumerate(layers):
                    outcome = apply(policy, document, states[position])
                    states[position] = states[position].add(outcome.delta)
                    added.append(outcome.delta)
                    document = outcome.document
                if claim.reversed_at is not None:
                    deltas[index] = added
                paid = [ZERO, ZERO, ZERO, ZERO]
                for layer in document.layers:
                    paid[_FUND_INDEX[layer.layer]] += layer.amount
                total = document.breakdown.total if document.breakdown is not None else claim.total
                replayed[index] = ReplayedClaim(claim, tuple(paid), total - paid[0] - paid[1] - paid[2] - paid[3])  # type: ignore[arg-type]
            else:  # the reversal takes out exactly what the settle put in, layer by layer
                for position, delta in enumerate(deltas.pop(index)):
                    states[position] = states[position].add(delta, -1)
        return PersonYear(person_id, replayed,  # type: ignore[arg-type]
                          {name: state for (name, _, _), state in zip(layers, states)})
