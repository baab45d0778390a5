"""Eligibility: pure rules, no I/O.

From the registry as of the claim's service date (``discharged_on``): is the
bill consistent, is the hospital known, designated and not suspended, is the
person known, not blacklisted and insured in the service year, and is a policy
in force for their region and that year. The categories that count are those
whose validity covers the service date, so a category ending on 30 June helps
a stay discharged on 15 June and not one discharged on 15 July. The registry
holds the latest message per key; a change (a suspension, a blacklisting)
applies to every claim that arrives after it, and never to one already settled.
Each failure is one contract rejection code with a message a hospital clerk
can act on: what is wrong, with which hospital or (masked) person, and what to
do next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from medsettle.contract import (
    Hospital,
    HospitalFacts,
    Person,
    PersonFacts,
    Rejection,
    RejectionCode,
    SettleClaim,
    mask_person_id,
)
from medsettle.money import yuan
from medsettle.policy import Policy


@dataclass(frozen=True)
class Eligible:
    policy: Policy
    person: PersonFacts
    hospital: HospitalFacts


def _reject(code: RejectionCode, message: str) -> Rejection:
    return Rejection(code=code, message=message)


def _service_date(claim: SettleClaim) -> str:
    """The service date as the clerk's screen names it."""
    what = "出院日期" if claim.visit_type == "inpatient" else "就诊日期"
    return f"{what} {claim.discharged_on.isoformat()}"


def check_amounts(claim: SettleClaim) -> Rejection | None:
    for index, item in enumerate(claim.items, start=1):
        expected = item.computed_amount()
        if expected != item.amount:
            return _reject(
                RejectionCode.AMOUNT_MISMATCH,
                f"第 {index} 项 {item.code}（{item.name}）金额 {yuan(item.amount)} 元与数量 × 单价 "
                f"{item.quantity.normalize():f} × {yuan(item.unit_price)} = {yuan(expected)} 元不符，请核对后重新提交",
            )
    return None


def check_eligibility(
    claim: SettleClaim,
    hospital: Hospital | None,
    person: Person | None,
    find_policy: Callable[[str, dt.date], Policy | None],  # the revision in force on the service date
) -> Rejection | Eligible:
    mismatch = check_amounts(claim)
    if mismatch is not None:
        return mismatch
    code = claim.hospital_code
    if hospital is None:
        return _reject(RejectionCode.UNKNOWN_HOSPITAL, f"医疗机构 {code} 未在医保经办机构登记，请联系医保局核实机构编码")
    if not hospital.designated:
        return _reject(RejectionCode.HOSPITAL_NOT_DESIGNATED,
                       f"医疗机构 {code}（{hospital.name}）不是医保定点医疗机构，不能直接结算；"
                       "参保人可持票据到医保经办窗口按规定办理")
    if hospital.suspended:
        return _reject(RejectionCode.HOSPITAL_SUSPENDED, f"医疗机构 {code}（{hospital.name}）医保服务已暂停，暂不能结算，请联系医保局")
    masked = mask_person_id(claim.person_id)
    year = claim.year
    if person is None:
        return _reject(RejectionCode.UNKNOWN_PERSON,
                       f"参保人 {masked} 不在参保登记信息中，请核对身份证号；号码无误的，请参保人到医保经办窗口核实参保登记")
    if person.blacklisted:
        return _reject(RejectionCode.BLACKLISTED, f"参保人 {masked} 已被列入医保失信名单，不能直接结算，请到医保经办窗口办理")
    if not person.insured_in(year):
        return _reject(RejectionCode.NOT_INSURED,
                       f"参保人 {masked} {year} 年度未缴费（{_service_date(claim)}），不能享受医保待遇；"
                       "已缴费的，请参保人到医保经办窗口核实缴费记录")
    policy = find_policy(person.region, claim.discharged_on)
    if policy is None:
        return _reject(
            RejectionCode.NO_POLICY,
            f"参保人所属统筹区 {person.region} 尚未发布 {year} 年度补偿方案（{_service_date(claim)}），暂不能结算，请联系医保局",
        )
    categories = person.categories_on(claim.discharged_on)
    return Eligible(
        policy=policy,
        person=PersonFacts(
            person_id=person.person_id,
            region=person.region,
            categories=categories,
            favoured=policy.favoured(categories),
        ),
        hospital=HospitalFacts(hospital_code=hospital.hospital_code, level=hospital.level, name=hospital.name),
    )
