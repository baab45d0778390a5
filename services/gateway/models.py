"""The gateway's own request and answer shapes. The claims and the one-bills
are the contract's (``medsettle.contract``); these are what §8 and §9 add."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from medsettle.contract import Amount, CancelClaim, Code, Frozen, Money, SettleClaim, Strict

ClaimMessage = Annotated[SettleClaim | CancelClaim, Field(discriminator="type")]
"""A ``his.claims`` message (CONTRACT §3): the body of ``POST /v1/claims``."""
CLAIM_MESSAGE = TypeAdapter(ClaimMessage)


class ApiError(Frozen):
    """A refusal: ``INVALID_SIGNATURE`` (401), ``INVALID_MESSAGE`` (400), and so on."""

    code: str = Field(description="why it was refused (CONTRACT §8): INVALID_SIGNATURE, INVALID_MESSAGE, "
                                  "CLAIM_NOT_FOUND, ...", examples=["INVALID_SIGNATURE"])
    message: str = Field(description="what was wrong, for a person to act on",
                         examples=["签名时间戳与服务器时间相差超过 300 秒"])


class Accepted(Frozen):
    """The claim is on its way; its answer is not there yet (``GET`` its ``Location`` later)."""

    claim_id: str = Field(description="the claim taken in, as the hospital numbered it",
                          examples=["H0001-20240310-000123"])
    status: Literal["accepted"] = Field("accepted", description="always accepted: the answer is still to come",
                                        examples=["accepted"])


class NationalFundDetail(Frozen):
    """One fund's payment, a ``setldetail`` row."""

    fund_pay_type: str = Field(description="基金支付类型: 390100, 390200, 610100, 640100", examples=["390100"])
    fund_payamt: Amount = Field(description="基金支付金额", examples=["6900.00"])
    setl_proc_info: str | None = Field(None, description="结算过程信息: how the fund's layer was computed",
                                       examples=["(9800.00 - 600.00) × 75% = 6900.00"])


class NationalSettlement(Frozen):
    """The ``his.settlements`` message under the national platform's names (``?format=national``)."""

    setl_id: str = Field(description="结算ID: claim_id", examples=["H0001-20240310-000123"])
    fixmedins_code: str = Field(description="定点医药机构编号: hospital_code", examples=["H0001"])
    psn_cert_no: str | None = Field(None, description="人员证件号码, masked: person_id_masked", examples=["340421********1234"])
    setl_stas: Literal["settled", "trial", "rejected", "reversed", "pending_review"] = Field(
        description="结算状态: status", examples=["settled"])
    insu_plc: str | None = Field(None, description="参保地方案: policy", examples=["340421-2024-r1"])
    setl_time: dt.datetime | None = Field(None, description="结算时间: settled_at", examples=["2024-03-10T10:15:00+08:00"])
    medfee_sumamt: Amount | None = Field(None, description="医疗费总额: total", examples=["10000.00"])
    fulamt_ownpay_amt: Amount | None = Field(None, description="全自费金额: self_pay", examples=["200.00"])
    overlmt_selfpay: Amount | None = Field(None, description="超限价自费费用: over_limit_self_pay", examples=["0.00"])
    preselfpay_amt: Amount | None = Field(None, description="先行自付金额: pre_self_pay", examples=["0.00"])
    inscp_scp_amt: Amount | None = Field(None, description="符合政策范围金额: compliant", examples=["9800.00"])
    act_pay_dedc: Amount | None = Field(None, description="实际支付起付线: deductible", examples=["600.00"])
    hifp_pay: Amount | None = Field(None, description="基本医疗保险统筹基金支出: basic", examples=["6900.00"])
    hifmi_pay: Amount | None = Field(None, description="居民大病保险资金支出: serious_illness", examples=["0.00"])
    maf_pay: Amount | None = Field(None, description="医疗救助基金支出: assistance", examples=["0.00"])
    hifob_pay: Amount | None = Field(None, description="政府兜底 (this platform's use of the name): backstop", examples=["0.00"])
    fund_pay_sumamt: Amount | None = Field(None, description="基金支付总额: fund_total", examples=["6900.00"])
    psn_part_amt: Amount | None = Field(None, description="个人负担总金额: personal", examples=["3100.00"])
    rejection: dict[str, str] | None = Field(None, description="code and message of a rejection", examples=[{"code": "NOT_INSURED", "message": "参保人本年度未参保"}])
    setldetail: list[NationalFundDetail] = Field(default_factory=list, description="结算基金分项",
                                                  examples=[[{"fund_pay_type": "390100", "fund_payamt": "6900.00"}]])


