"""SQL of the operator audit log (``<service>.operator_audit``): every
decision taken through an operator API, who took it, what and when.

Its migration lives beside it (``audit_migrations/``) and is applied into the
schema of each service that serves an operator API.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson

MIGRATIONS = Path(__file__).with_name("audit_migrations")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    service: str
    principal: str
    role: str
    via: str
    action: str
    target: str | None
    method: str
    path: str
    detail: dict[str, Any]
    status: int | None


async def begin(c: asyncpg.Connection, *, service: str, principal: str, role: str, via: str, action: str,
                target: str | None, method: str, path: str, detail: dict[str, Any], address: str | None) -> int:
    return await c.fetchval(
        """INSERT INTO operator_audit (service, principal, role, via, action, target, method, path, detail, address)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) RETURNING id""",
        service, principal, role, via, action, target, method, path, orjson.dumps(detail).decode(), address,
    )


async def finish(c: asyncpg.Connection, entry_id: int, status: int) -> None:
    await c.execute("UPDATE operator_audit SET status = $2, finished_at = now() WHERE id = $1", entry_id, status)


async def entries(c: asyncpg.Connection, limit: int = 200) -> list[AuditEntry]:
    rows = await c.fetch(
        """SELECT id, at, service, principal, role, via, action, target, method, path, detail, status
           FROM operator_audit ORDER BY id DESC LIMIT $1""", limit)
    return [AuditEntry(**{**dict(r), "detail": orjson.loads(r["detail"])}) for r in rows]
