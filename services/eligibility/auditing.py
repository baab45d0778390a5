"""The audit of claims just accepted for settlement, in the caller's
transaction (a batch of claims, or an operator's approval): load the stays
and the diagnosis costs they are compared with, ``flag`` them (pure, the
rules of ``audit.py``), save the flags and the costs. A flag never changes a
claim's route."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from medsettle.settings import Settings
from services.eligibility import audit
from services.eligibility import repository as repo

log = structlog.get_logger()


def flag(rows: Sequence[repo.ClaimRow], stays: dict[str, list[audit.Stay]],
         costs: dict[repo.CostKey, audit.DiagnosisCost], settings: Settings,
         ) -> tuple[list[audit.AuditFlag], dict[repo.CostKey, audit.DiagnosisCost]]:
    """The flags raised on ``rows`` and the costs they add.

    Each claim is compared with the claims accepted before it (``stays`` and
    ``costs``: those stored, and earlier in ``rows``), so of two overlapping
    stays the later is flagged. ``stays`` and ``costs`` are not changed."""
    auditing = {r.claim_id for r in rows}
    earlier_stays = {person: [s for s in found if s.claim_id not in auditing]  # these come in order, below
                     for person, found in stays.items()}
    costs = dict(costs)
    flags: list[audit.AuditFlag | None] = []
    added: dict[repo.CostKey, audit.DiagnosisCost] = {}
    for row in rows:
        if row.visit_type == "inpatient" and row.admitted_on is not None and row.discharged_on is not None:
            stay = audit.Stay(row.claim_id, row.hospital_code, row.admitted_on, row.discharged_on)
            earlier = earlier_stays.setdefault(row.person_id, [])
            flags.append(audit.overlapping_stays(stay, earlier))
            earlier.append(stay)
        key = row.cost_key
        if key is not None and row.total is not None:
            before = costs.get(key, audit.NO_COST)
            flags.append(audit.cost_outlier(row.claim_id, row.total, *key, before,
                                            factor=settings.audit_cost_factor,
                                            min_claims=settings.audit_cost_min_claims))
            costs[key] = before.plus(row.total)
            added[key] = added.get(key, audit.NO_COST).plus(row.total)
        flags.append(audit.random_sample(row.claim_id, settings.audit_sample_rate))
    return [f for f in flags if f is not None], added


async def audit_accepted(c: asyncpg.Connection, rows: Sequence[repo.ClaimRow], settings: Settings) -> None:
    """Flag claims just accepted for settlement, in the caller's transaction."""
    if not rows:
        return
    stays = await repo.inpatient_stays(c, sorted({r.person_id for r in rows if r.visit_type == "inpatient"}))
    costs = await repo.diagnosis_costs(c, sorted({r.cost_key for r in rows if r.cost_key is not None}))
    raised, added = flag(rows, stays, costs, settings)
    await repo.add_diagnosis_costs(c, added)
    await repo.insert_flags(c, raised)
    for raised_flag in raised:
        log.info("claim_flagged_for_audit", claim_id=raised_flag.claim_id, kind=raised_flag.kind)
