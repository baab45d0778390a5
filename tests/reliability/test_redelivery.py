"""A stage handed messages it has already handled (a crash between its
write and the offset commit) answers exactly what it answered the first time
and counts nothing twice: a settle from what it stored for the claim (a layer
stage's layer, the settlement stage's one-bill), a cancel from the inbox."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from medsettle import layer_repository, topics
from medsettle.contract import SettlementDocument
from medsettle.db import create_pool, migrate
from medsettle.policy import load_policy
from medsettle.settings import ROOT, Settings
from services.basic.app import BasicStage
from services.pipeline import Ledger
from services.settlement import repository as settlement_repository
from services.settlement.app import SettlementStage
from tests.factories import document

POLICY = load_policy(ROOT / "policies" / "340421-2024.yaml")


def record(doc: SettlementDocument, offset: int, topic: str = topics.ELIGIBLE) -> ConsumerRecord:
    value = doc.to_json()
    return ConsumerRecord(topic, 0, offset, 0, 0, doc.person.person_id.encode(), value,
                          None, 0, len(value), ())


@contextlib.asynccontextmanager
async def migrated(stage_type, database_url: str) -> AsyncIterator:  # noqa: ANN001 - a stage class
    """A stage on a schema of its own, dropped afterwards."""
    schema = f"redeliver_{uuid.uuid4().hex[:8]}"
    stage = stage_type(Settings(database_url=database_url))
    stage.pool = await create_pool(database_url, schema, size=2)
    try:
        await migrate(stage.pool, schema, stage.migrations)
        yield stage
    finally:
        async with stage.pool.acquire() as c:
            await c.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await stage.pool.close()


async def test_a_redelivered_batch_is_answered_again_and_counted_once(database_url):
    async with migrated(BasicStage, database_url) as stage:
        first = document(POLICY, a="8000", b="2000", claim_id="H1-2024-A")
        second = document(POLICY, a="3000", claim_id="H1-2024-B")
        cancel = first.model_copy(update={"kind": "cancel", "cancel_reason": "录入错误"})

        settled = await stage.process(topics.ELIGIBLE, [record(first, 0), record(second, 1)])
        reversed_ = await stage.process(topics.ELIGIBLE, [record(cancel, 2)])
        person, year = first.person.person_id, first.claim.year
        after = await stage.accumulator(person, year)

        again = await stage.process(topics.ELIGIBLE, [record(first, 0), record(second, 1), record(cancel, 2)])

        assert [o.value for o in again] == [o.value for o in settled + reversed_]
        assert await stage.accumulator(person, year) == after
        paid = [SettlementDocument.from_json(o.value).layer_amount(stage.layer) for o in settled]
        assert after.inpatient_paid == paid[1] > Decimal("0")  # the first claim was given back, once
        assert orjson.loads(reversed_[0].value)["kind"] == "cancel"
        async with stage.pool.acquire() as c:
            assert await c.fetchval("SELECT count(*) FROM layers") == 2
            assert await c.fetch("SELECT claim_id, status FROM layers ORDER BY claim_id") == [
                ("H1-2024-A", "reversed"), ("H1-2024-B", "settled")]
            assert await c.fetchval("SELECT array_agg(message_id) FROM inbox") == ["cancel:H1-2024-A"]


async def test_the_settlement_stage_answers_a_redelivered_batch_again_and_confirms_once(database_url):
    async with migrated(SettlementStage, database_url) as stage:
        settled = Ledger().settle(POLICY, document(POLICY, a="8000", b="2000", claim_id="H1-2024-C"))
        cancel = settled.model_copy(update={"kind": "cancel", "cancel_reason": "录入错误"})
        records = [record(settled, 0, topics.BACKSTOP), record(cancel, 1, topics.BACKSTOP)]

        first = await stage.process(topics.BACKSTOP, records)
        again = await stage.process(topics.BACKSTOP, records)

        assert [o.value for o in again] == [o.value for o in first]
        assert [orjson.loads(o.value)["status"] for o in first] == ["settled", "reversed"]
        async with stage.pool.acquire() as c:
            assert await c.fetch("SELECT claim_id, status FROM one_bills") == [("H1-2024-C", "reversed")]
            assert await c.fetchval("SELECT array_agg(message_id) FROM inbox") == ["cancel:H1-2024-C"]


def _failing_once(write):
    calls = []

    async def save_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # another consumer changed an accumulator under the batch
            raise asyncpg.SerializationError("accumulators changed under this batch")
        return await write(*args, **kwargs)
    return save_batch


async def test_a_batch_whose_write_failed_is_counted_once_when_it_is_written(database_url, monkeypatch):
    async with migrated(BasicStage, database_url) as basic, migrated(SettlementStage, database_url) as settlement:
        paid_before = REGISTRY.get_sample_value("settlement_layer_yuan_total", {"layer": "basic", "kind": "settled"}) or 0
        bills_before = REGISTRY.get_sample_value("settlement_one_bills_total", {"status": "settled"}) or 0
        claim = document(POLICY, a="8000", b="2000", claim_id="H1-2024-D")
        monkeypatch.setattr(layer_repository, "save_batch", _failing_once(layer_repository.save_batch))
        monkeypatch.setattr(settlement_repository, "save_batch", _failing_once(settlement_repository.save_batch))

        with pytest.raises(asyncpg.SerializationError):
            await basic.process(topics.ELIGIBLE, [record(claim, 0)])
        [out] = await basic.process(topics.ELIGIBLE, [record(claim, 0)])
        settled = Ledger().settle(POLICY, claim)
        with pytest.raises(asyncpg.SerializationError):
            await settlement.process(topics.BACKSTOP, [record(settled, 0, topics.BACKSTOP)])
        await settlement.process(topics.BACKSTOP, [record(settled, 0, topics.BACKSTOP)])

        paid = SettlementDocument.from_json(out.value).layer_amount(basic.layer)
        assert paid > 0
        assert REGISTRY.get_sample_value(
            "settlement_layer_yuan_total", {"layer": "basic", "kind": "settled"}) == pytest.approx(paid_before + float(paid))
        assert REGISTRY.get_sample_value("settlement_one_bills_total", {"status": "settled"}) == bills_before + 1
