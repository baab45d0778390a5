"""Every operator endpoint of the running system, tried from outside: no
credentials, wrong ones, the wrong role, the dashboard's service credential;
and every decision found in the audit log."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.factories import claim_body, person_record
from tests.security import credentials
from tests.security.conftest import COUNTY

ELIGIBILITY_ROUTES = [("GET", "/reviews"), ("POST", "/reviews/ANY-CLAIM"), ("GET", "/audit-flags")]
OPERATIONS_ROUTES = [("GET", "/dead-letters"), ("GET", "/dead-letters/1"), ("POST", "/dead-letters/1/replay")]
ACTIONS = [("eligibility", "POST", "/reviews/ANY-CLAIM"), ("operations", "POST", "/dead-letters/1/replay")]


async def _held_injury(running, person: str) -> dict:
    await running.register(persons=[person_record(person)])
    claim = claim_body(a="1000", person_id=person, hospital_code=COUNTY, injury=True)
    await running.hospital.send(claim)
    assert (await running.hospital.answer(claim["claim_id"])).status == "pending_review"
    return claim


async def _dead_letter_id(running, marker: str) -> int:
    async with running.client("operations", credentials.as_operator()) as client:
        for _ in range(300):
            letters = (await client.get("/dead-letters")).json()["dead_letters"]
            found = [d["id"] for d in letters if marker in d["key"]]
            if found:
                return found[0]
            await asyncio.sleep(0.1)
    raise AssertionError(f"no dead letter keyed {marker}: " + "\n".join(
        line for line in running.log_lines if "operations" in line or "dead" in line)[-3000:])


async def test_every_operator_endpoint_refuses_a_caller_without_credentials(running):
    for service, routes in (("eligibility", ELIGIBILITY_ROUTES), ("operations", OPERATIONS_ROUTES)):
        async with running.client(service) as anonymous:
            for method, path in [*routes, ("GET", "/a-route-nobody-added"), ("DELETE", "/reviews")]:
                response = await anonymous.request(method, path, json={"decision": "approve"})
                assert response.status_code == 401, (service, method, path, response.status_code)
                assert response.headers["www-authenticate"].startswith("Basic")
            # what Prometheus and the orchestrator read stays open
            assert (await anonymous.get("/health")).status_code == 200
            assert (await anonymous.get("/metrics/")).status_code == 200


async def test_wrong_passwords_unknown_users_and_forged_service_credentials_are_refused(running):
    for service, routes in (("eligibility", ELIGIBILITY_ROUTES), ("operations", OPERATIONS_ROUTES)):
        for auth, headers in [
            (httpx.BasicAuth(credentials.OPERATOR[0], "not-the-password"), {}),
            (httpx.BasicAuth("nobody", credentials.OPERATOR[1]), {}),
            (None, {"authorization": "Bearer not-the-token"}),
            (None, {"authorization": f"Bearer {credentials.SERVICE_TOKEN}", "x-on-behalf-of": "nobody"}),
            (None, {"authorization": "Digest whatever"}),
            (None, {"authorization": "Basic %%%"}),
        ]:
            async with running.client(service, auth, **headers) as client:
                for method, path in routes[:1] + routes[-1:]:
                    response = await client.request(method, path, json={"decision": "approve"})
                    assert response.status_code == 401, (service, method, path, headers, response.text)


async def test_a_viewer_reads_but_is_refused_approving_and_replaying_and_nothing_changes(running):
    claim = await _held_injury(running, "340421199505050011")
    await running.hospital.send(b"\xff viewer's dead letter", key="viewer-dl")
    letter = await _dead_letter_id(running, "viewer-dl")
    before = len(await running.audit("eligibility")), len(await running.audit("operations"))
    async with running.client("eligibility", credentials.as_viewer()) as viewer:
        assert (await viewer.get("/reviews")).status_code == 200
        assert (await viewer.get("/audit-flags")).status_code == 200
        refused = await viewer.post(f"/reviews/{claim['claim_id']}", json={"decision": "approve"})
        assert refused.status_code == 403 and "operator" in refused.json()["error"]
        pending = {r["claim_id"] for r in (await viewer.get("/reviews")).json()["reviews"]}
        assert claim["claim_id"] in pending
    async with running.client("operations", credentials.as_viewer()) as viewer:
        assert (await viewer.get("/dead-letters")).status_code == 200
        assert (await viewer.get(f"/dead-letters/{letter}")).status_code == 200
        assert (await viewer.post(f"/dead-letters/{letter}/replay", json={})).status_code == 403
        assert (await viewer.get(f"/dead-letters/{letter}")).json()["status"] == "new"
    assert (len(await running.audit("eligibility")), len(await running.audit("operations"))) == before
    assert len(running.hospital.results[claim["claim_id"]]) == 1  # still only pending_review


async def test_the_dashboards_service_credential_reads_alone_and_acts_only_for_an_operator(running):
    claim = await _held_injury(running, "340421199505050012")
    token = {"authorization": f"Bearer {credentials.SERVICE_TOKEN}"}
    async with running.client("eligibility", **token) as dashboard:
        assert (await dashboard.get("/reviews")).status_code == 200
        alone = await dashboard.post(f"/reviews/{claim['claim_id']}", json={"decision": "approve"})
        assert alone.status_code == 403
        for_viewer = await dashboard.post(f"/reviews/{claim['claim_id']}", json={"decision": "approve"},
                                          headers={"x-on-behalf-of": credentials.VIEWER[0]})
        assert for_viewer.status_code == 403
        for_operator = await dashboard.post(f"/reviews/{claim['claim_id']}", json={"decision": "approve"},
                                            headers={"x-on-behalf-of": credentials.OPERATOR[0]})
        assert for_operator.status_code == 200, for_operator.text
    assert (await running.hospital.answers(claim["claim_id"], 2))[-1].status == "settled"
    entry = next(e for e in await running.audit("eligibility") if e["target"] == claim["claim_id"])
    assert (entry["principal"], entry["via"], entry["action"], entry["status"]) == (
        credentials.OPERATOR[0], "service", "approve", 200)


async def test_each_approval_rejection_and_replay_is_in_the_audit_log_with_who_what_and_when(running):
    approved = await _held_injury(running, "340421199505050013")
    rejected = await _held_injury(running, "340421199505050014")
    await running.hospital.send(b"\xff audited dead letter", key="audited-dl")
    letter = await _dead_letter_id(running, "audited-dl")
    async with running.client("eligibility", credentials.as_operator()) as operator:
        # the body's reviewer is not believed: the authenticated caller is the reviewer
        ok = await operator.post(f"/reviews/{approved['claim_id']}",
                                 json={"decision": "approve", "reviewer": "someone-else"})
        assert ok.status_code == 200, ok.text
        no = await operator.post(f"/reviews/{rejected['claim_id']}",
                                 json={"decision": "reject", "reason": "第三方责任"})
        assert no.status_code == 200, no.text
    # the replay through the dashboard, signed in as the operator: the dashboard's credential, on their behalf
    async with httpx.AsyncClient(base_url=running.url("dashboard"), timeout=15) as browser:
        login = await browser.post("/login", data={"username": credentials.OPERATOR[0],
                                                   "password": credentials.OPERATOR[1]})
        assert login.status_code == 303 and login.headers["location"] == "/"
        replay = await browser.post(f"/api/dead-letters/{letter}/replay", json={})
        assert replay.status_code == 200, replay.text
    eligibility = {e["target"]: e for e in await running.audit("eligibility")}
    operations = {e["target"]: e for e in await running.audit("operations")}
    yes, nay, again = eligibility[approved["claim_id"]], eligibility[rejected["claim_id"]], operations[str(letter)]
    assert (yes["principal"], yes["role"], yes["via"], yes["action"], yes["status"]) == (
        credentials.OPERATOR[0], "operator", "password", "approve", 200)
    assert (nay["action"], nay["detail"], nay["status"]) == ("reject", {"decision": "reject", "reason": "第三方责任"}, 200)
    assert (again["principal"], again["via"], again["action"], again["status"]) == (
        credentials.OPERATOR[0], "service", "replay", 200)
    for entry in (yes, nay, again):
        assert entry["at"] is not None and entry["finished_at"] >= entry["at"]
    c = await asyncpg.connect(running.database_url)
    try:
        reviewer = await c.fetchval("SELECT reviewed_by FROM eligibility.claims WHERE claim_id = $1",
                                    approved["claim_id"])
        replayed_by = await c.fetchval("SELECT replayed_by FROM operations.dead_letters WHERE id = $1", letter)
    finally:
        await c.close()
    assert (reviewer, replayed_by) == (credentials.OPERATOR[0], credentials.OPERATOR[0])


async def test_wrong_passwords_are_throttled_on_the_services_and_on_the_dashboard(running):
    name = credentials.VIEWER[0]
    async with running.client("operations", httpx.BasicAuth(name, "guess")) as guessing:
        statuses = [(await guessing.get("/dead-letters")).status_code for _ in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429, statuses
    async with running.client("operations", credentials.as_viewer()) as rightful:
        throttled = await rightful.get("/dead-letters")  # even the right password waits
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    async with running.client("eligibility", credentials.as_viewer()) as elsewhere:
        assert (await elsewhere.get("/reviews")).status_code == 200  # one process's count: eligibility's own

    async with httpx.AsyncClient(base_url=running.url("dashboard"), timeout=15) as browser:
        tries = [(await browser.post("/login", data={"username": "operator-x", "password": "guess"}))
                 .headers["location"] for _ in range(6)]
        assert tries[:5] == ["/login?failed=1"] * 5 and tries[5] == "/login?failed=wait", tries
        assert "稍后再试" in (await browser.get("/login?failed=wait")).text

    # the lock-out ends with its window (LOGIN_THROTTLE_SECONDS=10 here), and the next tests sign in as usual
    async with running.client("operations", credentials.as_viewer()) as rightful:
        for _ in range(30):
            if (await rightful.get("/dead-letters")).status_code == 200:
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("the viewer is still locked out after 30 s")
