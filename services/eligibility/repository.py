"""SQL of the eligibility stage: the registry, the claims, the review queue,
the audit flags, and the bulk import of the enrolment office's files."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from medsettle.contract import Hospital, Person
from services.eligibility.audit import AuditFlag, DiagnosisCost, Stay

CostKey = tuple[str, str, str]  # (diagnosis, level, visit_type)


@dataclass
class ClaimRow:
    claim_id: str
    hospital_code: str
    person_id: str
    content_hash: str
    status: str
    document: bytes
    review_reason: str | None = None
    cancel_published: bool = False
    visit_type: str | None = None
    admitted_on: dt.date | None = None
    discharged_on: dt.date | None = None
    level: str | None = None
    diagnosis: str | None = None
    total: Decimal | None = None
    reviewed_by: str | None = None
    received_at: dt.datetime | None = None
    attempt: int = 0
    cancel_reason: str | None = None

    @property
    def cost_key(self) -> CostKey | None:
        if self.diagnosis and self.level and self.visit_type and self.total is not None:
            return (self.diagnosis, self.level, self.visit_type)
        return None


# ------------------------------------------------------------------ registry


async def upsert_persons(c: asyncpg.Connection, persons: list[Person]) -> None:
    """Feed messages in the order they came: the latest per ``person_id`` wins."""
    if persons:
        await c.executemany(
            """INSERT INTO persons (person_id, region, body) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (person_id) DO UPDATE SET region = excluded.region, body = excluded.body, updated_at = now()""",
            [(p.person_id, p.region, p.model_dump_json()) for p in persons],
        )


async def upsert_hospitals(c: asyncpg.Connection, hospitals: list[Hospital]) -> None:
    if hospitals:
        await c.executemany(
            """INSERT INTO hospitals (hospital_code, region, level, body) VALUES ($1, $2, $3, $4::jsonb)
               ON CONFLICT (hospital_code) DO UPDATE
               SET region = excluded.region, level = excluded.level, body = excluded.body, updated_at = now()""",
            [(h.hospital_code, h.region, h.level, h.model_dump_json()) for h in hospitals],
        )


async def persons(c: asyncpg.Connection, person_ids: list[str]) -> dict[str, Person]:
    rows = await c.fetch("SELECT body FROM persons WHERE person_id = any($1::text[])", person_ids)
    found = [Person.model_validate(orjson.loads(r["body"])) for r in rows]
    return {p.person_id: p for p in found}


async def hospitals(c: asyncpg.Connection, codes: list[str]) -> dict[str, Hospital]:
    rows = await c.fetch("SELECT body FROM hospitals WHERE hospital_code = any($1::text[])", codes)
    found = [Hospital.model_validate(orjson.loads(r["body"])) for r in rows]
    return {h.hospital_code: h for h in found}


# -------------------------------------------------------------------- claims

_CLAIM_COLUMNS = (
    "claim_id, hospital_code, person_id, content_hash, status, document, review_reason, cancel_published, "
    "visit_type, admitted_on, discharged_on, level, diagnosis, total, reviewed_by, received_at, attempt, cancel_reason"
)


async def claims(c: asyncpg.Connection, claim_ids: list[str]) -> dict[str, ClaimRow]:
    rows = await c.fetch(
        f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = any($1::text[]) ORDER BY claim_id FOR UPDATE", claim_ids
    )
    return {r["claim_id"]: ClaimRow(**dict(r)) for r in rows}


async def claim(c: asyncpg.Connection, claim_id: str) -> ClaimRow | None:
    row = await c.fetchrow(f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = $1 FOR UPDATE", claim_id)
    return ClaimRow(**dict(row)) if row else None


async def insert_claims(c: asyncpg.Connection, rows: list[ClaimRow]) -> None:
    if rows:
        await c.executemany(
            """INSERT INTO claims (claim_id, hospital_code, person_id, content_hash, status, document,
                                   visit_type, admitted_on, discharged_on, level, diagnosis, total)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
            [(r.claim_id, r.hospital_code, r.person_id, r.content_hash, r.status, r.document,
              r.visit_type, r.admitted_on, r.discharged_on, r.level, r.diagnosis, r.total) for r in rows],
        )


