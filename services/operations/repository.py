"""SQL of the operations service: the dead letters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import orjson

_COLUMNS = "id, stage, topic, key, error, original, encoding, headers, failed_at, received_at, status, replayed_at, replayed_by"


async def keep(c: asyncpg.Connection, letters: list[dict[str, Any]]) -> None:
    """Store dead letters; one seen before (a redelivery) is not stored twice."""
    await c.executemany(
        """INSERT INTO dead_letters (source, stage, topic, key, error, original, encoding, headers, failed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
           ON CONFLICT (source) DO NOTHING""",
        [(f"{d['stage']}:{d['topic']}:{d['partition']}:{d['offset']}:{d.get('failed_at', '')}", d["stage"], d["topic"],
          d.get("key", ""), d["error"], d["original"], d.get("original_encoding", "utf-8"),
          orjson.dumps(d.get("headers", {})).decode(), _when(d.get("failed_at"))) for d in letters],
    )


def _when(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _row(r: asyncpg.Record) -> dict[str, Any]:
    row = dict(r)
    row["headers"] = orjson.loads(row["headers"])
    for field in ("failed_at", "received_at", "replayed_at"):
        row[field] = row[field].isoformat() if row[field] else None
    return row


async def listing(c: asyncpg.Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await c.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE ($1::text IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
        status, limit,
    )
    return [_row(r) for r in rows]


async def one(c: asyncpg.Connection, letter_id: int) -> dict[str, Any] | None:
    r = await c.fetchrow(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1", letter_id)
    return _row(r) if r else None


async def mark_replayed(c: asyncpg.Connection, letter_id: int, operator: str) -> None:
    await c.execute(
        "UPDATE dead_letters SET status = 'replayed', replayed_at = now(), replayed_by = $2 WHERE id = $1",
        letter_id, operator,
    )


async def count_new(c: asyncpg.Connection) -> int:
    return await c.fetchval("SELECT count(*) FROM dead_letters WHERE status = 'new'")
