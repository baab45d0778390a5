"""Government backstop (政府兜底, fund 640100): pure rules, no I/O.

Caps the person's own compliant burden of the year (what is left after the
layers above and after the backstop) at the cap of this claim's hospital
level; the backstop pays whatever this claim would take the accumulated
burden above that cap.
"""

from __future__ import annotations

from decimal import Decimal

from medsettle.accumulator import Counters, LayerOutcome
from medsettle.caps import within_annual_caps
from medsettle.contract import CATEGORY_NAMES, LEVEL_NAMES, VISIT_NAMES, Layer, LayerName, SettlementDocument
from medsettle.money import ZERO, yuan
from medsettle.policy import Policy


class BackstopAccumulator(Counters):
    burden: Decimal = ZERO  # accumulated compliant burden after every layer
    paid: Decimal = ZERO


def _zero(document: SettlementDocument, reason: str, delta: BackstopAccumulator) -> LayerOutcome:
    layer = Layer.of(layer=LayerName.BACKSTOP, amount=ZERO, explanation=f"政府兜底：{reason}，本次兜底 0.00 元。")
    return LayerOutcome.of(document, layer, delta)


def settle_backstop(policy: Policy, document: SettlementDocument, accumulator: BackstopAccumulator) -> LayerOutcome:
    rules = policy.backstop
    assert document.breakdown is not None, "basic layer must come first"
    claim, level = document.claim, document.hospital.level
    remaining = max(ZERO, document.breakdown.compliant - document.funds_so_far())
    counts = claim.visit_type in rules.visit_types
    carried = BackstopAccumulator.of(burden=remaining) if counts else BackstopAccumulator.of()
    if not rules.enabled:
        return _zero(document, rules.disabled_reason, carried)
    if not counts:
        return _zero(document, f"{VISIT_NAMES[claim.visit_type]}不属于兜底范围", carried)
    if not any(c in rules.categories for c in document.person.categories):
        names = "、".join(CATEGORY_NAMES[c] for c in rules.categories)
        return _zero(document, f"仅{names}享受兜底保障", carried)

    cap = rules.annual_cap_by_level[level]
    before = accumulator.burden
    # the person bears this year at most the cap; the backstop pays the rest of this claim's burden
    amount = remaining - within_annual_caps(before + remaining, before, (cap,))
    notes = [
        f"本次政策范围内个人负担 {yuan(remaining)} 元，年度累计 {yuan(before)} 元",
        f"{LEVEL_NAMES[level]}医疗机构年度个人负担上限 {yuan(cap)} 元",
    ]
    if amount > 0:
        notes.append(f"{yuan(before)} + {yuan(remaining)} - {yuan(cap)} = {yuan(amount)}")
    else:
        notes.append("累计未超过上限")
    layer = Layer.of(
        layer=LayerName.BACKSTOP,
        amount=amount,
        explanation="政府兜底：" + "；".join(notes) + f"。政府兜底支付 {yuan(amount)} 元。",
    )
    return LayerOutcome.of(document, layer, BackstopAccumulator.of(burden=remaining - amount, paid=amount))