async def retry_claims(c: asyncpg.Connection, rows: list[ClaimRow]) -> None:
    """Claims whose last attempt failed, sent again: they start afresh as the next attempt."""
    if rows:
        await c.executemany(
            """UPDATE claims SET content_hash = $2, status = $3, document = $4, attempt = $5, visit_type = $6,
                                 admitted_on = $7, discharged_on = $8, level = $9, diagnosis = $10, total = $11,
                                 person_id = $12, cancel_published = false, redriven_at = NULL, updated_at = now()
               WHERE claim_id = $1""",
            [(r.claim_id, r.content_hash, r.status, r.document, r.attempt, r.visit_type, r.admitted_on,
              r.discharged_on, r.level, r.diagnosis, r.total, r.person_id) for r in rows],
        )


async def mark_withdrawn(c: asyncpg.Connection, withdrawals: list[tuple[str, str | None]]) -> None:
    """Claims in review cancelled by their hospital: they leave the review queue."""
    if withdrawals:
        await c.executemany(
            "UPDATE claims SET status = 'withdrawn', cancel_reason = $2, updated_at = now() WHERE claim_id = $1",
            withdrawals,
        )


async def mark_reversed(c: asyncpg.Connection, reversals: list[tuple[str, str | None]]) -> None:
    """Reverse accepted claims; their cost leaves the running diagnosis averages."""
    if not reversals:
        return
    leaving: dict[CostKey, DiagnosisCost] = {}
    rows = await c.fetch(  # one statement for the batch's reversals
        """UPDATE claims k SET status = 'reversed', cancel_reason = r.reason, updated_at = now()
             FROM unnest($1::text[], $2::text[]) AS r(claim_id, reason)
            WHERE k.claim_id = r.claim_id
        RETURNING k.diagnosis, k.level, k.visit_type, k.total""",
        [claim_id for claim_id, _ in reversals], [reason for _, reason in reversals],
    )
    for row in rows:
        if row["diagnosis"] and row["level"] and row["visit_type"] and row["total"] is not None:
            key = (row["diagnosis"], row["level"], row["visit_type"])
            leaving[key] = leaving.get(key, DiagnosisCost(0, Decimal("0.00"))).plus(row["total"])
    if leaving:
        await c.executemany(
            """UPDATE diagnosis_costs SET claims = greatest(claims - $4, 0), total = greatest(total - $5, 0)
               WHERE diagnosis = $1 AND level = $2 AND visit_type = $3""",
            [(*key, cost.claims, cost.total) for key, cost in sorted(leaving.items())],
        )


async def mark_cancel_published(c: asyncpg.Connection, claim_ids: list[str]) -> None:
    if claim_ids:
        await c.execute("UPDATE claims SET cancel_published = true WHERE claim_id = any($1::text[])", claim_ids)


# ------------------------------------------------------ answers and re-drive


_RECORD_ANSWERS = """
WITH recorded AS (
    INSERT INTO answers (claim_id, attempt, answer)
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[]) ON CONFLICT DO NOTHING
)
INSERT INTO answer_offsets (partition, next_offset)
SELECT * FROM unnest($4::integer[], $5::bigint[])
ON CONFLICT (partition) DO UPDATE SET next_offset = greatest(answer_offsets.next_offset, excluded.next_offset)
"""


async def record_answers(c: asyncpg.Connection, answered: list[tuple[str, int, str]], read: dict[int, int]) -> None:
    """(claim_id, attempt, answer) as the stages answered them, one row each
    however often answered, and how far his.settlements is read (the next
    offset per partition): one statement, all or nothing."""
    await c.execute(
        _RECORD_ANSWERS,
        [a[0] for a in answered], [a[1] for a in answered], [a[2] for a in answered], list(read), list(read.values()),
    )


async def answer_offsets(c: asyncpg.Connection) -> dict[int, int]:
    """How far the answers on his.settlements are recorded: the next offset to handle, per partition."""
    return {r["partition"]: r["next_offset"] for r in await c.fetch("SELECT partition, next_offset FROM answer_offsets")}


async def failed_attempts(c: asyncpg.Connection, claim_ids: list[str]) -> frozenset[tuple[str, int]]:
    """The attempts of these claims answered SETTLEMENT_FAILED (claim_id,
    attempt), as eligibility recorded them from his.settlements."""
    if not claim_ids:
        return frozenset()
    rows = await c.fetch(
        "SELECT claim_id, attempt FROM answers WHERE claim_id = any($1::text[]) AND answer = 'failed'", claim_ids
    )
    return frozenset((r["claim_id"], r["attempt"]) for r in rows)


