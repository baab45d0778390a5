"""The registry as eligibility reads it: as of the claim's service date, the
latest message per key, a change applying to claims that arrive after it."""

from decimal import Decimal

from medsettle.contract import RejectionCode
from services.settlement.app import SettlementStage
from tests.eligibility.conftest import HOSPITALS
from tests.factories import claim_body, hospital_record, person_record

COUNTY = HOSPITALS["county"]


def pid(n: int) -> str:
    return f"34042119930101{n:04d}"


async def test_a_category_ending_mid_year_helps_only_stays_discharged_before_it_ends(system):
    person = pid(1)
    await system.pipeline.register(persons=[person_record(person, categories=["subsistence"],
                                                          valid_from="2024-01-01", valid_to="2024-06-30")])
    june = claim_body(a="10000", person_id=person, hospital_code=COUNTY,
                      admitted_on="2024-06-10", discharged_on="2024-06-15")
    july = claim_body(a="10000", person_id=person, hospital_code=COUNTY,
                      admitted_on="2024-07-10", discharged_on="2024-07-15")
    await system.hospital.send(june)
    await system.hospital.send(july)  # in either order: both stay below every annual threshold and cap
    in_june, in_july = await system.hospital.answer(june["claim_id"]), await system.hospital.answer(july["claim_id"])
    assert (in_june.status, in_july.status) == ("settled", "settled")
    # June: subsistence, favoured: deductible 300, 80% → 7,760; assistance 70% of the 2,240 left
    assert (in_june.deductible, in_june.basic, in_june.assistance, in_june.personal) == (
        Decimal("300.00"), Decimal("7760.00"), Decimal("1568.00"), Decimal("672.00"))
    # July: an ordinary resident again: deductible 600, 75% → 7,050; no assistance
    assert (in_july.deductible, in_july.basic, in_july.assistance, in_july.personal) == (
        Decimal("600.00"), Decimal("7050.00"), Decimal("0.00"), Decimal("2950.00"))


async def test_a_category_starting_mid_year_helps_only_stays_discharged_after_it_starts(system):
    person = pid(2)
    await system.pipeline.register(persons=[person_record(person, categories=["extreme_poverty"],
                                                          valid_from="2024-05-01")])
    april = claim_body(a="1000", person_id=person, hospital_code=COUNTY,
                       admitted_on="2024-04-20", discharged_on="2024-04-30")
    may = claim_body(a="1000", person_id=person, hospital_code=COUNTY,
                     admitted_on="2024-04-25", discharged_on="2024-05-01")
    for claim in (april, may):
        await system.hospital.send(claim)
    before, after = await system.hospital.answer(april["claim_id"]), await system.hospital.answer(may["claim_id"])
    assert before.assistance == Decimal("0.00") and before.personal > 0
    assert after.assistance > 0 and after.personal == Decimal("0.00")  # extreme poverty: 100% of what is left


async def test_the_latest_registry_message_wins_for_claims_that_arrive_after_it(system):
    person = pid(3)
    await system.pipeline.register(persons=[person_record(person, blacklisted=True)])
    refused = claim_body(a="100", person_id=person, hospital_code=COUNTY)
    await system.hospital.send(refused)
    answer = await system.hospital.answer(refused["claim_id"])
    assert answer.rejection.code == RejectionCode.BLACKLISTED
    assert "340421********0003" in answer.rejection.message and person not in answer.rejection.message
    await system.pipeline.register(persons=[person_record(person, blacklisted=False)])
    accepted = claim_body(a="100", person_id=person, hospital_code=COUNTY)
    await system.hospital.send(accepted)
    assert (await system.hospital.answer(accepted["claim_id"])).status == "settled"


async def test_a_hospital_suspended_after_a_settlement_keeps_it_and_can_reverse_it_but_settles_no_more(system):
    code = "H3404210150"
    person = pid(4)
    await system.pipeline.register(persons=[person_record(person)], hospitals=[hospital_record(code, "county")])
    before = claim_body(a="2000", person_id=person, hospital_code=code)
    await system.hospital.send(before)
    assert (await system.hospital.answer(before["claim_id"])).status == "settled"

    await system.pipeline.register(hospitals=[hospital_record(code, "county", suspended=True)])
    after = claim_body(a="2000", person_id=person, hospital_code=code, admitted_on="2024-04-01",
                       discharged_on="2024-04-05")
    await system.hospital.send(after)
    refused = await system.hospital.answer(after["claim_id"])
    assert refused.rejection.code == RejectionCode.HOSPITAL_SUSPENDED
    assert code in refused.rejection.message and "联系医保局" in refused.rejection.message

    settlement = system.pipeline.stage(SettlementStage)
    async with settlement.db.acquire() as c:
        assert await c.fetchval("SELECT status FROM one_bills WHERE claim_id = $1", before["claim_id"]) == "settled"
    await system.hospital.send({"type": "cancel", "claim_id": before["claim_id"], "hospital_code": code,
                                "reason": "收费有误"})
    answers = await system.hospital.answers(before["claim_id"], 2)
    assert [a.status for a in answers] == ["settled", "reversed"]
    assert answers[1].basic == answers[0].basic
    async with settlement.db.acquire() as c:
        assert await c.fetchval("SELECT status FROM one_bills WHERE claim_id = $1", before["claim_id"]) == "reversed"
