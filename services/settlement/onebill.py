"""The one-bill (一单制): pure assembly and invariant checks, no I/O."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from medsettle.contract import (
    FUNDS,
    ONE_BILL_AMOUNTS,
    FundDetail,
    LayerName,
    SettlementDocument,
    SettlementResult,
    mask_person_id,
)
from medsettle.money import ZERO, fen
from medsettle.wire import constructed


class InvariantBroken(ValueError):
    """A settlement that must not reach the hospital as settled."""


def one_bill(document: SettlementDocument, *, at: dt.datetime, status: str | None = None) -> SettlementResult:
    breakdown = document.breakdown
    if breakdown is None:
        raise InvariantBroken(f"claim {document.claim.claim_id}: no breakdown (the basic layer never ran)")
    amounts = {name: document.layer_amount(name) for name in LayerName}
    fund_total = sum(amounts.values(), ZERO)
    # built from values already valid (the layers', the breakdown's), as validation would build them: the
    # settlement stage makes one per claim (tests/bench/test_fast_paths.py checks it against validation)
    return constructed(SettlementResult, dict(
        claim_id=document.claim.claim_id,
        hospital_code=document.claim.hospital_code,
        person_id_masked=mask_person_id(document.person.person_id),
        status=status or {"settle": "settled", "trial": "trial", "cancel": "reversed"}[document.kind],  # type: ignore[arg-type]
        policy=document.policy,
        total=breakdown.total,
        self_pay=breakdown.self_pay,
        over_limit_self_pay=breakdown.over_limit_self_pay,
        pre_self_pay=breakdown.pre_self_pay,
        compliant=breakdown.compliant,
        deductible=document.deductible if document.deductible is not None else ZERO,
        basic=amounts[LayerName.BASIC],
        serious_illness=amounts[LayerName.SERIOUS_ILLNESS],
        assistance=amounts[LayerName.ASSISTANCE],
        backstop=amounts[LayerName.BACKSTOP],
        fund_total=fund_total,
        personal=breakdown.total - fund_total,
        fund_details=[FundDetail.of(fund_pay_type=code, name=name, amount=amounts[layer]) for code, name, layer in FUNDS],
        layers=[layer for name in LayerName for layer in document.layers if layer.layer == name],
        settled_at=at,
    ))


def check_invariants(bill: SettlementResult, document: SettlementDocument) -> list[str]:
    """Every invariant of CONTRACT §5 and a few more; the list of those broken."""
    broken: list[str] = []
    values: dict[str, Decimal] = {}
    for name in ONE_BILL_AMOUNTS:
        value = getattr(bill, name)
        if value is None:
            broken.append(f"{name} is missing")
            continue
        if value != fen(value):
            broken.append(f"{name} {value} is not rounded to the fen")
        if value < 0:
            broken.append(f"{name} {value} is negative")
        values[name] = value
    if broken:
        return broken
    v = values
    funds = v["basic"] + v["serious_illness"] + v["assistance"] + v["backstop"]
    if funds + v["personal"] != v["total"]:
        broken.append(f"basic + serious_illness + assistance + backstop + personal = {funds + v['personal']} ≠ total {v['total']}")
    if v["fund_total"] != funds:
        broken.append(f"fund_total {v['fund_total']} ≠ sum of the funds {funds}")
    parts = v["self_pay"] + v["over_limit_self_pay"] + v["pre_self_pay"] + v["compliant"]
    if parts != v["total"]:
        broken.append(f"self_pay + over_limit_self_pay + pre_self_pay + compliant = {parts} ≠ total {v['total']}")
    if funds > v["compliant"]:
        broken.append(f"the funds pay {funds}, more than the compliant amount {v['compliant']}")
    if v["deductible"] > v["compliant"]:
        broken.append(f"deductible {v['deductible']} is above the compliant amount {v['compliant']}")
    if sum((d.amount for d in bill.fund_details), ZERO) != v["fund_total"]:
        broken.append("fund_details do not add up to fund_total")
    claimed = sum((item.amount for item in document.claim.items), ZERO)
    if claimed != v["total"]:
        broken.append(f"total {v['total']} ≠ the sum of the claim's items {claimed}")
    names = [layer.layer for layer in document.layers]
    if sorted(set(names), key=names.index) != names or set(names) != set(LayerName):
        broken.append(f"layers are {[n.value for n in names]}, not each of the four once")
    return broken
