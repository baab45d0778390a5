"""Eligibility's decision for a batch of claims: a pure function of the
claims and what was stored, no I/O (``app.py`` decodes, loads, saves and
publishes). Every rule of CONTRACT §3 that depends on what came before is
here:

- A claim seen before is answered from what is stored, before any registry
  or policy check (an answer once given stands): the same content gets its
  latest answer again (its document on through the layers, which answer it
  from what they stored; ``pending_review``; ``reversed``); other content,
  or a ``trial`` of it, is ``DUPLICATE_CLAIM``.
- A claim whose last attempt failed (the settlement stage answered it
  ``SETTLEMENT_FAILED``, as eligibility's own ``answers`` recorded from
  ``his.settlements``) settles afresh as the next attempt, and cannot be
  cancelled. Until that answer is recorded, the attempt is one in flight
  like any other: a resend sends its stored document on again, each layer
  answers it from what it stored, and the settlement stage, which keeps the
  failure, sends its compensation again (answered ``SETTLEMENT_FAILED``
  once through). No other service's records are read.
- A new claim is checked (``rules.check_eligibility``); a ``trial`` goes on
  and is not stored; an ``injury`` claim is held for review.
- A ``cancel`` reverses an accepted claim once (the same cancel again gets
  ``reversed`` again, another one ``ALREADY_REVERSED``), withdraws a claim
  held in review, and finds nothing (``CLAIM_NOT_FOUND``) for a claim
  unknown, of another hospital, refused in review or failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from medsettle.contract import (
    CancelClaim,
    Hospital,
    Person,
    RejectionCode,
    SettleClaim,
    SettlementDocument,
    not_found_message,
)
from medsettle.policy import Policy
from medsettle.runtime import Outgoing
from medsettle.wire import constructed
from services.eligibility import answers
from services.eligibility.repository import ClaimRow
from services.eligibility.rules import Eligible, check_eligibility

Claim = SettleClaim | CancelClaim
FindPolicy = Callable[[str, dt.date], Policy | None]  # the revision in force on the service date


def _stored_document(row: ClaimRow) -> SettlementDocument:
    """The document a claim's row stores, which ``settle`` wrote: read as the stages read what a stage wrote
    (``SettlementDocument.trusted``), not validated again."""
    return SettlementDocument.trusted(orjson.loads(row.document))


def _cancel_again(document: SettlementDocument, claim_json: dict[str, Any]) -> tuple[SettlementDocument, bytes]:
    """A cancel sent on again, and its body (``claim_json``: its claim as stored)."""
    again = document.model_copy(update={"kind": "cancel"})
    return again, again.to_json(claim_json=claim_json)


def content_hash(claim: SettleClaim, dumped: dict[str, Any] | None = None) -> str:
    return hashlib.sha256(claim.content_key(dumped).encode()).hexdigest()


@dataclass(frozen=True)
class StoredState:
    """What a batch reads: the registry entries and the claims it names, and
    the attempts of those claims answered ``SETTLEMENT_FAILED`` (claim_id,
    attempt), from eligibility's ``answers``."""

    hospitals: dict[str, Hospital] = field(default_factory=dict)
    persons: dict[str, Person] = field(default_factory=dict)
    claims: dict[str, ClaimRow] = field(default_factory=dict)
    failed: frozenset[tuple[str, int]] = frozenset()


@dataclass
class Decision:
    """What a batch writes, what it publishes (one message per claim, in
    order) and what it has to say in the log (event, fields)."""

    out: list[Outgoing] = field(default_factory=list)
    new_rows: list[ClaimRow] = field(default_factory=list)
    retried: list[ClaimRow] = field(default_factory=list)  # failed before: stored again as the next attempt
    reversals: list[tuple[str, str | None]] = field(default_factory=list)  # (claim_id, reason)
    withdrawals: list[tuple[str, str | None]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)  # reversals to mark published once the broker has them
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def accepted(self) -> list[ClaimRow]:
        """The claims accepted for settlement now: the ones to audit."""
        return [r for r in self.new_rows + self.retried if r.status == "accepted"]


