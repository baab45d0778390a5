"""The hospital HTTP API over real HTTP, on the running system (CONTRACT §8, §9)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import orjson

from medsettle.contract import MAX_MESSAGE_BYTES
from services.eligibility.app import sign
from services.gateway.reconciliation import CHINA
from services.gateway.signing import signed_headers
from tests.factories import claim_body, person_record
from tests.gateway.conftest import (
    BOOKS,
    BOOKS_KEY,
    COUNTY,
    COUNTY_OLD_KEY,
    TOWNSHIP,
    UNKEYED,
    Cashier,
)


def pid(n: int) -> str:
    return f"34042119850101{n:04d}"


async def registered(system, n: int, **kwargs) -> str:  # noqa: ANN001
    person = pid(n)
    await system.pipeline.register(persons=[person_record(person, **kwargs)])
    return person


async def test_a_cashier_trials_then_settles_then_cancels_through_the_api(system, county):
    person = await registered(system, 1)
    claim = claim_body(a="8000", b="2000", c="500", person_id=person, hospital_code=COUNTY, kind="trial")

    trial = await county.post_claim(claim)
    assert trial.status_code == 200, trial.text
    assert trial.json()["status"] == "trial"
    assert (trial.json()["basic"], trial.json()["personal"]) == ("6900.00", "3600.00")  # worked example 1

    settled = await county.post_claim({**claim, "type": "settle"})
    assert settled.status_code == 200, settled.text
    bill = settled.json()
    assert bill["status"] == "settled" and bill["claim_id"] == claim["claim_id"]
    assert (bill["total"], bill["basic"], bill["fund_total"], bill["personal"]) == (
        "10500.00", "6900.00", "6900.00", "3600.00")
    assert bill["person_id_masked"] == person[:6] + "********" + person[-4:]
    assert person not in settled.text

    national = (await county.get_claim(claim["claim_id"], "?format=national")).json()
    assert (national["setl_id"], national["setl_stas"], national["medfee_sumamt"], national["inscp_scp_amt"],
            national["act_pay_dedc"], national["hifp_pay"], national["fund_pay_sumamt"], national["psn_part_amt"]) == (
        claim["claim_id"], "settled", "10500.00", "9800.00", "600.00", "6900.00", "6900.00", "3600.00")
    assert [(d["fund_pay_type"], d["fund_payamt"]) for d in national["setldetail"]] == [
        ("390100", "6900.00"), ("390200", "0.00"), ("610100", "0.00"), ("640100", "0.00")]
    assert national["setldetail"][0]["setl_proc_info"] == bill["layers"][0]["explanation"]

    # a trial after the settlement does not replace the bill (whatever it is answered: CONTRACT §3 says
    # DUPLICATE_CLAIM; eligibility today answers it as a trial)
    again = await county.post_claim(claim)
    assert again.status_code == 200 and again.json()["status"] in ("rejected", "trial")
    assert (await county.get_claim(claim["claim_id"])).json()["status"] == "settled"

    cancel = {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": COUNTY, "reason": "患者退费"}
    reversed_ = await county.post_claim(cancel)
    assert reversed_.status_code == 200, reversed_.text
    assert reversed_.json()["status"] == "reversed" and reversed_.json()["total"] == "10500.00"
    looked_up = await county.get_claim(claim["claim_id"])
    assert looked_up.status_code == 200 and looked_up.json()["status"] == "reversed"


async def test_a_hospital_asking_for_another_hospitals_claim_gets_404(system, county, township):
    person = await registered(system, 2)
    claim = claim_body(a="300", person_id=person, hospital_code=COUNTY)
    assert (await county.post_claim(claim)).json()["status"] == "settled"

    theirs = await township.get_claim(claim["claim_id"])
    nobodys = await township.get_claim(f"{TOWNSHIP}-2024-NOSUCH")
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json()["code"] == nobodys.json()["code"] == "CLAIM_NOT_FOUND"
    assert "6900" not in theirs.text and person not in theirs.text

    # nor may it send a claim, or a cancel, in the other hospital's name
    for body in (claim, {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": COUNTY}):
        refused = await township.post_claim(body)
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert (await county.get_claim(claim["claim_id"])).json()["status"] == "settled"


async def test_a_request_replayed_after_300_seconds_gets_401(system, county):
    person = await registered(system, 3)
    claim = claim_body(a="200", person_id=person, hospital_code=COUNTY)
    signed_at = time.time() - 301  # recorded 301 s ago, sent again now
    stale = await county.request("POST", "/v1/claims?wait=5", claim, now=signed_at)
    assert stale.status_code == 401
    assert stale.json()["code"] == "INVALID_SIGNATURE" and "300" in stale.json()["message"]
    stale_get = await county.request("GET", f"/v1/claims/{claim['claim_id']}", now=signed_at)
    assert stale_get.status_code == 401
    from_the_future = await county.request("GET", f"/v1/claims/{claim['claim_id']}", now=time.time() + 301)
    assert from_the_future.status_code == 401
    # nothing of it was sent on: the claim is unknown
    assert (await county.get_claim(claim["claim_id"])).status_code == 404
    recent = await county.request("POST", "/v1/claims?wait=20", claim, now=time.time() - 290)
    assert recent.status_code == 200 and recent.json()["status"] == "settled"


async def test_a_wrong_or_missing_signature_or_a_hospital_without_a_key_gets_401(system, county):
    claim = claim_body(a="100", person_id=pid(4), hospital_code=COUNTY)
    body = orjson.dumps(claim)
    signed = await county.post_claim(claim)  # a baseline that gets through
    assert signed.status_code == 200 and signed.json()["rejection"]["code"] == "UNKNOWN_PERSON"
    cases = {
        "no headers": {"X-Hospital-Code": "", "X-Timestamp": "", "X-Signature": ""},
        "wrong signature": {"X-Signature": "0" * 64},
        "another path": {},  # signed for /v1/claims?wait=1, sent to ?wait=2 below
        "no key": {"X-Hospital-Code": UNKEYED},
        "not a number": {"X-Timestamp": "soon"},
    }
    for name, headers in cases.items():
        path = "/v1/claims?wait=2" if name == "another path" else "/v1/claims?wait=1"
        sent = {**signed_headers(COUNTY, county.key, "POST", "/v1/claims?wait=1", body), **headers}
        answer = await county.http.post(path, content=body, headers=sent)
        assert answer.status_code == 401, name
        assert answer.json()["code"] == "INVALID_SIGNATURE", name
    # the old key of a hospital rotating its key still works, over HTTP and over Kafka
    rotating = Cashier(str(county.http.base_url), COUNTY, COUNTY_OLD_KEY)
    try:
        assert (await rotating.get_claim(claim["claim_id"])).status_code == 200
    finally:
        await rotating.close()
    over_kafka = claim_body(a="100", person_id=await registered(system, 5), hospital_code=COUNTY)
    raw = orjson.dumps(over_kafka)
    await system.pipeline.hospital.send(raw, key=over_kafka["claim_id"],
                                        headers=[("x-signature", sign(COUNTY_OLD_KEY, raw).encode())])
    assert (await system.pipeline.hospital.answer(over_kafka["claim_id"])).status == "settled"


async def test_bad_bodies_get_the_contracts_answers_never_a_500(system, county):
    too_big = b'{"claim_id": "x", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    for body, code in ((too_big, 400), (b"not json", 400), (b"[1, 2]", 400), (b'{"type": "settle"}', 400),
                       (b'{"claim_id": "' + "号".encode() + b'", "hospital_code": "H3404210001"}', 400)):
        answer = await county.request("POST", "/v1/claims", body)
        assert answer.status_code == code, (body[:40], answer.text)
        assert answer.json()["code"] == "INVALID_MESSAGE"
    # a claim with its ids but fields missing: answered as the platform answers it, a rejection
    missing = await county.post_claim({"type": "settle", "claim_id": f"{COUNTY}-2024-BAD1", "hospital_code": COUNTY})
    assert missing.status_code == 200
    assert missing.json()["status"] == "rejected" and missing.json()["rejection"]["code"] == "INVALID_MESSAGE"
    assert "items" in missing.json()["rejection"]["message"]
    assert (await county.request("POST", "/v1/claims?wait=soon", b"{}")).status_code == 400
    assert (await county.request("GET", "/v1/claims/x?format=other")).status_code == 400
    assert (await county.request("POST", "/v1/reconciliations", b'{"from": "2024-03-10"}')).status_code == 400


async def test_two_gateway_processes_answer_every_claim(system, gateways, county):
    people = [await registered(system, 100 + i) for i in range(10)]
    claims = [claim_body(a=str(1000 + i), person_id=people[i], hospital_code=COUNTY) for i in range(10)]
    cashiers = [county.at(process.url) for process in gateways]
    try:
        answers = await asyncio.gather(*(cashiers[i % 2].post_claim(claim) for i, claim in enumerate(claims)))
        assert [a.status_code for a in answers] == [200] * 10
        assert [a.json()["status"] for a in answers] == ["settled"] * 10
        # each process finds the claims the other took
        for i, claim in enumerate(claims):
            found = await cashiers[(i + 1) % 2].get_claim(claim["claim_id"])
            assert found.status_code == 200 and found.json() == answers[i].json()
    finally:
        for cashier in cashiers:
            await cashier.close()


async def test_a_restarted_gateway_finds_the_answers_given_before(system, county, gateway_factory):
    claim = claim_body(a="700", person_id=await registered(system, 6), hospital_code=COUNTY)
    first = await county.post_claim(claim)
    assert first.json()["status"] == "settled"
    fresh = await gateway_factory()  # a new process, after the answer: it reads its store
    cashier = county.at(fresh.url)
    try:
        found = await cashier.get_claim(claim["claim_id"])
        assert found.status_code == 200 and found.json() == first.json()
        fresh.stop()
    finally:
        await cashier.close()


async def test_a_claim_not_answered_within_wait_is_accepted_and_its_answer_found_later(system, county):
    person = await registered(system, 7)
    claim = claim_body(a="900", person_id=person, hospital_code=COUNTY)
    accepted = await county.post_claim(claim, wait=0)  # the answer cannot be there before the claim is sent
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"claim_id": claim["claim_id"], "status": "accepted"}
    assert accepted.headers["Location"] == f"/v1/claims/{claim['claim_id']}"
    for _ in range(200):
        later = await county.request("GET", accepted.headers["Location"])
        if later.status_code == 200:
            break
        assert later.status_code == 202
        await asyncio.sleep(0.1)
    assert later.status_code == 200 and later.json()["status"] == "settled"


async def test_reconciliation_lists_exactly_the_claims_missing_on_each_side_and_the_amount_wrong(system, gateways):
    books = Cashier(gateways[0].url, BOOKS, BOOKS_KEY)
    try:
        claims = [claim_body(a=str(amount), person_id=await registered(system, 200 + i), hospital_code=BOOKS)
                  for i, amount in enumerate((5000, 3000, 2000, 1000))]
        bills = []
        for claim in claims:
            answer = await books.post_claim(claim)
            assert answer.json()["status"] == "settled", answer.text
            bills.append(answer.json())
        cancel = {"type": "cancel", "claim_id": claims[3]["claim_id"], "hospital_code": BOOKS}
        assert (await books.post_claim(cancel)).json()["status"] == "reversed"
        today = dt.datetime.now(CHINA).date().isoformat()
        settled = bills[:3]
        total = sum(Decimal(b["total"]) for b in settled)
        fund_total = sum(Decimal(b["fund_total"]) for b in settled)

        balanced = await books.reconcile({
            "from": today, "to": today, "count": 3, "total": f"{total:.2f}", "fund_total": f"{fund_total:.2f}",
            "claims": [{"claim_id": b["claim_id"], "status": "settled", "total": b["total"],
                        "fund_total": b["fund_total"]} for b in settled]
            + [{"claim_id": bills[3]["claim_id"], "status": "reversed", "total": bills[3]["total"],
                "fund_total": bills[3]["fund_total"]}],
        })
        assert balanced.status_code == 200, balanced.text
        assert balanced.json()["balanced"] is True
        assert balanced.json()["ours"] == {"count": 3, "total": f"{total:.2f}", "fund_total": f"{fund_total:.2f}"}

        # the hospital's books: claim 2 missing, one it thinks settled that the platform never had,
        # and claim 1's fund amount wrong
        wrong = f"{Decimal(bills[1]['fund_total']) + 30:.2f}"
        theirs = [
            {"claim_id": bills[0]["claim_id"], "status": "settled", "total": bills[0]["total"],
             "fund_total": bills[0]["fund_total"]},
            {"claim_id": bills[1]["claim_id"], "status": "settled", "total": bills[1]["total"], "fund_total": wrong},
            {"claim_id": f"{BOOKS}-2024-ONLYTHEIRS", "status": "settled", "total": "100.00", "fund_total": "50.00"},
            {"claim_id": bills[3]["claim_id"], "status": "reversed", "total": bills[3]["total"],
             "fund_total": bills[3]["fund_total"]},
        ]
        their_total = Decimal(bills[0]["total"]) + Decimal(bills[1]["total"]) + Decimal("100.00")
        their_fund = Decimal(bills[0]["fund_total"]) + Decimal(wrong) + Decimal("50.00")
        answer = await books.reconcile({"from": today, "to": today, "count": 3, "total": f"{their_total:.2f}",
                                        "fund_total": f"{their_fund:.2f}", "claims": theirs})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["balanced"] is False
        assert (body["hospital_code"], body["from"], body["to"]) == (BOOKS, today, today)
        assert body["only_ours"] == [bills[2]["claim_id"]]
        assert body["only_theirs"] == [f"{BOOKS}-2024-ONLYTHEIRS"]
        assert body["mismatched"] == [{"claim_id": bills[1]["claim_id"], "field": "fund_total",
                                       "ours": bills[1]["fund_total"], "theirs": wrong}]
        assert body["theirs"] == {"count": 3, "total": f"{their_total:.2f}", "fund_total": f"{their_fund:.2f}"}

        # totals only: the lists stay empty; another day holds none of them
        totals_only = (await books.reconcile({"from": today, "to": today, "count": 3, "total": f"{total:.2f}",
                                              "fund_total": f"{fund_total:.2f}"})).json()
        assert totals_only["balanced"] is True and totals_only["only_ours"] == totals_only["mismatched"] == []
        empty = (await books.reconcile({"from": "2024-03-10", "to": "2024-03-10", "count": 0, "total": "0.00",
                                        "fund_total": "0.00"})).json()
        assert empty["balanced"] is True and empty["ours"]["count"] == 0
        # and no other hospital sees them
        other = Cashier(gateways[0].url, TOWNSHIP, "township-key")
        try:
            assert (await other.reconcile({"from": today, "to": today, "count": 0, "total": "0.00",
                                           "fund_total": "0.00"})).json()["ours"]["count"] == 0
        finally:
            await other.close()
    finally:
        await books.close()
