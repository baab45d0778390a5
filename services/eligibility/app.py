"""The eligibility stage: the front door of the pipeline.

Consumes ``his.claims`` (keyed by ``claim_id``) and the registry feeds. A
claim that passes goes on to ``settlement.eligible`` keyed by ``person_id``;
one that fails is answered on ``his.settlements`` with its rejection code.
Injury claims wait in a review queue (``pending_review``, in PostgreSQL, so it
survives restarts) until an operator approves or rejects them through the
operator API (``services/eligibility/api.py``, on the service's METRICS_PORT).
Every claim accepted for settlement is audited in the same transaction
(``audit.py``): flags are stored for an auditor and never change its route.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from medsettle import topics
from medsettle.contract import (
    FUNDS,
    ONE_BILL_AMOUNTS,
    CancelClaim,
    FundDetail,
    Hospital,
    InvalidMessage,
    Person,
    RejectionCode,
    SettleClaim,
    SettlementDocument,
    SettlementResult,
    mask_person_id,
    parse_claim,
    rejection,
)
from medsettle.hospital_keys import HospitalKeys, signature
from medsettle.policy import PolicyBook
from medsettle.runtime import Outgoing, Service, create_app, dead_letter
from medsettle.settings import Settings
from services.eligibility import audit, redrive
from services.eligibility import repository as repo
from services.eligibility.rules import Eligible, check_eligibility

log = structlog.get_logger()

SIGNATURE_HEADER = "x-signature"


sign = signature
"""The signature a hospital puts in the ``x-signature`` header: HMAC-SHA256 of the body under its key."""


def content_hash(claim: SettleClaim, dumped: dict[str, Any] | None = None) -> str:
    return hashlib.sha256(claim.content_key(dumped).encode()).hexdigest()


RESEND_DECISIONS_SECONDS = 5.0
_CANCELS_IN_FLIGHT: ContextVar[list[str] | None] = ContextVar("eligibility_cancels_in_flight", default=None)


@dataclass
class _ClaimsBatch:
    """What a batch of claims reads (registry, known claims and their failed
    attempts) and what it decides to write."""

    hospitals: dict[str, Hospital]
    persons: dict[str, Person]
    known: dict[str, repo.ClaimRow]
    failures: dict[tuple[str, int], repo.Failure]
    new_rows: list[repo.ClaimRow] = field(default_factory=list)
    retried: list[repo.ClaimRow] = field(default_factory=list)
    reversals: list[tuple[str, str | None]] = field(default_factory=list)
    withdrawals: list[tuple[str, str | None]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)


def withdrawn(document: SettlementDocument, at: dt.datetime) -> SettlementResult:
    """The answer to a cancel of a claim held in review: ``reversed``, every amount 0.00."""
    claim = document.claim
    zero = Decimal("0.00")
    return SettlementResult(
        claim_id=claim.claim_id, hospital_code=claim.hospital_code,
        person_id_masked=mask_person_id(claim.person_id), status="reversed", policy=document.policy,
        **{name: zero for name in ONE_BILL_AMOUNTS},
        fund_details=[FundDetail(fund_pay_type=code, name=name, amount=zero) for code, name, _ in FUNDS],
        settled_at=at,
    )


class ReviewError(LookupError):
    """A decision that cannot be taken: the claim is unknown, or no longer waiting."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # the claim's current status; None when there is no such claim


