"""对账 (CONTRACT §9): the hospital's books against the platform's. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from services.gateway.models import Mismatch, Reconciliation, ReconciliationRequest, Totals

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class BookedClaim:
    """A claim of the period as the platform holds it: its status now and its settled amounts."""

    claim_id: str
    status: str  # settled, or reversed
    total: Decimal
    fund_total: Decimal


def totals(claims: list[BookedClaim]) -> Totals:
    settled = [c for c in claims if c.status == "settled"]
    return Totals(count=len(settled), total=sum((c.total for c in settled), ZERO),
                  fund_total=sum((c.fund_total for c in settled), ZERO))


def reconcile(hospital_code: str, request: ReconciliationRequest, ours: list[BookedClaim]) -> Reconciliation:
    our_totals = totals(ours)
    their_totals = Totals(count=request.count, total=request.total, fund_total=request.fund_total)
    only_ours: list[str] = []
    only_theirs: list[str] = []
    mismatched: list[Mismatch] = []
    if request.claims is not None:
        mine = {c.claim_id: c for c in ours}
        theirs = {c.claim_id: c for c in request.claims}
        only_ours = sorted(set(mine) - set(theirs))
        only_theirs = sorted(set(theirs) - set(mine))
        for claim_id in sorted(set(mine) & set(theirs)):
            a, b = mine[claim_id], theirs[claim_id]
            if a.status != b.status:
                mismatched.append(Mismatch(claim_id=claim_id, field="status", ours=a.status, theirs=b.status))
            for field in ("total", "fund_total"):
                if getattr(a, field) != getattr(b, field):
                    mismatched.append(Mismatch(claim_id=claim_id, field=field,  # type: ignore[arg-type]
                                               ours=f"{getattr(a, field):.2f}", theirs=f"{getattr(b, field):.2f}"))
    balanced = our_totals == their_totals and not (only_ours or only_theirs or mismatched)
    return Reconciliation(hospital_code=hospital_code, from_=request.from_, to=request.to, balanced=balanced,
                          ours=our_totals, theirs=their_totals, only_ours=only_ours, only_theirs=only_theirs,
                          mismatched=mismatched)


CHINA = dt.timezone(dt.timedelta(hours=8))


def settlement_day(settled_at: dt.datetime) -> dt.date:
    """The day (China Standard Time) a settlement happened on."""
    return settled_at.astimezone(CHINA).date()
