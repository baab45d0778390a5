"""The review queue: injury claims held as ``pending_review`` (in
PostgreSQL, so it survives restarts) until an operator approves or rejects
them through the operator API (``api.py``).

A decision is stored with ``review_published = false``; whoever publishes
its answer calls ``decision_published``. Answers not confirmed are sent again
every ``RESEND_DECISIONS_SECONDS``; the stages downstream take each claim
once, so a repeat is harmless. An approval is audited in the decision's
transaction (``auditing.py``).
"""

from __future__ import annotations

import asyncio

import structlog

from medsettle.contract import RejectionCode, SettlementDocument
from medsettle.runtime import Outgoing, Service
from services.eligibility import answers
from services.eligibility import repository as repo
from services.eligibility.auditing import audit_accepted

log = structlog.get_logger()

RESEND_DECISIONS_SECONDS = 5.0


class ReviewError(LookupError):
    """A decision that cannot be taken: the claim is unknown, or no longer waiting."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # the claim's current status; None when there is no such claim


class ReviewQueue(Service):
    """The review queue of a stage (its database, its publisher, its clock):
    decisions, their answers, and sending again those not confirmed."""

    def _decided(self, row: repo.ClaimRow) -> list[Outgoing]:
        """What a decision sends: the claim on through the layers, or the refusal."""
        if row.status == "review_rejected":
            log.info("claim_rejected", claim_id=row.claim_id, hospital_code=row.hospital_code,
                     code=RejectionCode.REVIEW_REJECTED.value, person_id=row.person_id)
        return [answers.decided(row, self.clock())]

    async def review(self, claim_id: str, *, approve: bool, reason: str | None, reviewer: str) -> list[Outgoing]:
        """An operator's decision on an injury claim; returns what to publish."""
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
                await audit_accepted(c, [row], self.settings)
        log.info("claim_reviewed", claim_id=claim_id, approved=approve, reviewer=reviewer)
        return self._decided(row)

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
        await self.publisher([o for row in rows for o in self._decided(row)])
        await self.decision_published([row.claim_id for row in rows])
        log.info("review_answers_resent", claims=len(rows))
        return len(rows)

    async def resend_decisions_forever(self) -> None:
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

    async def audit_flags(self, *, kind: str | None = None, claim_id: str | None = None,
                          limit: int = 200) -> list[repo.FlagRow]:
        """The flags raised after settlement, newest first: what an auditor reads next to the queue."""
        async with self.db.acquire() as c:
            return await repo.audit_flags(c, kind=kind, claim_id=claim_id, limit=limit)
