"""Medical assistance (医疗救助, fund 610100): pure rules, no I/O.

The base is the claim's compliant burden left after basic and serious
illness, for every visit type. A person in several categories gets the most
favourable one.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import model_validator

from medsettle.accumulator import Counters, LayerOutcome, Payment
from medsettle.caps import fund_share_note, fund_share_room, within_annual_caps
from medsettle.contract import CATEGORY_NAMES, LayerName, SettlementDocument
from medsettle.money import ZERO, pct, share, yuan
from medsettle.policy import Policy


class AssistanceAccumulator(Counters):
    """What the fund paid the person this year, and what the claims would
    have been paid without the annual caps (``due``). The year's payments are
    ``min(cap, due)``: a claim pays that, itself counted, less what was paid,
    so room a reversal frees under a cap goes to what the cap had cut from a
    claim that stands."""

    paid: Decimal = ZERO
    due: Decimal = ZERO

    @model_validator(mode="before")
    @classmethod
    def _due_of_older_state(cls, data: Any) -> Any:
        """A state or delta stored before ``due`` existed: what was due is what was paid."""
        if isinstance(data, dict) and "due" not in data and "paid" in data:
            data = {**data, "due": data["paid"]}
        return data


def _candidate(policy: Policy, category: str, base: Decimal, total: Decimal, ceiling: Decimal | None,
               accumulator: AssistanceAccumulator, explain: bool) -> tuple[Decimal, Decimal, str | None]:
    """(what this claim pays, its own amount before the annual caps, the explanation if asked)."""
    rules = policy.assistance
    rule = rules.categories[category]  # type: ignore[index]
    paid = accumulator.paid
    large = rules.large_claim_from is not None and total >= rules.large_claim_from
    ratio = rule.large_claim_ratio if large and rule.large_claim_ratio is not None else rule.ratio
    by_ratio = amount = share(base, ratio)
    notes: list[str] | None = None
    if explain:
        basis = ""
        if rule.large_claim_ratio is not None and rules.large_claim_from is not None:
            basis = f"总费用 {yuan(total)} 元{'达到' if large else '不足'} {yuan(rules.large_claim_from)} 元，"
        notes = [f"{CATEGORY_NAMES[category]}：{basis}{yuan(base)} × {pct(ratio)} = {yuan(amount)}"]
    if rules.small_claim_cap is not None and not large and amount > rules.small_claim_cap:
        amount = rules.small_claim_cap
        if notes is not None:
            notes.append(f"总费用不足 {yuan(rules.large_claim_from or ZERO)} 元，单次至多 {yuan(amount)} 元")
    if ceiling is not None and amount > ceiling:
        if notes is not None:
            notes.append(fund_share_note(policy.fund_share_cap, ceiling))  # type: ignore[arg-type]
        amount = ceiling
    own = amount  # what the claim is due, on its own within the caps
    caps: list[Decimal] = []
    for cap in (rule.annual_cap, rules.annual_cap):
        if cap is not None:
            caps.append(cap)
            own = min(own, cap)
    # the year's payments without the caps, this claim included, within them
    amount = within_annual_caps(accumulator.due + own, paid, caps, base if ceiling is None else min(base, ceiling))
    if notes is None:
        return amount, own, None
    if amount < min(own, by_ratio):
        for cap, what in ((rule.annual_cap, "该类别年度封顶"), (rules.annual_cap, "年度封顶")):
            if cap is not None and min(own, by_ratio) > max(ZERO, cap - paid):
                notes.append(f"{what} {yuan(cap)} 元，已救助 {yuan(paid)} 元，本次至多 {yuan(amount)} 元")
                break
    elif amount > own:
        notes.append(f"已救助 {yuan(paid)} 元：撤销释放的封顶额度补付此前少付的 {yuan(amount - own)} 元")
    return amount, own, "，".join(notes)


def assistance_payment(policy: Policy, categories: Sequence[str], compliant: Decimal, total: Decimal,
                       basic: Decimal, serious: Decimal, accumulator: AssistanceAccumulator,
                       explain: bool = True) -> Payment:
    """What the fund pays for a claim of ``compliant`` of ``total``, after
    ``basic`` and ``serious`` illness, for a person in ``categories`` whose
    year so far is ``accumulator`` (or any object with its fields)."""
    base = max(ZERO, compliant - basic - serious)
    eligible = [c for c in categories if c in policy.assistance.categories]
    if not eligible:
        if not explain:
            return Payment(ZERO, {}, None)
        reason = "不属于医疗救助对象" if not categories else (
            "所属类别（" + "、".join(CATEGORY_NAMES[c] for c in categories) + "）本统筹区不予救助"
        )
        return Payment(ZERO, {}, f"医疗救助：{reason}，本次救助 0.00 元。")

    ceiling = fund_share_room(policy.fund_share_cap, total, basic, serious)
    candidates = [(*_candidate(policy, c, base, total, ceiling, accumulator, explain), c) for c in eligible]
    amount, own, shown, chosen = max(candidates, key=lambda c: c[0])
    if not explain:
        return Payment(amount, {"paid": amount, "due": own}, None)
    notes = [f"救助基数（政策范围内个人负担）{yuan(base)} 元", shown]
    if len(candidates) > 1:
        notes.append(f"同时属于多个类别，按最有利的{CATEGORY_NAMES[chosen]}标准")
    return Payment(amount, {"paid": amount, "due": own},
                   "医疗救助：" + "；".join(notes) + f"。医疗救助支付 {yuan(amount)} 元。")


def settle_assistance(policy: Policy, document: SettlementDocument, accumulator: AssistanceAccumulator) -> LayerOutcome:
    """The assistance stage's rule: ``assistance_payment`` on the document, as a layer and a delta."""
    assert document.breakdown is not None, "basic layer must come first"
    payment = assistance_payment(policy, document.person.categories, document.breakdown.compliant,
                                 document.breakdown.total, document.layer_amount(LayerName.BASIC),
                                 document.layer_amount(LayerName.SERIOUS_ILLNESS), accumulator)
    return LayerOutcome.of(document, LayerName.ASSISTANCE, payment, AssistanceAccumulator)
