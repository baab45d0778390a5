"""The settlement stage's batch decision (services/settlement/decide.py)
without a broker or a database: seeded random years of batches of settles
(through the four real layers), trials, cancels (of a claim with a one-bill,
of one without, before its settle in the same batch), settles that failed in
a layer or whose one-bill breaks an invariant, their compensations, the next
attempt, exact resends and duplicates within a batch and across batches,
against what is stored kept in memory the way
``services/settlement/repository.py`` keeps it. After every batch:

- ``decide`` leaves what it was given as it was; one list of emits per
  document;
- a batch decides what its documents decide one by one (the same emits, the
  same one-bills, inbox, failures), and raises ``LookupError`` only when one
  of them alone does (the runtime then handles it one by one);
- a resend is answered with the stored bytes and writes nothing: a settle
  with its one-bill (once a claim has one, whichever attempt comes again), a
  failed settle with its dead letter and its stored compensation, a cancel or
  a compensation with its inbox row;
- a one-bill keeps every invariant and is written once; a claim is reversed
  at most once, with the amounts of its one-bill; a failure is recorded once
  and answered SETTLEMENT_FAILED when its compensation comes through; a trial
  writes nothing; no inbox row is written twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import Counter

import orjson
import pytest

from medsettle.contract import SettlementDocument, SettlementResult
from services.pipeline import Ledger
from services.settlement import decide
from services.settlement.onebill import check_invariants, one_bill
from tests.unit.batch_years import ATTEMPTS, CASES, CLAIMS, POLICY, REASONS, draw, reached, settle_document

AT = dt.datetime(2024, 6, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=8)))
SEEDS = 400
# K3's first one-bill breaks a (test-only) invariant; K4 comes failed by a layer at attempts 0 and 1
UPSTREAM = "insurer: ValueError: it could not"


def fails(claim_id: str, attempt: int) -> bool:
    return (claim_id, attempt) in {("K3", 0), ("K4", 0), ("K4", 1)}


def standing(claim_id: str, attempt: int) -> bool:
    return not fails(claim_id, attempt)


def check(bill: SettlementResult, doc: SettlementDocument) -> list[str]:
    """CONTRACT §5's invariants, and one that K3's first attempt breaks."""
    broken = check_invariants(bill, doc)
    return broken + ["a test-only invariant"] if (doc.claim.claim_id, doc.attempt) == ("K3", 0) else broken


@dataclasses.dataclass(frozen=True)
class Message:
    document: SettlementDocument
    body: bytes  # as read from settlement.backstop


def message(doc: SettlementDocument) -> Message:
    body = doc.to_json()
    return Message(SettlementDocument.trusted(orjson.loads(body)), body)


def documents() -> dict[tuple[str, int, str], Message]:
    """Each (claim, attempt, kind) as it reaches the settlement stage, through the four layers."""
    out: dict[tuple[str, int, str], Message] = {}
    for claim_id in CLAIMS:
        base = Ledger().settle(POLICY, settle_document(claim_id), commit=False)
        for attempt in range(ATTEMPTS):
            doc = base.model_copy(update={"attempt": attempt})
            if claim_id == "K4" and fails(claim_id, attempt):
                doc = doc.model_copy(update={"failure": UPSTREAM})
            out[(claim_id, attempt, "settle")] = message(doc)
            out[(claim_id, attempt, "trial")] = message(doc.model_copy(update={"kind": "trial"}))
            for reason in REASONS:  # as the backstop layer passes a reversal on: the settled document
                out[(claim_id, attempt, reason)] = message(doc.model_copy(update={"kind": "cancel",
                                                                                  "cancel_reason": reason}))
            out[(claim_id, attempt, "undo")] = message(doc.model_copy(update={
                "kind": "cancel", "failure": UPSTREAM, "layers": [], "breakdown": None, "deductible": None}))
    return out


POOL = documents()


@dataclasses.dataclass
class Store:
    """What the settlement stage's tables hold; ``save`` writes a decision as ``repository.save_batch`` does."""

    answers: dict[str, bytes] = dataclasses.field(default_factory=dict)
    bills: dict[str, bytes] = dataclasses.field(default_factory=dict)
    status: dict[str, str] = dataclasses.field(default_factory=dict)
    reversed: Counter[str] = dataclasses.field(default_factory=Counter)
    failures: dict[tuple[str, int], decide.Failure] = dataclasses.field(default_factory=dict)
    answered: set[tuple[str, int]] = dataclasses.field(default_factory=set)

    def load(self, docs: list[SettlementDocument]) -> decide.StoredState:
        cancels, claim_ids = decide.needs(docs)
        return decide.StoredState({m: self.answers[m] for m in cancels if m in self.answers},
                                  {c: self.bills[c] for c in claim_ids if c in self.bills},
                                  {k: f for k, f in self.failures.items() if k[0] in claim_ids})

    def save(self, decision: decide.Decision) -> None:
        for bill, _, body in decision.bills:
            assert bill.claim_id not in self.bills, "a one-bill written twice"
            self.bills[bill.claim_id], self.status[bill.claim_id] = body, "settled"
        for claim_id, _ in decision.reversals:
            assert claim_id in self.bills
            self.status[claim_id] = "reversed"
            self.reversed[claim_id] += 1
        messages = [m for m, _ in decision.inbox]
        assert len(messages) == len(set(messages)) and not set(messages) & set(self.answers), "inbox row twice"
        self.answers.update(decision.inbox)
        for failure in decision.failures:
            assert (failure.claim_id, failure.attempt) not in self.failures, "a failure recorded twice"
            self.failures[(failure.claim_id, failure.attempt)] = failure
        self.answered.update(k for k in decision.answered_failures if k in self.failures)