class ReconciledClaim(Strict):
    """One claim of the hospital's books."""

    claim_id: Code = Field(description="the claim, as the hospital numbered it", examples=["H0001-20240310-000123"])
    status: Literal["settled", "reversed"] = Field(description="settled, or reversed since", examples=["settled"])
    total: Money = Field(description="the claim's total in the hospital's books, yuan", examples=["10000.00"])
    fund_total: Money = Field(description="what the funds paid in the hospital's books, yuan", examples=["6900.00"])


class ReconciliationRequest(Strict):
    """The hospital's books for a period (CONTRACT §9, the national 3201/3202)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, populate_by_name=True)

    from_: dt.date = Field(alias="from", description="first day, China Standard Time", examples=["2024-03-10"])
    to: dt.date = Field(description="last day, included", examples=["2024-03-10"])
    count: int = Field(ge=0, le=10_000_000, description="settled claims in the period (reversed ones not counted)",
                       examples=[1])
    total: Money = Field(description="the settled claims' totals, yuan", examples=["10000.00"])
    fund_total: Money = Field(description="what the funds paid on them, yuan", examples=["6900.00"])
    claims: list[ReconciledClaim] | None = Field(None, max_length=100_000,
                                                 description="claim by claim (optional): compared when given",
                                                 examples=[[{"claim_id": "H0001-20240310-000123", "status": "settled",
                                                             "total": "10000.00", "fund_total": "6900.00"}]])


class Totals(Frozen):
    """One side's totals for the period."""

    count: int = Field(description="settled claims (reversed ones not counted)", examples=[1])
    total: Amount = Field(description="their totals, yuan", examples=["10000.00"])
    fund_total: Amount = Field(description="what the funds paid on them, yuan", examples=["6900.00"])


class Mismatch(Frozen):
    """A claim both sides have, with one field that differs."""

    claim_id: str = Field(description="the claim", examples=["H0001-20240310-000123"])
    field: Literal["status", "total", "fund_total"] = Field(description="the field that differs",
                                                             examples=["fund_total"])
    ours: str = Field(description="the platform's value", examples=["6900.00"])
    theirs: str = Field(description="the hospital's value", examples=["6090.00"])


class Reconciliation(BaseModel):
    """Both sides' totals, and the claims that differ."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    hospital_code: str = Field(description="the hospital that asked (the one that signed)", examples=["H0001"])
    from_: dt.date = Field(alias="from", description="first day, China Standard Time", examples=["2024-03-10"])
    to: dt.date = Field(description="last day, included", examples=["2024-03-10"])
    balanced: bool = Field(description="true when the totals agree and no claim differs", examples=[False])
    ours: Totals = Field(description="the platform's totals, from its own records")
    theirs: Totals = Field(description="the hospital's totals, as sent")
    only_ours: list[str] = Field(description="claims the platform settled that the hospital did not list "
                                             "(only when claims were sent)", examples=[["H0001-20240310-000124"]])
    only_theirs: list[str] = Field(description="claims the hospital listed that the platform has no settlement of",
                                   examples=[["H0001-20240310-000125"]])
    mismatched: list[Mismatch] = Field(description="claims both have that differ in status or amount",
                                       examples=[[{"claim_id": "H0001-20240310-000123", "field": "fund_total",
                                                   "ours": "6900.00", "theirs": "6090.00"}]])
