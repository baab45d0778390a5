"""Builders of claims, registry records and documents for the tests."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from medsettle.contract import (
    HospitalFacts,
    Item,
    PersonFacts,
    SettleClaim,
    SettlementDocument,
)
from medsettle.policy import Policy

_serial = itertools.count(1)


def item(category: str, amount: str | Decimal, *, limit_price: str | None = None, quantity: str = "1") -> dict[str, Any]:
    unit = Decimal(str(amount)) / Decimal(quantity)
    return {
        "code": f"X{category}{next(_serial):05d}",
        "name": {"A": "甲类药品", "B": "乙类药品", "C": "丙类自费项目"}[category],
        "category": category,
        "quantity": quantity,
        "unit_price": f"{unit:.2f}",
        "amount": f"{Decimal(str(amount)):.2f}",
        "limit_price": limit_price,
    }


def claim_body(
    *,
    a: str | Decimal = "0",
    b: str | Decimal = "0",
    c: str | Decimal = "0",
    claim_id: str | None = None,
    hospital_code: str = "H3404210001",
    person_id: str = "340421199001011234",
    visit_type: str = "inpatient",
    kind: str = "settle",
    referral: bool = False,
    injury: bool = False,
    discharged_on: str = "2024-03-10",
    admitted_on: str | None = "2024-03-01",
    items: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if items is None:
        items = [item(cat, amount) for cat, amount in (("A", a), ("B", b), ("C", c)) if Decimal(str(amount)) > 0]
    return {
        "type": kind,
        "claim_id": claim_id or f"{hospital_code}-2024-{next(_serial):06d}",
        "hospital_code": hospital_code,
        "person_id": person_id,
        "visit_type": visit_type,
        "admitted_on": admitted_on if visit_type == "inpatient" else None,
        "discharged_on": discharged_on,
        "referral": referral,
        "injury": injury,
        "diagnosis_codes": ["I63.900"],
        "items": items,
        "submitted_at": f"{discharged_on}T10:00:00+08:00",
    }


def document(
    policy: Policy,
    *,
    level: str = "county",
    categories: list[str] | None = None,
    kind: str = "settle",
    **claim: Any,
) -> SettlementDocument:
    categories = categories or []
    body = claim_body(**claim)
    parsed = SettleClaim.model_validate(body)
    return SettlementDocument(
        kind=kind,  # type: ignore[arg-type]
        claim=parsed,
        policy=policy.policy,
        person=PersonFacts(
            person_id=parsed.person_id,
            region=policy.region,
            categories=categories,  # type: ignore[arg-type]
            favoured=policy.favoured(categories),
        ),
        hospital=HospitalFacts(hospital_code=parsed.hospital_code, level=level),  # type: ignore[arg-type]
        received_at=dt.datetime(2024, 3, 10, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    )


def person_record(person_id: str, *, region: str = "340421", categories: list[str] | None = None,
                  paid_years: tuple[int, ...] = (2024,), blacklisted: bool = False, name: str = "张三",
                  valid_from: str = "2024-01-01", valid_to: str | None = None) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "name": name,
        "region": region,
        "coverage": [{"year": y, "paid": True} for y in paid_years],
        "categories": [{"category": c, "valid_from": valid_from, "valid_to": valid_to} for c in (categories or [])],
        "blacklisted": blacklisted,
    }


def hospital_record(code: str, level: str, *, region: str = "340421", designated: bool = True,
                    suspended: bool = False) -> dict[str, Any]:
    return {"hospital_code": code, "name": f"{level} 医院 {code}", "region": region, "level": level,
            "designated": designated, "suspended": suspended}


__all__ = ["Item", "claim_body", "document", "hospital_record", "item", "person_record"]