@dataclass(frozen=True)
class Stuck:
    claim_id: str
    person_id: str
    status: str  # accepted or reversed
    document: bytes
    attempt: int = 0


# accepted (or reversed) $1 seconds ago or more, not driven again since, with no answer to their attempt
_STUCK = """k.status IN ('accepted', 'reversed')
             AND k.updated_at < now() - make_interval(secs => $1)
             AND (k.redriven_at IS NULL OR k.redriven_at < now() - make_interval(secs => $1))
             AND NOT EXISTS (SELECT 1 FROM answers a
                              WHERE a.claim_id = k.claim_id AND a.attempt = k.attempt
                                AND a.answer IN ('failed', CASE k.status WHEN 'accepted' THEN 'settled'
                                                                         ELSE 'reversed' END))"""


async def stuck_claims(c: asyncpg.Connection, stuck_after: float, limit: int = 500) -> list[Stuck]:
    """Claims accepted (or reversed) ``stuck_after`` seconds ago or more, and
    not driven again since, with no answer to their attempt: settled
    (reversed) or failed."""
    rows = await c.fetch(
        f"""SELECT k.claim_id, k.person_id, k.status, k.document, k.attempt FROM claims k
             WHERE {_STUCK}
             ORDER BY k.updated_at
             LIMIT $2""",
        stuck_after, limit,
    )
    return [Stuck(**dict(row)) for row in rows]


async def take_stuck_claims(c: asyncpg.Connection, stuck_after: float, limit: int = 500) -> list[Stuck]:
    """``stuck_claims``, each marked driven again in the same statement: two
    rounds at once (two eligibility processes, or a round called while the
    periodic one runs) never take the same claim; a row another round holds
    is skipped, one it has marked no longer matches."""
    rows = await c.fetch(
        f"""UPDATE claims AS taken SET redriven_at = now(), redrives = taken.redrives + 1
              FROM (SELECT k.claim_id FROM claims k
                     WHERE {_STUCK}
                     ORDER BY k.updated_at
                     LIMIT $2
                       FOR UPDATE SKIP LOCKED) AS stuck
             WHERE taken.claim_id = stuck.claim_id
         RETURNING taken.claim_id, taken.person_id, taken.status, taken.document, taken.attempt""",
        stuck_after, limit,
    )
    return [Stuck(**dict(row)) for row in rows]


# -------------------------------------------------------------------- review


async def set_review(c: asyncpg.Connection, claim_id: str, status: str, reason: str | None, reviewer: str) -> None:
    """Record an operator's decision; its answer is still to be confirmed by the broker."""
    await c.execute(
        """UPDATE claims SET status = $2, review_reason = $3, reviewed_by = $4, review_published = false,
                             updated_at = now()
           WHERE claim_id = $1""",
        claim_id, status, reason, reviewer,
    )


async def mark_review_published(c: asyncpg.Connection, claim_ids: list[str]) -> None:
    if claim_ids:
        await c.execute("UPDATE claims SET review_published = true WHERE claim_id = any($1::text[])", claim_ids)


async def unpublished_reviews(c: asyncpg.Connection, older_than_seconds: float, limit: int = 100) -> list[ClaimRow]:
    """Decisions whose answer never reached the broker (a crash or a broker outage in between)."""
    rows = await c.fetch(
        f"""SELECT {_CLAIM_COLUMNS} FROM claims
            WHERE review_published = false AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT $2""",
        older_than_seconds, limit,
    )
    return [ClaimRow(**dict(r)) for r in rows]


async def pending_reviews(c: asyncpg.Connection, limit: int = 200) -> tuple[int, list[ClaimRow]]:
    count = await c.fetchval("SELECT count(*) FROM claims WHERE status = 'pending_review'")
    rows = await c.fetch(
        f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE status = 'pending_review' ORDER BY received_at, claim_id LIMIT $1",
        limit,
    )
    return int(count), [ClaimRow(**dict(r)) for r in rows]


# --------------------------------------------------------------------- audit


