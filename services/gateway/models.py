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

    code: str = Field(examples=["INVALID_SIGNATURE"])
    message: str = Field(description="what was wrong, for a person to act on")


class Accepted(Frozen):
    """The claim is on its way; its answer is not there yet (``GET`` its ``Location`` later)."""

    claim_id: str
    status: Literal["accepted"] = "accepted"


class NationalFundDetail(Frozen):
    fund_pay_type: str = Field(description="基金支付类型: 390100, 390200, 610100, 640100")
    fund_payamt: Amount = Field(description="基金支付金额")
    setl_proc_info: str | None = Field(None, description="结算过程信息: how the fund's layer was computed")


class NationalSettlement(Frozen):
    """The ``his.settlements`` message under the national platform's names (``?format=national``)."""

    setl_id: str = Field(description="结算ID: claim_id")
    fixmedins_code: str = Field(description="定点医药机构编号: hospital_code")
    psn_cert_no: str | None = Field(None, description="人员证件号码, masked: person_id_masked")
    setl_stas: Literal["settled", "trial", "rejected", "reversed", "pending_review"] = Field(
        description="结算状态: status")
    insu_plc: str | None = Field(None, description="参保地方案: policy")
    setl_time: dt.datetime | None = Field(None, description="结算时间: settled_at")
    medfee_sumamt: Amount | None = Field(None, description="医疗费总额: total")
    fulamt_ownpay_amt: Amount | None = Field(None, description="全自费金额: self_pay")
    overlmt_selfpay: Amount | None = Field(None, description="超限价自费费用: over_limit_self_pay")
    preselfpay_amt: Amount | None = Field(None, description="先行自付金额: pre_self_pay")
    inscp_scp_amt: Amount | None = Field(None, description="符合政策范围金额: compliant")
    act_pay_dedc: Amount | None = Field(None, description="实际支付起付线: deductible")
    hifp_pay: Amount | None = Field(None, description="基本医疗保险统筹基金支出: basic")
    hifmi_pay: Amount | None = Field(None, description="居民大病保险资金支出: serious_illness")
    maf_pay: Amount | None = Field(None, description="医疗救助基金支出: assistance")
    hifob_pay: Amount | None = Field(None, description="政府兜底 (this platform's use of the name): backstop")
    fund_pay_sumamt: Amount | None = Field(None, description="基金支付总额: fund_total")
    psn_part_amt: Amount | None = Field(None, description="个人负担总金额: personal")
    rejection: dict[str, str] | None = Field(None, description="code and message of a rejection")
    setldetail: list[NationalFundDetail] = Field(default_factory=list, description="结算基金分项")


class ReconciledClaim(Strict):
    """One claim of the hospital's books."""

    claim_id: Code
    status: Literal["settled", "reversed"]
    total: Money
    fund_total: Money


class ReconciliationRequest(Strict):
    """The hospital's books for a period (CONTRACT §9, the national 3201/3202)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, populate_by_name=True)

    from_: dt.date = Field(alias="from", description="first day, China Standard Time", examples=["2024-03-10"])
    to: dt.date = Field(description="last day, included", examples=["2024-03-10"])
    count: int = Field(ge=0, le=10_000_000, description="settled claims in the period (reversed ones not counted)")
    total: Money
    fund_total: Money
    claims: list[ReconciledClaim] | None = Field(None, max_length=100_000,
                                                 description="claim by claim (optional): compared when given")


class Totals(Frozen):
    count: int
    total: Amount
    fund_total: Amount


class Mismatch(Frozen):
    claim_id: str
    field: Literal["status", "total", "fund_total"]
    ours: str
    theirs: str


class Reconciliation(BaseModel):
    """Both sides' totals, and the claims that differ."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    hospital_code: str
    from_: dt.date = Field(alias="from")
    to: dt.date
    balanced: bool
    ours: Totals
    theirs: Totals
    only_ours: list[str]
    only_theirs: list[str]
    mismatched: list[Mismatch]
