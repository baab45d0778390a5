"""Stuck claims: a claim not confirmed within ``STUCK_AFTER_SECONDS`` is
driven again from the last stage that durably finished it.

The broker may lose messages (the embedded one loses all of them when it
restarts); PostgreSQL is the source of truth. For each accepted (or reversed)
claim with no matching one-bill, the output the last layer stage stored for
the claim's message (a settle's in its layer row, a cancel's in its inbox) is
re-published to that stage's out topic; when no stage has it, eligibility
re-publishes its own document. Every stage is
idempotent, so driving a claim again is always safe.

The stages' schemas are read in eligibility's own database: where a stage
runs on a database of its own (the insurer, say), a claim is re-driven from
the last stage this database shows, which is still safe, only longer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import orjson
import structlog
from pydantic import ValidationError

from medsettle import topics
from medsettle.contract import SettlementDocument
from medsettle.runtime import Outgoing, Service
from services.eligibility import answers

log = structlog.get_logger()

# Layer stages in pipeline order: (schema, the topic its output goes to).
STAGES: tuple[tuple[str, str], ...] = (
    ("basic", topics.BASIC),
    ("insurer", topics.SERIOUS_ILLNESS),
    ("assistance", topics.ASSISTANCE),
    ("backstop", topics.BACKSTOP),
)


@dataclass(frozen=True)
class Stuck:
    claim_id: str
    person_id: str
    status: str  # accepted or reversed
    document: bytes
    attempt: int = 0

    @property
    def message_id(self) -> str:
        suffix = f"#{self.attempt}" if self.attempt else ""
        return f"{'settle' if self.status == 'accepted' else 'cancel'}:{self.claim_id}{suffix}"


async def _exists(c: asyncpg.Connection, table: str) -> bool:
    return await c.fetchval("SELECT to_regclass($1) IS NOT NULL", table)


async def stuck_claims(c: asyncpg.Connection, stuck_after: float, limit: int = 500) -> list[Stuck]:
    """Accepted or reversed claims whose one-bill does not show it yet."""
    if not await _exists(c, "settlement.one_bills"):
        return []
    rows = await c.fetch(
        """SELECT k.claim_id, k.person_id, k.status, k.document, k.attempt FROM claims k
           LEFT JOIN settlement.one_bills b ON b.claim_id = k.claim_id
           WHERE k.status IN ('accepted', 'reversed')
             AND k.updated_at < now() - make_interval(secs => $1)
             AND (k.redriven_at IS NULL OR k.redriven_at < now() - make_interval(secs => $1))
             AND (b.claim_id IS NULL OR (k.status = 'reversed' AND b.status <> 'reversed'))
             AND NOT EXISTS (SELECT 1 FROM settlement.failures x
                              WHERE x.claim_id = k.claim_id AND x.attempt = k.attempt)
           ORDER BY k.updated_at
           LIMIT $2""",
        stuck_after, limit,
    )
    return [Stuck(r["claim_id"], r["person_id"], r["status"], r["document"], r["attempt"]) for r in rows]


async def unanswered_failures(c: asyncpg.Connection, stuck_after: float, limit: int = 500) -> list[tuple[str, bytes]]:
    """Failed attempts whose compensation has not come through within
    ``stuck_after`` (lost with a broker's messages, say): (person_id, the
    compensation), to be sent again. Every stage takes it once."""
    if not await _exists(c, "settlement.failures"):
        return []
    rows = await c.fetch(
        """SELECT f.claim_id, f.person_id, f.compensation FROM settlement.failures f
             JOIN claims k ON k.claim_id = f.claim_id AND k.attempt = f.attempt
            WHERE f.answered_at IS NULL AND f.failed_at < now() - make_interval(secs => $1)
              AND (k.redriven_at IS NULL OR k.redriven_at < now() - make_interval(secs => $1))
            ORDER BY f.failed_at LIMIT $2""",
        stuck_after, limit,
    )
    return [(r["claim_id"], r["person_id"], r["compensation"]) for r in rows]


async def furthest_outputs(c: asyncpg.Connection, stuck: list[Stuck]) -> dict[str, tuple[str, bytes]]:
    """For each stuck claim's message, the out topic and stored output of the
    last stage that finished it: a settle's output is its layer's, a cancel's
    is in the stage's inbox (layerstage)."""
    settles = {s.claim_id: s.message_id for s in stuck if s.status == "accepted"}
    cancels = [s.message_id for s in stuck if s.status != "accepted"]
    found: dict[str, tuple[str, bytes]] = {}
    for schema, out_topic in STAGES:  # later stages overwrite earlier ones
        if not await _exists(c, f"{schema}.inbox"):
            continue
        rows = await c.fetch(
            f"""SELECT claim_id AS id, output FROM "{schema}".layers
                 WHERE claim_id = any($1::text[]) AND attempt = ($3::jsonb ->> claim_id)::int
                UNION ALL
                SELECT message_id, output FROM "{schema}".inbox WHERE message_id = any($2::text[])""",
            list(settles), cancels, orjson.dumps({s.claim_id: s.attempt for s in stuck}).decode(),
        )
        for r in rows:
            found[settles.get(r["id"], r["id"])] = (out_topic, r["output"])
    return found


async def mark_redriven(c: asyncpg.Connection, claim_ids: list[str]) -> None:
    await c.execute(
        "UPDATE claims SET redriven_at = now(), redrives = redrives + 1 WHERE claim_id = any($1::text[])", claim_ids
    )


class Redrive(Service):
    """The re-drive of a stage (its database, its publisher)."""

    async def redrive_stuck(self) -> int:
        """Drive again every stuck claim from the last stage that durably finished it."""
        if self.publisher is None:
            return 0
        async with self.db.acquire() as c:
            stuck = await stuck_claims(c, self.settings.stuck_after_seconds)
            compensations = await unanswered_failures(c, self.settings.stuck_after_seconds)
            if not stuck and not compensations:
                return 0
            furthest = await furthest_outputs(c, stuck) if stuck else {}
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
            outgoing.append(answers.onward(document))
        await self.publisher(outgoing)
        async with self.db.acquire() as c:
            await mark_redriven(c, [s.claim_id for s in stuck] + [k for k, _, _ in compensations])
        log.warning("stuck_claims_redriven", claims=len(stuck), compensations=len(compensations))
        return len(stuck) + len(compensations)

    async def redrive_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stuck_check_seconds)
            try:
                await self.redrive_stuck()
            except Exception as exc:  # noqa: BLE001 - try again at the next round
                log.warning("redrive_failed", error=repr(exc))
