"""Injury claims: held as pending_review, decided by an operator through the
HTTP API, the decision published through the runtime's broker."""

from decimal import Decimal

from medsettle.contract import RejectionCode
from medsettle.runtime import Runtime
from services.eligibility.app import EligibilityStage
from tests.eligibility.conftest import HOSPITALS
from tests.factories import claim_body, person_record

COUNTY = HOSPITALS["county"]


def pid(n: int) -> str:
    return f"34042119940101{n:04d}"


async def held(system, person: str, **claim) -> dict:
    body = claim_body(a="1000", person_id=person, hospital_code=COUNTY, injury=True, **claim)
    await system.hospital.send(body)
    answer = await system.hospital.answer(body["claim_id"])
    assert answer.status == "pending_review" and answer.total == Decimal("1000.00")
    return body


async def test_pending_injury_claims_are_listed_with_masked_person_ids(system):
    person = pid(1)
    await system.pipeline.register(persons=[person_record(person)])
    claim = await held(system, person)
    response = await system.api.get("/reviews")
    assert response.status_code == 200
    listed = {r["claim_id"]: r for r in response.json()["reviews"]}
    review = listed[claim["claim_id"]]
    assert review["person_id_masked"] == "340421********0001"
    assert person not in response.text
    assert (review["hospital_code"], review["visit_type"], review["total"]) == (COUNTY, "inpatient", "1000.00")
    assert response.json()["pending"] >= 1


async def test_an_approved_injury_claim_goes_on_through_the_layers_and_settles(system):
    person = pid(2)
    await system.pipeline.register(persons=[person_record(person)])
    claim = await held(system, person)
    response = await system.api.post(f"/reviews/{claim['claim_id']}",
                                     json={"decision": "approve", "reason": "非第三方责任", "reviewer": "审核员甲"})
    assert response.status_code == 200, response.text
    assert response.json() == {"claim_id": claim["claim_id"], "status": "accepted", "answer_sent": True}
    answers = await system.hospital.answers(claim["claim_id"], 2)
    assert answers[-1].status == "settled"
    assert answers[-1].basic == Decimal("300.00")  # (1000 - 600) × 75%
    pending = {r["claim_id"] for r in (await system.api.get("/reviews")).json()["reviews"]}
    assert claim["claim_id"] not in pending
    again = await system.api.post(f"/reviews/{claim['claim_id']}", json={"decision": "reject", "reason": "x",
                                                                          "reviewer": "审核员乙"})
    assert again.status_code == 409 and again.json()["status"] == "accepted"


async def test_a_rejected_injury_claim_is_answered_with_the_reviewers_reason(system):
    person = pid(3)
    await system.pipeline.register(persons=[person_record(person)])
    claim = await held(system, person)
    response = await system.api.post(f"/reviews/{claim['claim_id']}",
                                      json={"decision": "reject", "reason": "第三方责任，应由肇事方承担",
                                            "reviewer": "审核员甲"})
    assert response.status_code == 200, response.text
    answer = (await system.hospital.answers(claim["claim_id"], 2))[-1]
    assert answer.status == "rejected" and answer.rejection.code == RejectionCode.REVIEW_REJECTED
    assert "第三方责任，应由肇事方承担" in answer.rejection.message
    await system.hospital.send(claim)  # the hospital sends it again: the same refusal
    resent = (await system.hospital.answers(claim["claim_id"], 3))[-1]
    assert resent.rejection.code == RejectionCode.REVIEW_REJECTED and "肇事方" in resent.rejection.message


async def test_bad_review_requests_are_refused_and_change_nothing(system):
    person = pid(4)
    await system.pipeline.register(persons=[person_record(person)])
    claim = await held(system, person)
    url = f"/reviews/{claim['claim_id']}"
    no_reason = await system.api.post(url, json={"decision": "reject", "reviewer": "审核员甲"})
    assert no_reason.status_code == 400 and "原因" in no_reason.json()["error"]
    assert (await system.api.post(url, json={"decision": "maybe", "reviewer": "审核员甲"})).status_code == 400
    assert (await system.api.post(url, content=b"not json")).status_code == 400
    assert (await system.api.post("/reviews/NO-SUCH-CLAIM",
                                  json={"decision": "approve", "reviewer": "审核员甲"})).status_code == 404
    pending = {r["claim_id"] for r in (await system.api.get("/reviews")).json()["reviews"]}
    assert claim["claim_id"] in pending


async def test_the_review_queue_survives_a_restart_of_eligibility(system):
    person = pid(5)
    await system.pipeline.register(persons=[person_record(person)])
    claim = await held(system, person)
    settings = system.pipeline.settings
    restarted = Runtime(EligibilityStage(settings), settings)  # a new process on the same database
    await restarted.open_database()
    try:
        _, waiting = await restarted.service.pending_reviews()
        assert claim["claim_id"] in {row.claim_id for row in waiting}
    finally:
        await restarted.close_database()
    response = await system.api.post(f"/reviews/{claim['claim_id']}",
                                     json={"decision": "approve", "reviewer": "审核员甲"})
    assert response.status_code == 200
    assert (await system.hospital.answers(claim["claim_id"], 2))[-1].status == "settled"


async def test_a_decision_the_broker_did_not_take_is_stored_and_sent_again(system):
    person = pid(6)
    await system.pipeline.register(persons=[person_record(person)])
    claim = await held(system, person)
    stage = system.stage
    publish = stage.publisher

    async def broker_down(_outgoing) -> None:
        raise ConnectionError("broker unreachable")

    stage.publisher = broker_down
    try:
        response = await system.api.post(f"/reviews/{claim['claim_id']}",
                                          json={"decision": "approve", "reviewer": "审核员甲"})
    finally:
        stage.publisher = publish
    assert response.status_code == 202 and response.json()["answer_sent"] is False
    assert len(system.hospital.results[claim["claim_id"]]) == 1  # still only pending_review
    assert await stage.resend_decisions(older_than_seconds=0) >= 1
    assert (await system.hospital.answers(claim["claim_id"], 2))[-1].status == "settled"
    assert await stage.resend_decisions(older_than_seconds=0) == 0
