"""SQL of a layer stage: accumulators, layers and the inbox."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import orjson


@dataclass(frozen=True)
class LayerRow:
    claim_id: str
    person_id: str
    year: int
    policy: str
    amount: Decimal
    delta: dict
    output: bytes
    status: str
    attempt: int = 0


Stored = tuple[dict, int]
"""An accumulator's state and its version."""


async def load_batch(
    c: asyncpg.Connection, cancels: list[str], keys: set[tuple[str, int]], claim_ids: list[str]
) -> tuple[dict[str, bytes], dict[tuple[str, int], Stored], dict[str, LayerRow]]:
    """What a batch needs, in one round trip: the answers to the cancels
    already handled (by message id), the accumulators of these (person, year)
    pairs with their versions, and the layers stored for these claims. A
    settle already handled finds its answer in its layer's ``output``, so a
    settle writes no inbox row of its own: the document is stored once."""
    persons, years = zip(*sorted(keys)) if keys else ((), ())
    rows = await c.fetch(
        """SELECT 'inbox' AS what, message_id AS id, NULL::int AS year, output, NULL::text AS state,
                  NULL::bigint AS version, NULL::text AS person_id, NULL::text AS policy,
                  NULL::numeric AS amount, NULL::text AS status, NULL::int AS attempt
             FROM inbox WHERE message_id = any($1::text[])
           UNION ALL
           SELECT 'accumulator', a.person_id, a.year, NULL, a.state::text, a.version, NULL, NULL, NULL, NULL, NULL
             FROM accumulators a
             JOIN unnest($2::text[], $3::int[]) AS k(person_id, year)
               ON a.person_id = k.person_id AND a.year = k.year
           UNION ALL
           SELECT 'layer', claim_id, year, output, delta::text, NULL, person_id, policy, amount, status, attempt
             FROM layers WHERE claim_id = any($4::text[])""",
        cancels, list(persons), list(years), claim_ids,
    )
    done: dict[str, bytes] = {}
    states: dict[tuple[str, int], Stored] = {}
    layers: dict[str, LayerRow] = {}
    for r in rows:
        what = r["what"]
        if what == "inbox":
            done[r["id"]] = r["output"]
        elif what == "accumulator":
            states[(r["id"], r["year"])] = (orjson.loads(r["state"]), r["version"])
        else:
            layers[r["id"]] = LayerRow(r["id"], r["person_id"], r["year"], r["policy"], r["amount"],
                                       orjson.loads(r["state"]), r["output"], r["status"], r["attempt"])
    return done, states, layers


async def save_batch(
    c: asyncpg.Connection, states: dict[tuple[str, int], tuple[bytes, int]], new_layers: list[LayerRow],
    reversed_ids: list[str], inbox: list[tuple[str, bytes]],
) -> None:
    """Everything a batch changed, in one statement, so atomic without a
    transaction: the accumulators (each only at the version ``load_batch``
    read, else the statement fails with serialization_failure and nothing is
    written), the new layers (those settled and reversed in the same batch
    already reversed), the reversals of earlier layers, and the inbox rows of
    the cancels."""
    await c.execute(
        """WITH saved AS (
               INSERT INTO accumulators AS a (person_id, year, state, version)
               SELECT person_id, year, state::jsonb, version + 1
                 FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[]) AS s(person_id, year, state, version)
               ON CONFLICT (person_id, year) DO UPDATE
                  SET state = excluded.state, version = excluded.version, updated_at = now()
                WHERE a.version = excluded.version - 1
               RETURNING 1
           ), settled AS (
               INSERT INTO layers AS o (claim_id, person_id, year, policy, amount, delta, output, status, reversed_at,
                                        attempt)
               SELECT claim_id, person_id, year, policy, amount, delta::jsonb, output, status,
                      CASE WHEN status = 'reversed' THEN now() END, attempt
                 FROM unnest($5::text[], $6::text[], $7::int[], $8::text[], $9::numeric[], $10::text[],
                             $11::bytea[], $12::text[], $16::int[])
                   AS l(claim_id, person_id, year, policy, amount, delta, output, status, attempt)
               -- a claim sent again after it failed replaces its earlier attempt, never a standing layer
               ON CONFLICT (claim_id) DO UPDATE
                  SET person_id = excluded.person_id, year = excluded.year, policy = excluded.policy,
                      amount = excluded.amount, delta = excluded.delta, output = excluded.output,
                      status = excluded.status, reversed_at = excluded.reversed_at, attempt = excluded.attempt,
                      settled_at = now()
                WHERE o.attempt < excluded.attempt AND o.status <> 'settled'
           ), reversed AS (
               UPDATE layers SET status = 'reversed', reversed_at = now() WHERE claim_id = any($13::text[])
           ), handled AS (
               INSERT INTO inbox (message_id, output)
               SELECT message_id, output FROM unnest($14::text[], $15::bytea[]) AS i(message_id, output)
           )
           SELECT stale_batch(cardinality($1::text[]), (SELECT count(*) FROM saved))""",
        [p for p, _ in states], [y for _, y in states], [s.decode() for s, _ in states.values()],
        [v for _, v in states.values()],
        [r.claim_id for r in new_layers], [r.person_id for r in new_layers], [r.year for r in new_layers],
        [r.policy for r in new_layers], [r.amount for r in new_layers],
        [orjson.dumps(r.delta).decode() for r in new_layers], [r.output for r in new_layers],
        [r.status for r in new_layers],
        reversed_ids, [m for m, _ in inbox], [o for _, o in inbox], [r.attempt for r in new_layers],
    )


async def accumulator_of(c: asyncpg.Connection, person_id: str, year: int) -> dict | None:
    state = await c.fetchval("SELECT state FROM accumulators WHERE person_id = $1 AND year = $2", person_id, year)
    return orjson.loads(state) if state is not None else None
