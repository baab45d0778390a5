"""A layer stage writes a batch in one statement, without a transaction and
without row locks: an accumulator is saved only at the version the batch read.
A consumer still finishing a batch after a rebalance gave its partitions to
another must write nothing at all, and fail so that the batch comes again."""

import uuid
from decimal import Decimal

import asyncpg
import orjson
import pytest

from medsettle import layer_repository as repo
from medsettle.db import INFRASTRUCTURE_ERRORS, create_pool, migrate
from medsettle.layerstage import MIGRATIONS

PERSON, YEAR = "340421199001011234", 2024


def layer(claim_id: str) -> repo.LayerRow:
    return repo.LayerRow(claim_id=claim_id, person_id=PERSON, year=YEAR, policy="340421-2024",
                         amount=Decimal("10.00"), delta={"paid": "10.00"}, output=b"{}", status="settled")


async def test_a_batch_that_read_an_older_accumulator_writes_nothing(database_url):
    schema = f"stale_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema, size=2)
    try:
        await migrate(pool, schema, MIGRATIONS)
        key = (PERSON, YEAR)
        async with pool.acquire() as c:
            _, states, _ = await repo.load_batch(c, [], {key}, ["A"])
            assert states == {}  # a person's first claim of the year: version 0
            await repo.save_batch(c, {key: (b'{"paid": "10.00"}', 0)}, [layer("A")], [], [])

            # a second consumer read the accumulator before the first wrote it
            with pytest.raises(asyncpg.SerializationError, match="accumulators changed under this batch"):
                await repo.save_batch(c, {key: (b'{"paid": "99.00"}', 0)}, [layer("B")], [], [])

            _, states, layers = await repo.load_batch(c, [], {key}, ["A", "B"])
            assert states[key] == ({"paid": "10.00"}, 1)
            assert list(layers) == ["A"]  # B's layer, the answer to its redelivery, was not written
            assert not c.is_in_transaction()

            # read again, it goes through
            await repo.save_batch(c, {key: (b'{"paid": "20.00"}', 1)}, [layer("B")], [], [])
            _, states, _ = await repo.load_batch(c, [], {key}, [])
            assert states[key] == ({"paid": "20.00"}, 2)
            assert orjson.loads(await c.fetchval("SELECT state FROM accumulators")) == {"paid": "20.00"}
    finally:
        async with pool.acquire() as c:
            await c.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()


def test_the_runtime_pauses_and_redelivers_a_stale_batch():
    # handled as an infrastructure failure: the batch is rewound whole, never
    # split record by record or dead-lettered
    assert issubclass(asyncpg.SerializationError, INFRASTRUCTURE_ERRORS)
