"""The settlement stage's batch decision: a pure function of the documents
and what was stored, no I/O (``app.py`` loads, saves and publishes).

- ``settle``: the one-bill, every invariant checked; a new one is stored and
  answered ``settled``; one stored before is answered again as stored, to a
  settle of any attempt (an earlier one that failed, delivered again, too).
- A settle that failed (a layer could not handle it, carrying ``failure``)
  or whose one-bill breaks an invariant is recorded as a failure, goes to
  ``settlement.dlq`` with the reasons, and a compensation (a cancel carrying
  the failure) is sent back through the layers on ``settlement.eligible`` to
  take back what any of them counted. When the compensation comes through,
  the hospital is answered ``SETTLEMENT_FAILED``: nothing is paid or counted.
- ``trial``: answered ``trial``; one that fails is answered
  ``SETTLEMENT_FAILED`` at once (a trial counts nothing anywhere).
- ``cancel``: the stored one-bill, answered ``reversed``. A cancel of an
  attempt that failed (eligibility took it before it read the
  ``SETTLEMENT_FAILED`` answer; the layers found the attempt taken back and
  counted nothing) has no one-bill: answered ``CLAIM_NOT_FOUND``, as
  eligibility answers such a cancel once it knows the claim failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from medsettle.contract import RejectionCode, SettlementDocument, SettlementResult, not_found_message, rejection
from services.settlement.onebill import check_invariants, one_bill

Check = Callable[[SettlementResult, SettlementDocument], list[str]]


@dataclass(frozen=True)
class Failure:
    claim_id: str
    attempt: int
    person_id: str
    reasons: list[str]
    document: bytes
    compensation: bytes


@dataclass(frozen=True)
class StoredState:
    answers: dict[str, bytes] = field(default_factory=dict)  # the cancels' and compensations' answers
    bills: dict[str, bytes] = field(default_factory=dict)  # one-bills by claim_id
    failures: dict[tuple[str, int], Failure] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    hospital_code: str
    body: bytes
    names_message: bool = True
    """Whether the answer names the message it answers (``x-answer-to``), as
    every answer that settles, reverses or fails an attempt does; one that
    does none of these names none, as eligibility's own rejections."""


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class Compensate:
    person_id: str
    body: bytes


Emit = Answer | DeadLetter | Compensate


