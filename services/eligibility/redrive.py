"""Stuck claims: a claim no stage has answered within ``STUCK_AFTER_SECONDS``
is driven again, from eligibility's own records.

The broker may lose messages (the embedded one loses all of them when it
restarts); PostgreSQL is the source of truth. Eligibility knows what it
accepted (``claims``) and reads what the stages answer on ``his.settlements``:
the settlement stage names the message it answers (``topics.ANSWER_TO``),
and ``answered`` turns that into an attempt of a claim settled, reversed or
failed, kept in eligibility's ``answers`` table. An accepted claim with no
settled or failed answer for its attempt, or a reversed one with no reversed
or failed answer, is stuck: its document (a cancel for a reversed claim) is
published again on ``settlement.eligible``. Every stage is idempotent, so
driving a claim again is always safe: each layer answers it with what it
stored, and the settlement stage with the one-bill it stored, or, for an
attempt that failed, with the compensation again, which is answered
``SETTLEMENT_FAILED`` once through. A failed claim is driven again only while
that answer has not come back, never once it has (CONTRACT §5).

No other service's tables are read: the stages may each run on a database
of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from medsettle import topics
from medsettle.contract import SettlementDocument
from medsettle.runtime import Outgoing, Service
from services.eligibility import answers
from services.eligibility import repository as repo

log = structlog.get_logger()

ANSWERS = {"settle": "settled", "cancel": "reversed", "undo": "failed"}
"""What an answer to each kind of message says of the claim's attempt (a trial's says nothing)."""


@dataclass(frozen=True)
class Answered:
    claim_id: str
    attempt: int
    answer: str  # settled, reversed or failed


def answered(headers: Iterable[Sequence[tuple[str, bytes]] | None]) -> list[Answered]:
    """What the answers with these headers say: for each one from the
    settlement stage, which attempt of which claim it settled, reversed or
    failed. An answer without the header (eligibility's own, say), or with
    one that is not a message id, says nothing."""
    found: list[Answered] = []
    for record_headers in headers:
        for key, value in record_headers or ():
            if key != topics.ANSWER_TO:
                continue
            kind, _, rest = value.decode("utf-8", "replace").partition(":")
            claim_id, _, attempt = rest.partition("#")
            if kind in ANSWERS and claim_id and (attempt == "" or attempt.isdigit()):
                found.append(Answered(claim_id, int(attempt or 0), ANSWERS[kind]))
    return found


def redrives(stuck: Sequence[repo.Stuck]) -> tuple[list[Outgoing], list[tuple[str, str]]]:
    """What driving these claims again publishes, and the claims whose stored
    document cannot be read (claim_id, why): one of those must not hold up
    every other stuck claim."""
    out: list[Outgoing] = []
    unreadable: list[tuple[str, str]] = []
    for claim in stuck:
        try:
            document = SettlementDocument.from_json(claim.document)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            unreadable.append((claim.claim_id, str(exc)[:300]))
            continue
        if claim.status == "reversed":
            document = document.model_copy(update={"kind": "cancel"})
        out.append(answers.onward(document))
    return out, unreadable


class Redrive(Service):
    """The re-drive of a stage (its database, its publisher), and what it reads of the answers."""

    async def record_answers(self, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        """The batch's answers recorded; nothing to publish. Sent again, an answer is recorded once."""
        found = answered(record.headers for record in records)
        if found:
            async with self.db.acquire() as c:
                await repo.record_answers(c, [(a.claim_id, a.attempt, a.answer) for a in found])
        return []

    async def redrive_stuck(self) -> int:
        """Drive again every claim accepted or reversed that no stage has answered."""
        if self.publisher is None:
            return 0
        async with self.db.acquire() as c:
            stuck = await repo.stuck_claims(c, self.settings.stuck_after_seconds)
        if not stuck:
            return 0
        outgoing, unreadable = redrives(stuck)
        for claim_id, error in unreadable:  # marked below, so reported once per STUCK_AFTER_SECONDS
            log.error("stuck_claim_unreadable", claim_id=claim_id, error=error)
        await self.publisher(outgoing)
        async with self.db.acquire() as c:
            await repo.mark_redriven(c, [s.claim_id for s in stuck])
        log.warning("stuck_claims_redriven", claims=len(stuck))
        return len(stuck)

    async def redrive_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stuck_check_seconds)
            try:
                await self.redrive_stuck()
            except Exception as exc:  # noqa: BLE001 - try again at the next round
                log.warning("redrive_failed", error=repr(exc))
