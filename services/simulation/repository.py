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

import asyncpg
import msgspec

from services.simulation.replay import RecordedClaim, read_bill

SETTLEMENT_SCHEMA = "settlement"
ELIGIBILITY_SCHEMA = "eligibility"
_SNAPSHOT = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$")


async def begin_snapshot(c: asyncpg.Connection) -> tuple[asyncpg.transaction.Transaction, str]:
    """A read-only repeatable-read transaction, and its snapshot's id for the
    other processes. The transaction must stay open while they read."""
    transaction = c.transaction(isolation="repeatable_read", readonly=True)
    await transaction.start()
    await c.execute("SET LOCAL work_mem = '64MB'")
    await _one_process_per_query(c)
    return transaction, await c.fetchval("SELECT pg_export_snapshot()")


async def _one_process_per_query(c: asyncpg.Connection) -> None:
    """The simulation runs one worker process per CPU already: PostgreSQL's
    parallel workers would only compete with them (and start per query)."""
    await c.execute("SET LOCAL max_parallel_workers_per_gather = 0")


async def join_snapshot(c: asyncpg.Connection, snapshot: str) -> asyncpg.transaction.Transaction:
    if not _SNAPSHOT.match(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    transaction = c.transaction(isolation="repeatable_read", readonly=True)
    await transaction.start()
    await c.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    await _one_process_per_query(c)
    return transaction


async def person_ranges(c: asyncpg.Connection, policy_id: str, size: int) -> list[tuple[str, str]]:
    """The persons with one-bills settled under ``policy_id``, cut into ranges
    ``(after, upto]`` of person ids (in the database's order of text) of
    about ``size`` claims each; a person is never split. Inside the caller's
    transaction. One row per range comes back (the year itself stays in the
    database): the person at every ``size``-th claim, and the last person."""
    rows = await c.fetch(
        f"""SELECT person_id FROM (
                SELECT person_id, row_number() OVER (ORDER BY person_id) AS n
                  FROM {SETTLEMENT_SCHEMA}.one_bills WHERE policy = $1) AS numbered
             WHERE n % $2 = 0
            UNION ALL
            SELECT max(person_id) FROM {SETTLEMENT_SCHEMA}.one_bills WHERE policy = $1
            ORDER BY 1""",
        policy_id, size,
    )
    ranges: list[tuple[str, str]] = []
    after = ""  # below every person id
    for (upto,) in rows:
        if upto is not None and upto != after:
            ranges.append((after, upto))
            after = upto
    return ranges


async def recorded_claims(c: asyncpg.Connection, policy_id: str, after: str, upto: str
                          ) -> dict[str, list[RecordedClaim]]:
    """The claims settled under ``policy_id`` of the persons in ``(after,
    upto]`` (``person_ranges``), grouped by person, each person's in
    settlement order: one index range scan of the one-bills and a lookup of
    each claim's document by its key."""
    rows = await c.fetch(
        f"""SELECT b.person_id, b.claim_id, b.settled_at, b.reversed_at, b.basic, b.serious_illness, b.assistance,
                   b.backstop, b.total, b.compliant, b.personal, c.document
              FROM {SETTLEMENT_SCHEMA}.one_bills b
              LEFT JOIN {ELIGIBILITY_SCHEMA}.claims c ON c.claim_id = b.claim_id
             WHERE b.policy = $1 AND b.person_id > $2 AND b.person_id <= $3
             ORDER BY b.person_id, b.settled_at, b.claim_id""",
        policy_id, after, upto,
    )
    by_person: dict[str, list[RecordedClaim]] = {}
    missing = []
    claims: list[RecordedClaim] = []
    person = None
    for (person_id, claim_id, settled_at, reversed_at, basic, serious, assistance, backstop, total, compliant,
         personal, document) in rows:
        if document is None:
            missing.append(claim_id)
            continue
        if person_id != person:
            claims = by_person[person_id] = []
            person = person_id
        try:
            bill = read_bill(document)
        except msgspec.DecodeError as exc:  # ValidationError too
            raise LookupError(f"the document of claim {claim_id} in {ELIGIBILITY_SCHEMA}.claims: {exc}") from None
        claims.append(RecordedClaim(bill, settled_at, reversed_at, (basic, serious, assistance, backstop),
                                    total, compliant, personal))
    if missing:
        raise LookupError(f"{len(missing)} one-bill(s) without a claim document in {ELIGIBILITY_SCHEMA}.claims, "
                          f"e.g. {missing[:3]}")
    return by_person