@dataclass
class Decision:
    bills: list[tuple[SettlementResult, SettlementDocument, bytes]] = field(default_factory=list)
    reversals: list[tuple[str, dt.datetime]] = field(default_factory=list)
    inbox: list[tuple[str, bytes]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    answered_failures: list[tuple[str, int]] = field(default_factory=list)
    emits: list[list[Emit]] = field(default_factory=list)  # per document, in order
    confirmed: dict[str, int] = field(default_factory=dict)
    broken: int = 0
    waited: list[float] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return bool(self.bills or self.reversals or self.inbox or self.failures or self.answered_failures)


def needs(documents: Sequence[SettlementDocument]) -> tuple[list[str], list[str]]:
    """The message ids whose stored answers to look up, and the claims."""
    return ([d.message_id for d in documents if d.kind == "cancel"],
            sorted({d.claim.claim_id for d in documents if d.kind != "trial"}))


def failed_answer(document: SettlementDocument, reasons: Sequence[str], at: dt.datetime) -> SettlementResult:
    claim = document.claim
    return rejection(
        RejectionCode.SETTLEMENT_FAILED,
        f"单据 {claim.claim_id} 未能完成结算，各项基金均未支付、未计入年度累计；已通知医保经办机构处理，"
        f"可稍后以同一单据号重新提交（原因：{'；'.join(reasons)[:300]}）",
        claim_id=claim.claim_id, hospital_code=claim.hospital_code, person_id=claim.person_id, at=at,
    )


def decide(batch: Sequence[tuple[SettlementDocument, bytes]], stored: StoredState, *,
           clock: Callable[[], dt.datetime], check: Check = check_invariants) -> Decision:
    """``batch``: each document with its body as read."""
    done = dict(stored.answers)
    bills = dict(stored.bills)
    failures = dict(stored.failures)
    decision = Decision()
    for document, raw in batch:
        claim = document.claim
        emits: list[Emit] = []
        decision.emits.append(emits)
        if document.kind == "settle" and claim.claim_id in bills:  # whichever attempt: the answer that stands
            emits.append(Answer(claim.hospital_code, bills[claim.claim_id]))
            continue
        # a cancel of an attempt that failed, which has no one-bill: answered CLAIM_NOT_FOUND
        of_failed = (document.kind == "cancel" and not document.compensating
                     and (claim.claim_id, document.attempt) in failures)
        if document.kind == "settle" and (claim.claim_id, document.attempt) in failures:
            failure = failures[(claim.claim_id, document.attempt)]  # failed before: the same outputs again
            emits += [DeadLetter("; ".join(failure.reasons)), Compensate(failure.person_id, failure.compensation)]
            continue
        if document.message_id in done:
            emits.append(Answer(claim.hospital_code, done[document.message_id], names_message=not of_failed))
            if document.compensating:  # a compensation sent again: answered, whatever its record said
                decision.answered_failures.append((claim.claim_id, document.attempt))
            continue
        at = clock()
        if document.compensating:  # what the layers counted is taken back: the hospital is answered
            body = failed_answer(document, [document.failure or ""], at).to_json()
            decision.inbox.append((document.message_id, body))
            decision.answered_failures.append((claim.claim_id, document.attempt))
            done[document.message_id] = body
            decision.confirmed["failed"] = decision.confirmed.get("failed", 0) + 1
            emits.append(Answer(claim.hospital_code, body))
            continue
        if document.kind == "cancel":
            if of_failed:
                body = rejection(RejectionCode.CLAIM_NOT_FOUND, not_found_message(claim.claim_id, claim.hospital_code),
                                 claim_id=claim.claim_id, hospital_code=claim.hospital_code, at=at).to_json()
                decision.inbox.append((document.message_id, body))
                done[document.message_id] = body
                emits.append(Answer(claim.hospital_code, body, names_message=False))
                continue
            original = bills.get(claim.claim_id)
            if original is None:
                raise LookupError(f"reversal of claim {claim.claim_id}, which has no one-bill")
            bill = SettlementResult.from_json(original).model_copy(update={"status": "reversed", "settled_at": at})
            body = bill.to_json()
            decision.reversals.append((bill.claim_id, at))
            decision.inbox.append((document.message_id, body))
            done[document.message_id] = body
            decision.confirmed["reversed"] = decision.confirmed.get("reversed", 0) + 1
            emits.append(Answer(claim.hospital_code, body))
            continue
        reasons = [document.failure] if document.failure is not None else []
        bill = None
        if not reasons:
            bill = one_bill(document, at=at)
            reasons = [f"invariant broken: {r}" for r in check(bill, document)]
        if reasons:
            decision.broken += 1
            emits.append(DeadLetter("; ".join(reasons)))
            if document.kind == "trial":  # nothing was counted for a trial
                emits.append(Answer(claim.hospital_code, failed_answer(document, reasons, at).to_json()))
                continue
            compensation = document.model_copy(update={
                "kind": "cancel", "failure": "; ".join(reasons)[:2000], "layers": [], "breakdown": None,
                "deductible": None,
            }).to_json()
            failure = Failure(claim.claim_id, document.attempt, document.person.person_id, reasons, raw, compensation)
            failures[(claim.claim_id, document.attempt)] = failure
            decision.failures.append(failure)
            emits.append(Compensate(failure.person_id, compensation))
            continue
        assert bill is not None
        body = bill.to_json()
        if document.kind == "settle":
            decision.bills.append((bill, document, body))
            bills[claim.claim_id] = body
            if document.received_at is not None:
                decision.waited.append(max(0.0, (at - document.received_at).total_seconds()))
        decision.confirmed[bill.status] = decision.confirmed.get(bill.status, 0) + 1
        emits.append(Answer(claim.hospital_code, body))
    return decision
