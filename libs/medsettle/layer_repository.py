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


async def inbox_outputs(c: asyncpg.Connection, message_ids: list[str]) -> dict[str, bytes]:
    if not message_ids:
        return {}
    rows = await c.fetch("SELECT message_id, output FROM inbox WHERE message_id = any($1::text[])", message_ids)
    return {r["message_id"]: r["output"] for r in rows}


async def record_inbox(c: asyncpg.Connection, entries: list[tuple[str, bytes]]) -> None:
    if entries:
        await c.executemany("INSERT INTO inbox (message_id, output) VALUES ($1, $2)", entries)


async def load_accumulators(c: asyncpg.Connection, keys: set[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """The accumulators of these (person, year) pairs, locked for this transaction."""
    if not keys:
        return {}
    persons, years = zip(*sorted(keys))
    rows = await c.fetch(
        """SELECT a.person_id, a.year, a.state FROM accumulators a
           JOIN unnest($1::text[], $2::int[]) AS k(person_id, year)
             ON a.person_id = k.person_id AND a.year = k.year
           ORDER BY a.person_id, a.year
           FOR UPDATE OF a""",
        list(persons),
        list(years),
    )
    return {(r["person_id"], r["year"]): orjson.loads(r["state"]) for r in rows}


async def save_accumulators(c: asyncpg.Connection, states: dict[tuple[str, int], bytes]) -> None:
    if states:
        await c.executemany(
            """INSERT INTO accumulators (person_id, year, state) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (person_id, year) DO UPDATE SET state = excluded.state, updated_at = now()""",
            [(person, year, state.decode()) for (person, year), state in states.items()],
        )


async def load_layers(c: asyncpg.Connection, claim_ids: list[str]) -> dict[str, LayerRow]:
    if not claim_ids:
        return {}
    rows = await c.fetch(
        "SELECT claim_id, person_id, year, policy, amount, delta, output, status FROM layers"
        " WHERE claim_id = any($1::text[])",
        claim_ids,
    )
    return {
        r["claim_id"]: LayerRow(
            r["claim_id"], r["person_id"], r["year"], r["policy"], r["amount"],
            orjson.loads(r["delta"]), r["output"], r["status"],
        )
        for r in rows
    }


async def insert_layers(c: asyncpg.Connection, rows: list[LayerRow]) -> None:
    if rows:
        await c.executemany(
            """INSERT INTO layers (claim_id, person_id, year, policy, amount, delta, output, status)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)""",
            [(r.claim_id, r.person_id, r.year, r.policy, r.amount, orjson.dumps(r.delta).decode(), r.output, r.status)
             for r in rows],
        )


async def mark_reversed(c: asyncpg.Connection, claim_ids: list[str]) -> None:
    if claim_ids:
        await c.execute(
            "UPDATE layers SET status = 'reversed', reversed_at = now() WHERE claim_id = any($1::text[])", claim_ids
        )


async def load_batch(
    c: asyncpg.Connection, message_ids: list[str], keys: set[tuple[str, int]], cancelled: list[str]
) -> tuple[dict[str, bytes], dict[tuple[str, int], dict], dict[str, LayerRow]]:
    """What a batch needs, in one round trip: the outputs of messages already
    handled, the accumulators of these (person, year) pairs (locked for this
    transaction, in key order), and the layers that these cancels reverse."""
    persons, years = zip(*sorted(keys)) if keys else ((), ())
    rows = await c.fetch(
        """WITH handled AS (
               SELECT message_id, output FROM inbox WHERE message_id = any($1::text[])
           ), locked AS (
               SELECT a.person_id, a.year, a.state FROM accumulators a
               JOIN unnest($2::text[], $3::int[]) AS k(person_id, year)
                 ON a.person_id = k.person_id AND a.year = k.year
               ORDER BY a.person_id, a.year
               FOR UPDATE OF a
           )
           SELECT 'inbox' AS what, message_id AS id, NULL::int AS year, output, NULL::text AS state,
                  NULL::text AS person_id, NULL::text AS policy, NULL::numeric AS amount, NULL::text AS status
             FROM handled
           UNION ALL
           SELECT 'accumulator', person_id, year, NULL, state::text, NULL, NULL, NULL, NULL FROM locked
           UNION ALL
           SELECT 'layer', claim_id, year, output, delta::text, person_id, policy, amount, status
             FROM layers WHERE claim_id = any($4::text[])""",
        message_ids, list(persons), list(years), cancelled,
    )
    done: dict[str, bytes] = {}
    states: dict[tuple[str, int], dict] = {}
    layers: dict[str, LayerRow] = {}
    for r in rows:
        what = r["what"]
        if what == "inbox":
            done[r["id"]] = r["output"]
        elif what == "accumulator":
            states[(r["id"], r["year"])] = orjson.loads(r["state"])
        else:
            layers[r["id"]] = LayerRow(r["id"], r["person_id"], r["year"], r["policy"], r["amount"],
                                       orjson.loads(r["state"]), r["output"], r["status"])
    return done, states, layers


async def save_batch(
    c: asyncpg.Connection, states: dict[tuple[str, int], bytes], new_layers: list[LayerRow],
    reversed_ids: list[str], inbox: list[tuple[str, bytes]],
) -> None:
    """Everything a batch changed, in one statement: the accumulators, the
    new layers (those settled and reversed in the same batch already
    reversed), the reversals of earlier layers, and the inbox rows."""
    await c.execute(
        """WITH saved AS (
               INSERT INTO accumulators (person_id, year, state)
               SELECT person_id, year, state::jsonb FROM unnest($1::text[], $2::int[], $3::text[])
                 AS s(person_id, year, state)
               ON CONFLICT (person_id, year) DO UPDATE SET state = excluded.state, updated_at = now()
           ), settled AS (
               INSERT INTO layers (claim_id, person_id, year, policy, amount, delta, output, status, reversed_at)
               SELECT claim_id, person_id, year, policy, amount, delta::jsonb, output, status,
                      CASE WHEN status = 'reversed' THEN now() END
                 FROM unnest($4::text[], $5::text[], $6::int[], $7::text[], $8::numeric[], $9::text[],
                             $10::bytea[], $11::text[])
                   AS l(claim_id, person_id, year, policy, amount, delta, output, status)
           ), reversed AS (
               UPDATE layers SET status = 'reversed', reversed_at = now() WHERE claim_id = any($12::text[])
           )
           INSERT INTO inbox (message_id, output)
           SELECT message_id, output FROM unnest($13::text[], $14::bytea[]) AS i(message_id, output)""",
        [p for p, _ in states], [y for _, y in states], [s.decode() for s in states.values()],
        [r.claim_id for r in new_layers], [r.person_id for r in new_layers], [r.year for r in new_layers],
        [r.policy for r in new_layers], [r.amount for r in new_layers],
        [orjson.dumps(r.delta).decode() for r in new_layers], [r.output for r in new_layers],
        [r.status for r in new_layers],
        reversed_ids, [m for m, _ in inbox], [o for _, o in inbox],
    )


async def accumulator_of(c: asyncpg.Connection, person_id: str, year: int) -> dict | None:
    state = await c.fetchval("SELECT state FROM accumulators WHERE person_id = $1 AND year = $2", person_id, year)
    return orjson.loads(state) if state is not None else None
