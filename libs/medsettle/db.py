"""PostgreSQL through asyncpg: one pool per process, plain-SQL migrations.

Each service owns a schema named after it; its migrations live in its folder
(``services/<name>/migrations/0001_init.sql``, ...) and are applied in order
under an advisory lock, recorded in ``<schema>.schema_migrations``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger()


async def create_pool(url: str, schema: str, *, size: int = 4) -> asyncpg.Pool:
    """A pool whose connections see ``schema`` first on their search path."""
    await ensure_schema(url, schema)
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
        command_timeout=60,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection returned to the pool needs beyond asyncpg's own
    clean-up (which rolls back an open transaction): nothing. asyncpg's
    default also runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, a round trip per batch; no code here keeps a
    session-level lock, cursor, listener or setting past its own block (the
    migration lock is released in a ``finally``; settings are ``SET LOCAL``)."""


async def ensure_schema(url: str, schema: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except asyncpg.UniqueViolationError:
        pass  # created concurrently by another process
    finally:
        await connection.close()


async def migrate(pool: asyncpg.Pool, schema: str, folder: Path) -> list[str]:
    """Apply the ``*.sql`` files of ``folder`` not yet applied; return them."""
    applied: list[str] = []
    lock = zlib.crc32(f"migrate:{schema}".encode())
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            await connection.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await connection.fetch(f'SELECT version FROM "{schema}".schema_migrations')}
            for path in sorted(folder.glob("*.sql")):
                if path.name in done:
                    continue
                async with connection.transaction():
                    await connection.execute(path.read_text(encoding="utf-8"))
                    await connection.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version) VALUES ($1)', path.name
                    )
                applied.append(path.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", lock)
    if applied:
        log.info("migrations_applied", schema=schema, versions=applied)
    return applied


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    TimeoutError,
)
