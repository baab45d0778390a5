"""Clearing on the real pipeline and real PostgreSQL: settle, close the month,
reverse in the next month. The closed statement stays byte for byte the
same, the next month has the negative line, both tie out to the one-bills
the hospital received (summed here, never with the dashboard's SQL)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from deploy.dev_credentials import dev_users
from medsettle.contract import SettlementResult
from medsettle.settings import Settings
from services.dashboard.app import build_app
from services.settlement.app import SettlementStage
from tests.dashboard.conftest import drop_database, free_port, serving
from tests.factories import claim_body, hospital_record, person_record
from tests.harness import Pipeline, fresh_database, pipeline_settings
from tests.infra import own_broker

CST = dt.timezone(dt.timedelta(hours=8))
COUNTY, TOWNSHIP = "H3404218001", "H3404218002"
FUNDS = {"390100": "basic", "390200": "serious_illness", "610100": "assistance", "640100": "backstop"}
OPERATOR = {"username": "operator", "password": "operator-dev"}


def pid(n: int) -> str:
    return f"3404211985{n:08d}"[:18]


@dataclass
class Clearing:
    pipeline: Pipeline
    client: httpx.AsyncClient
    dashboard: Any
    settled_at: list[dt.datetime]  # the settlement stage's clock
    now: list[dt.datetime]  # the dashboard's clock
    database_url: str

    async def settle(self, n: int, hospital: str = COUNTY, **amounts: str) -> SettlementResult:
        claim = claim_body(claim_id=f"CLR-{n:03d}", person_id=pid(n), hospital_code=hospital, **amounts)
        await self.pipeline.hospital.send(claim)
        bill = await self.pipeline.hospital.answer(claim["claim_id"])
        assert bill.status == "settled", bill.rejection
        return bill

    async def cancel(self, n: int, hospital: str = COUNTY) -> SettlementResult:
        claim_id = f"CLR-{n:03d}"
        await self.pipeline.hospital.send({"type": "cancel", "claim_id": claim_id, "hospital_code": hospital})
        answers = await self.pipeline.hospital.answers(claim_id, 2)
        assert answers[-1].status == "reversed"
        return answers[-1]

    async def month(self, month: int) -> tuple[bytes, bytes]:
        body = await self.client.get("/api/clearing", params={"year": 2024, "month": month})
        export = await self.client.get("/api/clearing.csv", params={"year": 2024, "month": month})
        assert body.status_code == export.status_code == 200, (body.text, export.text)
        return body.content, export.content

    async def close(self, month: int) -> httpx.Response:
        return await self.client.post("/api/clearing/close", json={"year": 2024, "month": month})


@pytest.fixture(scope="module")
async def system(database_url: str, embedded_broker_factory: Any) -> AsyncIterator[Clearing]:
    url = await fresh_database(database_url, prefix="clear")
    async with own_broker(embedded_broker_factory) as bootstrap:  # consumer groups of its own
        pipeline = Pipeline(pipeline_settings(bootstrap, url))
        settled_at = [dt.datetime(2024, 3, 20, 10, tzinfo=CST)]
        now = [dt.datetime(2024, 3, 20, 10, tzinfo=CST)]
        pipeline.stage(SettlementStage).clock = lambda: settled_at[0]
        await pipeline.start()
        try:
            await pipeline.register(
                persons=[person_record(pid(n), categories=["poverty_registered", "subsistence"] if n == 2 else [])
                         for n in range(1, 10)],
                hospitals=[hospital_record(COUNTY, "county"), hospital_record(TOWNSHIP, "township")])
            settings = Settings(database_url=url, log_level="WARNING",
                                eligibility_api_url=f"http://127.0.0.1:{free_port()}",
                                operations_api_url=f"http://127.0.0.1:{free_port()}", service_metrics_urls={},
                                dashboard_users=dev_users(), dashboard_development_users=True)  # as under make run
            app = build_app(settings, clock=lambda: now[0])
            port = free_port()
            async with serving(app, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                login = await client.post("/login", data=OPERATOR)
                assert login.status_code == 303
                yield Clearing(pipeline, client, app.state.dashboard, settled_at, now, url)
        finally:
            await pipeline.stop()
            await drop_database(database_url, url)


def table(csv_bytes: bytes) -> list[list[str]]:
    text = csv_bytes.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))[1:]


def expected_lines(events: list[tuple[SettlementResult, int]]) -> dict[tuple[str, str], tuple[int, str]]:
    """(hospital, fund) -> (net count, amount) from the hospital's answers: +1 a settlement, -1 a reversal."""
    sums: dict[tuple[str, str], list[Any]] = {}
    for bill, sign in events:
        for code, name in FUNDS.items():
            if getattr(bill, name):
                entry = sums.setdefault((bill.hospital_code, code), [0, Decimal(0)])
                entry[0] += sign
                entry[1] += sign * getattr(bill, name)
    return {k: (v[0], f"{v[1]:.2f}") for k, v in sums.items()}


