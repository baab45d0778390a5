"""Poison messages and hostile input: nothing skipped, nothing stalls."""

import asyncio
import random
from decimal import Decimal

import orjson

from services.insurer.app import SeriousIllnessStage
from services.operations import repository
from services.operations.app import OperationsService
from tests.e2e.conftest import HOSPITALS
from tests.factories import claim_body, person_record


async def test_a_failed_message_is_retried_and_never_skipped_for_a_later_one(pipeline, monkeypatch):
    person = "340421199301010001"
    await pipeline.register(persons=[person_record(person)])
    first = claim_body(a="40000", person_id=person, hospital_code=HOSPITALS["county"])
    second = claim_body(a="40000", person_id=person, hospital_code=HOSPITALS["county"],
                        admitted_on="2024-05-01", discharged_on="2024-05-10")
    stage = pipeline.stage(SeriousIllnessStage)
    real, failures = stage.process, []

    async def flaky(topic, records):
        if any(first["claim_id"].encode() in r.value for r in records) and len(failures) < 2:
            failures.append(1)
            raise RuntimeError("the insurer's disk hiccups")
        return await real(topic, records)

    monkeypatch.setattr(stage, "process", flaky)
    # his.claims is keyed by claim_id: the second claim is sent once the first is
    # failing at the insurer, so it lands behind it on the person's partition.
    await pipeline.hospital.send(first)
    for _ in range(600):
        if failures:
            break
        await asyncio.sleep(0.05)
    await pipeline.hospital.send(second)
    one = await pipeline.hospital.answer(first["claim_id"])
    two = await pipeline.hospital.answer(second["claim_id"])
    assert len(failures) == 2
    # In order: the first burden 10450 stays under 15000, the second crosses it:
    # (20900 - 15000) × 60% = 3540. Had the second gone first, the amounts would be the same
    # but the first one's explanation would show an accumulated base before it.
    assert (one.serious_illness, two.serious_illness) == (Decimal("0.00"), Decimal("3540.00"))
    assert "年度累计 0.00 → 10450.00" in one.layers[1].explanation


async def test_a_message_that_always_fails_goes_to_the_dead_letter_topic_and_the_partition_moves_on(
        pipeline, monkeypatch):
    person = "340421199301010002"
    await pipeline.register(persons=[person_record(person)])
    doomed = claim_body(a="500", person_id=person, hospital_code=HOSPITALS["county"])
    after = claim_body(a="700", person_id=person, hospital_code=HOSPITALS["county"])
    stage = pipeline.stage(SeriousIllnessStage)
    real = stage.process

    async def broken(topic, records):
        if any(doomed["claim_id"].encode() in r.value for r in records):
            raise ValueError("cannot compute this one")
        return await real(topic, records)

    monkeypatch.setattr(stage, "process", broken)
    await pipeline.hospital.send(doomed)
    await pipeline.hospital.send(after)
    assert (await pipeline.hospital.answer(after["claim_id"])).status == "settled"
    letter = await pipeline.hospital.dead_letter(lambda d: doomed["claim_id"] in d["original"])
    assert letter["stage"] == "insurer" and "cannot compute this one" in letter["error"]
    assert letter["topic"] == "settlement.basic"

    # The operator finds it, the fault is mended, the replay settles it.
    operations = pipeline.stage(OperationsService)
    for _ in range(200):
        async with operations.db.acquire() as c:
            kept = [d for d in await repository.listing(c, "new", 100) if doomed["claim_id"] in d["original"]]
        if kept:
            break
        await asyncio.sleep(0.05)
    assert kept and kept[0]["stage"] == "insurer"
    monkeypatch.setattr(stage, "process", real)
    assert await operations.replay(kept[0]["id"], "值班员") is not None
    assert (await pipeline.hospital.answer(doomed["claim_id"])).status == "settled"


def hostile(i: int, rng: random.Random) -> tuple[bytes, str]:
    """A malformed or hostile message; the claim id a rejection would carry."""
    claim_id = f"FUZZ-{i:05d}"
    base = claim_body(a="100", claim_id=claim_id, person_id="340421199301019999", hospital_code=HOSPITALS["county"])
    kind = i % 10
    if kind == 0:
        return rng.randbytes(rng.randint(0, 300)), claim_id
    if kind == 1:
        base["items"][0]["amount"] = rng.choice([1e308, -5, "NaN", "1e999", [], {}, None, True, "12.345"])
    elif kind == 2:
        base[rng.choice(["visit_type", "discharged_on", "items", "type", "person_id"])] = rng.choice([7, None, [], "?"])
    elif kind == 3:
        depth = rng.randint(100, 3000)
        base["diagnosis_codes"] = "NESTED"
        deep = "[" * depth + '"x"' + "]" * depth
        return orjson.dumps(base).replace(b'"NESTED"', deep.encode()), claim_id
    elif kind == 4:
        return orjson.dumps(base).decode().encode("utf-16"), claim_id
    elif kind == 5 and i % 100 == 5:  # a few oversized bills: over 5,000 items
        base["items"] = base["items"] * rng.randint(5001, 6000)
    elif kind == 5:
        base["items"][0]["unit_price"] = "１２.００"  # full-width digits
    elif kind == 6:
        base["items"][0]["quantity"] = str(10 ** rng.randint(20, 400))
    elif kind == 7:
        return orjson.dumps(base)[: rng.randint(1, 200)], claim_id
    elif kind == 8:
        base["items"] = []
    else:
        base["discharged_on"] = "2024-02-30"
    return orjson.dumps(base), claim_id


async def test_ten_thousand_hostile_messages_each_get_a_rejection_or_a_dead_letter(pipeline):
    rng = random.Random(2024)
    person = "340421199301010003"
    await pipeline.register(persons=[person_record(person)])
    sent: dict[str, str] = {}
    for i in range(10_000):
        body, claim_id = hostile(i, rng)
        key = f"fuzz-{i}"
        sent[key] = claim_id
        await pipeline.hospital.producer.send(  # fire and forget; the flush below waits
            "his.claims", body, key=key.encode())
        if i % 2500 == 0:  # meanwhile, a real claim of another person settles correctly
            good = claim_body(a="5000", person_id=person, hospital_code=HOSPITALS["county"],
                              discharged_on=f"2024-0{1 + i // 2500}-10", admitted_on=f"2024-0{1 + i // 2500}-01")
            await pipeline.hospital.send(good)
            sent[f"good-{i}"] = good["claim_id"]
    await pipeline.hospital.producer.flush()

    def accounted() -> int:
        letters = {d["key"] for d in pipeline.hospital.dead_letters if d["key"].startswith("fuzz-")}
        return sum(1 for key, claim_id in sent.items()
                   if key.startswith("fuzz-") and (key in letters or pipeline.hospital.results.get(claim_id)))

    for _ in range(600):
        if accounted() == 10_000:
            break
        await asyncio.sleep(0.2)
    assert accounted() == 10_000
    for key, claim_id in sent.items():
        if key.startswith("good-"):
            bill = await pipeline.hospital.answer(claim_id)
            assert bill.status == "settled" and bill.basic == Decimal("3300.00")  # (5000 - 600) × 75%
