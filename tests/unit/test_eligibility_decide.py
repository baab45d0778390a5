"""Eligibility's batch decision (services/eligibility/decide.py) without a
broker or a database: random batches of settles, trials, cancels and
resends of a few claim ids, with failures, answers and review decisions in
between, against what is stored kept in memory the way
services/eligibility/repository.py keeps it. For every claim:

- one message, and what CONTRACT §3 says it is: a resend of a claim seen
  before is answered from what is stored (a settle's stored document, byte
  for byte; ``pending_review``; ``reversed``), other content or a trial of it
  is DUPLICATE_CLAIM, and nothing is written;
- a claim whose attempt failed is, until eligibility has recorded its
  SETTLEMENT_FAILED answer (its own ``answers``), an attempt in flight like
  any other: a resend sends its stored document on again (the settlement
  stage, which keeps the failure, answers it with the compensation again);
  once the answer is recorded it settles afresh as the next attempt and it
  cannot be cancelled (CLAIM_NOT_FOUND);
- a claim is reversed at most once per attempt; a cancel withdraws a claim
  held in review; a trial is never stored;
- ``decide`` leaves what it was given as it was, and a batch decides what
  its claims decide one by one.

500 sequences drawn from ``random.Random(seed)`` (``SEEDED_CASES``: 2,237
batches, 7,830 claims; a failure names its seed and steps) and 100 drawn
and shrunk by hypothesis (about 1,500 claims), in about the CPU time 300
hypothesis sequences (about 4,500 claims) took before (1.7-2.2 s against
1.8 s, measured back to back on 2026-12-06): drawing from ``random`` costs
next to nothing, and the copy of what ``decide`` is given no longer goes
through ``copy.deepcopy``, which cost two fifths of a sequence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle import topics
from medsettle.contract import CancelClaim, Hospital, Person, SettleClaim, SettlementDocument, SettlementResult
from medsettle.policy import PolicyBook
from medsettle.settings import ROOT
from services.eligibility import decide
from services.eligibility.repository import ClaimRow
from tests.factories import claim_body, hospital_record, person_record

AT = dt.datetime(2024, 6, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=8)))
POLICIES = PolicyBook(ROOT / "policies")
HOSPITAL, OTHER = "H3404210001", "H3404210002"
INSURED, UNKNOWN = "340421199001011234", "340421199001015678"
HOSPITALS = {HOSPITAL: Hospital.model_validate(hospital_record(HOSPITAL, "county"))}
PERSONS = {INSURED: Person.model_validate(person_record(INSURED))}
IDS = ("K1", "K2", "K3", "K4", "K5")
INJURY = {"K3"}  # held for review
NOBODY = {"K5"}  # of a person the registry does not know: rejected, never stored


def _settle(claim_id: str, variant: int, kind: str = "settle") -> SettleClaim:
    return SettleClaim.model_validate(claim_body(
        a=str(1000 + 500 * variant), claim_id=claim_id, hospital_code=HOSPITAL, kind=kind,
        person_id=UNKNOWN if claim_id in NOBODY else INSURED, injury=claim_id in INJURY))


CLAIMS: list[SettleClaim | CancelClaim] = [
    *(_settle(i, v) for i in IDS for v in (0, 1)),
    *(_settle(i, 0, "trial") for i in IDS),
    *(CancelClaim.model_validate({"type": "cancel", "claim_id": i, "hospital_code": h, "reason": r})
      for i in IDS for h, r in ((HOSPITAL, "患者转院"), (HOSPITAL, "录入有误"), (OTHER, "患者转院"))),
]


@dataclasses.dataclass
class Store:
    """What eligibility's tables hold (its claims, the attempts it heard
    answered SETTLEMENT_FAILED), and the settlement stage's failures whose
    answer has not come back yet, which eligibility never reads."""

    claims: dict[str, ClaimRow] = dataclasses.field(default_factory=dict)
    failed: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    in_flight: set[tuple[str, int]] = dataclasses.field(default_factory=set)

    def load(self, claims: list) -> decide.StoredState:
        hospitals, persons, claim_ids = decide.needs(claims)
        known = {i: dataclasses.replace(self.claims[i]) for i in claim_ids if i in self.claims}
        return decide.StoredState({h: HOSPITALS[h] for h in hospitals if h in HOSPITALS},
                                  {p: PERSONS[p] for p in persons if p in PERSONS}, known,
                                  frozenset(k for k in self.failed if k[0] in known))

    def save(self, decision: decide.Decision) -> None:
        """As the repository writes a decision."""
        for row in decision.new_rows:
            assert row.claim_id not in self.claims
            self.claims[row.claim_id] = dataclasses.replace(row, cancel_reason=None, cancel_published=False)
        for row in decision.retried:
            old = self.claims[row.claim_id]
            self.claims[row.claim_id] = dataclasses.replace(
                row, cancel_reason=old.cancel_reason, review_reason=old.review_reason, cancel_published=False)
        for changes, status in ((decision.reversals, "reversed"), (decision.withdrawals, "withdrawn")):
            for claim_id, reason in changes:
                self.claims[claim_id] = dataclasses.replace(self.claims[claim_id], status=status, cancel_reason=reason)

    def published(self, claim_ids: list[str]) -> None:
        for claim_id in claim_ids:
            self.claims[claim_id].cancel_published = True


def snapshot(stored: decide.StoredState) -> tuple:
    """A copy of what ``decide`` is given: the claim rows copied (their fields are immutable), the registry
    entries as they are (frozen models, checked against ``REGISTRY`` after every sequence); a deep copy
    cost two fifths of a sequence."""
    return (dict(stored.hospitals), dict(stored.persons),
            {k: dataclasses.replace(row) for k, row in stored.claims.items()}, stored.failed)


def registry() -> bytes:
    return orjson.dumps([m.model_dump(mode="json") for m in (*HOSPITALS.values(), *PERSONS.values())])


REGISTRY = registry()


def run(store: Store, claims: list) -> decide.Decision:
    stored = store.load(claims)
    before = snapshot(stored)
    decision = decide.decide(claims, stored, clock=lambda: AT, find_policy=POLICIES.get)
    assert snapshot(stored) == before, "decide changed what it was given"
    assert len(decision.out) == len(claims)
    store.save(decision)
    return decision


def code(out) -> str | None:  # noqa: ANN001
    if out.topic != topics.SETTLEMENTS:
        return None
    result = SettlementResult.from_json(out.value)
    return result.rejection.code.value if result.rejection else result.status


def check_one(before: ClaimRow | None, failed: bool, claim: decide.Claim,  # noqa: C901
              decision: decide.Decision) -> None:
    """What one claim alone decides, given what was stored for it (``failed``:
    its stored attempt was answered SETTLEMENT_FAILED)."""
    (out,) = decision.out
    written = decision.new_rows + decision.retried
    if isinstance(claim, CancelClaim):
        assert not written
        if (before is None or before.hospital_code != claim.hospital_code or before.status == "review_rejected"
                or failed):
            assert code(out) == "CLAIM_NOT_FOUND" and not (decision.reversals or decision.withdrawals)
        elif before.status in ("pending_review", "withdrawn"):
            assert decision.withdrawals == ([(claim.claim_id, claim.reason)] if before.status == "pending_review"
                                            else [])
            result = SettlementResult.from_json(out.value)
            assert result.status == "reversed" and result.fund_total == 0 and result.total == 0
        elif before.status == "accepted":
            assert decision.reversals == [(claim.claim_id, claim.reason)] and decision.cancels == [claim.claim_id]
            document = SettlementDocument.from_json(out.value)
            assert (out.topic, document.kind, document.cancel_reason) == (topics.ELIGIBLE, "cancel", claim.reason)
        else:
            assert before.status == "reversed" and not decision.reversals
            if not before.cancel_published or claim.reason == before.cancel_reason:
                assert SettlementDocument.from_json(out.value).kind == "cancel"
                assert decision.cancels == ([] if before.cancel_published else [claim.claim_id])
            else:
                assert code(out) == "ALREADY_REVERSED"
        return
    assert not (decision.reversals or decision.withdrawals or decision.cancels)
    if before is not None and not failed:  # a failure not yet answered included
        assert not written, "a claim seen before is answered from what is stored"
        same = before.content_hash == decide.content_hash(claim) and before.hospital_code == claim.hospital_code
        if not same or claim.type == "trial":
            assert code(out) == "DUPLICATE_CLAIM"
        elif before.status == "accepted":
            assert (out.topic, out.value) == (topics.ELIGIBLE, before.document)
        elif before.status == "reversed":
            assert SettlementDocument.from_json(out.value).kind == "cancel"
        else:
            assert code(out) == {"pending_review": "pending_review", "withdrawn": "reversed",
                                 "review_rejected": "REVIEW_REJECTED"}[before.status]
        return
    if claim.person_id not in PERSONS:
        assert code(out) == "UNKNOWN_PERSON" and not written
        return
    if claim.type == "trial":
        assert not written and SettlementDocument.from_json(out.value).kind == "trial"
        return
    (row,) = written
    assert (decision.retried if before is not None else decision.new_rows) == [row]
    assert row.attempt == (before.attempt + 1 if before is not None else 0)
    assert row.content_hash == decide.content_hash(claim)
    if claim.injury:
        assert row.status == "pending_review" and code(out) == "pending_review"
    else:
        assert row.status == "accepted" and (out.topic, out.value) == (topics.ELIGIBLE, row.document)
        assert SettlementDocument.from_json(row.document).attempt == row.attempt


def between(store: Store, event: tuple) -> None:
    """What happens to stored claims between batches: a failure, its answer, a review."""
    what, claim_id = event
    row = store.claims.get(claim_id)
    if row is None:
        return
    key = (claim_id, row.attempt)
    if what == "fails" and row.status == "accepted" and key not in store.failed:
        store.in_flight.add(key)  # the settlement stage's: its compensation on its way, eligibility knows nothing
    elif what == "answered" and key in store.in_flight:
        store.in_flight.discard(key)
        store.failed.add(key)  # the SETTLEMENT_FAILED answer, recorded from his.settlements
    elif what in ("approved", "refused") and row.status == "pending_review":
        store.claims[claim_id] = dataclasses.replace(
            row, status="accepted" if what == "approved" else "review_rejected", review_reason="第三方责任")


HAPPENINGS = ["fails", "answered", "approved", "refused"]
batch = st.lists(st.sampled_from(CLAIMS), min_size=1, max_size=6)
event = st.tuples(st.sampled_from(HAPPENINGS), st.sampled_from(IDS))
steps = st.lists(st.tuples(batch, st.lists(event, max_size=2)), min_size=1, max_size=8)
SEEDED_CASES = 500


def seeded(seed: int) -> list[tuple[list, list[tuple[str, str]]]]:
    """A sequence as ``steps`` draws one, from ``random.Random(seed)``: drawing
    it costs next to nothing, where hypothesis took about half of a case."""
    rng = random.Random(seed)
    return [([rng.choice(CLAIMS) for _ in range(rng.randint(1, 6))],
             [(rng.choice(HAPPENINGS), rng.choice(IDS)) for _ in range(rng.randint(0, 2))])
            for _ in range(rng.randint(1, 8))]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_each_claim_is_answered_as_contract_3_says_and_a_batch_decides_what_its_claims_decide_one_by_one(steps):
    check_sequence(steps)


def test_seeded_sequences_answer_each_claim_as_contract_3_says_and_a_batch_as_its_claims_one_by_one():
    for seed in range(SEEDED_CASES):
        try:
            check_sequence(seeded(seed))
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {seeded(seed)}") from exc


def check_sequence(steps: list) -> None:
    whole, alone = Store(), Store()
    reversed_attempts: list[tuple[str, int]] = []
    for claims, happenings in steps:
        decision = run(whole, claims)
        outs: list = []
        events: list = []
        cancels: list[str] = []
        for claim in claims:
            row = alone.claims.get(claim.claim_id)
            before = dataclasses.replace(row) if row is not None else None
            failed = before is not None and (claim.claim_id, before.attempt) in alone.failed
            one = run(alone, [claim])
            check_one(before, failed, claim, one)
            reversed_attempts += [(i, alone.claims[i].attempt) for i, _ in one.reversals]
            outs += one.out
            events += one.events
            cancels += one.cancels
        assert (decision.out, decision.events, decision.cancels) == (outs, events, cancels)
        assert whole.claims == alone.claims
        whole.published(decision.cancels)
        alone.published(decision.cancels)
        for e in happenings:
            between(whole, e)
            between(alone, e)
    assert len(reversed_attempts) == len(set(reversed_attempts)), "a claim reversed twice"
    assert registry() == REGISTRY, "decide changed a registry entry it was given"


K1, K1_OTHER = CLAIMS[0], CLAIMS[1]  # the settle of K1, and other content under its claim id


def _settled() -> tuple[Store, ClaimRow]:
    """A store holding K1 accepted and sent on (attempt 0)."""
    store = Store()
    run(store, [K1])
    return store, store.claims["K1"]


def test_a_resend_of_a_failed_attempt_whose_answer_is_not_recorded_sends_its_document_on_again():
    store, row = _settled()
    store.in_flight.add(("K1", 0))  # failed at the settlement stage; eligibility has heard nothing yet
    decision = run(store, [K1])
    (out,) = decision.out
    assert (out.topic, out.value) == (topics.ELIGIBLE, row.document)  # the settlement stage compensates again
    assert not (decision.new_rows or decision.retried or decision.reversals)
    assert store.claims["K1"].attempt == 0


def test_a_resend_after_its_settlement_failed_answer_is_recorded_settles_afresh_as_the_next_attempt():
    store, row = _settled()
    store.failed.add(("K1", 0))
    decision = run(store, [K1])
    (retried,) = decision.retried
    assert retried.attempt == 1 and not decision.new_rows and decision.accepted == [retried]
    (out,) = decision.out
    assert (out.topic, out.value) == (topics.ELIGIBLE, retried.document)
    document = SettlementDocument.from_json(out.value)
    assert (document.kind, document.attempt, document.message_id) == ("settle", 1, "settle:K1#1")
    # the next resend is answered from what is stored: the new attempt's document, counted once
    again = run(store, [K1])
    assert not again.retried and (again.out[0].topic, again.out[0].value) == (topics.ELIGIBLE, retried.document)


def test_a_claim_whose_attempt_was_answered_settlement_failed_cannot_be_cancelled():
    store, _ = _settled()
    store.failed.add(("K1", 0))
    cancel = CancelClaim.model_validate({"type": "cancel", "claim_id": "K1", "hospital_code": HOSPITAL})
    decision = run(store, [cancel])
    assert code(decision.out[0]) == "CLAIM_NOT_FOUND"
    assert not (decision.reversals or decision.cancels) and store.claims["K1"].status == "accepted"


def test_only_the_stored_attempt_counts_as_failed_an_earlier_ones_answer_does_not():
    store, _ = _settled()
    store.failed.add(("K1", 0))
    run(store, [K1])  # attempt 1, settling
    assert store.claims["K1"].attempt == 1
    resend = run(store, [K1])
    assert not resend.retried and resend.out[0].topic == topics.ELIGIBLE
    assert code(run(store, [K1_OTHER]).out[0]) == "DUPLICATE_CLAIM"
    cancel = CancelClaim.model_validate({"type": "cancel", "claim_id": "K1", "hospital_code": HOSPITAL})
    reversal = run(store, [cancel])
    assert reversal.reversals == [("K1", None)]
    assert SettlementDocument.from_json(reversal.out[0].value).message_id == "cancel:K1#1"