def shown_lines(body: bytes) -> dict[tuple[str, str], tuple[int, str]]:
    return {(line["hospital_code"], line["fund_code"]): (line["count"], line["amount"])
            for line in orjson.loads(body)["lines"]}


def csv_subtotals(csv_bytes: bytes) -> dict[tuple[str, str], tuple[int, str]]:
    return {(r[2], r[4]): (int(r[10]), r[11]) for r in table(csv_bytes) if r[1] == "机构小计"}


def csv_detail_sum(csv_bytes: bytes) -> Decimal:
    return sum((Decimal(r[11]) for r in table(csv_bytes) if r[1] == "明细"), Decimal(0))


async def test_a_closed_month_never_changes_and_a_later_reversal_is_a_negative_line_in_its_own_month(system):
    # March: four settlements at two hospitals, one of them reversed in March too
    one = await system.settle(1, a="8000", b="2000", c="500")  # worked example 1: basic 6900
    two = await system.settle(2, hospital=COUNTY, a="150000", b="50000", c="10000")  # every fund but backstop
    three = await system.settle(3, hospital=TOWNSHIP, a="1200")
    four = await system.settle(4, a="3000")
    system.settled_at[0] = dt.datetime(2024, 3, 31, 23, 59, 59, 999000, tzinfo=CST)  # the last instant of March
    reversed_in_march = await system.cancel(4)
    march_events = [(one, 1), (two, 1), (three, 1), (four, 1), (reversed_in_march, -1)]

    open_body, open_csv = await system.month(3)
    assert orjson.loads(open_body)["status"] == "open"
    assert shown_lines(open_body) == expected_lines(march_events)

    # not before the month has ended
    system.now[0] = dt.datetime(2024, 3, 31, 23, 0, tzinfo=CST)
    early = await system.close(3)
    assert early.status_code == 409 and "尚未结束" in early.json()["error"]

    system.now[0] = dt.datetime(2024, 4, 1, 9, 0, tzinfo=CST)
    closing = await system.close(3)
    assert closing.status_code == 200, closing.text
    closed_body, closed_csv = await system.month(3)
    assert closing.content == closed_body
    march = orjson.loads(closed_body)
    assert (march["status"], march["closed_by"]) == ("closed", "operator")
    assert march["closed_at"] == "2024-04-01T09:00:00.000+08:00"
    assert shown_lines(closed_body) == expected_lines(march_events)  # the same figures as before the close
    assert csv_subtotals(closed_csv) == expected_lines(march_events)
    assert {(d["claim_id"], d["event"]) for d in march["details"]} == {
        ("CLR-001", "settled"), ("CLR-002", "settled"), ("CLR-003", "settled"), ("CLR-004", "settled"),
        ("CLR-004", "reversed")}

    # April: claim 1 reversed, claim 5 settled; and a settlement stamped in March that reaches
    # the database only now (a transaction that committed after the close)
    system.settled_at[0] = dt.datetime(2024, 4, 2, 11, 0, tzinfo=CST)
    reversal = await system.cancel(1)
    five = await system.settle(5, hospital=TOWNSHIP, a="2000")
    system.settled_at[0] = dt.datetime(2024, 3, 31, 22, 0, tzinfo=CST)
    late = await system.settle(6, a="4000")
    system.settled_at[0] = dt.datetime(2024, 4, 20, 11, 0, tzinfo=CST)

    again_body, again_csv = await system.month(3)
    assert (again_body, again_csv) == (closed_body, closed_csv)  # byte for byte
    april_body, april_csv = await system.month(4)
    april = orjson.loads(april_body)
    april_events = [(reversal, -1), (five, 1), (late, 1)]
    assert april["status"] == "open"
    assert shown_lines(april_body) == expected_lines(april_events)
    negative = [r for r in table(april_csv) if r[1] == "明细" and r[6] == "CLR-001"]
    assert negative == [["2024-04", "明细", COUNTY, f"county 医院 {COUNTY}", "390100", "城乡居民基本医疗保险统筹基金", "CLR-001", "撤销",
                         "2024-04-02T11:00:00.000+08:00", "2024-03-10", "-1", "-6900.00"]]
    assert any(r[6] == "CLR-006" for r in table(april_csv))  # the late one is not lost

    # both tie out: each statement to its events, and the two together to the standing one-bills
    for body, csv_bytes, events in ((closed_body, closed_csv, march_events), (april_body, april_csv, april_events)):
        amount = sum((sign * bill.fund_total for bill, sign in events), Decimal(0))
        assert Decimal(orjson.loads(body)["amount"]) == amount == csv_detail_sum(csv_bytes)
        assert table(csv_bytes)[-1][1:] == ["基金合计", "", "", "", "合计", "", "", "", "", str(len(events)),
                                            f"{amount:.2f}"]
    standing = [two, three, five, late]  # 1 and 4 were reversed
    for code, name in FUNDS.items():
        cleared = sum((Decimal(line["amount"]) for s in (march, april) for line in s["by_fund"]
                       if line["fund_code"] == code), Decimal(0))
        assert cleared == sum((getattr(b, name) for b in standing), Decimal(0)), code

    # closing April; closing it again answers the same statement
    system.now[0] = dt.datetime(2024, 5, 1, 9, 0, tzinfo=CST)
    first, second = await system.close(4), await system.close(4)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert (await system.month(4))[0] == first.content
    assert orjson.loads(first.content)["details"] == april["details"]

    # nothing changes a closed statement, not even SQL
    connection = await asyncpg.connect(system.database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="never changes"):
            await connection.execute("UPDATE clearing.statements SET amount = 0 WHERE month = '2024-03-01'")
        with pytest.raises(asyncpg.RaiseError, match="never changes"):
            await connection.execute("DELETE FROM clearing.statement_lines WHERE claim_id = 'CLR-001'")
    finally:
        await connection.close()
    assert (await system.month(3)) == (closed_body, closed_csv)

    # the year, month by month, holds both statements as stored
    year = await system.client.get("/api/clearing", params={"year": 2024})
    assert [(m["period"], m["status"]) for m in year.json()["months"]] == [("2024-03", "closed"), ("2024-04", "closed")]
    year_csv = await system.client.get("/api/clearing.csv", params={"year": 2024})
    _, april_closed_csv = await system.month(4)
    assert table(year_csv.content) == table(closed_csv) + table(april_closed_csv)


