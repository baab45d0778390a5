"""Serious-illness insurance (大病保险, fund 390200): pure rules, no I/O.

The base is the year's accumulated compliant personal burden after basic
insurance (``compliant - basic``) over the visit types the policy names. A
claim pays ``F(before + this) - paid``, never below 0 (CONTRACT §6): F is the
banded function of the accumulated base with this claim's favoured status,
``paid`` what the fund has already paid the person this year. Thresholds and
bands span claims, and the year's payments add up to F of the year's base:
a reversal takes the reversed claim's base and payment out of the
accumulator, and the person's next claim settles the difference. A claim
never pays more than its own base (the funds stay within its compliant
amount); what it could not take, a later claim does.
"""

from __future__ import annotations

from decimal import Decimal

from medsettle.accumulator import Counters, LayerOutcome
from medsettle.contract import VISIT_NAMES, Layer, LayerName, SettlementDocument
from medsettle.money import ZERO, clamp, fen, pct, share, yuan
from medsettle.policy import Policy, SeriousIllnessPolicy


class SeriousIllnessAccumulator(Counters):
    base: Decimal = ZERO  # accumulated compliant burden after basic
    paid: Decimal = ZERO


def band_ratios(rules: SeriousIllnessPolicy, favoured: bool) -> list[tuple[Decimal, Decimal | None, Decimal]]:
    """(lower, upper, ratio) of each band, on the amount above the threshold."""
    extra = rules.favoured_extra_points if favoured else ZERO
    bands, lower = [], ZERO
    for band in rules.bands:
        bands.append((lower, band.upto, clamp(band.ratio + extra, ZERO, Decimal(100))))
        lower = band.upto if band.upto is not None else lower
    return bands


def banded_payment(rules: SeriousIllnessPolicy, favoured: bool, accumulated: Decimal) -> Decimal:
    """F: what the fund pays in all on an accumulated base (fen-rounded)."""
    threshold = rules.favoured_threshold if favoured else rules.threshold
    above = max(ZERO, accumulated - threshold)
    total = ZERO
    for lower, upper, ratio in band_ratios(rules, favoured):
        if above <= lower:
            break
        part = (min(above, upper) if upper is not None else above) - lower
        total += part * ratio / 100
    return fen(total)


def _bands_crossed(rules: SeriousIllnessPolicy, favoured: bool, threshold: Decimal, before: Decimal, after: Decimal) -> str:
    pieces = []
    start, end = max(ZERO, before - threshold), max(ZERO, after - threshold)
    for lower, upper, ratio in band_ratios(rules, favoured):
        low = max(start, lower)
        high = min(end, upper) if upper is not None else end
        if high > low:
            pieces.append(f"{yuan(high - low)} × {pct(ratio)}")
    return " + ".join(pieces)


def settle_serious_illness(
    policy: Policy, document: SettlementDocument, accumulator: SeriousIllnessAccumulator
) -> LayerOutcome:
    rules = policy.serious_illness
    claim = document.claim
    assert document.breakdown is not None, "basic layer must come first"
    favoured = document.person.favoured
    basic = document.layer_amount(LayerName.BASIC)

    if claim.visit_type not in rules.visit_types:
        layer = Layer(
            layer=LayerName.SERIOUS_ILLNESS,
            amount=ZERO,
            explanation=f"大病保险：{VISIT_NAMES[claim.visit_type]}费用不计入大病保险，本次支付 0.00 元。",
        )
        return LayerOutcome(document=document.with_layer(layer), delta=SeriousIllnessAccumulator())

    this = max(ZERO, document.breakdown.compliant - basic)
    before, after = accumulator.base, accumulator.base + this
    threshold = rules.favoured_threshold if favoured else rules.threshold
    due = banded_payment(rules, favoured, after)  # what the fund owes the person for the year, this claim included
    amount = min(this, max(ZERO, due - accumulator.paid))
    who = "困难群众" if favoured else ""
    notes = [
        f"本次合规自付 {yuan(this)} 元（{yuan(document.breakdown.compliant)} - {yuan(basic)}），"
        f"年度累计 {yuan(before)} → {yuan(after)} 元",
        f"{who}起付线 {yuan(threshold)} 元",
    ]
    if after <= threshold:
        notes.append("累计未超过起付线")
    else:
        crossed = _bands_crossed(rules, favoured, threshold, ZERO, after)
        notes.append(f"年度累计进入起付线以上的部分分段：{crossed} = {yuan(due)}")
        notes.append(f"年度已支付 {yuan(accumulator.paid)} 元，本次 {yuan(due)} - {yuan(accumulator.paid)}"
                     + (f"，至多本次合规自付 {yuan(this)} 元" if due - accumulator.paid > this else "")
                     + f" = {yuan(amount)}")
    cap = rules.favoured_annual_cap if favoured else rules.annual_cap
    if cap is not None and amount > max(ZERO, cap - accumulator.paid):
        room = max(ZERO, cap - accumulator.paid)
        notes.append(f"年度封顶 {yuan(cap)} 元，已支付 {yuan(accumulator.paid)} 元，本次支付 {yuan(room)} 元")
        amount = room
    if policy.fund_share_cap is not None:
        ceiling = max(ZERO, share(document.breakdown.total, policy.fund_share_cap) - basic)
        if amount > ceiling:
            notes.append(f"各项基金合计不超过总费用的 {pct(policy.fund_share_cap)}，本次至多 {yuan(ceiling)} 元")
            amount = ceiling
    layer = Layer(
        layer=LayerName.SERIOUS_ILLNESS,
        amount=amount,
        explanation="大病保险：" + "；".join(notes) + f"。大病保险支付 {yuan(amount)} 元。",
    )
    return LayerOutcome(
        document=document.with_layer(layer),
        delta=SeriousIllnessAccumulator(base=this, paid=amount),
    )
