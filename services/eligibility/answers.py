"""What eligibility publishes, built without I/O: the hospital's answers on
``his.settlements`` (keyed by ``hospital_code``) and the documents it sends
on through the layers on ``settlement.eligible`` (keyed by ``person_id``).
Used by the claims decision (``decide.py``), the review queue
(``reviews.py``) and the re-drive (``redrive.py``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from medsettle import topics
from medsettle.contract import (
    FUNDS,
    ONE_BILL_AMOUNTS,
    FundDetail,
    RejectionCode,
    SettlementDocument,
    SettlementResult,
    mask_person_id,
    rejection,
)
from medsettle.runtime import Outgoing
from services.eligibility.repository import ClaimRow


def answer(result: SettlementResult) -> Outgoing:
    return Outgoing(topics.SETTLEMENTS, result.hospital_code.encode(), result.to_json())


def reject(code: RejectionCode, message: str, claim_id: str, hospital_code: str, person_id: str | None,
           at: dt.datetime) -> Outgoing:
    return answer(rejection(code, message, claim_id=claim_id, hospital_code=hospital_code, person_id=person_id,
                            at=at))


def onward(document: SettlementDocument, body: bytes | None = None) -> Outgoing:
    """``body``: the document already encoded (as stored), not encoded again."""
    return Outgoing(topics.ELIGIBLE, document.person.person_id.encode(), body or document.to_json())


def pending(document: SettlementDocument, at: dt.datetime) -> Outgoing:
    """The answer to an injury claim held for review: ``pending_review``."""
    claim = document.claim
    return answer(SettlementResult(
        claim_id=claim.claim_id, hospital_code=claim.hospital_code,
        person_id_masked=mask_person_id(claim.person_id), status="pending_review",
        policy=document.policy, total=claim.total, settled_at=at,
    ))


def withdrawn(document: SettlementDocument, at: dt.datetime) -> SettlementResult:
    """The answer to a cancel of a claim held in review: ``reversed``, every amount 0.00."""
    claim = document.claim
    zero = Decimal("0.00")
    return SettlementResult(
        claim_id=claim.claim_id, hospital_code=claim.hospital_code,
        person_id_masked=mask_person_id(claim.person_id), status="reversed", policy=document.policy,
        **{name: zero for name in ONE_BILL_AMOUNTS},
        fund_details=[FundDetail(fund_pay_type=code, name=name, amount=zero) for code, name, _ in FUNDS],
        settled_at=at,
    )


def review_rejected(row: ClaimRow, at: dt.datetime) -> Outgoing:
    return reject(RejectionCode.REVIEW_REJECTED,
                  f"意外伤害审核未通过：{row.review_reason or '未说明原因'}；如有异议请联系医保经办机构",
                  row.claim_id, row.hospital_code, row.person_id, at)


def decided(row: ClaimRow, at: dt.datetime) -> Outgoing:
    """What a claim out of review sends: on through the layers, or the refusal."""
    if row.status == "review_rejected":
        return review_rejected(row, at)
    return onward(SettlementDocument.from_json(row.document), row.document)
