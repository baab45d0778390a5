"""The clearing month query (settlements and reversals by when they happened)
reads the month through the one-bills' indexes on ``settled_at`` and
``reversed_at`` (settlement migration 0004), not the whole table. Real
PostgreSQL; 24 months of one-bills, a few of them reversed."""

from __future__ import annotations

import datetime as dt

from medsettle.db import create_pool, migrate
from medsettle.settings import ROOT
from services.dashboard import clearing
from tests.harness import fresh_database

ROWS = 48_000  # 2,000 a month over 24 months, one in 30 reversed a week later
SPACING = 730 * 24 * 3600 / ROWS  # seconds between two settlements
FILL = f"""
INSERT INTO settlement.one_bills
SELECT 'K' || n, 'H' || (n % 40), 'county', 'P' || (n % 9000), '340421-2024', 'inpatient', DATE '2023-01-01' + n / 2000,
       CASE WHEN n % 30 = 0 THEN 'reversed' ELSE 'settled' END,
       1000, 0, 0, 0, 1000, 0, 600, 100, 0, 0, 700, 300, convert_to(repeat('x', 400), 'UTF8'), NULL,
       TIMESTAMPTZ '2023-01-01 08:00+08' + make_interval(secs => n * {SPACING}),
       CASE WHEN n % 30 = 0
            THEN TIMESTAMPTZ '2023-01-08 08:00+08' + make_interval(secs => n * {SPACING}) END
  FROM generate_series(1, {ROWS}) AS n"""


async def test_the_month_query_reads_the_month_through_the_settled_at_and_reversed_at_indexes(database_url):
    url = await fresh_database(database_url, "clearingidx")
    pools = [await create_pool(url, "settlement", size=1), await create_pool(url, clearing.SCHEMA, size=1)]
    try:
        await migrate(pools[0], "settlement", ROOT / "services" / "settlement" / "migrations")
        await migrate(pools[1], clearing.SCHEMA, clearing.MIGRATIONS)
        async with pools[1].acquire() as c:
            indexes = {r["indexname"]: r["indexdef"] for r in await c.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'settlement' "
                "AND tablename = 'one_bills'")}
            assert "(settled_at)" in indexes["one_bills_settled_at"]
            assert "(reversed_at) WHERE (reversed_at IS NOT NULL)" in indexes["one_bills_reversed_at"]

            await c.execute(FILL)
            await c.execute("ANALYZE settlement.one_bills")
            # the query as open_entries sends it, planned for this month and (a prepared statement
            # run often) for any month: the generic plan
            query = f"{clearing._EVENTS} SELECT e.* FROM e WHERE {clearing._UNCLEARED}"
            march = clearing.month_start(2024, 3)
            await c.execute(f"PREPARE month_events(timestamptz, timestamptz) AS {query}")
            for mode in ("force_custom_plan", "force_generic_plan"):
                await c.execute(f"SET plan_cache_mode = {mode}")
                plan = "\n".join(r[0] for r in await c.fetch(
                    f"EXPLAIN EXECUTE month_events('{march.isoformat()}', '{clearing.next_month(march).isoformat()}')"))
                assert "Index Scan using one_bills_settled_at" in plan or \
                    "Bitmap Index Scan on one_bills_settled_at" in plan, (mode, plan)
                assert "one_bills_reversed_at" in plan, (mode, plan)
                assert "Seq Scan on one_bills" not in plan, (mode, plan)
            await c.execute("RESET plan_cache_mode")
            rows = await c.fetch(query, march, clearing.next_month(march))
            settled = [r for r in rows if r["event"] == "settled"]
            assert 1900 <= len(settled) <= 2100 and 50 <= len(rows) - len(settled) <= 90, len(rows)
            assert all(march <= r["at"] < clearing.next_month(march) for r in rows)
    finally:
        for pool in pools:
            await pool.close()
