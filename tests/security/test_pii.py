"""A person with a distinctive name and identity number goes through every
path of the running system (settled, rejected, dead-lettered, held for review
and approved); neither appears in any log line of any service, in any answer
of any API or page, or in what the hospital is sent: only their masked forms."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from medsettle.contract import mask_name, mask_person_id
from tests.factories import claim_body, person_record
from tests.security import credentials
from tests.security.conftest import COUNTY, SERVICES

NAME = "欧阳娜娜"
PERSON = "340421198807074417"
LAYER_SERVICES = [s for s in SERVICES if s != "dashboard"]


async def _wait_for(predicate, what: str, seconds: float = 60) -> None:  # noqa: ANN001
    for _ in range(int(seconds * 10)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {seconds} s")


async def test_a_name_and_identity_number_never_leave_the_system_unmasked(running):
    person = {**person_record(PERSON), "name": NAME,
              "categories": [{"category": "subsistence", "valid_from": "2024-01-01", "valid_to": None}]}
    await running.register(persons=[person])
    hospital = running.hospital

    settled = claim_body(a="8000", b="2000", c="500", person_id=PERSON, hospital_code=COUNTY)
    mismatched = claim_body(a="100", person_id=PERSON, hospital_code=COUNTY)
    mismatched["items"][0]["amount"] = "999.00"
    injury = claim_body(a="1000", person_id=PERSON, hospital_code=COUNTY, injury=True)
    for claim in (settled, mismatched, injury):
        await hospital.send(claim)
    # dead letters: a registry record that cannot be read (name and identity inside, quoted by the error),
    # and a claim that cannot be parsed, carrying the identity number and the name
    await hospital.send({**person, "region": 340421, "coverage": "every year"}, key=PERSON, topic="registry.persons")
    await hospital.send(f'{{"person_id": "{PERSON}", "name": "{NAME}", "items": ['.encode(), key=PERSON)

    assert (await hospital.answer(settled["claim_id"])).status == "settled"
    rejected = await hospital.answer(mismatched["claim_id"])
    assert rejected.status == "rejected" and rejected.rejection.code.value == "AMOUNT_MISMATCH"
    assert (await hospital.answer(injury["claim_id"])).status == "pending_review"

    answers: list[str] = []
    async with running.client("operations", credentials.as_operator()) as ops:
        async def two_dead_letters() -> bool:
            listing = (await ops.get("/dead-letters")).json()["dead_letters"]
            return sum(1 for d in listing if d["key"] == mask_person_id(PERSON)) >= 2
        await _wait_for(two_dead_letters, "two dead letters at the operations service")

    # every API and page that shows a document, as an operator and as a viewer
    for auth in (credentials.as_operator(), credentials.as_viewer()):
        async with running.client("eligibility", auth) as eligibility:
            reviews = await eligibility.get("/reviews")
            assert injury["claim_id"] in reviews.text
            answers += [reviews.text, (await eligibility.get("/audit-flags")).text]
        async with running.client("operations", auth) as ops:
            listing = await ops.get("/dead-letters")
            answers.append(listing.text)
            for letter in listing.json()["dead_letters"]:
                answers.append((await ops.get(f"/dead-letters/{letter['id']}")).text)
    async with httpx.AsyncClient(base_url=running.url("dashboard"), timeout=15) as browser:
        await browser.post("/login", data={"username": credentials.OPERATOR[0], "password": credentials.OPERATOR[1]})
        answers.append((await browser.get("/api/pipeline")).text)
        decided = await browser.post(f"/api/reviews/{injury['claim_id']}", json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        answers.append(decided.text)
        assert (await hospital.answers(injury["claim_id"], 2))[-1].status == "settled"
        for claim in (settled, mismatched, injury):
            answers.append((await browser.get(f"/api/claims/{claim['claim_id']}")).text)
        answers += [(await browser.get("/api/dead-letters")).text, (await browser.get("/")).text,
                    (await browser.get("/api/funds?year=2024")).text, (await browser.get("/metrics/")).text]
    async with httpx.AsyncClient(timeout=15) as anonymous:
        for service in LAYER_SERVICES:
            answers.append((await anonymous.get(f"{running.url(service)}/metrics/")).text)
            answers.append((await anonymous.get(f"{running.url(service)}/health")).text)
    # what the hospital was sent
    sent = [r.to_json().decode() for c in (settled, mismatched, injury) for r in hospital.results[c["claim_id"]]]

    await asyncio.sleep(1.0)  # the last log lines through the pipes
    logs = running.log_lines
    assert len(logs) < 2000, "the supervisor keeps 2,000 lines: some were not looked at"
    assert any(PERSON[:6] + "********" in line for line in logs)  # the person's claims were logged, masked

    for where, texts in (("log", logs), ("API answer", answers), ("message to the hospital", sent)):
        for text in texts:
            assert PERSON not in text and PERSON.lower() not in text, f"identity number in a {where}: {text[:2000]}"
            assert NAME not in text, f"name in a {where}: {text[:2000]}"
    everything = "\n".join(answers + sent)
    assert mask_person_id(PERSON) in everything
    dead = "\n".join(a for a in answers if "dead_letters" in a or '"original"' in a)
    assert mask_name(NAME) in dead or orjson.dumps(mask_name(NAME)).decode().strip('"') in dead
