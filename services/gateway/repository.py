"""The gateway's SQL (schema ``gateway``). Rows are mapped to plain values here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from services.gateway.reconciliation import BookedClaim

STANDING = {"accepted": -1, "trial": 0, "rejected": 0, "pending_review": 1, "settled": 2, "reversed": 3}
"""An answer replaces the stored one when it stands at least as high: a trial
or a rejection never replaces a settled, reversed or pending claim (a trial
after the settlement, a resend with other content), a reversal ends it.
A review's rejection (``REVIEW_REJECTED``) stands as the pending claim it ends."""


def standing(status: str, rejection_code: str | None = None) -> int:
    if status == "rejected" and rejection_code == "REVIEW_REJECTED":
        return STANDING["pending_review"]
    return STANDING[status]


@dataclass(frozen=True)
class Answer:
    """A his.settlements message, with what the store keeps of it."""

    hospital_code: str
    claim_id: str
    status: str
    standing: int
    body: bytes
    settled_at: dt.datetime | None  # set for a 'settled' answer only
    settled_on: dt.date | None
    total: Decimal | None
    fund_total: Decimal | None


def latest_per_claim(answers: list[Answer]) -> list[Answer]:
    """The answer each claim keeps of a batch (in order): what ``save_answers`` would keep
    one by one, so one statement can upsert them: the same rules as ``_SAVE``. A
    settlement's day and amounts stay with the answer that supersedes it."""
    kept: dict[tuple[str, str], Answer] = {}
    for answer in answers:
        key = (answer.hospital_code, answer.claim_id)
        before = kept.get(key)
        if before is None:
            kept[key] = answer
            continue
        winner = answer if answer.standing >= before.standing else before
        takes_settlement = answer.settled_at is not None and before.settled_at is None
        kept[key] = Answer(
            winner.hospital_code, winner.claim_id, winner.status, winner.standing, winner.body,
            before.settled_at or answer.settled_at, before.settled_on or answer.settled_on,
            answer.total if takes_settlement or before.total is None else before.total,
            answer.fund_total if takes_settlement or before.fund_total is None else before.fund_total,
        )
    return list(kept.values())


_SAVE = """
WITH saved AS (
    INSERT INTO claims AS c (hospital_code, claim_id, status, standing, answer, settled_at, settled_on,
                             total, fund_total, answered_at)
    SELECT h, i, s, r, b, sa, so, t, f, now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bytea[], $6::timestamptz[], $7::date[],
                $8::numeric[], $9::numeric[]) AS a(h, i, s, r, b, sa, so, t, f)
    ON CONFLICT (hospital_code, claim_id) DO UPDATE SET
        status = CASE WHEN excluded.standing >= c.standing THEN excluded.status ELSE c.status END,
        standing = greatest(excluded.standing, c.standing),
        answer = CASE WHEN excluded.standing >= c.standing THEN excluded.answer ELSE c.answer END,
        answered_at = CASE WHEN excluded.standing >= c.standing THEN excluded.answered_at ELSE c.answered_at END,
        settled_at = coalesce(c.settled_at, excluded.settled_at),
        settled_on = coalesce(c.settled_on, excluded.settled_on),
        total = CASE WHEN excluded.settled_at IS NOT NULL AND c.settled_at IS NULL THEN excluded.total
                     ELSE coalesce(c.total, excluded.total) END,
        fund_total = CASE WHEN excluded.settled_at IS NOT NULL AND c.settled_at IS NULL THEN excluded.fund_total
                          ELSE coalesce(c.fund_total, excluded.fund_total) END
    RETURNING 1
), read_up_to AS (
    INSERT INTO answer_offsets (partition, next_offset)
    SELECT * FROM unnest($10::integer[], $11::bigint[])
    ON CONFLICT (partition) DO UPDATE SET next_offset = greatest(answer_offsets.next_offset, excluded.next_offset)
    RETURNING 1
)
SELECT (SELECT count(*) FROM saved), (SELECT count(*) FROM read_up_to)
"""


async def save_answers(c: asyncpg.Connection, answers: list[Answer], offsets: dict[int, int]) -> None:
    """Upsert a batch's answers and how far it read: one statement, so one round trip,
    all or nothing."""
    kept = latest_per_claim(answers)
    await c.fetchrow(_SAVE, [a.hospital_code for a in kept], [a.claim_id for a in kept],
                     [a.status for a in kept], [a.standing for a in kept], [a.body for a in kept],
                     [a.settled_at for a in kept], [a.settled_on for a in kept],
                     [a.total for a in kept], [a.fund_total for a in kept], list(offsets), list(offsets.values()))


async def offsets(c: asyncpg.Connection) -> dict[int, int]:
    return {r["partition"]: r["next_offset"] for r in await c.fetch("SELECT partition, next_offset FROM answer_offsets")}


async def accept(c: asyncpg.Connection, hospital_code: str, claim_id: str) -> None:
    """A claim sent through the gateway: known to its hospital from now on, answered or not."""
    await c.execute("""INSERT INTO claims (hospital_code, claim_id, status, standing) VALUES ($1, $2, 'accepted', -1)
                       ON CONFLICT (hospital_code, claim_id) DO NOTHING""", hospital_code, claim_id)


@dataclass(frozen=True)
class StoredClaim:
    status: str
    answer: bytes | None


async def claim(c: asyncpg.Connection, hospital_code: str, claim_id: str) -> StoredClaim | None:
    row = await c.fetchrow("SELECT status, answer FROM claims WHERE hospital_code = $1 AND claim_id = $2",
                           hospital_code, claim_id)
    return None if row is None else StoredClaim(row["status"], row["answer"])


async def settled_between(c: asyncpg.Connection, hospital_code: str, first: dt.date, last: dt.date) -> list[BookedClaim]:
    """The hospital's claims settled on a day from ``first`` to ``last`` (CST), with their status now."""
    rows = await c.fetch(
        """SELECT claim_id, status, total, fund_total FROM claims
           WHERE hospital_code = $1 AND settled_on BETWEEN $2 AND $3 AND status = any($4::text[])
           ORDER BY claim_id""",
        hospital_code, first, last, ["settled", "reversed"])
    return [BookedClaim(r["claim_id"], r["status"], r["total"], r["fund_total"]) for r in rows]
