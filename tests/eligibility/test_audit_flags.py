"""Audit flags after settlement: raised, stored with their reason, listed by the
operator API, and never in the way of the settlement itself."""

import asyncio

from services.eligibility.audit import sampled
from tests.eligibility.conftest import HOSPITALS, SAMPLE_RATE
from tests.factories import claim_body, person_record


def pid(n: int) -> str:
    return f"34042119950101{n:04d}"


async def settle(system, claim: dict) -> None:
    await system.hospital.send(claim)
    answer = await system.hospital.answer(claim["claim_id"])
    assert answer.status == "settled", answer.rejection


async def flags(system, **query) -> list[dict]:
    response = await system.api.get("/audit-flags", params=query)
    assert response.status_code == 200, response.text
    return response.json()["flags"]


async def test_overlapping_stays_at_two_hospitals_are_settled_and_flagged(system):
    person = pid(1)
    await system.pipeline.register(persons=[person_record(person)])
    first = claim_body(a="3000", person_id=person, hospital_code=HOSPITALS["county"],
                       admitted_on="2024-03-01", discharged_on="2024-03-10")
    second = claim_body(a="3000", person_id=person, hospital_code=HOSPITALS["city"],
                        admitted_on="2024-03-05", discharged_on="2024-03-12")
    transfer = claim_body(a="3000", person_id=person, hospital_code=HOSPITALS["township"],
                          admitted_on="2024-03-12", discharged_on="2024-03-20")  # the day the city stay ended
    await asyncio.gather(settle(system, first), settle(system, transfer))  # these two do not overlap
    await settle(system, second)
    [flag] = await flags(system, kind="overlapping_stay", claim_id=second["claim_id"])
    assert flag["related_claim_id"] == first["claim_id"]
    assert "2024-03-05" in flag["reason"] and HOSPITALS["county"] in flag["reason"]
    assert flag["person_id_masked"] == "340421********0001" and flag["claim_status"] == "accepted"
    assert await flags(system, kind="overlapping_stay", claim_id=first["claim_id"]) == []
    assert await flags(system, kind="overlapping_stay", claim_id=transfer["claim_id"]) == []


async def test_a_claim_far_above_the_average_of_its_diagnosis_is_settled_and_flagged(system):
    person = pid(2)
    await system.pipeline.register(persons=[person_record(person)])

    def stay(day: int, amount: str) -> dict:
        body = claim_body(a=amount, person_id=person, hospital_code=HOSPITALS["township"],
                          admitted_on=f"2024-05-{day:02d}", discharged_on=f"2024-05-{day + 1:02d}")
        body["diagnosis_codes"] = ["Z99.901", "I10.x00"]
        return body

    usual = [stay(day, "1000") for day in (1, 3, 5, 7)]
    await asyncio.gather(*(settle(system, claim) for claim in usual))
    early = stay(9, "3500")  # only four claims before it: too few for an average
    await settle(system, early)
    costly = stay(11, "5000")  # 5,000 > 3 × 1,500 (the average of the five before it)
    ordinary = stay(13, "6000")  # 6,000 < 3 × 2,083.33 (the average of six)
    for claim in (costly, ordinary):
        await settle(system, claim)
    [flag] = await flags(system, kind="cost_outlier", claim_id=costly["claim_id"])
    assert "Z99.901" in flag["reason"] and "1500.00" in flag["reason"] and flag["total"] == "5000.00"
    for claim in (*usual, early, ordinary):
        assert await flags(system, kind="cost_outlier", claim_id=claim["claim_id"]) == []


async def test_a_random_sample_of_claims_is_flagged_the_same_way_every_time(system):
    person = pid(3)
    await system.pipeline.register(persons=[person_record(person)])
    drawn = next(f"SAMPLE-{n}" for n in range(10_000) if sampled(f"SAMPLE-{n}", SAMPLE_RATE))
    passed = next(f"SAMPLE-{n}" for n in range(10_000) if not sampled(f"SAMPLE-{n}", SAMPLE_RATE))
    await asyncio.gather(*(settle(system, claim_body(a="200", person_id=person, hospital_code=HOSPITALS["county"],
                                                     visit_type="outpatient", claim_id=claim_id))
                           for claim_id in (drawn, passed)))
    [flag] = await flags(system, kind="random_sample", claim_id=drawn)
    assert "随机抽查" in flag["reason"]
    assert await flags(system, claim_id=passed) == []


async def test_the_flag_listing_refuses_an_unknown_kind(system):
    response = await system.api.get("/audit-flags", params={"kind": "gut_feeling"})
    assert response.status_code == 400
