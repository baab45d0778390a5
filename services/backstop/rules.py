"""Government backstop (政府兜底, fund 640100): pure rules, no I/O.

Caps the person's own compliant burden of the year (what is left after the
layers above and after the backstop) at the cap of this claim's hospital
level; the backstop pays whatever this claim would take the accumulated
burden above that cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from medsettle.accumulator import Counters, LayerOutcome, Payment
from medsettle.caps import within_annual_caps
from medsettle.contract import CATEGORY_NAMES, LEVEL_NAMES, VISIT_NAMES, LayerName, SettlementDocument
from medsettle.money import ZERO, yuan
from medsettle.policy import BackstopPolicy, Policy


class BackstopAccumulator(Counters):
    burden: Decimal = ZERO  # accumulated compliant burden after every layer
    paid: Decimal = ZERO


def _why_nothing(rules: BackstopPolicy, visit: str, counts: bool) -> str:
    if not rules.enabled:
        reason = rules.disabled_reason
    elif not counts:
        reason = f"{VISIT_NAMES[visit]}不属于兜底范围"
    else:
        reason = "仅" + "、".join(CATEGORY_NAMES[c] for c in rules.categories) + "享受兜底保障"
    return f"政府兜底：{reason}，本次兜底 0.00 元。"


def backstop_payment(policy: Policy, level: str, visit: str, categories: Sequence[str], compliant: Decimal,
                     funds: Decimal, accumulator: BackstopAccumulator, explain: bool = True) -> Payment:
    """What the backstop pays for a claim of ``visit`` type at a hospital of
    ``level``, ``compliant`` of which the ``funds`` above paid, for a person in
    ``categories`` whose year so far is ``accumulator`` (or any object with
    its fields)."""
    rules = policy.backstop
    remaining = max(ZERO, compliant - funds)
    counts = visit in rules.visit_types
    carried: dict[str, Decimal] = {"burden": remaining} if counts else {}
    if not (rules.enabled and counts and any(c in rules.categories for c in categories)):
        return Payment(ZERO, carried, _why_nothing(rules, visit, counts) if explain else None)

    cap = rules.annual_cap_by_level[level]
    before = accumulator.burden
    # the person bears this year at most the cap; the backstop pays the rest of this claim's burden
    amount = remaining - within_annual_caps(before + remaining, before, (cap,))
    delta = {"burden": remaining - amount, "paid": amount}
    if not explain:
        return Payment(amount, delta, None)
    notes = [
        f"本次政策范围内个人负担 {yuan(remaining)} 元，年度累计 {yuan(before)} 元",
        f"{LEVEL_NAMES[level]}医疗机构年度个人负担上限 {yuan(cap)} 元",
    ]
    if amount > 0:
        notes.append(f"{yuan(before)} + {yuan(remaining)} - {yuan(cap)} = {yuan(amount)}")
    else:
        notes.append("累计未超过上限")
    return Payment(amount, delta, "政府兜底：" + "；".join(notes) + f"。政府兜底支付 {yuan(amount)} 元。")


def settle_backstop(policy: Policy, document: SettlementDocument, accumulator: BackstopAccumulator) -> LayerOutcome:
    """The backstop stage's rule: ``backstop_payment`` on the document, as a layer and a delta."""
    assert document.breakdown is not None, "basic layer must come first"
    payment = backstop_payment(policy, document.hospital.level, document.claim.visit_type, document.person.categories,
                               document.breakdown.compliant, document.funds_so_far(), accumulator)
    return LayerOutcome.of(document, LayerName.BACKSTOP, payment, BackstopAccumulator)
