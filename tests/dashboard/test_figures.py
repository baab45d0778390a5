"""The dashboard's figures and the monthly clearing equal the one-bills the
hospital received, summed here in Python (never with the dashboard's SQL)."""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import orjson

from medsettle.access import hide_categories
from medsettle.contract import CATEGORY_NAMES
from tests.dashboard import dataset
from tests.dashboard.conftest import TEST_BUDGETS, TODAY

VIEWER = ("viewer", "viewer-dev")
OPERATOR = ("operator", "operator-dev")


async def funds(system, **params) -> dict:
    async with system.client(*VIEWER) as client:
        response = await client.get("/api/funds", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_spend_per_policy_and_fund_is_the_sum_of_settled_one_bills(dashboard_system):
    expected = dashboard_system.expected()
    assert dataset.REVERSED["claim_id"] not in {b.claim_id for b in expected.bills}
    body = await funds(dashboard_system, year=2024)
    shown = {(p["policy"], line["fund_code"]): Decimal(line["spent"]) for p in body["policies"] for line in p["lines"]}
    assert {k: v for k, v in shown.items() if v} == {k: v for k, v in expected.spent.items() if v}
    totals = {line["fund_code"]: Decimal(line["spent"]) for line in body["totals"]}
    for fund in dataset.FUND_FIELDS:
        assert totals[fund] == sum(v for (_, f), v in expected.spent.items() if f == fund)


async def test_a_fund_spending_ahead_of_the_year_is_flagged(dashboard_system):
    expected = dashboard_system.expected()
    body = await funds(dashboard_system, year=2024)
    elapsed = (Decimal(TODAY.timetuple().tm_yday) * 100 / 366).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert body["elapsed_share"] == f"{elapsed:.2f}"  # 91 of 366 days of 2024
    lines = {line["fund_code"]: line for p in body["policies"] if p["policy"] == "340421-2024" for line in p["lines"]}
    for fund, budget in TEST_BUDGETS["340421-2024"].items():
        spent, budget = expected.spent.get(("340421-2024", fund), Decimal(0)), Decimal(budget)
        share = (spent * 100 / budget).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        state = "over" if spent > budget else "ahead" if share > elapsed else "ok"
        assert (lines[fund]["budget"], lines[fund]["spent_share"], lines[fund]["state"]) == (
            f"{budget:.2f}", f"{share:.2f}", state), fund
    # the data set makes each state appear: serious illness ahead, backstop over its tiny budget
    assert (lines["390100"]["state"], lines["390200"]["state"], lines["640100"]["state"]) == ("ok", "ahead", "over")
    assert lines["390200"]["warning"] and lines["640100"]["warning"] and not lines["390100"]["warning"]
    other = {line["fund_code"]: line for p in body["policies"] if p["policy"] == "150900-2024" for line in p["lines"]}
    assert other["640100"]["state"] == "no_budget"  # 150900 has no backstop budget


async def test_a_schemes_revisions_are_one_line_with_one_budget(dashboard_system):
    body = await funds(dashboard_system, year=2024)
    assert [p["policy"] for p in body["policies"]] == ["150900-2024", "340421-2024"]  # no line of its own for -r2
    assert body["policies"][1]["name"] == "340421 2024 年度补偿方案（12月起调整）"  # the year's latest revision
    other = {line["fund_code"]: line for line in body["policies"][0]["lines"]}
    totals = {line["fund_code"]: line for line in body["totals"]}
    assert Decimal(totals["390100"]["budget"]) == Decimal(TEST_BUDGETS["340421-2024"]["390100"]) + Decimal(
        other["390100"]["budget"])  # counted once, not once per revision


async def test_actual_compensation_ratio_overall_and_by_hospital_level(dashboard_system):
    expected = dashboard_system.expected()
    body = await funds(dashboard_system, year=2024)
    assert body["ratio"]["overall"]["ratio"] == expected.overall_ratio()
    assert body["ratio"]["overall"]["claims"] == len(expected.bills)
    shown = {r["level"]: {k: r[k] for k in ("claims", "total", "fund_total", "ratio")}
             for r in body["ratio"]["by_level"]}
    assert shown == expected.by_level()
    assert [r["level"] for r in body["ratio"]["by_level"]] == ["village", "township", "county", "city", "province"]


async def test_serious_illness_payouts_are_counted_in_bands(dashboard_system):
    expected = dashboard_system.expected()
    body = await funds(dashboard_system, year=2024)
    assert [(b["count"], b["amount"]) for b in body["serious_illness"]] == expected.bands()
    # every one-bill falls in a bucket (from 0); one claim of the data set in each band above 1万
    assert [b["count"] for b in body["serious_illness"]] == [len(expected.bills) - 3, 1, 1, 1]


async def test_per_hospital_claims_average_cost_per_admission_and_ratio(dashboard_system):
    expected = dashboard_system.expected()
    body = await funds(dashboard_system, year=2024)
    keys = ("claims", "admissions", "average_per_admission", "fund_total", "ratio")
    shown = {h["hospital_code"]: {k: h[k] for k in keys} for h in body["hospitals"]}
    assert shown == expected.by_hospital()


async def test_figures_of_one_region_only(dashboard_system):
    expected = dashboard_system.expected()
    body = await funds(dashboard_system, year=2024, policy="150900-2024")
    only = [b for b in expected.bills if b.policy == "150900-2024"]
    assert body["ratio"]["overall"]["claims"] == len(only) == 1
    assert body["ratio"]["overall"]["fund_total"] == f"{only[0].fund_total:.2f}"


def _subtotals(text: str) -> dict[tuple[str, str, str], tuple[int, str]]:
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["清算月份", "行类型", "医疗机构编码", "医疗机构名称", "基金编码", "基金名称", "结算单号", "业务类型",
                       "业务时间", "出院日期", "笔数", "金额（元）"]
    return {(r[0], r[2], r[4]): (int(r[10]), r[11]) for r in rows[1:] if r[1] == "机构小计"}


async def test_monthly_clearing_reconciles_to_the_one_bills_to_the_fen(dashboard_system):
    expected = dashboard_system.clearing_events()
    months = sorted({month for month, _, _ in expected})
    assert months  # the data set settled (and reversed) in the month it ran, whatever its service dates
    async with dashboard_system.client(*VIEWER) as client:
        for month in months:
            year, number = (int(x) for x in month.split("-"))
            response = await client.get("/api/clearing", params={"year": year, "month": number})
            assert response.status_code == 200, response.text
            body = response.json()
            wanted = {k: v for k, v in expected.items() if k[0] == month}
            shown = {(line["month"], line["hospital_code"], line["fund_code"]): (line["count"], line["amount"])
                     for line in body["lines"]}
            assert shown == wanted
            export = await client.get("/api/clearing.csv", params={"year": year, "month": number})
            assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
            assert f"clearing-{year}-{number:02d}.csv" in export.headers["content-disposition"]
            assert _subtotals(export.text) == wanted
        # over every month the funds owe the hospitals exactly what the standing one-bills say they paid
        owed = sum((Decimal(a) for _, a in expected.values()), Decimal(0))
        assert owed == sum(b.fund_total for b in dashboard_system.expected().bills)
        bad = await client.get("/api/clearing", params={"year": 2024, "month": 13})
        assert bad.status_code == 400 and "month" in bad.json()["error"]


async def test_claim_search_shows_the_one_bill_with_each_layer_explained(dashboard_system):
    claim_id = dataset.SETTLED[1]["claim_id"]  # worked example 2
    sent = dashboard_system.answers[claim_id][-1]
    async with dashboard_system.client(*VIEWER) as client:
        found = (await client.get(f"/api/claims/{claim_id}")).json()
        reversed_ = (await client.get(f"/api/claims/{dataset.REVERSED['claim_id']}")).json()
        pending = (await client.get(f"/api/claims/{dataset.INJURIES[1]['claim_id']}")).json()
        missing = await client.get("/api/claims/NO-SUCH-CLAIM")
    async with dashboard_system.client(*OPERATOR) as client:
        for_operator = (await client.get(f"/api/claims/{claim_id}")).json()
    bill = found["one_bill"]
    assert found["status"] == "settled"
    # operators read each layer's explanation as the hospital got it; viewers without the person's categories
    assert [(l["layer"], l["amount"], l["explanation"]) for l in for_operator["one_bill"]["layers"]] == [
        (l.layer.value, f"{l.amount:.2f}", l.explanation) for l in sent.layers]
    assert [(l["layer"], l["amount"], l["explanation"]) for l in bill["layers"]] == [
        (l.layer.value, f"{l.amount:.2f}", hide_categories(l.explanation)) for l in sent.layers]
    assert any("低保对象" in l["explanation"] for l in for_operator["one_bill"]["layers"])
    assert not any(name in str(bill) for name in CATEGORY_NAMES.values())
    assert all(l["explanation"] for l in bill["layers"])
    assert (bill["serious_illness"], bill["assistance"], bill["personal"]) == ("48212.50", "21166.25", "24071.25")
    assert found["person_id_masked"] == "340421********0002"
    assert reversed_["status"] == "reversed" and reversed_["reversed_at"]
    assert pending["status"] == "pending_review" and pending["one_bill"] is None
    assert missing.status_code == 404


async def test_pipeline_shows_reviews_stuck_claims_and_dead_letters(dashboard_system):
    # an accepted claim that never got a one-bill (as if a stage lost it)
    connection = await asyncpg.connect(dashboard_system.settings.database_url)
    try:
        await connection.execute(
            """INSERT INTO eligibility.claims (claim_id, hospital_code, person_id, content_hash, status, document,
                                               received_at, updated_at)
               VALUES ('DASH-STUCK', $1, $2, 'x', 'accepted', $3,
                       now() - interval '5 minutes', now() - interval '5 minutes')
               ON CONFLICT (claim_id) DO NOTHING""",
            dataset.HOSPITALS["county"], dataset.pid(1), orjson.dumps({"not": "a document"}),
        )
    finally:
        await connection.close()
    async with dashboard_system.client(*VIEWER) as client:
        body = (await client.get("/api/pipeline")).json()
    assert body["database"] == "ok"
    assert [s["claim_id"] for s in body["stuck"]["items"]] == ["DASH-STUCK"] and body["stuck"]["count"] == 1
    assert body["stuck"]["items"][0]["person_id_masked"] == "340421********0001"
    pending = {r["claim_id"] for r in body["reviews"]["items"]}
    assert dataset.INJURIES[1]["claim_id"] in pending
    # the operations service is down: the dashboard says so and counts the dead letters the stages published
    assert body["dead_letters"]["source"] == "metrics" and body["dead_letters"]["count"] >= 1
    assert "operations" in body["dead_letters"]["error"]
    # a timing window: the data set may have settled more than a minute before
    assert 0 <= body["throughput"]["last_minute"] <= len(dataset.SETTLED) + 11
    assert body["latency"]["count"] >= len(dataset.SETTLED) and body["latency"]["p50_ms"] > 0
    assert body["latency"]["p99_ms"] >= body["latency"]["p50_ms"]
    services = {s["service"] for s in body["lag"]["stages"]}
    assert {"eligibility", "basic", "insurer", "assistance", "backstop", "settlement"} <= services


async def test_no_response_holds_a_whole_person_id(dashboard_system):
    async with dashboard_system.client(*VIEWER) as client:
        texts = [(await client.get(path)).text for path in (
            "/api/pipeline", "/api/funds?year=2024", "/api/clearing?year=2024", "/api/clearing.csv?year=2024",
            *(f"/api/claims/{c['claim_id']}" for c in [*dataset.SETTLED, dataset.REVERSED, *dataset.INJURIES]),
        )]
    for person_id in dataset.ALL_PERSON_IDS:
        assert not any(person_id in text for text in texts), person_id


async def test_only_operators_may_act_and_only_after_login(dashboard_system):
    claim_id = dataset.INJURIES[1]["claim_id"]
    async with dashboard_system.client(*VIEWER) as viewer:
        refused = await viewer.post(f"/api/reviews/{claim_id}", json={"decision": "approve"})
        replay = await viewer.post("/api/dead-letters/1/replay", json={})
    assert refused.status_code == 403 and "operator" in refused.json()["error"]
    assert replay.status_code == 403
    async with dashboard_system.client(*OPERATOR) as operator:
        me = (await operator.get("/api/me")).json()
        down = await operator.post("/api/dead-letters/1/replay", json={})
    assert me == {"user": "operator", "role": "operator", "may_act": True}
    assert down.status_code == 503 and "operations" in down.json()["error"]  # the operations service is down
    async with __import__("httpx").AsyncClient(base_url=dashboard_system.url) as anonymous:
        assert (await anonymous.get("/api/funds")).status_code == 401
        assert (await anonymous.get("/api/clearing.csv?year=2024")).status_code == 401
        page = await anonymous.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        wrong = await anonymous.post("/login", data={"username": "operator", "password": "guess"})
        assert wrong.headers["location"] == "/login?failed=1"
    async with dashboard_system.client(*VIEWER) as viewer:
        state = (await viewer.get(f"/api/claims/{claim_id}")).json()
    assert state["status"] == "pending_review"  # the viewer's attempt changed nothing