def run(store: Store, batch: list[Message]) -> decide.Decision:
    """Load, decide, save: what ``SettlementStage.process`` does."""
    stored = store.load([m.document for m in batch])
    before = (dict(stored.answers), dict(stored.bills), dict(stored.failures))
    decision = decide.decide([(m.document, m.body) for m in batch], stored, clock=lambda: AT, check=check)
    assert (stored.answers, stored.bills, stored.failures) == before, "decide changed what it was given"
    assert len(decision.emits) == len(batch)
    store.save(decision)
    return decision


def answer(emit: decide.Emit) -> SettlementResult:
    assert isinstance(emit, decide.Answer)
    return SettlementResult.from_json(emit.body)


def only_answer(emits: list[decide.Emit]) -> decide.Answer:
    (sent,) = emits
    assert isinstance(sent, decide.Answer)
    return sent


def check_one(store: Store, m: Message) -> list[decide.Emit] | None:  # noqa: C901
    """What one document alone decides, given what is stored; its emits, or None for a LookupError."""
    doc = m.document
    claim_id, key, hospital = doc.claim.claim_id, (doc.claim.claim_id, doc.attempt), doc.claim.hospital_code
    bill, answered, failure = store.bills.get(claim_id), store.answers.get(doc.message_id), store.failures.get(key)
    if doc.kind == "cancel" and not doc.compensating and answered is None and bill is None:
        with pytest.raises(LookupError):
            run(store, [m])
        return None
    decision = run(store, [m])
    (emits,) = decision.emits
    if doc.kind == "settle" and bill is not None:
        assert emits == [decide.Answer(hospital, bill)] and not decision.writes, "a settled claim: its one-bill"
    elif doc.kind == "settle" and failure is not None:
        assert emits == [decide.DeadLetter("; ".join(failure.reasons)),
                         decide.Compensate(doc.person.person_id, failure.compensation)] and not decision.writes
    elif answered is not None:
        assert emits == [decide.Answer(hospital, answered)], "a resend is answered as stored"
        assert decision.answered_failures == ([key] if doc.compensating else [])
        assert not (decision.bills or decision.reversals or decision.inbox or decision.failures)
    elif doc.compensating:
        sent = only_answer(emits)
        assert answer(sent).rejection.code.value == "SETTLEMENT_FAILED"  # type: ignore[union-attr]
        assert decision.inbox == [(doc.message_id, sent.body)] and decision.answered_failures == [key]
        assert not (decision.bills or decision.reversals or decision.failures)
    elif doc.kind == "cancel":
        sent = only_answer(emits)
        stored, result = SettlementResult.from_json(bill), answer(sent)  # type: ignore[arg-type]
        assert result.model_copy(update={"status": "settled", "settled_at": stored.settled_at}) == stored
        assert (result.status, decision.reversals) == ("reversed", [(claim_id, AT)])
        assert decision.inbox == [(doc.message_id, sent.body)] and not decision.bills
    elif fails(claim_id, doc.attempt):
        dead = emits[0]
        assert isinstance(dead, decide.DeadLetter) and decision.broken == 1
        if doc.kind == "trial":
            assert answer(emits[1]).rejection.code.value == "SETTLEMENT_FAILED"  # type: ignore[union-attr]
            assert not decision.writes, "a trial writes nothing"
        else:
            (recorded,) = decision.failures
            assert (recorded.claim_id, recorded.attempt, recorded.document) == (claim_id, doc.attempt, m.body)
            compensation = SettlementDocument.from_json(recorded.compensation)
            assert (compensation.message_id, compensation.compensating) == (f"undo:{doc.message_id[7:]}", True)
            assert emits[1:] == [decide.Compensate(doc.person.person_id, recorded.compensation)]
            assert not (decision.bills or decision.inbox or decision.reversals)
    else:
        sent = only_answer(emits)
        result = answer(sent)
        assert result == one_bill(doc, at=AT) and check(result, doc) == []
        if doc.kind == "trial":
            assert result.status == "trial" and not decision.writes, "a trial writes nothing"
        else:
            assert result.status == "settled" and [b[2] for b in decision.bills] == [sent.body]
    return emits


