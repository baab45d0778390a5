"""The pipeline, written once: which stages, in which order, on which topics,
with which layer rule and accumulator, on which port under ``make run``.

Everything that needs the shape of the pipeline reads it here: the layer
stages themselves (their topics, rule and accumulator), the in-memory
``Ledger`` (the four layers as pure functions, used by the tests, the crash
test's oracle and the simulation), the test harness, ``make run``, ``make
docs``, the bench and the crash test. ``libs/`` knows nothing of it (it
never imports ``services/``).

One stage, one set of names: ``name`` is the process, its consumer group,
its Kafka principal, its PostgreSQL schema and its metrics; ``layer`` is
the contract's name of the layer a stage computes (``LayerName``, in every
bill's ``layers``); the topics are the contract's (§2). The outsourced
insurer runs the serious-illness layer: stage ``insurer``, layer
``serious_illness``, topic ``settlement.serious-illness``, fund 390200.

``python -m services.pipeline`` prints the stages' names, one a line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from medsettle import topics
from medsettle.accumulator import Counters
from medsettle.contract import LayerName, SettlementDocument
from medsettle.layerstage import LayerFunction
from medsettle.policy import Policy
from services.assistance.rules import AssistanceAccumulator, settle_assistance
from services.backstop.rules import BackstopAccumulator, settle_backstop
from services.basic.rules import BasicAccumulator, settle_basic
from services.insurer.rules import SeriousIllnessAccumulator, settle_serious_illness


@dataclass(frozen=True)
class Stage:
    name: str
    consumes: str  # the topic its work arrives on
    publishes: str  # the topic it hands its work on to
    service: str  # "module:Class" of its Service
    port: int  # its /metrics and /health under `make run`: METRICS_PORT_BASE + port
    fund: str | None = None
    layer: LayerName | None = None
    rule: LayerFunction | None = None
    accumulator: type[Counters] | None = None

    def service_class(self) -> type[Any]:
        module, _, cls = self.service.partition(":")
        return getattr(importlib.import_module(module), cls)


STAGES: tuple[Stage, ...] = (
    Stage("eligibility", topics.CLAIMS, topics.ELIGIBLE, "services.eligibility.app:EligibilityStage", 0),
    Stage("basic", topics.ELIGIBLE, topics.BASIC, "services.basic.app:BasicStage", 1,
          "390100", LayerName.BASIC, settle_basic, BasicAccumulator),
    Stage("insurer", topics.BASIC, topics.SERIOUS_ILLNESS, "services.insurer.app:SeriousIllnessStage", 2,
          "390200", LayerName.SERIOUS_ILLNESS, settle_serious_illness, SeriousIllnessAccumulator),
    Stage("assistance", topics.SERIOUS_ILLNESS, topics.ASSISTANCE, "services.assistance.app:AssistanceStage", 3,
          "610100", LayerName.ASSISTANCE, settle_assistance, AssistanceAccumulator),
    Stage("backstop", topics.ASSISTANCE, topics.BACKSTOP, "services.backstop.app:BackstopStage", 4,
          "640100", LayerName.BACKSTOP, settle_backstop, BackstopAccumulator),
    Stage("settlement", topics.BACKSTOP, topics.SETTLEMENTS, "services.settlement.app:SettlementStage", 5),
)
LAYERS: tuple[Stage, ...] = tuple(s for s in STAGES if s.rule is not None)
NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
# Beside the pipeline under `make run`: the operators' API, the dashboard and the gateway (on GATEWAY_PORT).
SUPPORT: tuple[str, ...] = ("operations", "dashboard", "gateway")
PORTS: dict[str, int] = {**{s.name: s.port for s in STAGES}, "operations": 6, "dashboard": 7}


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


def layer_functions() -> list[tuple[str, LayerFunction, type[Counters]]]:
    """The four layers in order: (stage, rule, accumulator)."""
    return [(s.name, s.rule, s.accumulator) for s in LAYERS]  # type: ignore[misc]


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


if __name__ == "__main__":
    print("\n".join(NAMES))
