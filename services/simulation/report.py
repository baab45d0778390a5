"""What a simulation reports, side by side with what was actually paid.
Pure: a ``Tally`` is filled person by person (each worker process has its
own), tallies are merged, and ``Tally.report`` gives the JSON document.

Definitions (README "Policy simulation"):

- A claim counts when it is still settled at the end of the record (a
  reversed claim paid and gave back: it adds nothing on either side). Its
  fund amounts are the one-bill's (actual) and the replay's (simulated).
- Compensation ratio: the four funds ÷ the claims' total, in percent.
- By category: a claim counts under every category the person held on its
  service date (the groups overlap), under ``ordinary`` when none.
- Serious-illness threshold reached: the person's accumulated base of the
  year (compliant − basic over the visit types the policy counts) lies above
  the threshold for them (favoured: the favoured threshold), with the policy
  in force for the actual side and the candidate for the simulated side.
- Payout buckets: persons by what the four funds paid them in the year.
- Budget use: each fund's spend by month of the service date, cumulative,
  against the candidate's annual budget (its ``budgets`` section, or
  ``--budget``).
- Personal change: what each person pays themselves in the year
  (simulated − actual); more / less by more than ``threshold`` yuan.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from medsettle.contract import CATEGORIES, FUNDS, LEVEL_NAMES, LEVELS, CATEGORY_NAMES, mask_person_id
from medsettle.money import ZERO, fen
from medsettle.policy import Policy
from services.simulation.replay import FUND_CODES, PersonYear

GROUP_NAMES = {**CATEGORY_NAMES, "ordinary": "普通参保人"}
BUCKETS: tuple[tuple[Decimal, Decimal | None], ...] = (
    (ZERO, ZERO), (ZERO, Decimal(1000)), (Decimal(1000), Decimal(5000)), (Decimal(5000), Decimal(10000)),
    (Decimal(10000), Decimal(50000)), (Decimal(50000), Decimal(100000)), (Decimal(100000), None),
)
BUCKET_NAMES = ("0", "0–1,000", "1,000–5,000", "5,000–10,000", "10,000–50,000", "50,000–100,000", "100,000+")
FUND_NAME = {code: name for code, name, _ in FUNDS}


def _bucket(amount: Decimal) -> int:
    if amount <= 0:
        return 0
    for index, (low, high) in enumerate(BUCKETS[1:], start=1):
        if amount > low and (high is None or amount <= high):
            return index
    return len(BUCKETS) - 1


def _zeros(n: int) -> list[Decimal]:
    return [ZERO] * n


def _ratio(part: Decimal, whole: Decimal) -> str | None:
    return f"{fen(part * 100 / whole):.2f}" if whole else None


def _threshold_for(policy: Policy, favoured: bool) -> Decimal:
    rules = policy.serious_illness
    return rules.favoured_threshold if favoured else rules.threshold


@dataclass
class Tally:
    change_threshold: Decimal = Decimal(100)
    largest: int = 10
    claims: int = 0
    reversals: int = 0
    in_force: int = 0
    persons: int = 0
    total: Decimal = ZERO
    funds: dict[str, list[Decimal]] = field(default_factory=lambda: {"actual": _zeros(4), "simulated": _zeros(4)})
    # group -> [total, actual funds, simulated funds]
    levels: dict[str, list[Decimal]] = field(default_factory=dict)
    groups: dict[str, list[Decimal]] = field(default_factory=dict)
    threshold_reached: dict[str, int] = field(default_factory=lambda: {"actual": 0, "simulated": 0})
    buckets: dict[str, list[int]] = field(default_factory=lambda: {"actual": [0] * 7, "simulated": [0] * 7})
    # side -> fund index -> month 1..12 (index 0 unused)
    months: dict[str, list[list[Decimal]]] = field(
        default_factory=lambda: {s: [_zeros(13) for _ in FUND_CODES] for s in ("actual", "simulated")})
    pay_more: int = 0
    pay_less: int = 0
    increases: list[tuple[Decimal, str, str, str]] = field(default_factory=list)
    decreases: list[tuple[Decimal, str, str, str]] = field(default_factory=list)
    claims_changed: int = 0
    persons_changed: int = 0

    def add(self, year: PersonYear, candidate: Policy, live: Policy | None) -> None:
        """One person's replayed year. ``live``: the policy in force, for the
        actual side's serious-illness threshold (``None``: not counted)."""
        self.persons += 1
        a0 = a1 = a2 = a3 = s0 = s1 = s2 = s3 = ZERO  # the person's year, actual and simulated, fund by fund
        actual_personal = simulated_personal = ZERO
        live_base = ZERO
        live_visits = live.serious_illness.visit_types if live is not None else ()
        actual_months, simulated_months = self.months["actual"], self.months["simulated"]
        levels, groups = self.levels, self.groups
        last = None
        changed = False
        for replayed in year.claims:
            claim = replayed.claim
            self.claims += 1
            paid, simulated_paid = claim.paid, replayed.paid
            if simulated_paid != paid:
                self.claims_changed += 1
                changed = True
            if claim.reversed_at is not None:  # not in force
                self.reversals += 1
                continue
            self.in_force += 1
            last = claim
            bill = claim.bill
            p0, p1, p2, p3 = paid
            q0, q1, q2, q3 = simulated_paid
            a0, a1, a2, a3 = a0 + p0, a1 + p1, a2 + p2, a3 + p3
            s0, s1, s2, s3 = s0 + q0, s1 + q1, s2 + q2, s3 + q3
            actual, simulated = p0 + p1 + p2 + p3, q0 + q1 + q2 + q3
            total = claim.total
            self.total += total
            month = bill.claim.discharged_on.month
            for index in range(4):
                actual_months[index][month] += paid[index]
                simulated_months[index][month] += simulated_paid[index]
            actual_personal += claim.personal
            simulated_personal += replayed.personal
            for table, key in ((levels, bill.hospital.level),
                               *((groups, c) for c in (bill.person.categories or ("ordinary",)))):
                row = table.get(key)
                if row is None:
                    row = table[key] = _zeros(3)
                row[0] += total
                row[1] += actual
                row[2] += simulated
            if bill.claim.visit_type in live_visits:
                live_base += claim.compliant - p0
        for index, (a, s) in enumerate(((a0, s0), (a1, s1), (a2, s2), (a3, s3))):
            self.funds["actual"][index] += a
            self.funds["simulated"][index] += s
        self.buckets["actual"][_bucket(a0 + a1 + a2 + a3)] += 1
        self.buckets["simulated"][_bucket(s0 + s1 + s2 + s3)] += 1
        if last is not None:
            if live is not None and live_base > _threshold_for(live, last.bill.person.favoured):
                self.threshold_reached["actual"] += 1
            favoured = candidate.favoured(list(last.bill.person.categories))
            if year.serious_illness_base > _threshold_for(candidate, favoured):
                self.threshold_reached["simulated"] += 1
        if changed:
            self.persons_changed += 1
        change = simulated_personal - actual_personal
        if change > self.change_threshold:
            self.pay_more += 1
        elif change < -self.change_threshold:
            self.pay_less += 1
        if change:
            entry = (change, mask_person_id(year.person_id), f"{actual_personal:.2f}", f"{simulated_personal:.2f}")
            self._keep(self.increases, entry, 1) if change > 0 else self._keep(self.decreases, entry, -1)

    def _keep(self, heap: list, entry: tuple, sign: int) -> None:
        keyed = (sign * entry[0], entry[1], entry[2], entry[3])
        if len(heap) < self.largest:
            heapq.heappush(heap, keyed)
        elif keyed > heap[0]:
            heapq.heapreplace(heap, keyed)

    def merge(self, other: Tally) -> None:
        for name in ("claims", "reversals", "in_force", "persons", "total", "pay_more", "pay_less",
                     "claims_changed", "persons_changed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for side in ("actual", "simulated"):
            self.funds[side] = [a + b for a, b in zip(self.funds[side], other.funds[side])]
            self.threshold_reached[side] += other.threshold_reached[side]
            self.buckets[side] = [a + b for a, b in zip(self.buckets[side], other.buckets[side])]
            self.months[side] = [[a + b for a, b in zip(mine, theirs)]
                                 for mine, theirs in zip(self.months[side], other.months[side])]
        for mine, theirs in ((self.levels, other.levels), (self.groups, other.groups)):
            for key, row in theirs.items():
                mine[key] = [a + b for a, b in zip(mine.get(key, _zeros(3)), row)]
        for heap in other.increases:
            self._keep(self.increases, (heap[0], *heap[1:]), 1)
        for heap in other.decreases:
            self._keep(self.decreases, (heap[0], *heap[1:]), 1)

    def report(self, *, region: str, year: int, candidate: Policy, live: Policy | None,
               budgets: dict[str, Decimal]) -> dict[str, Any]:
        actual_total, simulated_total = sum(self.funds["actual"], ZERO), sum(self.funds["simulated"], ZERO)
        funds = {}
        for index, code in enumerate(FUND_CODES):
            a, s = self.funds["actual"][index], self.funds["simulated"][index]
            funds[code] = {"name": FUND_NAME[code], "actual": f"{a:.2f}", "simulated": f"{s:.2f}",
                           "change": f"{s - a:.2f}", "change_percent": _ratio(s - a, a)}

        def ratios(table: dict[str, list[Decimal]], order: tuple[str, ...], names: dict[str, str]) -> list[dict]:
            return [{"key": key, "name": names[key], "total": f"{table[key][0]:.2f}",
                     "actual": _ratio(table[key][1], table[key][0]), "simulated": _ratio(table[key][2], table[key][0])}
                    for key in order if key in table]

        budget_use = {}
        for index, code in enumerate(FUND_CODES):
            budget = budgets.get(code)
            rows, running = [], {"actual": ZERO, "simulated": ZERO}
            for month in range(1, 13):
                row: dict[str, Any] = {"month": month}
                for side in ("actual", "simulated"):
                    running[side] += self.months[side][index][month]
                    row[side] = f"{self.months[side][index][month]:.2f}"
                    row[f"{side}_cumulative"] = f"{running[side]:.2f}"
                    row[f"{side}_share"] = _ratio(running[side], budget) if budget else None
                rows.append(row)
            budget_use[code] = {"budget": f"{budget:.2f}" if budget is not None else None, "months": rows}

        def people(heap: list, sign: int) -> list[dict]:
            ordered = sorted(heap, reverse=True)
            return [{"person": masked, "actual": a, "simulated": s, "change": f"{sign * key:.2f}"}
                    for key, masked, a, s in ordered]

        return {
            "region": region,
            "year": year,
            "candidate": {"policy": candidate.policy, "name": candidate.name},
            "live_policy": live.policy if live is not None else None,
            "claims": self.claims,
            "reversals": self.reversals,
            "claims_in_force": self.in_force,
            "persons": self.persons,
            "total": f"{self.total:.2f}",
            "funds": funds,
            "fund_total": {"actual": f"{actual_total:.2f}", "simulated": f"{simulated_total:.2f}",
                           "change": f"{simulated_total - actual_total:.2f}"},
            "compensation_ratio": {"actual": _ratio(actual_total, self.total),
                                   "simulated": _ratio(simulated_total, self.total)},
            "by_level": ratios(self.levels, LEVELS, LEVEL_NAMES),
            "by_category": ratios(self.groups, (*CATEGORIES, "ordinary"), GROUP_NAMES),
            "serious_illness_threshold_reached": dict(self.threshold_reached),
            "payout_buckets": [{"bucket": name, "actual": self.buckets["actual"][i],
                                "simulated": self.buckets["simulated"][i]} for i, name in enumerate(BUCKET_NAMES)],
            "budget_use": budget_use,
            "personal_change": {
                "threshold": f"{self.change_threshold:.2f}", "pay_more": self.pay_more, "pay_less": self.pay_less,
                "largest_increases": people(self.increases, 1), "largest_decreases": people(self.decreases, -1),
            },
            "differences": {"claims": self.claims_changed, "persons": self.persons_changed},
        }