async def test_months_close_in_order_and_on_the_configured_day(system):
    # a May settlement, then June: June cannot close while May is open
    system.settled_at[0] = dt.datetime(2024, 5, 10, 11, 0, tzinfo=CST)
    may = await system.settle(7, a="5000")
    system.settled_at[0] = dt.datetime(2024, 6, 10, 11, 0, tzinfo=CST)
    await system.settle(8, a="6000")
    system.now[0] = dt.datetime(2024, 7, 1, 9, 0, tzinfo=CST)
    refused = await system.close(6)
    assert refused.status_code == 409 and "2024-05" in refused.json()["error"]

    # CLEARING_CLOSE_DAY=3: May closes by itself from 3 June 00:00 CST, June from 3 July
    system.dashboard.clearing_close_day = 3
    system.now[0] = dt.datetime(2024, 7, 2, 23, 59, tzinfo=CST)
    await system.dashboard.close_due_clearing()
    body, _ = await system.month(5)
    assert orjson.loads(body)["closed_by"] == "schedule"
    assert shown_lines(body) == expected_lines([(may, 1)])
    assert orjson.loads((await system.month(6))[0])["status"] == "open"
    system.now[0] = dt.datetime(2024, 7, 3, 0, 0, tzinfo=CST)
    await system.dashboard.close_due_clearing()
    assert orjson.loads((await system.month(6))[0])["closed_by"] == "schedule"

    # one month after the other, empty ones too; none before the closed ones
    system.dashboard.clearing_close_day = None
    system.settled_at[0] = dt.datetime(2024, 9, 10, 11, 0, tzinfo=CST)
    september = await system.settle(9, a="7000")
    system.now[0] = dt.datetime(2024, 10, 1, 9, 0, tzinfo=CST)
    gap = await system.close(9)
    assert gap.status_code == 409 and "2024-07" in gap.json()["error"]
    before = await system.close(2)
    assert before.status_code == 409 and "2024-02" in before.json()["error"]
    for month in (7, 8):
        assert (await system.close(month)).status_code == 200
    august = orjson.loads((await system.month(8))[0])
    assert (august["status"], august["details"], august["amount"]) == ("closed", [], "0.00")
    closing = await system.close(9)
    assert closing.status_code == 200
    assert shown_lines(closing.content) == expected_lines([(september, 1)])


async def test_a_viewer_cannot_close_a_month(system):
    async with httpx.AsyncClient(base_url=str(system.client.base_url), timeout=30) as viewer:
        await viewer.post("/login", data={"username": "viewer", "password": "viewer-dev"})
        refused = await viewer.post("/api/clearing/close", json={"year": 2024, "month": 7})
    assert refused.status_code == 403
    bad = await system.client.post("/api/clearing/close", json={"year": 2024})
    assert bad.status_code == 400
