"""The dashboard's arithmetic: pure, no I/O, no clock (dates are passed in).

Amounts are Decimal yuan; ratios are percentages rounded to 0.01, half up.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from medsettle.contract import FUNDS, LEVELS

HUNDREDTH = Decimal("0.01")

FUND_NAMES = {code: name for code, name, _ in FUNDS}


def _wan(amount: Decimal) -> str:
    """An amount in 万元 as a label: 10000 -> 1, 2500 -> 0.25."""
    return f"{(amount / 10_000).normalize():f}"


def payout_bands(bounds: list[Decimal]) -> tuple[tuple[str, Decimal, Decimal | None], ...]:
    """Buckets of serious-illness payouts per one-bill from their lower bounds
    (``DASHBOARD_PAYOUT_BANDS``, from 0): ``[low, next low)``, the last open-ended,
    so every amount from 0 falls in exactly one."""
    bands = []
    for index, low in enumerate(bounds):
        high = bounds[index + 1] if index + 1 < len(bounds) else None
        label = f"{_wan(low)}–{_wan(high)}万元" if high is not None else f"{_wan(low)}万元以上"
        bands.append((label, low, high))
    return tuple(bands)


# The default buckets (大额补偿 as county reports count them, from 0).
SERIOUS_ILLNESS_BANDS = payout_bands([Decimal(0), Decimal(10_000), Decimal(30_000), Decimal(50_000)])

_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9A-Za-z])")


def mask_identities_in(text: str) -> str:
    """Free text (an error, a dead letter) with every resident id number masked."""
    return _ID_NUMBER.sub(lambda m: m.group(1) + "*" * 8 + m.group(3), text)


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part / whole`` in percent, to 0.01, half up; None when ``whole`` is 0."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


def average(total: Decimal, count: int) -> Decimal | None:
    if not count:
        return None
    return (Decimal(total) / count).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{Decimal(amount).quantize(HUNDREDTH, rounding=ROUND_HALF_UP):.2f}"


def share_of_year_gone(today: dt.date, year: int) -> Decimal:
    """Percent of ``year`` elapsed by the end of ``today``: 100 for a past year, 0 for a future one."""
    if year < today.year:
        return Decimal(100)
    if year > today.year:
        return Decimal(0)
    days = 366 if calendar.isleap(year) else 365
    gone = today.timetuple().tm_yday
    return (Decimal(gone) * 100 / days).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


BudgetState = Literal["ok", "ahead", "over", "no_budget"]

STATE_TEXT = {
    "ok": "正常",
    "ahead": "预警：支出进度快于时间进度",
    "over": "超预算",
    "no_budget": "未设年度预算",
}


@dataclass(frozen=True)
class BudgetLine:
    """One fund of one policy: what it spent of its year's budget."""

    policy: str
    fund_code: str
    budget: Decimal | None
    spent: Decimal
    elapsed_share: Decimal

    @property
    def spent_share(self) -> Decimal | None:
        return percent(self.spent, self.budget) if self.budget else None

    @property
    def state(self) -> BudgetState:
        if not self.budget:
            return "no_budget"
        if self.spent > self.budget:
            return "over"
        share = self.spent_share
        assert share is not None
        return "ahead" if share > self.elapsed_share else "ok"

    def as_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "fund_code": self.fund_code,
            "fund_name": FUND_NAMES.get(self.fund_code, self.fund_code),
            "budget": money(self.budget),
            "spent": money(self.spent),
            "spent_share": money(self.spent_share),
            "elapsed_share": money(self.elapsed_share),
            "state": self.state,
            "state_text": STATE_TEXT[self.state],
            "warning": self.state in ("ahead", "over"),
        }


def budget_lines(policy: str, budgets: dict[str, Decimal], spent: dict[str, Decimal],
                 elapsed_share: Decimal) -> list[BudgetLine]:
    """The four funds of a policy in contract order, each against its budget."""
    return [
        BudgetLine(policy, code, budgets.get(code), spent.get(code, Decimal(0)), elapsed_share)
        for code, _, _ in FUNDS
    ]


def level_order(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)  # type: ignore[arg-type]


def month_bounds(year: int, month: int | None) -> tuple[dt.date, dt.date]:
    """``[first day, first day after)`` of a month, or of the year when ``month`` is None."""
    if month is None:
        return dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    if not 1 <= month <= 12:
        raise ValueError(f"month {month} is not 1–12")
    start = dt.date(year, month, 1)
    return start, (dt.date(year + 1, 1, 1) if month == 12 else dt.date(year, month + 1, 1))
