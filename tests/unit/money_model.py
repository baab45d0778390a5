"""The pipeline's pure decisions wired together in memory, for the sequence
property test (test_money_sequences.py): eligibility's claim handling
(``services/eligibility/decide.py``), each layer
stage's ``layerstage.decide`` and the settlement stage's ``decide``, with
what each stores kept in dicts the way their repositories keep it in
PostgreSQL. No broker, no database: the decisions are the real ones."""

from __future__ import annotations

import dataclasses
import functools
import datetime as dt
from typing import Any

import orjson

from medsettle import layerstage, topics
from medsettle.contract import (
    Hospital,
    LayerName,
    Person,
    SettlementDocument,
    SettlementResult,
    parse_claim,
)
from medsettle.policy import Policy, PolicyBook, in_force
from medsettle.settings import ROOT
from services.eligibility import answers as eligibility_answers
from services.eligibility import decide as eligibility
from services.eligibility import redrive as eligibility_redrive
from services.eligibility import repository as eligibility_repo
from services.pipeline import layer_functions
from services.settlement import decide as settlement
from services.settlement.onebill import check_invariants

AT = dt.datetime(2024, 6, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=8)))
LAYER_NAMES = {"basic": LayerName.BASIC, "insurer": LayerName.SERIOUS_ILLNESS, "assistance": LayerName.ASSISTANCE,
               "backstop": LayerName.BACKSTOP}


class MemoryLayer:
    """One layer stage: its decision, and what ``layer_repository.save_batch`` would store."""

    def __init__(self, layer: layerstage.Layer) -> None:
        self.layer = layer
        self.answers: dict[str, bytes] = {}
        # as stored: the state, with its version. The state is kept as the model ``decide`` made, not as its
        # JSON: writing it and reading it back at every save, and validating it again at every read, was a
        # tenth of the sequence test (tests/unit/test_accumulator.py checks that the JSON reads back equal).
        self.accumulators: dict[tuple[str, int], tuple[Any, int]] = {}
        self.layers: dict[str, Any] = {}
        self.empty = layer.accumulator_type()  # a person's state before anything is stored (a frozen model)

    def handle(self, batch: list[tuple[SettlementDocument, dict[str, Any]]]) -> layerstage.Decision:
        cancels, keys, claim_ids = layerstage.needs(batch)
        stored = layerstage.StoredState(
            {m: self.answers[m] for m in cancels if m in self.answers},
            {k: self.accumulators[k] for k in keys if k in self.accumulators},
            {c: self.layers[c] for c in claim_ids if c in self.layers},
        )
        decision = layerstage.decide(self.layer, batch, stored)
        for key, (state, version) in decision.accumulators.items():
            assert self.accumulators.get(key, ({}, 0))[1] == version, "saved at a version it did not read"
            self.accumulators[key] = (state, version + 1)
        for row in decision.new_layers.values():
            existing = self.layers.get(row.claim_id)
            if existing is None or (existing.attempt < row.attempt and existing.status != "settled"):
                self.layers[row.claim_id] = row
        for claim_id in decision.reversed_ids:
            self.layers[claim_id] = dataclasses.replace(self.layers[claim_id], status="reversed")
        for message_id, body in decision.inbox:
            self.answers[message_id] = body
        return decision

    def accumulator(self, person_id: str, year: int = 2024):
        """The stored state."""
        stored = self.accumulators.get((person_id, year))
        return self.empty if stored is None else stored[0]


class MemorySettlement:
    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        self.bills: dict[str, bytes] = {}
        self.status: dict[str, str] = {}
        self.failures: dict[tuple[str, int], settlement.Failure] = {}
        self.dead_letters: list[str] = []
        self.check = check_invariants

    def handle(self, batch: list[tuple[SettlementDocument, bytes]]) -> list[settlement.Emit]:
        cancels, claim_ids = settlement.needs([d for d, _ in batch])
        stored = settlement.StoredState(
            {m: self.answers[m] for m in cancels if m in self.answers},
            {c: self.bills[c] for c in claim_ids if c in self.bills},
            {k: f for k, f in self.failures.items() if k[0] in claim_ids},
        )
        decision = settlement.decide(batch, stored, clock=lambda: AT, check=self.check)
        for bill, _, body in decision.bills:
            self.bills[bill.claim_id] = body
            self.status[bill.claim_id] = "settled"
        for claim_id, _ in decision.reversals:
            self.status[claim_id] = "reversed"
        for message_id, body in decision.inbox:
            self.answers[message_id] = body
        for failure in decision.failures:
            self.failures.setdefault((failure.claim_id, failure.attempt), failure)
        return [emit for emits in decision.emits for emit in emits]


@functools.cache
def _policies() -> PolicyBook:
    """The policies, read once."""
    return PolicyBook(ROOT / "policies")


@functools.lru_cache(maxsize=4096)
def _registry(model: type[Person] | type[Hospital], record: bytes) -> Person | Hospital:
    """A registry record as eligibility's reader validates it; the same record (a sequence registers the same
    few again and again) read once. The models are frozen."""
    return model.model_validate(orjson.loads(record))


