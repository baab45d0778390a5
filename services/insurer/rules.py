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

from medsettle.accumulator import Counters, LayerOutcome, Payment
from medsettle.bands import Band, banded, bands_upto, parts, shown
from medsettle.caps import fund_share_note, fund_share_room, within_annual_caps
from medsettle.contract import VISIT_NAMES, LayerName, SettlementDocument
from medsettle.money import ZERO, yuan
from medsettle.policy import Policy, SeriousIllnessPolicy


class SeriousIllnessAccumulator(Counters):
    base: Decimal = ZERO  # accumulated compliant burden after basic
    paid: Decimal = ZERO


def serious_illness_bands(rules: SeriousIllnessPolicy, favoured: bool) -> list[Band]:
    """The bands of the amount above the threshold, favoured people's raised by their points."""
    return bands_upto([(band.upto, band.ratio) for band in rules.bands],
                      rules.favoured_extra_points if favoured else ZERO)


def _above_threshold(rules: SeriousIllnessPolicy, favoured: bool, accumulated: Decimal) -> list[tuple[Decimal, Decimal]]:
    """The parts of the accumulated base above the threshold in each band."""
    threshold = rules.favoured_threshold if favoured else rules.threshold
    return parts(serious_illness_bands(rules, favoured), ZERO, max(ZERO, accumulated - threshold))


def banded_payment(rules: SeriousIllnessPolicy, favoured: bool, accumulated: Decimal) -> Decimal:
    """F: what the fund pays in all on an accumulated base (fen-rounded)."""
    return banded(_above_threshold(rules, favoured, accumulated))


def serious_illness_payment(policy: Policy, visit: str, favoured: bool, compliant: Decimal, total: Decimal,
                            basic: Decimal, accumulator: SeriousIllnessAccumulator, explain: bool = True) -> Payment:
    """What the fund pays for a claim of ``visit`` type, ``compliant`` of
    ``total`` and ``basic`` paid by the basic fund, for a person (``favoured``)
    whose year so far is ``accumulator`` (or any object with its fields)."""
    rules = policy.serious_illness
    if visit not in rules.visit_types:
        return Payment(ZERO, {}, f"大病保险：{VISIT_NAMES[visit]}费用不计入大病保险，本次支付 0.00 元。" if explain else None)

    this = max(ZERO, compliant - basic)
    before, paid = accumulator.base, accumulator.paid
    after = before + this
    pieces = _above_threshold(rules, favoured, after)
    due = banded(pieces)  # F: what the fund owes the person for the year, this claim included
    owed = within_annual_caps(due, paid, most=this)
    cap = rules.favoured_annual_cap if favoured else rules.annual_cap
    capped = within_annual_caps(due, paid, (cap,), most=this)
    ceiling = fund_share_room(policy.fund_share_cap, total, basic)
    amount = min(owed, capped)
    if ceiling is not None and amount > ceiling:
        amount = ceiling
    delta = {"base": this, "paid": amount}
    if not explain:
        return Payment(amount, delta, None)
    threshold = rules.favoured_threshold if favoured else rules.threshold
    who = "困难群众" if favoured else ""
    notes = [
        f"本次合规自付 {yuan(this)} 元（{yuan(compliant)} - {yuan(basic)}），"
        f"年度累计 {yuan(before)} → {yuan(after)} 元",
        f"{who}起付线 {yuan(threshold)} 元",
    ]
    if after <= threshold:
        notes.append("累计未超过起付线")
    else:
        notes.append(f"年度累计进入起付线以上的部分分段：{shown(pieces)} = {yuan(due)}")
        notes.append(f"年度已支付 {yuan(paid)} 元，本次 {yuan(due)} - {yuan(paid)}"
                     + (f"，至多本次合规自付 {yuan(this)} 元" if due - paid > this else "")
                     + f" = {yuan(owed)}")
    if capped < owed:
        notes.append(f"年度封顶 {yuan(cap)} 元，已支付 {yuan(paid)} 元，本次支付 {yuan(capped)} 元")  # type: ignore[arg-type]
    if ceiling is not None and min(owed, capped) > ceiling:
        notes.append(fund_share_note(policy.fund_share_cap, ceiling))  # type: ignore[arg-type]
    return Payment(amount, delta, "大病保险：" + "；".join(notes) + f"。大病保险支付 {yuan(amount)} 元。")


def settle_serious_illness(
    policy: Policy, document: SettlementDocument, accumulator: SeriousIllnessAccumulator
) -> LayerOutcome:
    """The insurer's rule: ``serious_illness_payment`` on the document, as a layer and a delta."""
    assert document.breakdown is not None, "basic layer must come first"
    breakdown = document.breakdown
    payment = serious_illness_payment(policy, document.claim.visit_type, document.person.favoured,
                                      breakdown.compliant, breakdown.total, document.layer_amount(LayerName.BASIC),
                                      accumulator)
    return LayerOutcome.of(document, LayerName.SERIOUS_ILLNESS, payment, SeriousIllnessAccumulator)
