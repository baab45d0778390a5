"""SQL of the dashboard: read-only, over settlement's one-bills and
eligibility's claims (schema-qualified). The dashboard's own schema,
``clearing``, holds closed clearing statements (``clearing.py``).

Spend and ratios count only one-bills with status ``settled``: a
reversed one-bill (结算撤销) pays nothing. Sums are numeric in PostgreSQL
and Decimal here, never float.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import orjson

from medsettle.contract import SettlementDocument, mask_person_id

ZERO = Decimal("0.00")
MISSING_SCHEMA = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)


async def create_pool(url: str, *, size: int) -> asyncpg.Pool:
    """A pool whose every transaction is read-only."""
    pool = await asyncpg.create_pool(
        url, min_size=1, max_size=size, command_timeout=30,
        server_settings={"default_transaction_read_only": "on", "application_name": "dashboard"},
    )
    assert pool is not None
    return pool


# ---------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class Throughput:
    last_minute: int
    series: list[tuple[dt.datetime, int]]  # one-bills per bucket


async def throughput(c: asyncpg.Connection, *, minutes: int = 10, bucket_seconds: int = 10) -> Throughput:
    rows = await c.fetch(
        """WITH buckets AS (
               SELECT to_timestamp(b) AS bucket
               FROM generate_series(floor(extract(epoch FROM now() - make_interval(mins => $1)) / $2) * $2,
                                    floor(extract(epoch FROM now()) / $2) * $2, $2) AS b),
           settled AS (
               SELECT to_timestamp(floor(extract(epoch FROM settled_at) / $2) * $2) AS bucket, count(*) AS n
               FROM settlement.one_bills
               WHERE settled_at >= now() - make_interval(mins => $1) - make_interval(secs => $2)
               GROUP BY 1)
           SELECT buckets.bucket, coalesce(settled.n, 0) AS n
           FROM buckets LEFT JOIN settled USING (bucket) ORDER BY 1""",
        minutes, bucket_seconds,
    )
    last = await c.fetchval(
        "SELECT count(*) FROM settlement.one_bills WHERE settled_at >= now() - interval '60 seconds'"
    )
    return Throughput(int(last), [(r["bucket"], int(r["n"])) for r in rows])


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float | None  # seconds
    p99: float | None
    window: str  # what the percentiles are over


async def latency(c: asyncpg.Connection, *, window_seconds: int = 300, latest: int = 1000) -> Latency:
    """End-to-end latency (settled_at − received_at) of the last minutes, or of
    the latest one-bills when none were settled in that window."""
    query = """SELECT count(*) AS n,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99
               FROM (SELECT extract(epoch FROM settled_at - received_at)::float8 AS s
                     FROM settlement.one_bills WHERE received_at IS NOT NULL AND {where}
                     ORDER BY settled_at DESC LIMIT $1) recent"""
    row = await c.fetchrow(query.format(where="settled_at >= now() - make_interval(secs => $2)"),
                           latest, float(window_seconds))
    window = f"最近{window_seconds // 60}分钟"
    if not row["n"]:
        row = await c.fetchrow(query.format(where="true"), latest)
        window = f"最近{latest}笔"
    return Latency(int(row["n"]), row["p50"], row["p99"], window)


@dataclass(frozen=True)
class WaitingClaim:
    claim_id: str
    hospital_code: str
    person_id_masked: str
    total: Decimal | None
    visit_type: str | None
    received_at: dt.datetime
    waiting_since: dt.datetime


def _waiting(row: asyncpg.Record) -> WaitingClaim:
    total = visit_type = None
    try:
        document = SettlementDocument.from_json(row["document"])
        total, visit_type = document.claim.total, document.claim.visit_type
    except (ValueError, orjson.JSONDecodeError):
        pass
    return WaitingClaim(row["claim_id"], row["hospital_code"], mask_person_id(row["person_id"]), total,
                        visit_type, row["received_at"], row["updated_at"])


async def stuck_claims(c: asyncpg.Connection, *, after_seconds: float,
                       limit: int = 50) -> tuple[int, list[WaitingClaim]]:
    """Claims eligibility accepted that have no one-bill ``after_seconds`` later."""
    where = """FROM eligibility.claims c
               WHERE c.status = 'accepted' AND c.updated_at < now() - make_interval(secs => $1)
                 AND NOT EXISTS (SELECT 1 FROM settlement.one_bills b WHERE b.claim_id = c.claim_id)"""
    count = await c.fetchval(f"SELECT count(*) {where}", after_seconds)
    rows = await c.fetch(
        f"""SELECT c.claim_id, c.hospital_code, c.person_id, c.document, c.received_at, c.updated_at {where}
            ORDER BY c.updated_at LIMIT $2""",
        after_seconds, limit,
    )
    return int(count), [_waiting(r) for r in rows]


async def pending_reviews(c: asyncpg.Connection, *, limit: int = 100) -> tuple[int, list[WaitingClaim]]:
    count = await c.fetchval("SELECT count(*) FROM eligibility.claims WHERE status = 'pending_review'")
    rows = await c.fetch(
        """SELECT claim_id, hospital_code, person_id, document, received_at, updated_at
           FROM eligibility.claims WHERE status = 'pending_review' ORDER BY received_at LIMIT $1""",
        limit,
    )
    return int(count), [_waiting(r) for r in rows]


# ------------------------------------------------------------------- funds


@dataclass(frozen=True)
class PolicySpend:
    policy: str
    claims: int
    total: Decimal
    funds: dict[str, Decimal]  # by fund code


async def spend_by_policy(c: asyncpg.Connection, year: int) -> list[PolicySpend]:
    """Per scheme (region-year): its revisions' one-bills together (``340421-2024-r2`` counts as ``340421-2024``)."""
    rows = await c.fetch(
        """SELECT regexp_replace(policy, '-r[0-9]+$', '') AS policy, count(*) AS n, sum(total) AS total, sum(basic) AS basic,
                  sum(serious_illness) AS serious_illness, sum(assistance) AS assistance, sum(backstop) AS backstop
           FROM settlement.one_bills
           WHERE status = 'settled' AND service_date >= make_date($1, 1, 1) AND service_date < make_date($1 + 1, 1, 1)
           GROUP BY 1 ORDER BY 1""",
        year,
    )
    return [
        PolicySpend(r["policy"], int(r["n"]), r["total"], {
            "390100": r["basic"], "390200": r["serious_illness"], "610100": r["assistance"], "640100": r["backstop"],
        })
        for r in rows
    ]


