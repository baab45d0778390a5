"""The whole pipeline on a real broker and real PostgreSQL."""

from decimal import Decimal

from services.assistance.app import AssistanceStage
from services.basic.app import BasicStage
from services.insurer.app import SeriousIllnessStage
from tests.e2e.conftest import HOSPITALS
from tests.factories import claim_body, person_record


def pid(n: int) -> str:
    return f"3404211990{n:08d}"[:18]


async def test_worked_example_1_settles_end_to_end(pipeline):
    person = pid(101)
    await pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="8000", b="2000", c="500", person_id=person, hospital_code=HOSPITALS["county"])
    await pipeline.hospital.send(claim)
    bill = await pipeline.hospital.answer(claim["claim_id"])
    assert bill.status == "settled"
    assert bill.policy == "340421-2024"
    assert bill.person_id_masked == "340421********0101"[:18] or bill.person_id_masked.startswith("340421")
    assert (bill.total, bill.compliant, bill.deductible, bill.basic, bill.personal) == (
        Decimal("10500.00"), Decimal("9800.00"), Decimal("600.00"), Decimal("6900.00"), Decimal("3600.00"))
    assert [d.amount for d in bill.fund_details] == [Decimal("6900.00"), 0, 0, 0]
    assert [layer.layer.value for layer in bill.layers] == ["basic", "serious_illness", "assistance", "backstop"]


async def test_worked_example_2_settles_end_to_end(pipeline):
    person = pid(102)
    await pipeline.register(persons=[person_record(person, categories=["poverty_registered", "subsistence"])])
    claim = claim_body(a="150000", b="50000", c="10000", person_id=person, hospital_code=HOSPITALS["province"],
                       referral=True)
    await pipeline.hospital.send(claim)
    bill = await pipeline.hospital.answer(claim["claim_id"])
    assert bill.status == "settled"
    assert (bill.basic, bill.serious_illness, bill.assistance, bill.backstop, bill.personal) == (
        Decimal("116550.00"), Decimal("48212.50"), Decimal("21166.25"), Decimal("0.00"), Decimal("24071.25"))
    assert bill.fund_total == Decimal("185928.75")


async def test_a_claim_sent_twice_is_answered_twice_and_counted_once(pipeline):
    person = pid(103)
    await pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="5000", person_id=person, hospital_code=HOSPITALS["county"])
    await pipeline.hospital.send(claim)
    first = await pipeline.hospital.answer(claim["claim_id"])
    await pipeline.hospital.send(claim)
    answers = await pipeline.hospital.answers(claim["claim_id"], 2)
    assert [a.status for a in answers] == ["settled", "settled"]
    assert answers[1].basic == first.basic == Decimal("3300.00")  # (5000 - 600) × 75%
    basic = await pipeline.accumulator(BasicStage, person)
    assert basic.inpatient_paid == Decimal("3300.00")
    assert basic.admissions == {"county": Decimal(1)}


async def test_two_admissions_together_cross_the_serious_illness_threshold(pipeline):
    person = pid(104)
    await pipeline.register(persons=[person_record(person)])
    # Each admission: compliant 40,000 at a county hospital:
    # basic (40000 - 600) × 75% = 29550; burden 10450. Together 20900 > 15000.
    first = claim_body(a="40000", person_id=person, hospital_code=HOSPITALS["county"])
    second = claim_body(a="40000", person_id=person, hospital_code=HOSPITALS["county"], discharged_on="2024-05-10",
                        admitted_on="2024-05-01")
    await pipeline.hospital.send(first)
    one = await pipeline.hospital.answer(first["claim_id"])
    await pipeline.hospital.send(second)
    two = await pipeline.hospital.answer(second["claim_id"])
    assert one.serious_illness == Decimal("0.00")
    # accumulated 20900, above threshold 5900, × 60% = 3540
    assert two.serious_illness == Decimal("3540.00")
    insurer = await pipeline.accumulator(SeriousIllnessStage, person)
    assert insurer.base == Decimal("20900.00") and insurer.paid == Decimal("3540.00")