def needs(claims: Sequence[Claim]) -> tuple[list[str], list[str], list[str]]:
    """What ``decide`` will look up: hospitals and persons (of the settles and trials), and claims."""
    settles = [c for c in claims if isinstance(c, SettleClaim)]
    return (sorted({c.hospital_code for c in settles}), sorted({c.person_id for c in settles}),
            sorted({c.claim_id for c in claims}))


def decide(claims: Sequence[Claim], stored: StoredState, *, clock: Callable[[], dt.datetime],
           find_policy: FindPolicy) -> Decision:
    """The batch's decision; ``stored`` is left as it was."""
    return _Batch(stored, clock, find_policy).decide(claims)


class _Batch:
    """One batch being decided: what it has stored so far, earlier claims of
    the batch included."""

    def __init__(self, stored: StoredState, clock: Callable[[], dt.datetime], find_policy: FindPolicy) -> None:
        self.hospitals = stored.hospitals
        self.persons = stored.persons
        self.stored = stored.claims
        self.known = dict(stored.claims)
        self.failed = set(stored.failed)
        self.clock = clock
        self.find_policy = find_policy
        self.decision = Decision()

    def decide(self, claims: Sequence[Claim]) -> Decision:
        out = self.decision.out
        for claim in claims:
            out.append(self.cancel(claim) if isinstance(claim, CancelClaim) else self.settle(claim))
        return self.decision

    def reject(self, code: RejectionCode, message: str, claim_id: str, hospital_code: str,
               person_id: str | None = None) -> Outgoing:
        self.decision.events.append(("claim_rejected", {"claim_id": claim_id, "hospital_code": hospital_code,
                                                        "code": code.value, "person_id": person_id}))
        return answers.reject(code, message, claim_id, hospital_code, person_id, self.clock())

    def settle(self, claim: SettleClaim) -> Outgoing:
        existing = self.known.get(claim.claim_id)
        failed = existing is not None and (claim.claim_id, existing.attempt) in self.failed
        claim_json = claim.model_dump(mode="json")  # once, for the hash and the document
        digest = content_hash(claim, claim_json)
        if existing is not None and not failed:
            # An answer once given stands (CONTRACT §3): answered from what is
            # stored, before any registry or policy check. An attempt that
            # failed but whose answer is not recorded yet is sent on again too:
            # the settlement stage answers it with its compensation again.
            if existing.content_hash != digest or existing.hospital_code != claim.hospital_code:
                return self.reject(RejectionCode.DUPLICATE_CLAIM,
                                   f"单据号 {claim.claim_id} 已提交过且内容不同，请勿重复使用单据号",
                                   claim.claim_id, claim.hospital_code, claim.person_id)
            if claim.type == "trial":
                return self.reject(RejectionCode.DUPLICATE_CLAIM,
                                   f"单据号 {claim.claim_id} 已提交正式结算，不能再预结算；请查询其结算结果",
                                   claim.claim_id, claim.hospital_code, claim.person_id)
            return self.repeat(existing)
        verdict = check_eligibility(claim, self.hospitals.get(claim.hospital_code), self.persons.get(claim.person_id),
                                    self.find_policy)
        if not isinstance(verdict, Eligible):
            return self.reject(verdict.code, verdict.message, claim.claim_id, claim.hospital_code, claim.person_id)
        if claim.type == "trial":
            trial = self.document("trial", claim, verdict)
            return answers.onward(trial, trial.to_json(claim_json=claim_json))
        attempt = existing.attempt + 1 if existing is not None else 0  # a claim that failed settles afresh
        document = self.document("settle", claim, verdict, attempt)
        body = document.to_json(claim_json=claim_json)
        status = "pending_review" if claim.injury else "accepted"
        row = ClaimRow(
            claim.claim_id, claim.hospital_code, claim.person_id, digest, status, body,
            visit_type=claim.visit_type, admitted_on=claim.admitted_on, discharged_on=claim.discharged_on,
            level=verdict.hospital.level, diagnosis=claim.diagnosis_codes[0] if claim.diagnosis_codes else None,
            total=claim.total, attempt=attempt,
        )
        self.known[claim.claim_id] = row
        self.failed.discard((claim.claim_id, attempt))
        (self.decision.retried if existing is not None else self.decision.new_rows).append(row)
        if claim.injury:
            self.decision.events.append(("claim_held_for_review", {"claim_id": claim.claim_id,
                                                                   "person_id": claim.person_id}))
            return answers.pending(document, self.clock())
        return answers.onward(document, body)

    def repeat(self, row: ClaimRow) -> Outgoing:
        """The same claim sent again: its latest answer again, counted once."""
        if row.status == "pending_review":
            return answers.pending(_stored_document(row), self.clock())
        if row.status == "withdrawn":
            return answers.answer(answers.withdrawn(_stored_document(row), self.clock()))
        if row.status == "reversed":  # the stages answer the cancel again from what they stored: `reversed`
            return answers.onward(_stored_document(row).model_copy(update={"kind": "cancel"}))
        if row.status == "review_rejected":
            self.decision.events.append(("claim_rejected", {
                "claim_id": row.claim_id, "hospital_code": row.hospital_code,
                "code": RejectionCode.REVIEW_REJECTED.value, "person_id": row.person_id}))
        return answers.decided(row, self.clock())

    def cancel(self, claim: CancelClaim) -> Outgoing:
        row = self.known.get(claim.claim_id)
        failed = row is not None and (row.claim_id, row.attempt) in self.failed
        if row is None or row.hospital_code != claim.hospital_code or row.status == "review_rejected" or failed:
            return self.reject(RejectionCode.CLAIM_NOT_FOUND, not_found_message(claim.claim_id, claim.hospital_code),
                               claim.claim_id, claim.hospital_code)
        raw = orjson.loads(row.document)
        document, stored_claim = SettlementDocument.trusted(raw), raw["claim"]  # its claim as written, not again
        decision = self.decision
        if row.status in ("pending_review", "withdrawn"):
            if row.status == "pending_review":  # withdrawn: the review leaves the queue (CONTRACT §3)
                self.change(row, status="withdrawn", cancel_reason=claim.reason)
                decision.withdrawals.append((row.claim_id, claim.reason))
                decision.events.append(("claim_withdrawn_from_review", {"claim_id": claim.claim_id}))
            return answers.answer(answers.withdrawn(document, self.clock()))
        if row.status == "reversed":
            if not row.cancel_published:  # the first cancel never got out: send it again
                decision.cancels.append(row.claim_id)
                return answers.onward(*_cancel_again(document, stored_claim))
            if claim.reason == row.cancel_reason:  # the same cancel again: its `reversed` answer again
                return answers.onward(*_cancel_again(document, stored_claim))
            return self.reject(RejectionCode.ALREADY_REVERSED,
                               f"单据 {claim.claim_id} 已撤销（撤销原因：{row.cancel_reason or '未说明'}），请勿重复撤销",
                               claim.claim_id, claim.hospital_code, row.person_id)
        self.change(row, status="reversed", cancel_reason=claim.reason)
        decision.reversals.append((row.claim_id, claim.reason))
        decision.cancels.append(row.claim_id)
        decision.events.append(("claim_reversal_requested", {"claim_id": claim.claim_id}))
        reversal = document.model_copy(update={"kind": "cancel", "cancel_reason": claim.reason,
                                               "received_at": self.clock()})
        return answers.onward(reversal, reversal.to_json(claim_json=stored_claim))

    def change(self, row: ClaimRow, **changes: Any) -> None:
        """A claim's new status: a stored row is left as it was (a changed copy
        is known from now on); a row this batch writes is written changed."""
        if row is self.stored.get(row.claim_id):
            self.known[row.claim_id] = dataclasses.replace(row, **changes)
        else:
            for name, value in changes.items():
                setattr(row, name, value)

    def document(self, kind: str, claim: SettleClaim, verdict: Eligible, attempt: int = 0) -> SettlementDocument:
        # built from valid values (the claim read, the verdict's facts) as validation builds them, the rest at
        # their defaults: one per claim
        return constructed(SettlementDocument, {
            "kind": kind, "claim": claim, "policy": verdict.policy.policy, "person": verdict.person,
            "hospital": verdict.hospital, "received_at": self.clock(), "attempt": attempt,
        })
