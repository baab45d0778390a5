"""The eligibility stage: the front door of the pipeline.

Consumes ``his.claims`` (keyed by ``claim_id``) and the registry feeds. A
claim that passes goes on to ``settlement.eligible`` keyed by ``person_id``;
one that fails is answered on ``his.settlements`` with its rejection code.

A batch of claims goes: decode (and check signatures) -> load what is
stored -> ``decide.decide`` (pure: the rules of idempotency, trials,
reversals and duplicates) -> save it, with the audit of the claims accepted
(``auditing.py``), in one transaction -> publish; once the broker has the
batch's reversals they are marked published (``published``).

The stage's other parts: the review queue of injury claims and its operator
API (``reviews.py``, ``api.py``, on the service's METRICS_PORT), and the
re-drive of claims no stage has answered (``redrive.py``), for which it reads
the answers on ``his.settlements`` too, into its ``answers`` table. The
claims batch reads the attempts answered ``SETTLEMENT_FAILED`` there (a
resend of one settles afresh); it reads no other service's tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path

import orjson
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from medsettle import topics
from medsettle.contract import (
    CancelClaim,
    Hospital,
    InvalidMessage,
    Person,
    RejectionCode,
    SettleClaim,
    SettlementDocument,
    SettlementResult,
    parse_claim,
)
from medsettle.hospital_keys import HospitalKeys, signature
from medsettle.policy import PolicyBook
from medsettle.runtime import Outgoing, create_app, dead_letter
from medsettle.settings import Settings
from services.eligibility import answers, decide
from services.eligibility import repository as repo
from services.eligibility.auditing import audit_accepted
from services.eligibility.redrive import Redrive
from services.eligibility.reviews import ReviewQueue

log = structlog.get_logger()

SIGNATURE_HEADER = "x-signature"


sign = signature
"""The signature a hospital puts in the ``x-signature`` header: HMAC-SHA256 of the body under its key."""


class EligibilityStage(ReviewQueue, Redrive):
    name = "eligibility"
    subscriptions = (topics.PERSONS, topics.HOSPITALS, topics.CLAIMS, topics.SETTLEMENTS)
    consumes = {topics.CLAIMS: SettleClaim | CancelClaim, topics.PERSONS: Person, topics.HOSPITALS: Hospital,
                topics.SETTLEMENTS: SettlementResult}
    produces = {topics.ELIGIBLE: SettlementDocument, topics.SETTLEMENTS: SettlementResult}
    migrations = Path(__file__).with_name("migrations")

    def __init__(self, settings: Settings, **kwargs) -> None:  # noqa: ANN003
        super().__init__(settings, **kwargs)
        self.policies = PolicyBook(settings.policy_dir, on_error=lambda e: log.error("policy_file_refused", error=e))
        self._unconfirmed_cancels: list[str] = []  # reversals committed, not yet confirmed by the broker
        self._tasks: list[asyncio.Task] = []  # resending review decisions, re-driving stuck claims

    async def started(self) -> None:
        self._tasks = [asyncio.create_task(self.resend_decisions_forever())]
        if self.settings.stuck_check_seconds > 0:
            self._tasks.append(asyncio.create_task(self.redrive_forever()))

    async def stopping(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def routes(self) -> list:
        from services.eligibility.api import operator_routes

        return operator_routes(self)

    # ------------------------------------------------------------- dispatch

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        if topic == topics.PERSONS:
            return await self._registry(records, Person, repo.upsert_persons)
        if topic == topics.HOSPITALS:
            return await self._registry(records, Hospital, repo.upsert_hospitals)
        if topic == topics.SETTLEMENTS:
            return await self.record_answers(records)
        return await self._claims(records)

    async def published(self, topic: str) -> None:
        """A batch's messages are on the broker: the claims' reversals need not be sent again.

        Only the claims lane writes them, and its batches come one after the
        other: a registry batch confirmed meanwhile marks nothing."""
        if topic == topics.CLAIMS and self._unconfirmed_cancels:
            sent, self._unconfirmed_cancels = self._unconfirmed_cancels, []
            async with self.db.acquire() as c:
                await repo.mark_cancel_published(c, sent)

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

    def _reject(self, code: RejectionCode, message: str, claim_id: str, hospital_code: str) -> Outgoing:
        log.info("claim_rejected", claim_id=claim_id, hospital_code=hospital_code, code=code.value, person_id=None)
        return answers.reject(code, message, claim_id, hospital_code, None, self.clock())

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

    def _decode(self, records: Sequence[ConsumerRecord], out: list[Outgoing]) -> list[decide.Claim]:
        """The batch's claims; the answers to what cannot be read, or is not signed as it must be, go to ``out``."""
        parsed: list[decide.Claim] = []
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
        return parsed

    async def _claims(self, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        out: list[Outgoing] = []
        parsed = self._decode(records, out)
        if not parsed:
            return out
        hospital_codes, person_ids, claim_ids = decide.needs(parsed)
        async with self.db.acquire() as c, c.transaction():
            hospitals = await repo.hospitals(c, hospital_codes)
            persons = await repo.persons(c, person_ids)
            known = await repo.claims(c, claim_ids)
            failed = await repo.failed_attempts(c, sorted(known))  # SETTLEMENT_FAILED, from its own answers
            decision = decide.decide(parsed, decide.StoredState(hospitals, persons, known, failed),
                                     clock=self.clock, find_policy=self.policies.get)
            await repo.insert_claims(c, decision.new_rows)
            await repo.retry_claims(c, decision.retried)
            await repo.mark_reversed(c, decision.reversals)
            await repo.mark_withdrawn(c, decision.withdrawals)
            await audit_accepted(c, decision.accepted, self.settings)
        self._unconfirmed_cancels += decision.cancels  # committed: now they wait only for the broker
        for event, fields in decision.events:
            log.info(event, **fields)
        return out + decision.out


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(EligibilityStage, settings)
