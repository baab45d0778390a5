"""Medical assistance (医疗救助, fund 610100): pure rules, no I/O.

The base is the claim's compliant burden left after basic and serious
illness, for every visit type. A person in several categories gets the most
favourable one.
"""

from __future__ import annotations

from decimal import Decimal

from medsettle.accumulator import Counters, LayerOutcome
from medsettle.contract import CATEGORY_NAMES, Layer, LayerName, SettlementDocument
from medsettle.money import ZERO, pct, share, yuan
from medsettle.policy import Policy


class AssistanceAccumulator(Counters):
    paid: Decimal = ZERO


def _candidate(policy: Policy, category: str, base: Decimal, total: Decimal, paid: Decimal) -> tuple[Decimal, str]:
    rules = policy.assistance
    rule = rules.categories[category]  # type: ignore[index]
    large = rules.large_claim_from is not None and total >= rules.large_claim_from
    ratio = rule.large_claim_ratio if large and rule.large_claim_ratio is not None else rule.ratio
    amount = share(base, ratio)
    basis = ""
    if rule.large_claim_ratio is not None and rules.large_claim_from is not None:
        basis = f"总费用 {yuan(total)} 元{'达到' if large else '不足'} {yuan(rules.large_claim_from)} 元，"
    notes = [f"{CATEGORY_NAMES[category]}：{basis}{yuan(base)} × {pct(ratio)} = {yuan(amount)}"]
    if rules.small_claim_cap is not None and not large and amount > rules.small_claim_cap:
        amount = rules.small_claim_cap
        notes.append(f"总费用不足 {yuan(rules.large_claim_from or ZERO)} 元，单次至多 {yuan(amount)} 元")
    for cap, what in ((rule.annual_cap, "该类别年度封顶"), (rules.annual_cap, "年度封顶")):
        if cap is not None and amount > max(ZERO, cap - paid):
            amount = max(ZERO, cap - paid)
            notes.append(f"{what} {yuan(cap)} 元，已救助 {yuan(paid)} 元，本次至多 {yuan(amount)} 元")
    return amount, "，".join(notes)


def settle_assistance(policy: Policy, document: SettlementDocument, accumulator: AssistanceAccumulator) -> LayerOutcome:
    assert document.breakdown is not None, "basic layer must come first"
    basic = document.layer_amount(LayerName.BASIC)
    serious = document.layer_amount(LayerName.SERIOUS_ILLNESS)
    base = max(ZERO, document.breakdown.compliant - basic - serious)
    eligible = [c for c in document.person.categories if c in policy.assistance.categories]
    if not eligible:
        reason = "不属于医疗救助对象" if not document.person.categories else (
            "所属类别（" + "、".join(CATEGORY_NAMES[c] for c in document.person.categories) + "）本统筹区不予救助"
        )
        layer = Layer(layer=LayerName.ASSISTANCE, amount=ZERO, explanation=f"医疗救助：{reason}，本次救助 0.00 元。")
        return LayerOutcome(document=document.with_layer(layer), delta=AssistanceAccumulator())

    candidates = [
        (*_candidate(policy, c, base, document.breakdown.total, accumulator.paid), c) for c in eligible
    ]
    amount, shown, chosen = max(candidates, key=lambda c: c[0])
    notes = [f"救助基数（政策范围内个人负担）{yuan(base)} 元", shown]
    if len(candidates) > 1:
        notes.append(f"同时属于多个类别，按最有利的{CATEGORY_NAMES[chosen]}标准")
    if policy.fund_share_cap is not None:
        ceiling = max(ZERO, share(document.breakdown.total, policy.fund_share_cap) - basic - serious)
        if amount > ceiling:
            notes.append(f"各项基金合计不超过总费用的 {pct(policy.fund_share_cap)}，本次至多 {yuan(ceiling)} 元")
            amount = ceiling
    layer = Layer(
        layer=LayerName.ASSISTANCE,
        amount=amount,
        explanation="医疗救助：" + "；".join(notes) + f"。医疗救助支付 {yuan(amount)} 元。",
    )
    return LayerOutcome(document=document.with_layer(layer), delta=AssistanceAccumulator(paid=amount))
