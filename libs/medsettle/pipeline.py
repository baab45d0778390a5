"""The four layers in order, as pure functions: what the stages do, without
Kafka or PostgreSQL. Used by tests, the crash test's oracle and the bench."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medsettle.accumulator import Counters, LayerOutcome
from medsettle.contract import SettlementDocument
from medsettle.policy import Policy


def layer_functions() -> list[tuple[str, Callable[[Policy, SettlementDocument, Any], LayerOutcome], type[Counters]]]:
    from services.assistance.rules import AssistanceAccumulator, settle_assistance
    from services.backstop.rules import BackstopAccumulator, settle_backstop
    from services.basic.rules import BasicAccumulator, settle_basic
    from services.insurer.rules import SeriousIllnessAccumulator, settle_serious_illness

    return [
        ("basic", settle_basic, BasicAccumulator),
        ("insurer", settle_serious_illness, SeriousIllnessAccumulator),
        ("assistance", settle_assistance, AssistanceAccumulator),
        ("backstop", settle_backstop, BackstopAccumulator),
    ]


class Ledger:
    """Every person's accumulators per layer, kept in memory, and what each
    settled claim added to them, so that ``reverse`` takes exactly that out
    again (as a layer stage does with its stored delta)."""

    def __init__(self) -> None:
        self.layers = layer_functions()
        self.accumulators: dict[tuple[str, str, int], Counters] = {}
        self.deltas: dict[str, list[tuple[tuple[str, str, int], Counters]]] = {}

    def get(self, stage: str, person_id: str, year: int) -> Counters:
        kind = next(k for name, _, k in self.layers if name == stage)
        return self.accumulators.get((stage, person_id, year), kind())

    def settle(self, policy: Policy, document: SettlementDocument, *, commit: bool = True) -> SettlementDocument:
        deltas = []
        for stage, apply, _ in self.layers:
            key = (stage, document.person.person_id, document.claim.year)
            outcome = apply(policy, document, self.get(stage, *key[1:]))
            if commit:
                self.accumulators[key] = self.get(stage, *key[1:]).add(outcome.delta)
                deltas.append((key, outcome.delta))
            document = outcome.document
        if commit:
            self.deltas[document.claim.claim_id] = deltas
        return document

    def reverse(self, claim_id: str) -> None:
        """Take a settled claim out of every accumulator (KeyError: no such claim standing)."""
        for key, delta in self.deltas.pop(claim_id):
            self.accumulators[key] = self.accumulators[key].add(delta, -1)