async def inpatient_stays(c: asyncpg.Connection, person_ids: list[str]) -> dict[str, list[Stay]]:
    """The accepted (settled, not reversed) inpatient stays of these people."""
    rows = await c.fetch(
        """SELECT person_id, claim_id, hospital_code, admitted_on, discharged_on FROM claims
           WHERE person_id = any($1::text[]) AND visit_type = 'inpatient' AND status = 'accepted'
             AND admitted_on IS NOT NULL""",
        person_ids,
    )
    found: dict[str, list[Stay]] = {}
    for r in rows:
        found.setdefault(r["person_id"], []).append(
            Stay(r["claim_id"], r["hospital_code"], r["admitted_on"], r["discharged_on"]))
    return found


async def diagnosis_costs(c: asyncpg.Connection, keys: list[CostKey]) -> dict[CostKey, DiagnosisCost]:
    if not keys:
        return {}
    rows = await c.fetch(
        """SELECT d.diagnosis, d.level, d.visit_type, d.claims, d.total
           FROM diagnosis_costs d
           JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (diagnosis, level, visit_type)
             USING (diagnosis, level, visit_type)""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
    )
    return {(r["diagnosis"], r["level"], r["visit_type"]): DiagnosisCost(r["claims"], r["total"]) for r in rows}


async def add_diagnosis_costs(c: asyncpg.Connection, added: dict[CostKey, DiagnosisCost]) -> None:
    """Add claims to the running averages; additive, so concurrent writers stay right."""
    if added:
        keys = sorted(added)  # one order for every writer: no deadlock between two batches
        await c.execute(
            """INSERT INTO diagnosis_costs (diagnosis, level, visit_type, claims, total)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::numeric[])
               ON CONFLICT (diagnosis, level, visit_type)
               DO UPDATE SET claims = diagnosis_costs.claims + excluded.claims,
                             total = diagnosis_costs.total + excluded.total""",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            [added[k].claims for k in keys], [added[k].total for k in keys],
        )


async def insert_flags(c: asyncpg.Connection, flags: list[AuditFlag]) -> None:
    if flags:
        await c.execute(
            """INSERT INTO audit_flags (claim_id, kind, reason, related_claim_id)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
               ON CONFLICT (claim_id, kind) DO NOTHING""",
            [f.claim_id for f in flags], [f.kind for f in flags], [f.reason for f in flags],
            [f.related_claim_id for f in flags],
        )


@dataclass(frozen=True)
class FlagRow:
    id: int
    claim_id: str
    kind: str
    reason: str
    related_claim_id: str | None
    flagged_at: dt.datetime
    hospital_code: str
    person_id: str
    visit_type: str | None
    discharged_on: dt.date | None
    total: Decimal | None
    claim_status: str


async def audit_flags(c: asyncpg.Connection, *, kind: str | None = None, claim_id: str | None = None,
                      limit: int = 200) -> list[FlagRow]:
    rows = await c.fetch(
        """SELECT f.id, f.claim_id, f.kind, f.reason, f.related_claim_id, f.flagged_at, c.hospital_code, c.person_id,
                  c.visit_type, c.discharged_on, c.total, c.status AS claim_status
           FROM audit_flags f JOIN claims c USING (claim_id)
           WHERE ($1::text IS NULL OR f.kind = $1) AND ($2::text IS NULL OR f.claim_id = $2)
           ORDER BY f.id DESC LIMIT $3""",
        kind, claim_id, limit,
    )
    return [FlagRow(**dict(r)) for r in rows]


# -------------------------------------------------------- the enrolment import

STAGING_PERSONS = "import_persons"
STAGING_CATEGORIES = "import_categories"
STAGING_HOSPITALS = "import_hospitals"
PERSON_COLUMNS = ("line", "person_id", "region", "body")
CATEGORY_COLUMNS = ("line", "person_id", "span")
HOSPITAL_COLUMNS = ("line", "hospital_code", "region", "level", "body")


async def create_import_staging(c: asyncpg.Connection) -> None:
    """Staging tables private to this transaction (gone at commit or rollback).
    Bodies come ready-made (the feeds' JSON form): building JSON in SQL costs more."""
    await c.execute(
        f"""SET LOCAL work_mem = '256MB';
            CREATE TEMP TABLE {STAGING_PERSONS} (
                line bigint NOT NULL, person_id text NOT NULL, region text NOT NULL, body jsonb NOT NULL)
                ON COMMIT DROP;
            CREATE TEMP TABLE {STAGING_CATEGORIES} (
                line bigint NOT NULL, person_id text NOT NULL, span jsonb NOT NULL) ON COMMIT DROP;
            CREATE TEMP TABLE {STAGING_HOSPITALS} (
                line bigint NOT NULL, hospital_code text NOT NULL, region text NOT NULL, level text NOT NULL,
                body jsonb NOT NULL) ON COMMIT DROP;"""
    )


async def copy_into_staging(c: asyncpg.Connection, table: str, columns: tuple[str, ...],
                            records: Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]]) -> int:
    """Binary COPY, streamed from ``records``; the number of rows copied."""
    status = await c.copy_records_to_table(table, records=records, columns=list(columns), timeout=None)
    return int(status.split()[-1])


