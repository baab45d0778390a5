"""Clearing statements and payout buckets, pure: no database (fast)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from decimal import Decimal

import pytest
from pydantic import ValidationError

from medsettle.settings import Settings
from services.dashboard.clearing import (
    CSV_HEADER,
    CST,
    Entry,
    close_due,
    csv_rows,
    month_of,
    month_start,
    next_month,
    render_csv,
    statement,
    tie_out,
)
from services.dashboard.figures import SERIOUS_ILLNESS_BANDS, payout_bands

MARCH = month_start(2024, 3)


def entry(claim_id: str, event: str = "settled", *, hospital: str = "H1", basic: str = "0", serious: str = "0",
          assistance: str = "0", backstop: str = "0", at: dt.datetime | None = None) -> Entry:
    sign = 1 if event == "settled" else -1
    funds = [sign * Decimal(x) for x in (basic, serious, assistance, backstop)]
    return Entry(claim_id, hospital, event, at or dt.datetime(2024, 3, 10, 9, tzinfo=CST), dt.date(2024, 3, 9),
                 "340421-2024", "340421********1234", "inpatient", sign * Decimal("10000.00"), *funds,
                 sum(funds, Decimal(0)))


def rows(body: dict) -> list[list[str]]:
    text = render_csv([body]).decode("utf-8")
    assert text.startswith("\ufeff")
    parsed = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert parsed[0] == CSV_HEADER
    return parsed[1:]


def test_months_are_those_of_china_standard_time():
    assert month_of(dt.datetime(2024, 3, 31, 16, 0, tzinfo=dt.UTC)) == month_start(2024, 4)  # 00:00 CST on 1 April
    assert month_of(dt.datetime(2024, 3, 31, 15, 59, 59, tzinfo=dt.UTC)) == MARCH
    assert next_month(month_start(2024, 12)) == month_start(2025, 1)
    assert close_due(MARCH, 1) == month_start(2024, 4)
    assert close_due(MARCH, 5) == dt.datetime(2024, 4, 5, tzinfo=CST)
    with pytest.raises(ValueError, match="month 13"):
        month_start(2024, 13)


def test_a_statement_has_each_claims_lines_beside_the_totals_per_hospital_and_fund():
    body = statement(MARCH, [
        entry("C1", basic="6900.00"),
        entry("C2", basic="116550.00", serious="48212.50", assistance="21166.25"),
        entry("C3", hospital="H2", basic="100.00", backstop="20.00"),
    ], {"H1": "县人民医院"})
    assert (body["period"], body["status"], body["entries"], body["amount"]) == ("2024-03", "open", 3, "192948.75")
    assert [(line["hospital_code"], line["fund_code"], line["count"], line["amount"]) for line in body["lines"]] == [
        ("H1", "390100", 2, "123450.00"), ("H1", "390200", 1, "48212.50"), ("H1", "610100", 1, "21166.25"),
        ("H2", "390100", 1, "100.00"), ("H2", "640100", 1, "20.00")]
    assert tie_out(body) == []
    table = rows(body)
    assert [r[1] for r in table] == ["明细", "明细", "明细", "明细", "机构小计", "机构小计", "机构小计",
                                     "明细", "明细", "机构小计", "机构小计",
                                     "基金合计", "基金合计", "基金合计", "基金合计", "基金合计"]
    assert table[0] == ["2024-03", "明细", "H1", "县人民医院", "390100", "城乡居民基本医疗保险统筹基金", "C1", "结算",
                        "2024-03-10T09:00:00.000+08:00", "2024-03-09", "1", "6900.00"]
    assert table[-1] == ["2024-03", "基金合计", "", "", "", "合计", "", "", "", "", "3", "192948.75"]
    details = sum(Decimal(r[11]) for r in table if r[1] == "明细")
    subtotals = sum(Decimal(r[11]) for r in table if r[1] == "机构小计")
    assert details == subtotals == Decimal(table[-1][11])


def test_a_reversal_is_a_negative_line_and_counts_minus_one():
    body = statement(month_start(2024, 4), [
        entry("C1", "reversed", basic="6900.00", at=dt.datetime(2024, 4, 2, tzinfo=CST)),
        entry("C4", basic="300.00", at=dt.datetime(2024, 4, 3, tzinfo=CST)),
    ], {})
    assert [(line["count"], line["amount"]) for line in body["lines"]] == [(0, "-6600.00")]
    assert body["amount"] == "-6600.00" and (body["settled"], body["reversed"]) == (1, 1)
    table = rows(body)
    assert table[0][6:] == ["C1", "撤销", "2024-04-02T00:00:00.000+08:00", "2024-03-09", "-1", "-6900.00"]
    assert tie_out(body) == []


def test_an_empty_month_is_a_statement_of_zero():
    body = statement(MARCH, [], {})
    assert (body["lines"], body["details"], body["amount"]) == ([], [], "0.00")
    assert csv_rows(body) == [["2024-03", "基金合计", "", "", "", "合计", "", "", "", "", "0", "0.00"]]


def test_the_same_entries_in_any_order_give_the_same_bytes():
    entries = [entry(f"C{n}", hospital=f"H{n % 3}", basic=f"{n}.10", at=dt.datetime(2024, 3, 1 + n, tzinfo=CST))
               for n in range(9)]
    shuffled = entries[:]
    random.Random(4).shuffle(shuffled)
    assert render_csv([statement(MARCH, entries, {})]) == render_csv([statement(MARCH, shuffled, {})])


def test_a_statement_that_does_not_add_up_is_caught():
    body = statement(MARCH, [entry("C1", basic="10.00")], {})
    body["lines"][0]["amount"] = "10.01"
    assert tie_out(body) == ["line H1 390100: 10.01"]


def test_payout_buckets_cover_every_amount_from_0_exactly_once():
    rng = random.Random(16)
    amounts = [Decimal(0), Decimal("0.01"), Decimal(10_000), Decimal("29999.99"), Decimal(50_000), Decimal(10**7)]
    amounts += [Decimal(rng.randrange(0, 10**9)) / 100 for _ in range(2000)]
    for bounds in ([Decimal(0), Decimal(10_000), Decimal(30_000), Decimal(50_000)], [Decimal(0)],
                   [Decimal(0), Decimal(2500)]):
        bands = payout_bands(bounds)
        for amount in amounts:
            hits = [label for label, low, high in bands if amount >= low and (high is None or amount < high)]
            assert len(hits) == 1, (amount, hits)
    assert [label for label, _, _ in SERIOUS_ILLNESS_BANDS] == ["0–1万元", "1–3万元", "3–5万元", "5万元以上"]
    assert [label for label, _, _ in payout_bands([Decimal(0), Decimal(2500)])] == ["0–0.25万元", "0.25万元以上"]


def test_payout_bands_are_set_in_configuration_and_must_start_at_0(monkeypatch):
    monkeypatch.setenv("DASHBOARD_PAYOUT_BANDS", "[0, 5000, 20000]")
    assert Settings().dashboard_payout_bands == [Decimal(0), Decimal(5000), Decimal(20000)]
    for bad, reason in (("[1000, 5000]", "start at 0"), ("[0, 5000, 5000]", "ascend")):
        monkeypatch.setenv("DASHBOARD_PAYOUT_BANDS", bad)
        with pytest.raises(ValidationError, match=reason):
            Settings()
