"""Money at the edges, on the running pipeline (real broker, real PostgreSQL):
reversals in any order, answers that stand, trials, withdrawn reviews, the
`x` of an identity number, and failures answered SETTLEMENT_FAILED with
every accumulator unchanged (issue 16)."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from medsettle.contract import RejectionCode, not_found_message
from services.assistance.app import AssistanceStage
from services.backstop.app import BackstopStage
from services.basic.app import BasicStage
from services.eligibility import repository as eligibility_repo
from services.eligibility.app import EligibilityStage
from services.insurer.app import SeriousIllnessStage
from services.settlement.app import SettlementStage
from services.settlement.onebill import check_invariants
from tests.e2e.conftest import HOSPITALS
from tests.factories import claim_body, hospital_record, person_record
from tests.unit.money_model import MemoryPipeline

D = Decimal
COUNTY = HOSPITALS["county"]
LAYERS = (BasicStage, SeriousIllnessStage, AssistanceStage, BackstopStage)


def pid(n: int) -> str:
    return f"34042119950101{n:04d}"


async def accumulators(pipeline, person):
    return [await pipeline.accumulator(kind, person) for kind in LAYERS]


async def settle(pipeline, body):
    await pipeline.hospital.send(body)
    return await pipeline.hospital.answer(body["claim_id"])


async def next_answer(pipeline, body, count):
    await pipeline.hospital.send(body)
    return (await pipeline.hospital.answers(body["claim_id"], count))[-1]


def same(a, b) -> bool:
    return a.model_dump(exclude={"settled_at"}) == b.model_dump(exclude={"settled_at"})


async def test_after_the_first_of_three_claims_is_reversed_the_fourth_evens_serious_illness_out(pipeline):
    person = pid(1)
    await pipeline.register(persons=[person_record(person)])
    claims = [claim_body(a="40000", person_id=person, hospital_code=COUNTY) for _ in range(4)]
    bills = [await settle(pipeline, c) for c in claims[:3]]
    assert [b.serious_illness for b in bills] == [D("0.00"), D("3540.00"), D("6270.00")]
    cancel = {"type": "cancel", "claim_id": claims[0]["claim_id"], "hospital_code": COUNTY}
    assert (await next_answer(pipeline, cancel, 2)).status == "reversed"
    fourth = await settle(pipeline, claims[3])
    # F(31350) = 9810, already paid 9810 on claims 2 and 3 (the old rule paid 6270 more)
    assert fourth.serious_illness == D("0.00")
    insurer = await pipeline.accumulator(SeriousIllnessStage, person)
    assert (insurer.base, insurer.paid) == (D("31350.00"), D("9810.00"))


async def test_a_settled_claim_resent_after_its_hospital_is_suspended_or_coverage_withdrawn_gets_its_bill(pipeline):
    person, hospital = pid(2), "H3404210077"
    await pipeline.register(persons=[person_record(person)], hospitals=[hospital_record(hospital, "county")])
    claim = claim_body(a="8000", b="2000", c="500", person_id=person, hospital_code=hospital)
    bill = await settle(pipeline, claim)
    assert bill.status == "settled" and bill.basic == D("6900.00")
    before = await accumulators(pipeline, person)
    await pipeline.register(hospitals=[hospital_record(hospital, "county", suspended=True)])
    assert same(await next_answer(pipeline, claim, 2), bill)
    await pipeline.register(persons=[person_record(person, paid_years=())])
    assert same(await next_answer(pipeline, claim, 3), bill)
    assert await accumulators(pipeline, person) == before
    # a new claim is refused now; a cancel of the settled one still reverses it, and its resend stays reversed
    fresh = claim_body(a="100", person_id=person, hospital_code=hospital)
    assert (await settle(pipeline, fresh)).rejection.code == RejectionCode.HOSPITAL_SUSPENDED
    cancel = {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": hospital}
    reversal = await next_answer(pipeline, cancel, 4)
    assert reversal.status == "reversed" and reversal.fund_total == bill.fund_total
    assert same(await next_answer(pipeline, claim, 5), reversal)


async def test_trials_then_the_settle_under_the_same_claim_id(pipeline):
    person = pid(3)
    await pipeline.register(persons=[person_record(person)])
    await settle(pipeline, claim_body(a="40000", person_id=person, hospital_code=COUNTY))  # base 10450
    claim = claim_body(a="40000", person_id=person, hospital_code=COUNTY)
    before = await accumulators(pipeline, person)
    first = await next_answer(pipeline, {**claim, "type": "trial"}, 1)
    second = await next_answer(pipeline, {**claim, "type": "trial"}, 2)
    assert first.status == second.status == "trial"
    assert same(first, second)  # a trial never sees itself, nor the trial before it
    assert first.serious_illness == D("3540.00")  # F(20900) - 0
    assert await accumulators(pipeline, person) == before
    settled = await next_answer(pipeline, claim, 3)
    assert settled.status == "settled"
    assert [settled.basic, settled.serious_illness, settled.fund_total] == [
        first.basic, first.serious_illness, first.fund_total]
    late = await next_answer(pipeline, {**claim, "type": "trial"}, 4)
    assert late.rejection.code == RejectionCode.DUPLICATE_CLAIM


async def test_a_cancel_of_a_claim_in_review_withdraws_it(pipeline):
    person = pid(4)
    await pipeline.register(persons=[person_record(person)])
    claim = claim_body(a="1000", person_id=person, hospital_code=COUNTY, injury=True)
    assert (await settle(pipeline, claim)).status == "pending_review"
    stage = pipeline.stage(EligibilityStage)
    assert claim["claim_id"] in [r.claim_id for r in (await stage.pending_reviews())[1]]
    cancel = {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": COUNTY, "reason": "患者转院"}
    withdrawn = await next_answer(pipeline, cancel, 2)
    assert withdrawn.status == "reversed"
    assert {getattr(withdrawn, f) for f in ("total", "compliant", "basic", "serious_illness", "assistance",
                                           "backstop", "fund_total", "personal")} == {D("0.00")}
    assert claim["claim_id"] not in [r.claim_id for r in (await stage.pending_reviews())[1]]
    assert same(await next_answer(pipeline, cancel, 3), withdrawn)
    assert same(await next_answer(pipeline, claim, 4), withdrawn)  # the settle's latest answer, too
    assert (await accumulators(pipeline, person))[0].inpatient_paid == D("0.00")


async def test_an_identity_number_ending_in_a_small_x_is_the_person_with_a_capital_x(pipeline):
    person = "34042119900101123X"
    await pipeline.register(persons=[person_record(person)])
    bill = await settle(pipeline, claim_body(a="8000", b="2000", c="500", person_id=person[:-1] + "x",
                                             hospital_code=COUNTY))
    assert bill.status == "settled" and bill.basic == D("6900.00")
    assert bill.person_id_masked == "340421********123X"
    assert (await pipeline.accumulator(BasicStage, person)).inpatient_paid == D("6900.00")


async def _failed_and_counted_nowhere(pipeline, person, claim, before):
    answer = await pipeline.hospital.answer(claim["claim_id"])
    assert answer.status == "rejected" and answer.rejection.code == RejectionCode.SETTLEMENT_FAILED
    assert "同一单据号重新提交" in answer.rejection.message
    letter = await pipeline.hospital.dead_letter(lambda d: claim["claim_id"] in d["original"]
                                                 and d["error"].startswith("settlement failed"))
    assert letter["stage"] == "settlement"
    assert await accumulators(pipeline, person) == before
    await _answer_recorded(pipeline, claim)
    return letter


async def _answer_recorded(pipeline, claim):
    async with pipeline.stage(EligibilityStage).db.acquire() as c:
        for _ in range(200):  # once eligibility has read the answer too: nothing to drive again
            if claim["claim_id"] not in [s.claim_id for s in await eligibility_repo.stuck_claims(c, 0)]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{claim['claim_id']} would be driven again")


async def test_a_one_bill_that_breaks_an_invariant_is_answered_settlement_failed_and_counted_nowhere(
        pipeline, monkeypatch):
    person = pid(5)
    await pipeline.register(persons=[person_record(person, categories=["poverty_registered"])])
    await settle(pipeline, claim_body(a="90000", person_id=person, hospital_code=COUNTY))
    before = await accumulators(pipeline, person)
    claim = claim_body(a="60000", b="3000", person_id=person, hospital_code=HOSPITALS["city"])

    def broken(bill, document):  # a test-only invariant that this claim's one-bill breaks
        if document.claim.claim_id == claim["claim_id"]:
            return ["test-only invariant: this one-bill is refused"]
        return check_invariants(bill, document)

    monkeypatch.setattr(SettlementStage, "check", staticmethod(broken))
    await pipeline.hospital.send(claim)
    letter = await _failed_and_counted_nowhere(pipeline, person, claim, before)
    assert "test-only invariant" in letter["error"]
    monkeypatch.setattr(SettlementStage, "check", staticmethod(check_invariants))
    again = await next_answer(pipeline, claim, 2)  # sent again later: settles normally
    assert again.status == "settled" and again.fund_total > 0
    basic = await pipeline.accumulator(BasicStage, person)
    assert basic.inpatient_paid == before[0].inpatient_paid + again.basic
    assert basic.admissions == {"county": D(1), "city": D(1)}
    assert same(await next_answer(pipeline, claim, 3), again)


async def test_a_claim_a_layer_cannot_handle_is_answered_settlement_failed_and_basic_takes_back_its_count(
        pipeline, monkeypatch):
    person = pid(6)
    await pipeline.register(persons=[person_record(person)])
    await settle(pipeline, claim_body(a="40000", person_id=person, hospital_code=COUNTY))
    before = await accumulators(pipeline, person)
    insurer = pipeline.stage(SeriousIllnessStage)
    monkeypatch.setattr(insurer.policies, "by_id", lambda policy_id: None)  # the insurer lost its policy files
    claim = claim_body(a="40000", person_id=person, hospital_code=COUNTY)
    await pipeline.hospital.send(claim)
    letter = await _failed_and_counted_nowhere(pipeline, person, claim, before)
    assert "serious_illness: policy 340421-2024 is not loaded" in letter["error"]
    monkeypatch.undo()
    again = await next_answer(pipeline, claim, 2)
    assert again.status == "settled" and again.serious_illness == D("3540.00")
    assert (await pipeline.accumulator(BasicStage, person)).admissions == {"county": D(2)}


async def test_a_claim_resent_before_eligibility_has_read_its_settlement_failed_answer_fails_again(
        pipeline, monkeypatch):
    """Eligibility knows a failure only from the answer it reads on his.settlements: until then a resend
    is sent on as the same attempt, and the settlement stage, which keeps the failure, answers it with
    the compensation again (however the invariant stands now); counted nowhere, then settled afresh."""
    person = pid(7)
    await pipeline.register(persons=[person_record(person)])
    await settle(pipeline, claim_body(a="40000", person_id=person, hospital_code=COUNTY))
    before = await accumulators(pipeline, person)
    claim = claim_body(a="40000", person_id=person, hospital_code=COUNTY)
    monkeypatch.setattr(SettlementStage, "check", staticmethod(
        lambda bill, document: ["test-only invariant"] if document.claim.claim_id == claim["claim_id"]
        else check_invariants(bill, document)))
    await pipeline.hospital.send(claim)
    await _failed_and_counted_nowhere(pipeline, person, claim, before)
    first = (await pipeline.hospital.answers(claim["claim_id"], 1))[-1]
    monkeypatch.undo()
    async with pipeline.stage(EligibilityStage).db.acquire() as c:  # as if eligibility had not read it yet
        await c.execute("DELETE FROM answers WHERE claim_id = $1", claim["claim_id"])
    again = await next_answer(pipeline, claim, 2)
    assert again.rejection.code == RejectionCode.SETTLEMENT_FAILED and same(again, first)
    assert await accumulators(pipeline, person) == before
    await _answer_recorded(pipeline, claim)
    settled = await next_answer(pipeline, claim, 3)
    assert settled.status == "settled" and settled.serious_illness == D("3540.00")
    assert (await pipeline.accumulator(BasicStage, person)).admissions == {"county": D(2)}


async def test_a_cancel_before_eligibility_has_read_the_settlement_failed_answer_is_answered_claim_not_found(
        pipeline, monkeypatch):
    """A cancel eligibility takes for an attempt in flight goes on to the layers, which the compensation
    has already taken back: each passes it on counting nothing, and the settlement stage, which keeps the
    failure, answers it CLAIM_NOT_FOUND, as eligibility does once it has read the answer. No accumulator
    moves. Once eligibility reads the answer, a cancel finds nothing there too and a resend settles."""
    person = pid(8)
    await pipeline.register(persons=[person_record(person)])
    await settle(pipeline, claim_body(a="40000", person_id=person, hospital_code=COUNTY))
    before = await accumulators(pipeline, person)
    claim = claim_body(a="40000", person_id=person, hospital_code=COUNTY)
    claim_id = claim["claim_id"]
    monkeypatch.setattr(SettlementStage, "check", staticmethod(
        lambda bill, document: ["test-only invariant"] if document.claim.claim_id == claim_id
        else check_invariants(bill, document)))
    await pipeline.hospital.send(claim)
    await _failed_and_counted_nowhere(pipeline, person, claim, before)
    monkeypatch.undo()
    stage = pipeline.stage(EligibilityStage)
    async with stage.db.acquire() as c:  # as if eligibility had not read the answer yet
        await c.execute("DELETE FROM answers WHERE claim_id = $1", claim_id)
    cancel = {"type": "cancel", "claim_id": claim_id, "hospital_code": COUNTY, "reason": "患者退费"}
    not_found = await next_answer(pipeline, cancel, 2)
    assert not_found.status == "rejected" and not_found.rejection.code == RejectionCode.CLAIM_NOT_FOUND
    assert not_found.rejection.message == not_found_message(claim_id, COUNTY)
    assert await accumulators(pipeline, person) == before
    assert await stage.answers_recorded()  # eligibility has read every answer so far, this one too ...
    async with stage.db.acquire() as c:  # ... which says nothing of the attempt: not read as its reversal
        assert not await c.fetch("SELECT 1 FROM answers WHERE claim_id = $1", claim_id)
        # eligibility reads the SETTLEMENT_FAILED answer now, as its lane of his.settlements does
        await eligibility_repo.record_answers(c, [(claim_id, 0, "failed")], {})
    assert same(await next_answer(pipeline, cancel, 3), not_found)  # now eligibility's own answer, the same
    settled = await next_answer(pipeline, claim, 4)
    assert settled.status == "settled" and settled.serious_illness == D("3540.00")
    assert (await pipeline.accumulator(BasicStage, person)).admissions == {"county": D(2)}
    assert same(await next_answer(pipeline, claim, 5), settled)


async def drive_sequence(pipeline, model: MemoryPipeline, person: str, rng: random.Random,
                         hospitals: dict[str, str], dates: tuple[str, ...] = ()) -> list:
    """One person's seeded sequence of ten claims, trials, cancels and resends, sent to the running pipeline
    and to the pure decisions in memory (``model``, registered alike): the same answers and, after every
    message, the same accumulators. ``dates``: service dates drawn for each claim (else the factory's).
    Returns the answers."""
    sent: list[dict] = []
    answers = []
    for _ in range(10):
        roll = rng.random()
        if roll < 0.5 or not sent:
            on = {"discharged_on": (day := rng.choice(dates)), "admitted_on": day} if dates else {}
            level = rng.choice(list(hospitals))
            body = claim_body(a=str(rng.randrange(0, 120000, 500)), b=str(rng.randrange(0, 20000, 500)),
                              c="300", person_id=person, hospital_code=hospitals[level],
                              visit_type=rng.choice(["inpatient", "inpatient", "chronic_outpatient", "outpatient"]),
                              kind=rng.choice(["settle", "settle", "trial"]), **on)
            if body["type"] == "settle":
                sent.append(body)
        elif roll < 0.8:
            target = rng.choice(sent)
            body = {"type": "cancel", "claim_id": target["claim_id"], "hospital_code": target["hospital_code"]}
        else:
            body = rng.choice(sent)  # a resend
        count = len(pipeline.hospital.results.get(body["claim_id"], [])) + 1
        got = await next_answer(pipeline, body, count)
        (expected,) = model.send(body)
        assert same(got, expected), (body["type"], got, expected)
        stored = await accumulators(pipeline, person)
        assert stored == list(model.accumulators(person).values())
        answers.append(got)
    return answers


async def test_random_sequences_end_to_end_answer_as_the_pure_decisions_do(pipeline):
    """The property test's short form: the same seeded sequences through the
    running pipeline and through the pure decisions in memory give the same
    answers and the same accumulators."""
    rng = random.Random(16)
    hospitals = {level: HOSPITALS[level] for level in ("village", "county", "city", "province")}
    for n in range(3):
        person = pid(20 + n)
        model = MemoryPipeline()
        records = [person_record(person, categories=rng.choice([[], ["subsistence"], ["poverty_registered"]]))]
        await pipeline.register(persons=records)
        model.register(persons=records, hospitals=[hospital_record(code, level) for level, code in HOSPITALS.items()])
        await drive_sequence(pipeline, model, person, rng, hospitals)
        await asyncio.sleep(0)
