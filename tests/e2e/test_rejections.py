"""Every rejection code that input can trigger, each with a message a clerk can act on."""

import orjson

from medsettle.contract import MAX_MESSAGE_BYTES, RejectionCode
from services.eligibility.app import EligibilityStage, sign
from tests.e2e.conftest import HOSPITALS, SIGNING_HOSPITAL, SIGNING_KEY
from tests.factories import claim_body, hospital_record, item, person_record

COUNTY = HOSPITALS["county"]


async def rejected(pipeline, claim, code: RejectionCode, *, headers=None, raw: bytes | None = None):
    await pipeline.hospital.send(raw if raw is not None else claim, key=claim["claim_id"], headers=headers)
    answer = await pipeline.hospital.answer(claim["claim_id"])
    assert answer.status == "rejected", answer
    assert answer.rejection is not None and answer.rejection.code == code, answer.rejection
    assert len(answer.rejection.message) > 8
    return answer


async def test_unreadable_fields_are_rejected_as_invalid_message(pipeline):
    claim = claim_body(a="100", person_id="340421199201010001", hospital_code=COUNTY)
    claim["items"][0]["amount"] = 100.0  # a float, not a decimal string
    answer = await rejected(pipeline, claim, RejectionCode.INVALID_MESSAGE)
    assert "items.0.amount" in answer.rejection.message


async def test_a_message_with_no_readable_claim_goes_to_the_dead_letter_topic(pipeline):
    await pipeline.hospital.send(b"\xff\xfe definitely not json", key="garbage-1")
    letter = await pipeline.hospital.dead_letter(lambda d: d["key"] == "garbage-1")
    assert letter["stage"] == "eligibility" and "unreadable" in letter["error"]


async def test_an_amount_that_is_not_quantity_times_price_is_rejected(pipeline):
    bad = item("A", "100", quantity="2")
    bad["amount"] = "120.00"
    claim = claim_body(items=[bad], person_id="340421199201010002", hospital_code=COUNTY)
    answer = await rejected(pipeline, claim, RejectionCode.AMOUNT_MISMATCH)
    assert "100.00" in answer.rejection.message


async def test_hospital_problems_are_rejected_each_with_its_code(pipeline):
    await pipeline.register(persons=[person_record("340421199201010003")], hospitals=[
        hospital_record("H3404219901", "county", designated=False),
        hospital_record("H3404219902", "county", suspended=True),
    ])
    for code, hospital in ((RejectionCode.UNKNOWN_HOSPITAL, "H9999999999"),
                           (RejectionCode.HOSPITAL_NOT_DESIGNATED, "H3404219901"),
                           (RejectionCode.HOSPITAL_SUSPENDED, "H3404219902")):
        await rejected(pipeline, claim_body(a="100", person_id="340421199201010003", hospital_code=hospital), code)


async def test_person_problems_are_rejected_each_with_its_code(pipeline):
    await pipeline.register(persons=[
        person_record("340421199201010004", paid_years=(2023,)),
        person_record("340421199201010005", blacklisted=True),
        person_record("999999199201010006", region="999999"),
    ])
    answer = await rejected(pipeline, claim_body(a="100", person_id="340421199201010004", hospital_code=COUNTY),
                            RejectionCode.NOT_INSURED)
    assert "2024 年度未缴费" in answer.rejection.message and "340421********0004" in answer.rejection.message
    await rejected(pipeline, claim_body(a="100", person_id="340421199201010005", hospital_code=COUNTY),
                   RejectionCode.BLACKLISTED)
    await rejected(pipeline, claim_body(a="100", person_id="340421199201019999", hospital_code=COUNTY),
                   RejectionCode.UNKNOWN_PERSON)
    await rejected(pipeline, claim_body(a="100", person_id="999999199201010006", hospital_code=COUNTY),
                   RejectionCode.NO_POLICY)


async def test_a_claim_id_reused_with_other_content_is_a_duplicate(pipeline):
    await pipeline.register(persons=[person_record("340421199201010007")])
    claim = claim_body(a="100", person_id="340421199201010007", hospital_code=COUNTY)
    await pipeline.hospital.send(claim)
    assert (await pipeline.hospital.answer(claim["claim_id"])).status == "settled"
    changed = claim_body(a="200", person_id="340421199201010007", hospital_code=COUNTY, claim_id=claim["claim_id"])
    await pipeline.hospital.send(changed)
    answers = await pipeline.hospital.answers(claim["claim_id"], 2)
    assert answers[-1].rejection.code == RejectionCode.DUPLICATE_CLAIM


