"""Basic medical insurance (基本医保, fund 390100): pure rules, no I/O.

``settle_basic(policy, document, accumulator)`` classifies the bill into
self-pay, over-limit, pre-self-pay and compliant parts, applies the deductible
and the ratio of the hospital's level, and keeps within the annual limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import model_validator

from medsettle.accumulator import Counters, LayerOutcome, Payment
from medsettle.bands import banded, bands_above, parts, shown
from medsettle.caps import fund_share_room, within_annual_caps
from medsettle.contract import (
    LEVEL_NAMES,
    VISIT_NAMES,
    Breakdown,
    Item,
    LayerName,
    SettleClaim,
    SettlementDocument,
)
from medsettle.money import ZERO, clamp, fen, pct, share, yuan
from medsettle.policy import Inpatient, Policy


class BasicAccumulator(Counters):
    """What the basic fund paid a person this year, per kind of visit, what
    the claims would have been paid without the annual limit (``*_due``), and
    how many admissions they had per hospital level.

    The year's payments of a kind are ``min(limit, due)``: a claim pays that
    (with itself counted) less what was paid already. Without reversals it is
    the claim's own amount up to the room left under the limit; after a
    reversal freed room under the limit, it also pays what the limit had cut
    from a claim that stands (CONTRACT §6's rule for serious illness, applied
    to every accumulated layer)."""

    inpatient_paid: Decimal = ZERO
    outpatient_paid: Decimal = ZERO
    chronic_outpatient_paid: Decimal = ZERO
    inpatient_due: Decimal = ZERO
    outpatient_due: Decimal = ZERO
    chronic_outpatient_due: Decimal = ZERO
    admissions: dict[str, Decimal] = {}

    @model_validator(mode="before")
    @classmethod
    def _due_of_older_state(cls, data: Any) -> Any:
        """A state or delta stored before ``*_due`` existed: what was due is what was paid."""
        if isinstance(data, dict):
            for kind in ("inpatient", "outpatient", "chronic_outpatient"):
                if f"{kind}_due" not in data and f"{kind}_paid" in data:
                    data = {**data, f"{kind}_due": data[f"{kind}_paid"]}
        return data


def classify(items: list[Item], b_pre_self_pay: Decimal) -> Breakdown:
    """Split the bill: C within the price limit is self-pay, every part above
    a price limit is over-limit self-pay, B pays ``b_pre_self_pay`` first and
    the rest of A and B is the compliant amount."""
    total = over_limit = ZERO
    within = {"A": ZERO, "B": ZERO, "C": ZERO}
    for item in items:
        total += item.amount
        over = ZERO
        if item.limit_price is not None and item.unit_price > item.limit_price:
            over = min(item.amount, fen((item.unit_price - item.limit_price) * item.quantity))
        over_limit += over
        within[item.category] += item.amount - over
    pre_self_pay = share(within["B"], b_pre_self_pay)
    return Breakdown.of(
        total=total,
        self_pay=within["C"],
        over_limit_self_pay=over_limit,
        pre_self_pay=pre_self_pay,
        compliant=within["A"] + within["B"] - pre_self_pay,
    )


def _inpatient_deductible(
    rules: Inpatient, level: str, favoured: bool, categories: Sequence[str], prior_admissions: Decimal,
    notes: list[str] | None,
) -> Decimal:
    deductible = rules.levels[level].deductible  # type: ignore[index]
    if notes is not None:
        notes.append(f"{LEVEL_NAMES[level]}起付线 {yuan(deductible)} 元")
    if favoured and rules.favoured_deductible_share != 100:
        deductible = share(deductible, rules.favoured_deductible_share)
        if notes is not None:
            notes.append(f"困难群众起付线按 {pct(rules.favoured_deductible_share)} 计为 {yuan(deductible)} 元")
    if prior_admissions >= 1:
        if any(c in rules.repeat_admission_no_deductible_for for c in categories):
            deductible = ZERO
            if notes is not None:
                notes.append("年度内同级第二次及以上住院，免起付线")
        elif rules.repeat_admission_deductible_reduction:
            deductible = max(ZERO, deductible - rules.repeat_admission_deductible_reduction)
            if notes is not None:
                notes.append(
                    f"年度内同级第 {int(prior_admissions) + 1} 次住院，起付线降低 "
                    f"{yuan(rules.repeat_admission_deductible_reduction)} 元为 {yuan(deductible)} 元"
                )
    return fen(deductible)


def _banded(above: Decimal, ratio: Decimal, rules: Inpatient) -> list[tuple[Decimal, Decimal]]:
    """The part above the deductible in each ratio band, at its ratio (one band without ``ratio_bands``)."""
    return parts(bands_above(ratio, [(band.above, band.extra_points) for band in rules.ratio_bands]), ZERO, above)


class BasicPayment(NamedTuple):
    """The basic layer's arithmetic for one claim: its ``Payment``, and the
    bill's breakdown and the deductible applied, which the document carries on."""

    payment: Payment  # the delta: a ``BasicAccumulator``'s fields
    breakdown: Breakdown
    deductible: Decimal


_BUCKETS = {  # visit type -> (the accumulator's paid counter, its due counter)
    "inpatient": ("inpatient_paid", "inpatient_due"),
    "outpatient": ("outpatient_paid", "outpatient_due"),
    "chronic_outpatient": ("chronic_outpatient_paid", "chronic_outpatient_due"),
}


