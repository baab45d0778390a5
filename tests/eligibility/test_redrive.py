"""Stuck claims: an accepted claim no stage has answered is driven again
from eligibility's records in PostgreSQL, the source of truth, whatever the
broker lost."""

import asyncio
from decimal import Decimal

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from medsettle import topics
from services.basic.app import BasicStage
from services.eligibility import repository as repo
from services.eligibility.app import EligibilityStage
from services.eligibility.redrive import unread
from tests.eligibility.conftest import HOSPITALS
from tests.factories import claim_body, person_record

COUNTY = HOSPITALS["county"]


def pid(n: int) -> str:
    return f"34042119950101{n:04d}"


async def test_a_claim_the_broker_lost_settles_when_redriven_and_an_unreadable_row_holds_up_nothing(system):
    person = pid(1)
    await system.pipeline.register(persons=[person_record(person)])
    # held for review, then marked accepted behind the broker's back: as if the
    # approval was committed and its message to the layers was lost
    lost = claim_body(a="1000", person_id=person, hospital_code=COUNTY, injury=True)
    await system.hospital.send(lost)
    assert (await system.hospital.answer(lost["claim_id"])).status == "pending_review"
    async with system.stage.db.acquire() as c:
        await c.execute(
            "UPDATE claims SET status = 'accepted', updated_at = now() - interval '10 minutes' WHERE claim_id = $1",
            lost["claim_id"])
        await c.execute(
            """INSERT INTO claims (claim_id, hospital_code, person_id, content_hash, status, document, updated_at)
               VALUES ('REDRIVE-UNREADABLE', $1, $2, 'x', 'accepted', $3, now() - interval '11 minutes')""",
            COUNTY, person, orjson.dumps({"not": "a document"}))

    await system.stage.redrive_stuck()

    answers = await system.hospital.answers(lost["claim_id"], 2)
    assert answers[-1].status == "settled" and answers[-1].basic == Decimal("300.00")  # (1000 - 600) × 75%
    async with system.stage.db.acquire() as c:
        redrives = dict(await c.fetch(
            "SELECT claim_id, redrives FROM claims WHERE claim_id = any($1::text[])",
            [lost["claim_id"], "REDRIVE-UNREADABLE"]))
        await c.execute("DELETE FROM claims WHERE claim_id = 'REDRIVE-UNREADABLE'")
    assert redrives == {lost["claim_id"]: 1, "REDRIVE-UNREADABLE": 1}
    # driven again, the settled claim is not counted twice
    assert await system.stage.redrive_stuck() == 0


async def test_two_rounds_at_once_never_take_the_same_stuck_claim(system):
    """As two eligibility processes (or a round called beside the periodic
    one) would: each stuck claim is taken, and counted driven again, once."""
    person = pid(9)
    ids = [f"REDRIVE-TWICE-{n:03d}" for n in range(100)]
    async with system.stage.db.acquire() as c:
        await c.executemany(
            """INSERT INTO claims (claim_id, hospital_code, person_id, content_hash, status, document, updated_at)
               VALUES ($1, $2, $3, 'x', 'accepted', $4, now() - interval '11 minutes')""",
            [(claim_id, COUNTY, person, orjson.dumps({"not": "a document"})) for claim_id in ids])
    try:
        async with system.stage.db.acquire() as a, system.stage.db.acquire() as b, system.stage.db.acquire() as d:
            taken = await asyncio.gather(*(repo.take_stuck_claims(c, 60, limit=40) for c in (a, b, d)))
        mine = [s.claim_id for round_ in taken for s in round_ if s.claim_id in ids]
        assert len(mine) == len(set(mine))
        async with system.stage.db.acquire() as c:
            counted = dict(await c.fetch("SELECT claim_id, redrives FROM claims WHERE claim_id = any($1::text[])", ids))
            # the periodic round may have taken some first; none was taken twice, none left behind
            assert set(counted.values()) == {1}, counted
            assert not [s for s in await repo.stuck_claims(c, 60) if s.claim_id in ids]
    finally:
        async with system.stage.db.acquire() as c:
            await c.execute("DELETE FROM claims WHERE claim_id = any($1::text[])", ids)