async def test_reversal_errors_unknown_claim_a_resent_cancel_and_a_resent_settle_get_the_reversal(pipeline):
    await pipeline.register(persons=[person_record("340421199201010008")])
    await rejected(pipeline, {"type": "cancel", "claim_id": "NO-SUCH-CLAIM", "hospital_code": COUNTY},
                   RejectionCode.CLAIM_NOT_FOUND)
    claim = claim_body(a="100", person_id="340421199201010008", hospital_code=COUNTY)
    await pipeline.hospital.send(claim)
    settled = await pipeline.hospital.answer(claim["claim_id"])
    cancel = {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": COUNTY, "reason": "录入错误"}
    await pipeline.hospital.send(cancel)
    reversal = (await pipeline.hospital.answers(claim["claim_id"], 2))[-1]
    assert reversal.status == "reversed" and reversal.fund_total == settled.fund_total
    # an answer once given stands (CONTRACT §3): the same cancel again, and the settle again, get `reversed`
    await pipeline.hospital.send(cancel)
    third = (await pipeline.hospital.answers(claim["claim_id"], 3))[-1]
    assert third.model_dump(exclude={"settled_at"}) == reversal.model_dump(exclude={"settled_at"})
    await pipeline.hospital.send(claim)
    fourth = (await pipeline.hospital.answers(claim["claim_id"], 4))[-1]
    assert fourth.model_dump(exclude={"settled_at"}) == reversal.model_dump(exclude={"settled_at"})
    # a different cancel of the claim already reversed is refused, with the reason it was reversed for
    await pipeline.hospital.send({**cancel, "reason": "患者要求"})
    fifth = (await pipeline.hospital.answers(claim["claim_id"], 5))[-1]
    assert fifth.rejection.code == RejectionCode.ALREADY_REVERSED and "录入错误" in fifth.rejection.message
    # a changed settle under the same claim_id is still a duplicate
    await pipeline.hospital.send({**claim, "items": claim_body(a="200")["items"]})
    sixth = (await pipeline.hospital.answers(claim["claim_id"], 6))[-1]
    assert sixth.rejection.code == RejectionCode.DUPLICATE_CLAIM


async def test_an_injury_claim_waits_for_review_and_a_rejection_is_answered(pipeline):
    await pipeline.register(persons=[person_record("340421199201010009")])
    approved = claim_body(a="1000", person_id="340421199201010009", hospital_code=COUNTY, injury=True)
    refused = claim_body(a="1000", person_id="340421199201010009", hospital_code=COUNTY, injury=True)
    for claim in (approved, refused):
        await pipeline.hospital.send(claim)
        assert (await pipeline.hospital.answer(claim["claim_id"])).status == "pending_review"
    stage = pipeline.stage(EligibilityStage)
    decision = await stage.review(approved["claim_id"], approve=True, reason=None, reviewer="审核员甲")
    assert await stage.send_decision(approved["claim_id"], decision)
    assert (await pipeline.hospital.answers(approved["claim_id"], 2))[-1].status == "settled"
    decision = await stage.review(refused["claim_id"], approve=False, reason="第三方责任", reviewer="审核员甲")
    assert await stage.send_decision(refused["claim_id"], decision)
    answer = (await pipeline.hospital.answers(refused["claim_id"], 2))[-1]
    assert answer.rejection.code == RejectionCode.REVIEW_REJECTED and "第三方责任" in answer.rejection.message


async def test_a_hospital_that_must_sign_is_refused_without_a_good_signature(pipeline):
    await pipeline.register(persons=[person_record("340421199201010010")])
    unsigned = claim_body(a="100", person_id="340421199201010010", hospital_code=SIGNING_HOSPITAL)
    await rejected(pipeline, unsigned, RejectionCode.INVALID_SIGNATURE)
    wrong = claim_body(a="100", person_id="340421199201010010", hospital_code=SIGNING_HOSPITAL)
    await rejected(pipeline, wrong, RejectionCode.INVALID_SIGNATURE, headers=[("x-signature", b"00" * 32)])
    good = claim_body(a="100", person_id="340421199201010010", hospital_code=SIGNING_HOSPITAL)
    body = orjson.dumps(good)
    await pipeline.hospital.send(body, key=good["claim_id"], headers=[("x-signature", sign(SIGNING_KEY, body).encode())])
    assert (await pipeline.hospital.answer(good["claim_id"])).status == "settled"


async def test_a_claim_too_large_to_pass_through_the_stages_is_rejected_and_the_next_one_settles(pipeline):
    # Just under the 1 MiB a Kafka client sends by default: were it accepted,
    # its settlement document (the claim and what the stages add) would be
    # over what a stage can publish, and the partition would stall on it.
    person = "340421199201010091"
    await pipeline.register(persons=[person_record(person)])
    line = dict(item("A", "1.00"), name="一次性使用无菌注射器及配套耗材" * 4, code="XA000000")
    big = claim_body(items=[line], person_id=person, hospital_code=COUNTY)
    each = len(orjson.dumps(line)) + 1
    base = len(orjson.dumps(big)) - each + 1
    big["items"] = [dict(line, code=f"XA{n:06d}") for n in range((1_048_300 - base) // each)]
    body = orjson.dumps(big)
    assert 1_048_000 < len(body) < 1_048_500
    answer = await rejected(pipeline, big, RejectionCode.INVALID_MESSAGE, raw=body)
    assert f"message is {len(body)} bytes, over the {MAX_MESSAGE_BYTES} limit" in answer.rejection.message

    after = claim_body(a="300", person_id=person, hospital_code=COUNTY)
    await pipeline.hospital.send(after)
    assert (await pipeline.hospital.answer(after["claim_id"])).status == "settled"