@dataclass(frozen=True)
class LevelRatio:
    level: str
    claims: int
    total: Decimal
    fund_total: Decimal


_YEAR_AND_POLICY = """status = 'settled'
                      AND service_date >= make_date($1, 1, 1) AND service_date < make_date($1 + 1, 1, 1)
                      AND ($2::text IS NULL OR policy = $2 OR policy LIKE $2 || '-r%')"""  # a scheme: its revisions


async def ratio_by_level(c: asyncpg.Connection, year: int, policy: str | None) -> list[LevelRatio]:
    rows = await c.fetch(
        f"""SELECT hospital_level, count(*) AS n, sum(total) AS total, sum(fund_total) AS fund_total
            FROM settlement.one_bills WHERE {_YEAR_AND_POLICY} GROUP BY hospital_level""",
        year, policy,
    )
    return [LevelRatio(r["hospital_level"], int(r["n"]), r["total"], r["fund_total"]) for r in rows]


@dataclass(frozen=True)
class Band:
    count: int
    amount: Decimal


async def serious_illness_bands(c: asyncpg.Connection, year: int, policy: str | None,
                                bands: tuple[tuple[str, Decimal, Decimal | None], ...]) -> list[Band]:
    parts = []
    for index, (_, low, high) in enumerate(bands):
        cond = f"serious_illness >= {low}" + (f" AND serious_illness < {high}" if high is not None else "")
        parts.append(f"count(*) FILTER (WHERE {cond}) AS n{index}, "
                     f"coalesce(sum(serious_illness) FILTER (WHERE {cond}), 0) AS a{index}")
    row = await c.fetchrow(f"SELECT {', '.join(parts)} FROM settlement.one_bills WHERE {_YEAR_AND_POLICY}",
                           year, policy)
    return [Band(int(row[f"n{i}"]), row[f"a{i}"]) for i in range(len(bands))]