class MemoryPolicies:
    """Policy revisions held in memory, looked up as a ``PolicyBook`` looks them up: eligibility takes the
    revision in force on the service date (``in_force``), the layers take a claim's revision by its id. A
    revision published while a sequence runs (a file added to the folder) is in force from then on."""

    def __init__(self, revisions: list[Policy]) -> None:
        self._by_id: dict[str, Policy] = {}
        for policy in revisions:
            self.publish(policy)

    def publish(self, policy: Policy) -> None:
        known = self._by_id.setdefault(policy.policy, policy)
        assert known == policy, f"revision {policy.policy} changed in place"

    def get(self, region: str, on: dt.date) -> Policy | None:
        return in_force([p for p in self._by_id.values() if (p.region, p.year) == (region, on.year)], on)

    def by_id(self, policy_id: str) -> Policy | None:
        return self._by_id.get(policy_id)


class MemoryPipeline:
    """Eligibility, the four layers and settlement; ``send`` returns the hospital's answers. ``policies``:
    the shipped policy folder unless given (``MemoryPolicies``, revisions published as a test goes)."""

    def __init__(self, policies: PolicyBook | MemoryPolicies | None = None) -> None:
        self.policies = _policies() if policies is None else policies
        self.layers = {
            name: MemoryLayer(layerstage.Layer(LAYER_NAMES[name], apply, kind, self.policies.by_id))
            for name, apply, kind in layer_functions()
        }
        self.settlement = MemorySettlement()
        self.known: dict[str, eligibility_repo.ClaimRow] = {}
        self.answers: set[eligibility_redrive.Answered] = set()  # eligibility's answers table
        self.persons: dict[str, Person] = {}
        self.hospitals: dict[str, Hospital] = {}
        self.parsed: dict[bytes, Any] = {}  # the claims read, by their bytes (a claim is a frozen model)

    # ------------------------------------------------------------ registry
    def register(self, *, persons: list[dict] = (), hospitals: list[dict] = ()) -> None:  # type: ignore[assignment]
        for p in persons:
            person = _registry(Person, orjson.dumps(p))
            self.persons[person.person_id] = person
        for h in hospitals:
            hospital = _registry(Hospital, orjson.dumps(h))
            self.hospitals[hospital.hospital_code] = hospital

    # -------------------------------------------------------------- claims
    def send(self, body: dict[str, Any]) -> list[SettlementResult]:
        raw = orjson.dumps(body)
        claim = self.parsed.get(raw)
        if claim is None:  # the same bytes again (a resend, a trial again) read as they were the first time
            claim = self.parsed[raw] = parse_claim(raw)
        failed = frozenset((a.claim_id, a.attempt) for a in self.answers
                           if a.answer == "failed" and a.claim_id == claim.claim_id)
        known = self.known.get(claim.claim_id)
        stored = eligibility.StoredState(
            dict(self.hospitals), dict(self.persons), {} if known is None else {claim.claim_id: known}, failed,
        )
        decision = eligibility.decide([claim], stored, clock=lambda: AT, find_policy=self.policies.get)
        for row in decision.new_rows + decision.retried:
            self.known[row.claim_id] = row
        for claim_id, reason in decision.reversals:
            self.known[claim_id] = dataclasses.replace(self.known[claim_id], status="reversed", cancel_reason=reason)
        for claim_id, reason in decision.withdrawals:
            self.known[claim_id] = dataclasses.replace(self.known[claim_id], status="withdrawn", cancel_reason=reason)
        for claim_id in decision.cancels:  # published at once here
            self.known[claim_id].cancel_published = True
        return self._route(decision.out)

    def review(self, claim_id: str, approve: bool) -> list[SettlementResult]:
        row = self.known[claim_id]
        assert row.status == "pending_review"
        row.status = "accepted" if approve else "review_rejected"
        row.review_reason = None if approve else "不符合意外伤害认定"
        return self._route([eligibility_answers.decided(row, AT)])

    def _route(self, outgoing: list) -> list[SettlementResult]:
        answers: list[SettlementResult] = []
        queue = list(outgoing)
        while queue:
            message = queue.pop(0)
            if message.topic == topics.SETTLEMENTS:
                answers.append(SettlementResult.from_json(message.value))
                continue
            assert message.topic == topics.ELIGIBLE
            body, handed = message.value, None
            for layer in self.layers.values():
                if handed is None:  # read from its body, as the stage reads it
                    raw = orjson.loads(body)
                    handed = (SettlementDocument.trusted(raw), raw["claim"])
                decision = layer.handle([handed])
                # from one layer to the next as the document the layer made, not its body again (reading every
                # body back was a sixth of the sequence test); a body stored before is read
                ((body,), (handed,)) = decision.bodies, decision.documents
            document = SettlementDocument.trusted(orjson.loads(body))  # the settlement stage reads the last body
            for emit in self.settlement.handle([(document, body)]):
                if isinstance(emit, settlement.Answer):
                    answers.append(SettlementResult.from_json(emit.body))
                    # eligibility's answers lane, from the header the settlement stage puts on it
                    self.answers.update(eligibility_redrive.answered(
                        [[(topics.ANSWER_TO, document.message_id.encode())] if emit.names_message else None]))
                elif isinstance(emit, settlement.Compensate):
                    from medsettle.runtime import Outgoing

                    queue.append(Outgoing(topics.ELIGIBLE, emit.person_id.encode(), emit.body))
                else:
                    self.settlement.dead_letters.append(emit.reason)
        return answers

    def accumulators(self, person_id: str) -> dict[str, Any]:
        return {name: layer.accumulator(person_id) for name, layer in self.layers.items()}