def year(seed: int) -> int:
    """One seeded year; how many documents it decided."""
    whole, alone = Store(), Store()
    decided = 0
    for keys in draw(random.Random(seed), list(CLAIMS), compensated=fails, cancelled=standing):
        batch = [POOL[k] for k in keys]
        emits = [check_one(alone, m) for m in batch]
        decided += len(batch)
        try:
            decision = run(whole, batch)
        except LookupError:
            assert None in emits, f"seed {seed}: the batch raised LookupError, none of its documents alone does"
            for m in batch:  # as the runtime does: one by one, the poisoned one dead-lettered
                try:
                    run(whole, [m])
                except LookupError:
                    pass
        else:
            assert None not in emits, f"seed {seed}: a document alone raised LookupError, the batch did not"
            assert decision.emits == emits, f"seed {seed}: the batch decided otherwise than one by one"
        assert whole == alone, f"seed {seed}"
        assert max(whole.reversed.values(), default=0) <= 1, f"seed {seed}: a claim reversed twice"
        assert whole.answered <= set(whole.failures)
    return decided


def test_a_settlement_batch_decides_what_its_documents_decide_one_by_one_and_answers_resends_as_stored():
    decided = sum(year(seed) for seed in range(SEEDS))
    assert decided > SEEDS * 5


def test_the_years_drawn_reach_every_case():
    """Resends, duplicates in a batch, cancels before their settle,
    compensations, next attempts and superseded ones (a claim's cancel and
    its compensation never meet here: a cancel of an attempt that failed
    never gets through the layers)."""
    seen = reached([draw(random.Random(seed), list(CLAIMS), compensated=fails, cancelled=standing)
                    for seed in range(SEEDS)])
    assert all(seen[case] >= 20 for case in CASES if case != "cancel and compensation in a batch"), seen


def test_a_settle_of_a_failed_attempt_delivered_after_the_next_attempt_settled_gets_the_one_bill():
    """K3's first one-bill broke an invariant: dead-lettered, compensated,
    answered SETTLEMENT_FAILED; attempt 1 settled. Attempt 0 delivered again
    is answered with the one-bill (an answer once given stands, CONTRACT §3),
    not with its dead letter and a compensation sent round again, which the
    settlement stage would answer SETTLEMENT_FAILED from its inbox to a
    hospital holding the claim's settled one-bill."""
    store = Store()
    for keys in ([("K3", 0, "settle")], [("K3", 0, "undo")], [("K3", 1, "settle")]):
        run(store, [POOL[k] for k in keys])
    for batch in ([("K3", 0, "settle")], [("K3", 1, "settle"), ("K3", 0, "settle")]):
        decision = run(store, [POOL[k] for k in batch])
        assert decision.emits[-1] == [decide.Answer("H3404210001", store.bills["K3"])] and not decision.writes
