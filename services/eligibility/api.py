"""The eligibility stage's operator API, served on its METRICS_PORT next to
``/metrics`` and ``/health`` (``libs/medsettle/httpserver.py``).

- ``GET /reviews?limit=200``: injury claims waiting for review, oldest first,
  person ids masked: ``{"pending": n, "reviews": [...]}``.
- ``POST /reviews/{claim_id}`` with ``{"decision": "approve"|"reject",
  "reason": "..."}``: approval sends the claim on through
  the layers (the hospital gets the one-bill as ``settled``); rejection answers
  ``REVIEW_REJECTED`` with the reviewer's reason, which is then required.
  200 when the answer is on the broker, 202 when the decision is stored but
  the broker did not confirm (it is sent again within seconds), 404 for an
  unknown claim, 409 for one not waiting for review, 400 for a bad request.
  The reviewer recorded is the authenticated caller, whatever the body says.
- ``GET /audit-flags?kind=&claim_id=&limit=200``: flags raised after
  settlement, newest first, person ids masked.

Credentials, roles and the audit log of every decision are enforced for
every route here by ``medsettle.httpserver`` (viewers read, operators
decide); a person's assistance categories are shown to operators only.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from medsettle.contract import CATEGORY_NAMES, SettlementDocument, mask_person_id
from medsettle.money import yuan
from services.eligibility.audit import COST_OUTLIER, OVERLAPPING_STAY, RANDOM_SAMPLE
from services.eligibility.repository import ClaimRow, FlagRow
from services.eligibility.reviews import ReviewError, ReviewQueue

FLAG_KINDS = (OVERLAPPING_STAY, COST_OUTLIER, RANDOM_SAMPLE)
MAX_LIMIT = 1000


class ReviewDecision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    decision: Literal["approve", "reject"]
    reason: str | None = Field(None, max_length=500)
    reviewer: str | None = Field(None, max_length=64)  # ignored: the authenticated caller decides


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit", "200")
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= MAX_LIMIT else None


def review_view(row: ClaimRow, *, categories: bool = False) -> dict[str, Any]:
    document = SettlementDocument.from_json(row.document)
    claim = document.claim
    return {
        "claim_id": claim.claim_id,
        "hospital_code": claim.hospital_code,
        "hospital_name": document.hospital.name,
        "hospital_level": document.hospital.level,
        "person_id_masked": mask_person_id(claim.person_id),
        **({"categories": [CATEGORY_NAMES[c] for c in document.person.categories]} if categories else {}),
        "policy": document.policy,
        "visit_type": claim.visit_type,
        "admitted_on": claim.admitted_on.isoformat() if claim.admitted_on else None,
        "discharged_on": claim.discharged_on.isoformat(),
        "diagnosis_codes": claim.diagnosis_codes,
        "total": yuan(claim.total),
        "received_at": row.received_at.isoformat() if row.received_at else None,
    }


def flag_view(flag: FlagRow) -> dict[str, Any]:
    return {
        "id": flag.id,
        "claim_id": flag.claim_id,
        "kind": flag.kind,
        "reason": flag.reason,
        "related_claim_id": flag.related_claim_id,
        "flagged_at": flag.flagged_at.isoformat(),
        "hospital_code": flag.hospital_code,
        "person_id_masked": mask_person_id(flag.person_id),
        "visit_type": flag.visit_type,
        "discharged_on": flag.discharged_on.isoformat() if flag.discharged_on else None,
        "total": yuan(flag.total) if flag.total is not None else None,
        "claim_status": flag.claim_status,
    }


def operator_routes(stage: ReviewQueue) -> list[Route]:
    async def list_reviews(request: Request) -> Response:
        limit = _limit(request)
        if limit is None:
            return _json({"error": f"limit 应为 1 到 {MAX_LIMIT} 的整数"}, 400)
        count, rows = await stage.pending_reviews(limit)
        shows = request.state.principal.may_act  # categories: for those who decide
        return _json({"pending": count, "reviews": [review_view(r, categories=shows) for r in rows]})

    async def decide(request: Request) -> Response:
        claim_id = request.path_params["claim_id"]
        try:
            decision = ReviewDecision.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
            return _json({"error": f"请求有误：{problems}"}, 400)
        approve = decision.decision == "approve"
        if not approve and not decision.reason:
            return _json({"error": "驳回须填写原因（reason），医院将看到这一原因"}, 400)
        try:
            outgoing = await stage.review(claim_id, approve=approve, reason=decision.reason,
                                          reviewer=request.state.principal.name)
        except ReviewError as exc:
            return _json({"error": exc.message, "claim_id": claim_id, "status": exc.status},
                         404 if exc.status is None else 409)
        sent = await stage.send_decision(claim_id, outgoing)
        body = {"claim_id": claim_id, "status": "accepted" if approve else "review_rejected", "answer_sent": sent}
        if not sent:
            body["note"] = "决定已保存；答复暂未送达消息队列，将自动重发"
        return _json(body, 200 if sent else 202)

    async def list_flags(request: Request) -> Response:
        limit = _limit(request)
        if limit is None:
            return _json({"error": f"limit 应为 1 到 {MAX_LIMIT} 的整数"}, 400)
        kind = request.query_params.get("kind") or None
        if kind is not None and kind not in FLAG_KINDS:
            return _json({"error": f"kind 应为 {', '.join(FLAG_KINDS)} 之一"}, 400)
        flags = await stage.audit_flags(kind=kind, claim_id=request.query_params.get("claim_id") or None, limit=limit)
        return _json({"flags": [flag_view(f) for f in flags]})

    return [
        Route("/reviews", list_reviews, methods=["GET"]),
        Route("/reviews/{claim_id}", decide, methods=["POST"]),
        Route("/audit-flags", list_flags, methods=["GET"]),
    ]
