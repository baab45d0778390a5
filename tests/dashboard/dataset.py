"""A known set of claims for the dashboard's tests, and the figures expected
from them, computed here from the one-bills the hospital received (never
with the dashboard's SQL)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from medsettle.contract import SettlementResult
from tests.factories import claim_body, hospital_record, person_record

HOSPITALS = {
    "village": "H3404219010",
    "township": "H3404219011",
    "county": "H3404219001",
    "city": "H3404009001",
    "province": "H3400009001",
}
OTHER_REGION_HOSPITAL = "H1509009001"  # a county hospital of region 150900
LEVEL_OF = {code: level for level, code in HOSPITALS.items()} | {OTHER_REGION_HOSPITAL: "county"}


def pid(n: int, region: str = "340421") -> str:
    return f"{region}1980{n:08d}"[:18]


PERSONS = [
    person_record(pid(1)),
    person_record(pid(2), categories=["poverty_registered", "subsistence"]),
    person_record(pid(3)),
    person_record(pid(4)),
    person_record(pid(5)),
    person_record(pid(6)),
    person_record(pid(7)),
    person_record(pid(8), categories=["extreme_poverty"]),
    person_record(pid(9), categories=["poverty_registered"]),
    person_record(pid(10)),
    person_record(pid(11)),
    person_record(pid(12)),
    person_record(pid(13, "150900"), region="150900"),
]

HOSPITAL_RECORDS = [hospital_record(code, level) for level, code in HOSPITALS.items()] + [
    hospital_record(OTHER_REGION_HOSPITAL, "county", region="150900")
]


def _claim(n: int, hospital: str, discharged: str, region: str = "340421", **kwargs: Any) -> dict[str, Any]:
    admitted = (dt.date.fromisoformat(discharged) - dt.timedelta(days=7)).isoformat()
    return claim_body(claim_id=f"DASH-{n:03d}", person_id=pid(n, region), hospital_code=hospital,
                      discharged_on=discharged, admitted_on=admitted, **kwargs)


# Settled claims: every hospital level, every fund, a serious-illness payout in each band.
SETTLED = [
    _claim(1, HOSPITALS["county"], "2024-03-10", a="8000", b="2000", c="500"),  # worked example 1
    _claim(2, HOSPITALS["province"], "2024-03-12", a="150000", b="50000", c="10000", referral=True),  # example 2: 3–5万
    _claim(3, HOSPITALS["city"], "2024-03-20", a="60000", referral=True),
    _claim(4, HOSPITALS["province"], "2024-04-05", a="300000", referral=True),  # serious illness above 5万
    _claim(5, HOSPITALS["county"], "2024-04-10", a="150000"),  # serious illness 1–3万
    _claim(6, HOSPITALS["township"], "2024-03-15", a="300", visit_type="outpatient"),
    _claim(7, HOSPITALS["village"], "2024-04-20", a="1000"),
    _claim(8, HOSPITALS["county"], "2024-03-25", a="20000"),  # extreme poverty: assistance
    _claim(9, HOSPITALS["county"], "2024-04-15", a="30000"),  # poverty registered: backstop
    _claim(13, OTHER_REGION_HOSPITAL, "2024-03-18", region="150900", a="10000", b="1000"),
]
REVERSED = _claim(10, HOSPITALS["county"], "2024-03-28", a="5000")  # settled, then cancelled
INJURIES = [  # held for review
    _claim(11, HOSPITALS["county"], "2024-04-02", a="3000", injury=True),
    _claim(12, HOSPITALS["township"], "2024-04-03", a="2000", injury=True),
]
SERVICE_DATE = {c["claim_id"]: dt.date.fromisoformat(c["discharged_on"]) for c in [*SETTLED, REVERSED, *INJURIES]}
VISIT_TYPE = {c["claim_id"]: c["visit_type"] for c in [*SETTLED, REVERSED, *INJURIES]}
ALL_PERSON_IDS = [p["person_id"] for p in PERSONS]

FUND_FIELDS = {"390100": "basic", "390200": "serious_illness", "610100": "assistance", "640100": "backstop"}
CENT = Decimal("0.01")


def ratio(part: Decimal, whole: Decimal) -> str | None:
    return None if not whole else f"{(part * 100 / whole).quantize(CENT, rounding=ROUND_HALF_UP):.2f}"


@dataclass
class Expected:
    """The figures the dashboard must show, from the hospital's one-bills."""

    bills: list[SettlementResult]
    spent: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (policy, fund) -> yuan

    @classmethod
    def from_answers(cls, answers: dict[str, list[SettlementResult]], year: int = 2024) -> Expected:
        latest = {claim_id: results[-1] for claim_id, results in answers.items() if results}
        bills = [b for claim_id, b in latest.items()
                 if b.status == "settled" and claim_id in SERVICE_DATE and SERVICE_DATE[claim_id].year == year]
        expected = cls(bills)
        for bill in bills:
            for fund, name in FUND_FIELDS.items():
                key = (bill.policy or "", fund)
                expected.spent[key] = expected.spent.get(key, Decimal(0)) + getattr(bill, name)
        return expected

    def overall_ratio(self) -> str | None:
        return ratio(sum((b.fund_total for b in self.bills), Decimal(0)),
                     sum((b.total for b in self.bills), Decimal(0)))

    def by_level(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[SettlementResult]] = defaultdict(list)
        for bill in self.bills:
            groups[LEVEL_OF[bill.hospital_code]].append(bill)
        return {
            level: {"claims": len(bills), "total": f"{sum(b.total for b in bills):.2f}",
                    "fund_total": f"{sum(b.fund_total for b in bills):.2f}",
                    "ratio": ratio(sum(b.fund_total for b in bills), sum(b.total for b in bills))}
            for level, bills in groups.items()
        }

    def bands(self) -> list[tuple[int, str]]:
        edges = [(Decimal(0), Decimal(10_000)), (Decimal(10_000), Decimal(30_000)), (Decimal(30_000), Decimal(50_000)),
                 (Decimal(50_000), None)]
        out = []
        for low, high in edges:
            paid = [b.serious_illness for b in self.bills
                    if b.serious_illness >= low and (high is None or b.serious_illness < high)]
            out.append((len(paid), f"{sum(paid, Decimal(0)):.2f}"))
        return out

    def by_hospital(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[SettlementResult]] = defaultdict(list)
        for bill in self.bills:
            groups[bill.hospital_code].append(bill)
        out = {}
        for code, bills in groups.items():
            stays = [b for b in bills if VISIT_TYPE[b.claim_id] == "inpatient"]
            average = None
            if stays:
                average = (sum(b.total for b in stays) / len(stays)).quantize(CENT, rounding=ROUND_HALF_UP)
            out[code] = {"claims": len(bills), "admissions": len(stays),
                         "average_per_admission": None if average is None else f"{average:.2f}",
                         "fund_total": f"{sum(b.fund_total for b in bills):.2f}",
                         "ratio": ratio(sum(b.fund_total for b in bills), sum(b.total for b in bills))}
        return out

    @staticmethod
    def clearing_events(answers: dict[str, list[SettlementResult]]) -> dict[tuple[str, str, str], tuple[int, str]]:
        """(month, hospital, fund) -> (net count, amount) of the settlements and reversals that happened in
        each month (China Standard Time), from the answers: a reversal is negative and counts -1."""
        cst = dt.timezone(dt.timedelta(hours=8))
        sums: dict[tuple[str, str, str], list[Any]] = {}
        for claim_id, results in answers.items():
            if claim_id not in SERVICE_DATE:
                continue
            events = {r.status: r for r in results if r.status in ("settled", "reversed")}  # resends answer alike
            for status, bill in events.items():
                sign = 1 if status == "settled" else -1
                month = f"{bill.settled_at.astimezone(cst):%Y-%m}"
                for fund, name in FUND_FIELDS.items():
                    amount = getattr(bill, name)
                    if amount:
                        entry = sums.setdefault((month, bill.hospital_code, fund), [0, Decimal(0)])
                        entry[0] += sign
                        entry[1] += sign * amount
        return {k: (v[0], f"{v[1]:.2f}") for k, v in sums.items()}