def basic_payment(policy: Policy, claim: SettleClaim, level: str, favoured: bool, categories: Sequence[str],
                  accumulator: BasicAccumulator, explain: bool = True) -> BasicPayment:
    """What the basic fund pays for ``claim`` (or any object with its
    ``items``, ``visit_type`` and ``referral``: the simulation's
    ``BillClaim``) at a hospital of ``level`` for a person (``favoured``, in
    ``categories``) whose year so far is ``accumulator`` (a
    ``BasicAccumulator``, or any object with its fields). ``explain``: write
    the explanation (the simulation does not)."""
    rules = policy.basic
    breakdown = classify(claim.items, rules.b_pre_self_pay)
    compliant = breakdown.compliant
    visit = claim.visit_type
    notes: list[str] | None = [f"政策范围内费用 {yuan(compliant)} 元"] if explain else None
    deductible = ZERO
    paid_name, due_name = _BUCKETS[visit]

    if visit == "inpatient":
        ip = rules.inpatient
        prior = accumulator.admissions.get(ip.admissions_count_as.get(level, level), ZERO)
        full_deductible = _inpatient_deductible(ip, level, favoured, categories, prior, notes)
        ratio = ip.levels[level].ratio
        if notes is not None:
            notes.append(f"{LEVEL_NAMES[level]}报销比例 {pct(ratio)}")
        if not claim.referral and level in ip.referral_penalty_levels and ip.referral_penalty_points:
            ratio -= ip.referral_penalty_points
            if notes is not None:
                notes.append(f"未办理转诊降低 {ip.referral_penalty_points.normalize():f} 个百分点")
        if favoured and ip.favoured_ratio_points:
            ratio += ip.favoured_ratio_points
            if notes is not None:
                notes.append(f"困难群众提高 {ip.favoured_ratio_points.normalize():f} 个百分点")
        ratio = clamp(ratio, ZERO, Decimal(100))
        deductible = min(full_deductible, compliant)
        above = compliant - deductible
        pieces = _banded(above, ratio, ip)
        amount = banded(pieces)
        if notes is not None:
            formula = f"({yuan(compliant)} - {yuan(deductible)}) 分段：{shown(pieces)}" if ip.ratio_bands else (
                f"({yuan(compliant)} - {yuan(deductible)}) × {pct(ratio)}"
            )
            notes.append(f"{formula} = {yuan(amount)}")
        limit = ip.annual_limit
    elif visit == "outpatient":
        ratio = rules.outpatient.ratio_by_level[level]
        amount = share(compliant, ratio)
        if notes is not None:
            notes.append(f"普通门诊不设起付线，{yuan(compliant)} × {pct(ratio)} = {yuan(amount)}")
        limit = rules.outpatient.annual_limit
    else:
        ratio = rules.chronic_outpatient.ratio
        amount = share(compliant, ratio)
        if notes is not None:
            notes.append(f"慢性病门诊不设起付线，{yuan(compliant)} × {pct(ratio)} = {yuan(amount)}")
        limit = rules.chronic_outpatient.annual_limit
    paid = getattr(accumulator, paid_name)

    ceiling = fund_share_room(policy.fund_share_cap, breakdown.total)
    if ceiling is not None and amount > ceiling:
        if notes is not None:
            notes.append(f"各项基金合计不超过总费用的 {pct(policy.fund_share_cap)}（{yuan(ceiling)} 元）")  # type: ignore[arg-type]
        amount = ceiling
    own = amount  # this claim's amount before the annual limit
    most = min(compliant - deductible, compliant if ceiling is None else ceiling)
    amount = within_annual_caps(getattr(accumulator, due_name) + own, paid, (limit,), most)
    delta: dict[str, Any] = {paid_name: amount, due_name: own}
    if visit == "inpatient":
        delta["admissions"] = {rules.inpatient.admissions_count_as.get(level, level): Decimal(1)}
    if notes is None:
        return BasicPayment(Payment(amount, delta, None), breakdown, deductible)
    if amount < own:
        room = max(ZERO, limit - paid)
        notes.append(
            f"{VISIT_NAMES[visit]}年度限额 {yuan(limit)} 元，已支付 {yuan(paid)} 元，本次按剩余额度 {yuan(room)} 元支付"
        )
    elif amount > own:
        notes.append(
            f"{VISIT_NAMES[visit]}年度限额 {yuan(limit)} 元，已支付 {yuan(paid)} 元：撤销释放的额度补付此前因限额少付的 "
            f"{yuan(amount - own)} 元"
        )
    if amount == 0 and compliant == 0:
        notes.append("无政策范围内费用，基本医保不支付")
    explanation = "基本医保：" + "；".join(notes) + f"。基本医保支付 {yuan(amount)} 元。"
    return BasicPayment(Payment(amount, delta, explanation), breakdown, deductible)


def settle_basic(policy: Policy, document: SettlementDocument, accumulator: BasicAccumulator) -> LayerOutcome:
    """The basic stage's rule: ``basic_payment`` on the document, as a layer and a delta."""
    person = document.person
    paid = basic_payment(policy, document.claim, document.hospital.level, person.favoured, person.categories,
                         accumulator)
    return LayerOutcome.of(document, LayerName.BASIC, paid.payment, BasicAccumulator, breakdown=paid.breakdown,
                           deductible=paid.deductible)