class EligibilityStage(Service):
    name = "eligibility"
    _failures_readable = False  # settlement.failures found in this database (repo.failures_readable)
    subscriptions = (topics.PERSONS, topics.HOSPITALS, topics.CLAIMS)
    consumes = {topics.CLAIMS: SettleClaim | CancelClaim, topics.PERSONS: Person, topics.HOSPITALS: Hospital}
    produces = {topics.ELIGIBLE: SettlementDocument, topics.SETTLEMENTS: SettlementResult}
    migrations = Path(__file__).with_name("migrations")

    def __init__(self, settings: Settings, **kwargs) -> None:  # noqa: ANN003
        super().__init__(settings, **kwargs)
        self.policies = PolicyBook(settings.policy_dir, on_error=lambda e: log.error("policy_file_refused", error=e))
        self._resender: asyncio.Task | None = None
        self._redriver: asyncio.Task | None = None

    async def started(self) -> None:
        self._resender = asyncio.create_task(self._resend_decisions_forever())
        if self.settings.stuck_check_seconds > 0:
            self._redriver = asyncio.create_task(self._redrive_forever())

    async def stopping(self) -> None:
        for task in (self._resender, self._redriver):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._resender = self._redriver = None

    # ---------------------------------------------------------- stuck claims

    async def redrive_stuck(self) -> int:
        """Drive again every stuck claim from the last stage that durably finished it."""
        if self.publisher is None:
            return 0
        async with self.db.acquire() as c:
            stuck = await redrive.stuck_claims(c, self.settings.stuck_after_seconds)
            compensations = await redrive.unanswered_failures(c, self.settings.stuck_after_seconds)
            if not stuck and not compensations:
                return 0
            furthest = await redrive.furthest_outputs(c, stuck) if stuck else {}
        outgoing = [Outgoing(topics.ELIGIBLE, person_id.encode(), body) for _, person_id, body in compensations]
        for claim in stuck:
            if claim.message_id in furthest:
                topic, body = furthest[claim.message_id]
                outgoing.append(Outgoing(topic, claim.person_id.encode(), body))
                continue
            try:
                document = SettlementDocument.from_json(claim.document)
            except (ValidationError, orjson.JSONDecodeError) as exc:
                # one unreadable row must not hold up every other stuck claim;
                # it is marked below, so it is reported once per STUCK_AFTER_SECONDS
                log.error("stuck_claim_unreadable", claim_id=claim.claim_id, error=str(exc)[:300])
                continue
            if claim.status == "reversed":
                document = document.model_copy(update={"kind": "cancel"})
            outgoing.append(self._onward(document))
        await self.publisher(outgoing)
        async with self.db.acquire() as c:
            await redrive.mark_redriven(c, [s.claim_id for s in stuck] + [k for k, _, _ in compensations])
        log.warning("stuck_claims_redriven", claims=len(stuck), compensations=len(compensations))
        return len(stuck) + len(compensations)

    async def _redrive_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stuck_check_seconds)
            try:
                await self.redrive_stuck()
            except Exception as exc:  # noqa: BLE001 - try again at the next round
                log.warning("redrive_failed", error=repr(exc))

    def routes(self) -> list:
        from services.eligibility.api import operator_routes

        return operator_routes(self)

    # ------------------------------------------------------------- dispatch

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        if topic == topics.PERSONS:
            return await self._registry(records, Person, repo.upsert_persons)
        if topic == topics.HOSPITALS:
            return await self._registry(records, Hospital, repo.upsert_hospitals)
        return await self._claims(records)

    async def published(self) -> None:
        """The batch's messages are on the broker: its reversals need not be sent again."""
        sent = _CANCELS_IN_FLIGHT.get()
        if sent:
            async with self.db.acquire() as c:
                await repo.mark_cancel_published(c, sent)
            sent.clear()

    @staticmethod
    def _cancels_to_publish(claim_ids: list[str]) -> None:
        """Remember, for this handler's ``published()``, the reversals it committed.

        Kept in a context variable: each topic's handler runs in its own task,
        so the registry handler finishing first never marks the claims
        handler's cancels as sent before they are."""
        if not claim_ids:
            return
        pending = _CANCELS_IN_FLIGHT.get()
        if pending is None:
            pending = []
            _CANCELS_IN_FLIGHT.set(pending)
        pending.extend(claim_ids)

    async def _registry(self, records: Sequence[ConsumerRecord], model: type, upsert) -> list[Outgoing]:  # noqa: ANN001
        valid, out = [], []
        for record in records:
            try:
                valid.append(model.model_validate(orjson.loads(record.value)))
            except (ValidationError, orjson.JSONDecodeError, TypeError, RecursionError) as exc:
                out.append(dead_letter(self.name, record, f"invalid registry record: {exc}", self.clock()))
        async with self.db.acquire() as c, c.transaction():
            await upsert(c, valid)
        return out

    # --------------------------------------------------------------- claims

    def _answer(self, result: SettlementResult) -> Outgoing:
        return Outgoing(topics.SETTLEMENTS, result.hospital_code.encode(), result.to_json())

    def _reject(self, code: RejectionCode, message: str, claim_id: str, hospital_code: str,
                person_id: str | None = None) -> Outgoing:
        log.info("claim_rejected", claim_id=claim_id, hospital_code=hospital_code, code=code.value, person_id=person_id)
        return self._answer(rejection(code, message, claim_id=claim_id, hospital_code=hospital_code,
                                      person_id=person_id, at=self.clock()))

    def _onward(self, document: SettlementDocument, body: bytes | None = None) -> Outgoing:
        """``body``: the document already encoded (as stored), not encoded again."""
        return Outgoing(topics.ELIGIBLE, document.person.person_id.encode(), body or document.to_json())

    def _pending(self, document: SettlementDocument) -> Outgoing:
        claim = document.claim
        return self._answer(SettlementResult(
            claim_id=claim.claim_id, hospital_code=claim.hospital_code,
            person_id_masked=mask_person_id(claim.person_id), status="pending_review",
            policy=document.policy, total=claim.total, settled_at=self.clock(),
        ))

    @functools.cached_property
    def hospital_keys(self) -> HospitalKeys:
        """HOSPITAL_KEYS and HOSPITAL_KEYS_FILE, read once, on first use."""
        return HospitalKeys.from_settings(self.settings)

    def _signature_ok(self, record: ConsumerRecord, hospital_code: str) -> bool:
        """Hospitals with keys must sign; any of a hospital's keys is accepted (rotation)."""
        if hospital_code not in self.hospital_keys:
            return True
        sent = next((v for k, v in (record.headers or ()) if k == SIGNATURE_HEADER), None)
        if sent is None:
            return False
        return self.hospital_keys.verifies(hospital_code, record.value or b"", sent)

    async def _claims(self, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        out: list[Outgoing] = []
        parsed: list[SettleClaim | CancelClaim] = []
        for record in records:
            try:
                claim = parse_claim(record.value or b"")
            except InvalidMessage as exc:
                if exc.claim_id and exc.hospital_code:
                    out.append(self._reject(RejectionCode.INVALID_MESSAGE, f"报文格式错误：{exc.message}",
                                            exc.claim_id, exc.hospital_code))
                else:
                    out.append(dead_letter(self.name, record, f"unreadable claim: {exc.message}", self.clock()))
                continue
            if not self._signature_ok(record, claim.hospital_code):
                out.append(self._reject(
                    RejectionCode.INVALID_SIGNATURE,
                    f"医疗机构 {claim.hospital_code} 须对报文签名，签名缺失或不正确；请核对签名密钥后重新提交",
                    claim.claim_id, claim.hospital_code))
                continue
            parsed.append(claim)
        if not parsed:
            return out

        async with self.db.acquire() as c, c.transaction():
            settles = [p for p in parsed if isinstance(p, SettleClaim)]
            hospitals = await repo.hospitals(c, sorted({p.hospital_code for p in settles}))
            persons = await repo.persons(c, sorted({p.person_id for p in settles}))
            known = await repo.claims(c, sorted({p.claim_id for p in parsed}))
            if known and not self._failures_readable:  # once true, never asked again
                self._failures_readable = await repo.failures_readable(c)
            failures = await repo.failures(c, sorted(known)) if self._failures_readable else {}
            batch = _ClaimsBatch(hospitals, persons, known, failures)
            for claim in parsed:
                if isinstance(claim, CancelClaim):
                    out.append(self._cancel(claim, batch))
                else:
                    out.append(self._settle(claim, batch))
            await repo.insert_claims(c, batch.new_rows)
            await repo.retry_claims(c, batch.retried)
            await repo.mark_reversed(c, batch.reversals)
            await repo.mark_withdrawn(c, batch.withdrawals)
            await self._audit(c, [r for r in batch.new_rows + batch.retried if r.status == "accepted"])
        self._cancels_to_publish(batch.cancels)  # committed: now they wait only for the broker
        return out

    def _settle(self, claim: SettleClaim, batch: _ClaimsBatch) -> Outgoing:
        existing: repo.ClaimRow | None = batch.known.get(claim.claim_id)
        failure = batch.failures.get((claim.claim_id, existing.attempt)) if existing is not None else None
        claim_json = claim.model_dump(mode="json")  # once, for the hash and the document
        digest = content_hash(claim, claim_json)
        if existing is not None and failure is None:
            # An answer once given stands (CONTRACT §3): answered from what is
            # stored, before any registry or policy check.
            if existing.content_hash != digest or existing.hospital_code != claim.hospital_code:
                return self._reject(RejectionCode.DUPLICATE_CLAIM,
                                    f"单据号 {claim.claim_id} 已提交过且内容不同，请勿重复使用单据号",
                                    claim.claim_id, claim.hospital_code, claim.person_id)
            if claim.type == "trial":
                return self._reject(RejectionCode.DUPLICATE_CLAIM,
                                    f"单据号 {claim.claim_id} 已提交正式结算，不能再预结算；请查询其结算结果",
                                    claim.claim_id, claim.hospital_code, claim.person_id)
            return self._repeat(existing)
        if failure is not None and not failure.answered:
            # its compensation is still on its way through the layers: sent again
            # (each stage takes it once); the SETTLEMENT_FAILED answer follows it
            return Outgoing(topics.ELIGIBLE, existing.person_id.encode(), failure.compensation)  # type: ignore[union-attr]
        verdict = check_eligibility(claim, batch.hospitals.get(claim.hospital_code), batch.persons.get(claim.person_id),
                                    self.policies.get)
        if not isinstance(verdict, Eligible):
            return self._reject(verdict.code, verdict.message, claim.claim_id, claim.hospital_code, claim.person_id)
        if claim.type == "trial":
            return self._onward(self._document("trial", claim, verdict))
        attempt = existing.attempt + 1 if existing is not None else 0  # a claim that failed settles afresh
        document = self._document("settle", claim, verdict).model_copy(update={"attempt": attempt})
        body = document.to_json(claim_json=claim_json)
        status = "pending_review" if claim.injury else "accepted"
        row = repo.ClaimRow(
            claim.claim_id, claim.hospital_code, claim.person_id, digest, status, body,
            visit_type=claim.visit_type, admitted_on=claim.admitted_on, discharged_on=claim.discharged_on,
            level=verdict.hospital.level, diagnosis=claim.diagnosis_codes[0] if claim.diagnosis_codes else None,
            total=claim.total, attempt=attempt,
        )
        batch.known[claim.claim_id] = row
        batch.failures.pop((claim.claim_id, attempt), None)
        (batch.retried if existing is not None else batch.new_rows).append(row)
        if claim.injury:
            log.info("claim_held_for_review", claim_id=claim.claim_id, person_id=claim.person_id)
            return self._pending(document)
        return self._onward(document, body)

    def _repeat(self, row: repo.ClaimRow) -> Outgoing:
        """The same claim sent again: its latest answer again, counted once."""
        if row.status == "pending_review":
            return self._pending(SettlementDocument.from_json(row.document))
        if row.status == "withdrawn":
            return self._answer(withdrawn(SettlementDocument.from_json(row.document), self.clock()))
        if row.status == "reversed":  # the stages answer the cancel again from what they stored: `reversed`
            return self._onward(SettlementDocument.from_json(row.document).model_copy(update={"kind": "cancel"}))
        return self._decision(row)[0]

    def _cancel(self, claim: CancelClaim, batch: _ClaimsBatch) -> Outgoing:
        row: repo.ClaimRow | None = batch.known.get(claim.claim_id)
        failed = row is not None and (row.claim_id, row.attempt) in batch.failures
        if row is None or row.hospital_code != claim.hospital_code or row.status == "review_rejected" or failed:
            return self._reject(RejectionCode.CLAIM_NOT_FOUND,
                                f"未找到医疗机构 {claim.hospital_code} 已结算的单据 {claim.claim_id}，无法撤销；请核对单据号和机构编码",
                                claim.claim_id, claim.hospital_code)
        document = SettlementDocument.from_json(row.document)
        if row.status in ("pending_review", "withdrawn"):
            if row.status == "pending_review":  # withdrawn: the review leaves the queue (CONTRACT §3)
                row.status = "withdrawn"
                row.cancel_reason = claim.reason
                batch.withdrawals.append((row.claim_id, claim.reason))
                log.info("claim_withdrawn_from_review", claim_id=claim.claim_id)
            return self._answer(withdrawn(document, self.clock()))
        if row.status == "reversed":
            if not row.cancel_published:  # the first cancel never got out: send it again
                batch.cancels.append(row.claim_id)
                return self._onward(document.model_copy(update={"kind": "cancel"}))
            if claim.reason == row.cancel_reason:  # the same cancel again: its `reversed` answer again
                return self._onward(document.model_copy(update={"kind": "cancel"}))
            return self._reject(RejectionCode.ALREADY_REVERSED,
                                f"单据 {claim.claim_id} 已撤销（撤销原因：{row.cancel_reason or '未说明'}），请勿重复撤销",
                                claim.claim_id, claim.hospital_code, row.person_id)
        row.status = "reversed"
        row.cancel_reason = claim.reason
        batch.reversals.append((row.claim_id, claim.reason))
        batch.cancels.append(row.claim_id)
        log.info("claim_reversal_requested", claim_id=claim.claim_id)
        return self._onward(document.model_copy(update={"kind": "cancel", "cancel_reason": claim.reason,
                                                        "received_at": self.clock()}))

    def _document(self, kind: str, claim: SettleClaim, verdict: Eligible) -> SettlementDocument:
        return SettlementDocument(
            kind=kind,  # type: ignore[arg-type]
            claim=claim,
            policy=verdict.policy.policy,
            person=verdict.person,
            hospital=verdict.hospital,
            received_at=self.clock(),
        )

    # ---------------------------------------------------------------- audit

    async def _audit(self, c, rows: list[repo.ClaimRow]) -> None:  # noqa: ANN001 - asyncpg connection
        """Flag claims just accepted for settlement, in the caller's transaction.

        Each claim is compared with the claims accepted before it (earlier in
        this batch included), so of two overlapping stays the later is flagged.
        """
        if not rows:
            return
        settings = self.settings
        flags: list[audit.AuditFlag] = []
        auditing = {r.claim_id for r in rows}
        stays = {
            person: [s for s in found if s.claim_id not in auditing]  # this batch's come in order, below
            for person, found in (await repo.inpatient_stays(
                c, sorted({r.person_id for r in rows if r.visit_type == "inpatient"}))).items()
        }
        keys = sorted({r.cost_key for r in rows if r.cost_key is not None})
        costs = await repo.diagnosis_costs(c, keys)
        added: dict[repo.CostKey, audit.DiagnosisCost] = {}
        for row in rows:
            if row.visit_type == "inpatient" and row.admitted_on is not None and row.discharged_on is not None:
                stay = audit.Stay(row.claim_id, row.hospital_code, row.admitted_on, row.discharged_on)
                earlier = stays.setdefault(row.person_id, [])
                flags.append(audit.overlapping_stays(stay, earlier))
                earlier.append(stay)
            key = row.cost_key
            if key is not None and row.total is not None:
                before = costs.get(key, audit.NO_COST)
                flags.append(audit.cost_outlier(row.claim_id, row.total, *key, before,
                                                factor=settings.audit_cost_factor,
                                                min_claims=settings.audit_cost_min_claims))
                costs[key] = before.plus(row.total)
                added[key] = added.get(key, audit.NO_COST).plus(row.total)
            flags.append(audit.random_sample(row.claim_id, settings.audit_sample_rate))
        raised = [f for f in flags if f is not None]
        await repo.add_diagnosis_costs(c, added)
        await repo.insert_flags(c, raised)
        for flag in raised:
            log.info("claim_flagged_for_audit", claim_id=flag.claim_id, kind=flag.kind)

    async def audit_flags(self, *, kind: str | None = None, claim_id: str | None = None,
                          limit: int = 200) -> list[repo.FlagRow]:
        async with self.db.acquire() as c:
            return await repo.audit_flags(c, kind=kind, claim_id=claim_id, limit=limit)

    # --------------------------------------------------------------- review

    def _decision(self, row: repo.ClaimRow) -> list[Outgoing]:
        """What an operator's decision sends: the claim on through the layers, or the refusal."""
        if row.status == "review_rejected":
            return [self._reject(RejectionCode.REVIEW_REJECTED,
                                 f"意外伤害审核未通过：{row.review_reason or '未说明原因'}；如有异议请联系医保经办机构",
                                 row.claim_id, row.hospital_code, row.person_id)]
        return [self._onward(SettlementDocument.from_json(row.document), row.document)]

    async def review(self, claim_id: str, *, approve: bool, reason: str | None, reviewer: str) -> list[Outgoing]:
        """An operator's decision on an injury claim; returns what to publish.

        The decision is stored with ``review_published = false``; whoever
        publishes the answer calls ``decision_published``. Answers not
        confirmed are sent again (``_resend_decisions_forever``); the stages
        downstream take each claim once, so a repeat is harmless.
        """
        async with self.db.acquire() as c, c.transaction():
            row = await repo.claim(c, claim_id)
            if row is None:
                raise ReviewError(f"没有单据 {claim_id}")
            if row.status != "pending_review":
                raise ReviewError(f"单据 {claim_id} 不在待审核状态（当前：{row.status}）", status=row.status)
            row.status = "accepted" if approve else "review_rejected"
            row.review_reason = reason
            await repo.set_review(c, claim_id, row.status, reason, reviewer)
            if approve:
                await self._audit(c, [row])
        log.info("claim_reviewed", claim_id=claim_id, approved=approve, reviewer=reviewer)
        return self._decision(row)

    async def decision_published(self, claim_ids: list[str]) -> None:
        async with self.db.acquire() as c:
            await repo.mark_review_published(c, claim_ids)

    async def send_decision(self, claim_id: str, outgoing: list[Outgoing]) -> bool:
        """Publish a decision's answer through the runtime's broker; False if it could not be."""
        if self.publisher is None:
            log.warning("review_answer_not_sent", claim_id=claim_id, error="no publisher: the runtime is not running")
            return False
        try:
            await self.publisher(outgoing)
        except Exception as exc:  # noqa: BLE001 - the decision is stored; the resender sends it later
            log.warning("review_answer_not_sent", claim_id=claim_id, error=repr(exc))
            return False
        await self.decision_published([claim_id])
        return True

    async def resend_decisions(self, older_than_seconds: float = RESEND_DECISIONS_SECONDS) -> int:
        """Send again the decisions whose answer was never confirmed; how many were sent."""
        if self.publisher is None:
            return 0
        async with self.db.acquire() as c:
            rows = await repo.unpublished_reviews(c, older_than_seconds)
        if not rows:
            return 0
        await self.publisher([o for row in rows for o in self._decision(row)])
        await self.decision_published([row.claim_id for row in rows])
        log.info("review_answers_resent", claims=len(rows))
        return len(rows)

    async def _resend_decisions_forever(self) -> None:
        while True:
            await asyncio.sleep(RESEND_DECISIONS_SECONDS)
            try:
                await self.resend_decisions()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again at the next tick
                log.warning("review_answers_resend_failed", error=repr(exc))

    async def pending(self, limit: int = 200) -> list[SettlementDocument]:
        return [SettlementDocument.from_json(r.document) for r in (await self.pending_reviews(limit))[1]]

    async def pending_reviews(self, limit: int = 200) -> tuple[int, list[repo.ClaimRow]]:
        """How many claims wait for review, and the first ``limit`` of them (oldest first)."""
        async with self.db.acquire() as c:
            return await repo.pending_reviews(c, limit)


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(EligibilityStage, settings)