async def test_a_person_in_several_categories_gets_the_most_favourable_assistance(pipeline):
    person = pid(105)
    await pipeline.register(persons=[person_record(person, categories=["monitored", "extreme_poverty"])])
    claim = claim_body(a="3000", person_id=person, hospital_code=HOSPITALS["township"])
    await pipeline.hospital.send(claim)
    bill = await pipeline.hospital.answer(claim["claim_id"])
    # extreme poverty is favoured: township deductible 200 halved to 100, ratio 85+5 = 90%
    # basic (3000 - 100) × 90% = 2610; left 390; serious illness 0 (below 7,500);
    # assistance: extreme poverty 100% of 390 = 390 (monitored would give 50%)
    assert (bill.basic, bill.serious_illness, bill.assistance, bill.personal) == (
        Decimal("2610.00"), Decimal("0.00"), Decimal("390.00"), Decimal("0.00"))
    assert "特困供养人员" in bill.layers[2].explanation
    assert (await pipeline.accumulator(AssistanceStage, person)).paid == Decimal("390.00")


async def test_a_claim_of_the_second_region_settles_by_its_own_policy(pipeline):
    person = "150902198001010011"
    await pipeline.register(persons=[person_record(person, region="150900")])
    claim = claim_body(a="50000", person_id=person, hospital_code="H1509000001")
    await pipeline.hospital.send(claim)
    bill = await pipeline.hospital.answer(claim["claim_id"])
    assert bill.policy == "150900-2024"
    # county: deductible 600, 70% to 30,000 above it, 75% beyond:
    # 30000 × 70% + 19400 × 75% = 21000 + 14550 = 35550
    assert bill.basic == Decimal("35550.00")
    assert "未实行政府兜底" in bill.layers[3].explanation


async def test_a_trial_settlement_commits_nothing(pipeline):
    person = pid(106)
    await pipeline.register(persons=[person_record(person)])
    trial = claim_body(a="5000", person_id=person, hospital_code=HOSPITALS["county"], kind="trial")
    await pipeline.hospital.send(trial)
    bill = await pipeline.hospital.answer(trial["claim_id"])
    assert bill.status == "trial" and bill.basic == Decimal("3300.00")
    assert (await pipeline.accumulator(BasicStage, person)).inpatient_paid == 0
    real = dict(trial, type="settle")
    await pipeline.hospital.send(real)
    answers = await pipeline.hospital.answers(trial["claim_id"], 2)
    assert answers[-1].status == "settled" and answers[-1].basic == Decimal("3300.00")


async def test_a_reversal_restores_every_accumulator_and_repeats_the_amounts(pipeline):
    person = pid(107)
    await pipeline.register(persons=[person_record(person, categories=["subsistence"])])
    claim = claim_body(a="60000", person_id=person, hospital_code=HOSPITALS["city"], referral=True)
    await pipeline.hospital.send(claim)
    settled = await pipeline.hospital.answer(claim["claim_id"])
    assert settled.serious_illness > 0 and settled.assistance > 0
    await pipeline.hospital.send({"type": "cancel", "claim_id": claim["claim_id"],
                                  "hospital_code": claim["hospital_code"], "reason": "患者要求撤销"})
    answers = await pipeline.hospital.answers(claim["claim_id"], 2)
    reversed_ = answers[-1]
    assert reversed_.status == "reversed"
    assert reversed_.model_dump(exclude={"status", "settled_at"}) == settled.model_dump(exclude={"status", "settled_at"})
    assert (await pipeline.accumulator(BasicStage, person)).inpatient_paid == 0
    insurer = await pipeline.accumulator(SeriousIllnessStage, person)
    assert (insurer.base, insurer.paid) == (0, 0)
    assert (await pipeline.accumulator(AssistanceStage, person)).paid == 0
