"""The settlement stage: the one-bill, every invariant checked, confirmed back.

Consumes ``settlement.backstop``; the decision of each batch is the pure
``decide.decide``. A settlement a layer could not handle, or whose one-bill
breaks an invariant, never reaches the hospital as ``settled``: it goes to
``settlement.dlq`` with the reasons, is kept in ``failures``, a compensation
goes back through the layers on ``settlement.eligible`` to take back what
they counted, and once it is through the hospital is answered
``SETTLEMENT_FAILED``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from medsettle import topics
from medsettle.contract import SettlementDocument, SettlementResult
from medsettle.runtime import Outgoing, Poison, Service, create_app, dead_letter
from medsettle.settings import Settings
from services import pipeline
from services.settlement import decide
from services.settlement import repository as repo
from services.settlement.onebill import check_invariants

log = structlog.get_logger()

CONFIRMED = Counter("settlement_one_bills_total", "one-bills confirmed to hospitals", ["status"])
BROKEN = Counter("settlement_invariant_violations_total", "settlements refused for a broken invariant")
END_TO_END = Histogram(
    "settlement_end_to_end_seconds",
    "from receipt at eligibility to the one-bill being confirmed",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class SettlementStage(Service):
    name = "settlement"
    subscriptions = (pipeline.stage(name).consumes,)
    consumes = {pipeline.stage(name).consumes: SettlementDocument}
    produces = {topics.SETTLEMENTS: SettlementResult, topics.ELIGIBLE: SettlementDocument}
    migrations = Path(__file__).with_name("migrations")

    check = staticmethod(check_invariants)  # the invariants of CONTRACT §5 (a test may add a broken one)

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        batch: list[tuple[SettlementDocument, bytes]] = []
        for record in records:
            try:
                batch.append((SettlementDocument.trusted(orjson.loads(record.value)), record.value))
            except (ValidationError, orjson.JSONDecodeError, TypeError) as exc:
                raise Poison(f"not a settlement document: {exc}") from None

        async with self.db.acquire() as c, c.transaction():
            stored = await repo.load_batch(c, *decide.needs([d for d, _ in batch]))
            try:
                decision = decide.decide(batch, stored, clock=self.clock, check=type(self).check)
            except LookupError as exc:
                raise Poison(str(exc)) from None
            if decision.writes:
                await repo.save_batch(c, decision)
        out: list[Outgoing] = []
        for record, (document, _), emits in zip(records, batch, decision.emits, strict=True):
            for emit in emits:
                if isinstance(emit, decide.Answer):
                    out.append(Outgoing(topics.SETTLEMENTS, emit.hospital_code.encode(), emit.body,
                                        {topics.ANSWER_TO: document.message_id} if emit.names_message else {}))
                elif isinstance(emit, decide.Compensate):
                    out.append(Outgoing(topics.ELIGIBLE, emit.person_id.encode(), emit.body))
                else:
                    log.error("settlement_failed", claim_id=document.claim.claim_id, reasons=emit.reason,
                              person_id=document.person.person_id, attempt=document.attempt)
                    out.append(dead_letter(self.name, record, f"settlement failed: {emit.reason}", self.clock()))
        if decision.broken:
            BROKEN.inc(decision.broken)
        for status, count in decision.confirmed.items():
            CONFIRMED.labels(status).inc(count)
        for seconds in decision.waited:
            END_TO_END.observe(seconds)
        return out


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(SettlementStage, settings)