async def analyze_staging(c: asyncpg.Connection) -> None:
    """Temporary tables have no statistics until analysed: the checks and the load need them."""
    await c.execute(f"ANALYZE {STAGING_PERSONS}; ANALYZE {STAGING_CATEGORIES}; ANALYZE {STAGING_HOSPITALS};")


@dataclass(frozen=True)
class StagingProblem:
    table: str  # persons, categories, hospitals
    line: int
    key: str  # the person_id or hospital_code at fault
    first_line: int | None  # the line the key first appeared on; None: a category of no person in the file


async def staging_problems(c: asyncpg.Connection, limit: int) -> tuple[int, list[StagingProblem]]:
    """What only the files together can show: duplicate keys, and categories of
    people with no good row in the persons file. The count, and the first ``limit``."""
    checks = f"""
        SELECT 'persons' AS tbl, line, person_id AS key, first_line
        FROM (SELECT line, person_id, min(line) OVER (PARTITION BY person_id) AS first_line
              FROM {STAGING_PERSONS}) p WHERE line <> first_line
        UNION ALL
        SELECT 'hospitals', line, hospital_code, first_line
        FROM (SELECT line, hospital_code, min(line) OVER (PARTITION BY hospital_code) AS first_line
              FROM {STAGING_HOSPITALS}) h WHERE line <> first_line
        UNION ALL
        SELECT 'categories', k.line, k.person_id, NULL
        FROM {STAGING_CATEGORIES} k WHERE NOT EXISTS (SELECT 1 FROM {STAGING_PERSONS} p WHERE p.person_id = k.person_id)
    """
    count = await c.fetchval(f"SELECT count(*) FROM ({checks}) x")
    rows = await c.fetch(f"SELECT * FROM ({checks}) x ORDER BY tbl, line LIMIT $1", limit) if count else []
    return int(count), [StagingProblem(r["tbl"], r["line"], r["key"], r["first_line"]) for r in rows]


async def apply_staging(c: asyncpg.Connection) -> tuple[int, int]:
    """One INSERT ... ON CONFLICT per registry table: the files replace what
    the registry held for every person and hospital they name. Each person's
    stored form is the ``Person`` of ``registry.persons``, categories included."""
    persons_status = await c.execute(
        f"""INSERT INTO persons (person_id, region, body)
            SELECT p.person_id, p.region,
                   CASE WHEN k.spans IS NULL THEN p.body ELSE p.body || jsonb_build_object('categories', k.spans) END
            FROM {STAGING_PERSONS} p
            LEFT JOIN (SELECT person_id, jsonb_agg(span ORDER BY line) AS spans
                       FROM {STAGING_CATEGORIES} GROUP BY person_id) k USING (person_id)
            ON CONFLICT (person_id) DO UPDATE SET region = excluded.region, body = excluded.body, updated_at = now()"""
    )
    hospitals_status = await c.execute(
        f"""INSERT INTO hospitals (hospital_code, region, level, body)
            SELECT hospital_code, region, level, body FROM {STAGING_HOSPITALS}
            ON CONFLICT (hospital_code) DO UPDATE
            SET region = excluded.region, level = excluded.level, body = excluded.body, updated_at = now()"""
    )
    return int(persons_status.split()[-1]), int(hospitals_status.split()[-1])


async def vacuum_registry(c: asyncpg.Connection) -> None:
    """After a bulk load, outside any transaction: the new rows' visibility
    settled and the planner's statistics current now, rather than by
    autovacuum while the first claims after the load are being settled."""
    await c.execute("VACUUM (ANALYZE) persons, hospitals")
