"""Audit flags raised after settlement: pure rules, no I/O.

Instant settlement pays first and audits later, so a flag never changes a
claim's route; it is stored for an auditor with its reason. Three kinds:

- ``overlapping_stay``: one person's inpatient stays at two hospitals overlap.
  Stays overlap when each begins before the other ends (``a1 < d2`` and
  ``a2 < d1``): a transfer, discharged from one hospital and admitted to the
  next on the same day, is not an overlap.
- ``cost_outlier``: the claim's total is more than ``factor`` times the average
  total of the claims with the same main diagnosis (the first diagnosis code)
  at the same hospital level and visit type, once at least ``min_claims`` such
  claims are known. An outpatient visit is never compared with an admission.
- ``random_sample``: a reproducible share of claims, chosen by a hash of
  ``claim_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from decimal import Decimal

from medsettle.contract import LEVEL_NAMES, VISIT_NAMES
from medsettle.money import yuan

OVERLAPPING_STAY = "overlapping_stay"
COST_OUTLIER = "cost_outlier"
RANDOM_SAMPLE = "random_sample"


@dataclass(frozen=True)
class Stay:
    """An accepted inpatient claim, as the overlap rule sees it."""

    claim_id: str
    hospital_code: str
    admitted_on: dt.date
    discharged_on: dt.date


@dataclass(frozen=True)
class DiagnosisCost:
    """Claims so far of one main diagnosis at one level and visit type."""

    claims: int
    total: Decimal

    def average(self) -> Decimal:
        return self.total / self.claims

    def plus(self, total: Decimal) -> DiagnosisCost:
        return DiagnosisCost(self.claims + 1, self.total + total)


NO_COST = DiagnosisCost(0, Decimal("0.00"))


@dataclass(frozen=True)
class AuditFlag:
    claim_id: str
    kind: str
    reason: str
    related_claim_id: str | None = None


def overlapping_stays(stay: Stay, others: list[Stay]) -> AuditFlag | None:
    """A flag on ``stay`` if it overlaps a stay of the same person at another hospital."""
    clashes = [
        other for other in others
        if other.claim_id != stay.claim_id
        and other.hospital_code != stay.hospital_code
        and stay.admitted_on < other.discharged_on
        and other.admitted_on < stay.discharged_on
    ]
    if not clashes:
        return None
    clashes.sort(key=lambda s: (s.admitted_on, s.claim_id))
    described = "；".join(
        f"医疗机构 {o.hospital_code} 单据 {o.claim_id}（{o.admitted_on} 至 {o.discharged_on}）" for o in clashes
    )
    return AuditFlag(
        stay.claim_id,
        OVERLAPPING_STAY,
        f"住院 {stay.admitted_on} 至 {stay.discharged_on}（医疗机构 {stay.hospital_code}）"
        f"与同一参保人在其他医疗机构的住院时间重叠：{described}",
        clashes[0].claim_id,
    )


def cost_outlier(claim_id: str, total: Decimal, diagnosis: str, level: str, visit_type: str,
                 before: DiagnosisCost, *, factor: Decimal, min_claims: int) -> AuditFlag | None:
    """A flag if ``total`` is above ``factor`` × the average of the claims ``before`` it."""
    if before.claims < min_claims or before.total <= 0:
        return None
    average = before.average()
    if total <= factor * average:
        return None
    return AuditFlag(
        claim_id,
        COST_OUTLIER,
        f"总费用 {yuan(total)} 元，是{LEVEL_NAMES.get(level, level)}医疗机构主诊断 {diagnosis} "
        f"{VISIT_NAMES.get(visit_type, visit_type)}次均费用 {yuan(average)} 元（已有 {before.claims} 例）的 "
        f"{(total / average).quantize(Decimal('0.1'))} 倍，超过 {factor.normalize():f} 倍",
    )


def sampled(claim_id: str, rate: float) -> bool:
    """Whether ``claim_id`` falls in a random sample of ``rate``: the same answer every time."""
    draw = int.from_bytes(hashlib.sha256(claim_id.encode()).digest()[:8], "big")
    return draw < rate * 2**64


def random_sample(claim_id: str, rate: float) -> AuditFlag | None:
    if not sampled(claim_id, rate):
        return None
    return AuditFlag(claim_id, RANDOM_SAMPLE, f"随机抽查（抽样比例 {rate:.2%}）")
