"""SQL of the settlement stage: one-bills, the inbox, failed settlements."""

from __future__ import annotations

import datetime as dt

import asyncpg

from medsettle.contract import ONE_BILL_AMOUNTS, SettlementDocument, SettlementResult
from services.settlement import decide

__all__ = ["load_batch", "save_batch"]


async def load_batch(c: asyncpg.Connection, cancels: list[str], claim_ids: list[str]) -> decide.StoredState:
    """In one round trip: the answers to the cancels already handled (by
    message id), the one-bills stored for these claims, and their failures.
    A settle already handled is answered with its one-bill's ``body``, so a
    settle writes no inbox row of its own (as in a layer stage)."""
    rows = await c.fetch(
        """SELECT 'inbox' AS what, message_id AS id, output AS body, NULL::int AS attempt, NULL::text AS person_id,
                  NULL::text[] AS reasons, NULL::bytea AS compensation
             FROM inbox WHERE message_id = any($1::text[])
           UNION ALL
           SELECT 'bill', claim_id, body, NULL, NULL, NULL, NULL FROM one_bills WHERE claim_id = any($2::text[])
           UNION ALL
           SELECT 'failure', claim_id, document, attempt, person_id, reasons, compensation
             FROM failures WHERE claim_id = any($2::text[])""",
        cancels, claim_ids,
    )
    stored = decide.StoredState()
    for r in rows:
        if r["what"] == "inbox":
            stored.answers[r["id"]] = r["body"]
        elif r["what"] == "bill":
            stored.bills[r["id"]] = r["body"]
        else:
            stored.failures[(r["id"], r["attempt"])] = decide.Failure(
                r["id"], r["attempt"], r["person_id"], list(r["reasons"]), r["body"], r["compensation"])
    return stored


async def save_batch(c: asyncpg.Connection, decision: decide.Decision) -> None:
    """What a batch decided: its one-bills, reversals and inbox rows in one
    statement; its failures, and the failures now answered."""
    await _save_bills(c, decision.bills, decision.reversals, decision.inbox)
    if decision.failures:
        await c.executemany(
            """INSERT INTO failures (claim_id, attempt, person_id, reasons, document, compensation)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            [(f.claim_id, f.attempt, f.person_id, f.reasons, f.document, f.compensation) for f in decision.failures],
        )
    if decision.answered_failures:
        await c.execute(
            """UPDATE failures f SET answered_at = now()
                 FROM unnest($1::text[], $2::int[]) AS a(claim_id, attempt)
                WHERE f.claim_id = a.claim_id AND f.attempt = a.attempt AND f.answered_at IS NULL""",
            [k for k, _ in decision.answered_failures], [a for _, a in decision.answered_failures],
        )


async def _save_bills(c: asyncpg.Connection, bills: list[tuple[SettlementResult, SettlementDocument, bytes]],
                     reversals: list[tuple[str, dt.datetime]], inbox: list[tuple[str, bytes]]) -> None:
    """In one statement: the new one-bills (reversed already when reversed in
    the same batch), the reversals of earlier ones, and the inbox rows of the
    cancels."""
    reversed_now = dict(reversals)
    earlier = [(claim_id, at) for claim_id, at in reversals if claim_id not in {b.claim_id for b, _, _ in bills}]
    columns = ("claim_id", "hospital_code", "hospital_level", "person_id", "policy", "visit_type", "service_date",
               "status", *ONE_BILL_AMOUNTS, "body", "received_at", "settled_at", "reversed_at")
    types = ("text", "text", "text", "text", "text", "text", "date", "text", *("numeric",) * len(ONE_BILL_AMOUNTS),
             "bytea", "timestamptz", "timestamptz", "timestamptz")
    rows = [
        (bill.claim_id, bill.hospital_code, doc.hospital.level, doc.person.person_id, bill.policy,
         doc.claim.visit_type, doc.claim.discharged_on,
         "reversed" if bill.claim_id in reversed_now else "settled", *(getattr(bill, a) for a in ONE_BILL_AMOUNTS),
         body, doc.received_at, bill.settled_at, reversed_now.get(bill.claim_id))
        for bill, doc, body in bills
    ]
    arrays = [list(column) for column in zip(*rows)] if rows else [[] for _ in columns]
    n = len(columns)
    unnest = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    await c.execute(
        f"""WITH settled AS (
                INSERT INTO one_bills ({', '.join(columns)})
                SELECT * FROM unnest({unnest})
            ), reversed AS (
                UPDATE one_bills b SET status = 'reversed', reversed_at = r.at
                  FROM unnest(${n + 1}::text[], ${n + 2}::timestamptz[]) AS r(claim_id, at)
                 WHERE b.claim_id = r.claim_id
            )
            INSERT INTO inbox (message_id, output)
            SELECT * FROM unnest(${n + 3}::text[], ${n + 4}::bytea[])""",
        *arrays, [i for i, _ in earlier], [a for _, a in earlier], [m for m, _ in inbox], [o for _, o in inbox],
    )