async def answered(system, claim_id: str, answer: str, attempt: int = 0) -> None:
    """Wait until eligibility has read the stages' answer too (its own lane of his.settlements)."""
    for _ in range(200):
        async with system.stage.db.acquire() as c:
            if await c.fetchval("SELECT 1 FROM answers WHERE (claim_id, attempt, answer) = ($1, $2, $3)",
                                claim_id, attempt, answer):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"eligibility never read the {answer} answer to {claim_id}")


async def settled(system, person: str):  # noqa: ANN201
    """A claim of 2,000 yuan settled for ``person``, its answer read by eligibility too: (claim, answer)."""
    await system.pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="2000", person_id=person, hospital_code=COUNTY)
    await system.hospital.send(claim)
    first = await system.hospital.answer(claim["claim_id"])
    assert first.status == "settled"
    await answered(system, claim["claim_id"], "settled")
    return claim, first


async def test_a_settled_claim_whose_answer_was_lost_is_driven_again_and_answered_from_what_the_stages_stored(system):
    person = pid(2)
    claim, first = await settled(system, person)
    basic = await system.pipeline.accumulator(BasicStage, person)
    async with system.stage.db.acquire() as c:
        await c.execute("UPDATE claims SET updated_at = now() - interval '10 minutes' WHERE claim_id = $1",
                        claim["claim_id"])
        assert claim["claim_id"] not in [s.claim_id for s in await repo.stuck_claims(c, 60)]  # answered
        # as if the broker had lost the answer before eligibility read it
        await c.execute("DELETE FROM answers WHERE claim_id = $1", claim["claim_id"])
        assert claim["claim_id"] in [s.claim_id for s in await repo.stuck_claims(c, 60)]

    await system.stage.redrive_stuck()
    again = await system.hospital.answers(claim["claim_id"], 2)
    assert again[-1].model_dump(exclude={"settled_at"}) == first.model_dump(exclude={"settled_at"})
    await answered(system, claim["claim_id"], "settled")
    async with system.stage.db.acquire() as c:
        await c.execute("UPDATE claims SET redriven_at = NULL WHERE claim_id = $1", claim["claim_id"])
    assert await system.stage.redrive_stuck() == 0
    assert await system.pipeline.accumulator(BasicStage, person) == basic  # counted once


async def test_a_failed_claim_is_never_redriven_and_one_whose_answer_is_lost_is_failed_again_not_settled(
        system, monkeypatch):
    from services.settlement.app import SettlementStage
    from services.settlement.onebill import check_invariants

    person = pid(3)
    await system.pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="2000", person_id=person, hospital_code=COUNTY)
    monkeypatch.setattr(SettlementStage, "check", staticmethod(
        lambda bill, document: ["test-only broken invariant"] if document.claim.claim_id == claim["claim_id"]
        else check_invariants(bill, document)))
    await system.hospital.send(claim)
    failed = await system.hospital.answer(claim["claim_id"])
    assert failed.rejection.code.value == "SETTLEMENT_FAILED"
    monkeypatch.undo()
    basic = await system.pipeline.accumulator(BasicStage, person)
    assert basic.inpatient_paid == Decimal("0.00")
    await answered(system, claim["claim_id"], "failed")
    async with system.stage.db.acquire() as c:
        await c.execute("UPDATE claims SET updated_at = now() - interval '10 minutes' WHERE claim_id = $1",
                        claim["claim_id"])
        assert claim["claim_id"] not in [s.claim_id for s in await repo.stuck_claims(c, 60)]
        # as if the compensation, or its answer, had been lost on its way
        await c.execute("DELETE FROM answers WHERE claim_id = $1", claim["claim_id"])
    assert await system.stage.redrive_stuck() == 1
    again = await system.hospital.answers(claim["claim_id"], 2)
    assert again[-1].model_dump(exclude={"settled_at"}) == failed.model_dump(exclude={"settled_at"})
    await answered(system, claim["claim_id"], "failed")
    async with system.stage.db.acquire() as c:
        await c.execute("UPDATE claims SET redriven_at = NULL WHERE claim_id = $1", claim["claim_id"])
    assert await system.stage.redrive_stuck() == 0  # answered: never again
    assert await system.pipeline.accumulator(BasicStage, person) == basic  # taken back once, not twice


