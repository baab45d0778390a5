"""SQL of the policy simulation: read-only, in read-only transactions that all
see one snapshot (the first exports it, the worker processes import it).

Where a year's claims are recorded:

- ``settlement.one_bills``: every claim the platform settled, with what each
  fund paid (the one-bill), ``settled_at`` and ``reversed_at``. Both are the
  settlement stage's clock, read for each document in the order it handled
  them; everything downstream of eligibility is keyed by ``person_id``, so a
  person's documents reach every stage in one order, and these two times give
  the order in which each layer saw that person's settles and reversals.
- ``eligibility.claims.document``: the document eligibility sent on to the
  layers (the claim with its items, the person's categories and favoured
  status on the service date, the hospital's level, the policy), exactly as
  ``basic`` read it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import orjson

from medsettle.contract import SettlementDocument
from services.simulation.replay import RecordedClaim

SETTLEMENT_SCHEMA = "settlement"
ELIGIBILITY_SCHEMA = "eligibility"
_SNAPSHOT = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$")


async def begin_snapshot(c: asyncpg.Connection) -> tuple[asyncpg.transaction.Transaction, str]:
    """A read-only repeatable-read transaction, and its snapshot's id for the
    other processes. The transaction must stay open while they read."""
    transaction = c.transaction(isolation="repeatable_read", readonly=True)
    await transaction.start()
    await c.execute("SET LOCAL work_mem = '64MB'")
    return transaction, await c.fetchval("SELECT pg_export_snapshot()")


async def join_snapshot(c: asyncpg.Connection, snapshot: str) -> asyncpg.transaction.Transaction:
    if not _SNAPSHOT.match(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    transaction = c.transaction(isolation="repeatable_read", readonly=True)
    await transaction.start()
    await c.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return transaction


async def claim_chunks(c: asyncpg.Connection, policy_id: str, size: int) -> AsyncIterator[list[str]]:
    """The claim ids of the one-bills settled under ``policy_id``, person by
    person, in chunks of about ``size`` that never split a person. Inside the
    caller's transaction (a server-side cursor)."""
    chunk: list[str] = []
    person = None
    async for row in c.cursor(
        f"SELECT person_id, claim_id FROM {SETTLEMENT_SCHEMA}.one_bills WHERE policy = $1 ORDER BY person_id, claim_id",
        policy_id, prefetch=10000,
    ):
        if len(chunk) >= size and row["person_id"] != person:
            yield chunk
            chunk = []
        person = row["person_id"]
        chunk.append(row["claim_id"])
    if chunk:
        yield chunk


async def count_claims(c: asyncpg.Connection, policy_id: str) -> int:
    return await c.fetchval(f"SELECT count(*) FROM {SETTLEMENT_SCHEMA}.one_bills WHERE policy = $1", policy_id)


async def recorded_claims(c: asyncpg.Connection, claim_ids: list[str]) -> dict[str, list[RecordedClaim]]:
    """The claims, grouped by person, each person's in settlement order."""
    rows = await c.fetch(
        f"""SELECT b.person_id, b.claim_id, b.settled_at, b.reversed_at, b.basic, b.serious_illness, b.assistance,
                   b.backstop, b.total, b.compliant, b.personal, c.document
              FROM {SETTLEMENT_SCHEMA}.one_bills b
              JOIN {ELIGIBILITY_SCHEMA}.claims c ON c.claim_id = b.claim_id
             WHERE b.claim_id = any($1::text[])
             ORDER BY b.person_id, b.settled_at, b.claim_id""",
        claim_ids,
    )
    if len(rows) != len(claim_ids):
        found = {r["claim_id"] for r in rows}
        missing = [claim_id for claim_id in claim_ids if claim_id not in found]
        raise LookupError(f"{len(missing)} one-bill(s) without a claim document in {ELIGIBILITY_SCHEMA}.claims, "
                          f"e.g. {missing[:3]}")
    by_person: dict[str, list[RecordedClaim]] = {}
    for r in rows:
        raw = orjson.loads(r["document"])
        raw["kind"] = "settle"  # the document as it was settled (a reversed claim's row holds its settle document)
        by_person.setdefault(r["person_id"], []).append(RecordedClaim(
            document=SettlementDocument.trusted(raw),
            settled_at=r["settled_at"], reversed_at=r["reversed_at"],
            paid=(r["basic"], r["serious_illness"], r["assistance"], r["backstop"]),
            total=r["total"], compliant=r["compliant"], personal=r["personal"],
        ))
    return by_person