@dataclass(frozen=True)
class HospitalFigures:
    hospital_code: str
    level: str
    claims: int
    admissions: int
    total: Decimal
    inpatient_total: Decimal
    fund_total: Decimal


async def by_hospital(c: asyncpg.Connection, year: int, policy: str | None) -> list[HospitalFigures]:
    rows = await c.fetch(
        f"""SELECT hospital_code, max(hospital_level) AS level, count(*) AS n,
                   count(*) FILTER (WHERE visit_type = 'inpatient') AS admissions,
                   sum(total) AS total,
                   coalesce(sum(total) FILTER (WHERE visit_type = 'inpatient'), 0) AS inpatient_total,
                   sum(fund_total) AS fund_total
            FROM settlement.one_bills WHERE {_YEAR_AND_POLICY}
            GROUP BY hospital_code ORDER BY hospital_code""",
        year, policy,
    )
    return [HospitalFigures(r["hospital_code"], r["level"], int(r["n"]), int(r["admissions"]), r["total"],
                            r["inpatient_total"], r["fund_total"]) for r in rows]


async def hospital_names(c: asyncpg.Connection, codes: list[str]) -> dict[str, str]:
    """Names from eligibility's registry copy; none when it is not there."""
    try:
        rows = await c.fetch(
            """SELECT hospital_code, body->>'name' AS name
               FROM eligibility.hospitals WHERE hospital_code = any($1::text[])""",
            codes,
        )
    except MISSING_SCHEMA:
        return {}
    return {r["hospital_code"]: r["name"] for r in rows if r["name"]}


async def years_with_bills(c: asyncpg.Connection) -> list[int]:
    rows = await c.fetch(
        "SELECT DISTINCT extract(year FROM service_date)::int AS y FROM settlement.one_bills ORDER BY 1"
    )
    return [r["y"] for r in rows]


# ---------------------------------------------------------------- clearing
# Statements by the month the settlement or reversal happened, closed months
# stored: services/dashboard/clearing.py.


# ------------------------------------------------------------ claim search


@dataclass(frozen=True)
class FoundClaim:
    claim_id: str
    status: str
    one_bill: dict | None  # the stored one-bill (person id already masked)
    reversed_at: dt.datetime | None = None
    hospital_code: str | None = None
    person_id_masked: str | None = None
    review_reason: str | None = None


async def find_claim(c: asyncpg.Connection, claim_id: str) -> FoundClaim | None:
    row = await c.fetchrow(
        "SELECT status, body, reversed_at FROM settlement.one_bills WHERE claim_id = $1", claim_id
    )
    if row is not None:
        body = orjson.loads(row["body"])
        body["status"] = row["status"]
        body.pop("person_id", None)
        return FoundClaim(claim_id, row["status"], body, row["reversed_at"], body.get("hospital_code"),
                          body.get("person_id_masked"))
    try:
        row = await c.fetchrow(
            "SELECT hospital_code, person_id, status, review_reason FROM eligibility.claims WHERE claim_id = $1",
            claim_id,
        )
    except MISSING_SCHEMA:
        return None
    if row is None:
        return None
    return FoundClaim(claim_id, row["status"], None, None, row["hospital_code"], mask_person_id(row["person_id"]),
                      row["review_reason"])