async def test_no_claim_is_stuck_until_the_answers_published_before_the_round_are_recorded(system):
    """After a restart eligibility's reader of his.settlements starts behind: a claim whose answer is on
    the topic but not yet recorded is not stuck. The stage's own rounds (every STUCK_CHECK_SECONDS) take
    the topic's end offsets and wait for the recorded reading to reach them; only then is a claim still
    without an answer driven again."""
    person = pid(4)
    claim, first = await settled(system, person)
    end = await system.stage.end_offsets(topics.SETTLEMENTS)
    async with system.stage.db.acquire() as c:
        read = await repo.answer_offsets(c)
        assert unread(end, read) == {}  # the reading is recorded with the answers, up to the topic's end
        await c.execute("UPDATE claims SET updated_at = now() - interval '10 minutes' WHERE claim_id = $1",
                        claim["claim_id"])
        # as if the reader had not got to the answer yet: neither it nor how far it read is recorded, nor
        # committed (the group's commits count as read as well)
        await c.execute("DELETE FROM answers WHERE claim_id = $1", claim["claim_id"])
        await c.execute("UPDATE answer_offsets SET next_offset = 0")
    committed = await system.stage.committed_offsets(topics.SETTLEMENTS)
    assert unread(end, committed) == {}  # what the lane handled, it committed
    await commit(system, {p: 0 for p in committed})

    await asyncio.sleep(system.stage.settings.stuck_check_seconds + 2)  # a round has looked, and waits
    async with system.stage.db.acquire() as c:
        assert await c.fetchval("SELECT redrives FROM claims WHERE claim_id = $1", claim["claim_id"]) == 0
        # the reader gets there (the answer lost meanwhile, say): now the claim is known to be stuck
        await c.executemany("UPDATE answer_offsets SET next_offset = $2 WHERE partition = $1", list(read.items()))
    again = await system.hospital.answers(claim["claim_id"], 2)
    assert again[-1].model_dump(exclude={"settled_at"}) == first.model_dump(exclude={"settled_at"})
    await answered(system, claim["claim_id"], "settled")
    async with system.stage.db.acquire() as c:
        assert await c.fetchval("SELECT redrives FROM claims WHERE claim_id = $1", claim["claim_id"]) == 1
    await commit(system, committed)


async def test_after_the_upgrade_that_began_answer_offsets_the_group_commits_count_as_read(system):
    """``answer_offsets`` began empty (migration 0006) on a system whose reader had long read every answer:
    a partition no answer came on since has no row, and only the group's commits say it is read."""
    person = pid(5)
    await settled(system, person)
    async with system.stage.db.acquire() as c:
        kept = await repo.answer_offsets(c)
        await c.execute("DELETE FROM answer_offsets")
    try:
        assert await system.stage.answers_recorded()
    finally:
        async with system.stage.db.acquire() as c:
            await c.executemany("INSERT INTO answer_offsets (partition, next_offset) VALUES ($1, $2)",
                                list(kept.items()))


async def commit(system, offsets: dict[int, int]) -> None:
    """Commit these offsets of his.settlements for eligibility's group, as its lane would."""
    consumer = system.pipeline.runtime(EligibilityStage).lanes[topics.SETTLEMENTS].consumer
    await consumer.commit({TopicPartition(topics.SETTLEMENTS, p): OffsetAndMetadata(o, "") for p, o in offsets.items()})
