"""The settlement stage: the one-bill, every invariant checked, confirmed back.

Consumes ``settlement.backstop``. A settlement whose one-bill breaks an
invariant never reaches the hospital as ``settled``: it goes to
``settlement.dlq`` with the reasons, is kept in ``broken``, and an error is
logged.
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
from services.settlement import repository as repo
from services.settlement.onebill import check_invariants, one_bill

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
    subscriptions = (topics.BACKSTOP,)
    consumes = {topics.BACKSTOP: SettlementDocument}
    produces = {topics.SETTLEMENTS: SettlementResult}
    migrations = Path(__file__).with_name("migrations")

    def _answer(self, bill: SettlementResult, body: bytes | None = None) -> Outgoing:
        return Outgoing(topics.SETTLEMENTS, bill.hospital_code.encode(), body or bill.to_json())

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        documents: list[tuple[ConsumerRecord, SettlementDocument]] = []
        for record in records:
            try:
                documents.append((record, SettlementDocument.trusted(orjson.loads(record.value))))
            except (ValidationError, orjson.JSONDecodeError, TypeError) as exc:
                raise Poison(f"not a settlement document: {exc}") from None

        out: list[Outgoing] = []
        async with self.db.acquire() as c, c.transaction():
            done, originals = await repo.load_batch(
                c, [d.message_id for _, d in documents if d.kind == "cancel"],
                [d.claim.claim_id for _, d in documents if d.kind != "trial"],
            )
            for _, document in documents:  # a settle confirmed before: answered with its stored one-bill
                if document.kind == "settle" and document.claim.claim_id in originals:
                    done[document.message_id] = originals[document.claim.claim_id]
            bills: list[tuple[SettlementResult, SettlementDocument, bytes]] = []
            reversals = []
            inbox: list[tuple[str, bytes]] = []  # the cancels' answers; a settle's is its one-bill
            confirmed: dict[str, int] = {}  # counted once the batch is written
            broken_count = 0
            waited: list[float] = []
            for record, document in documents:
                if document.message_id in done:
                    out.append(Outgoing(topics.SETTLEMENTS, document.claim.hospital_code.encode(), done[document.message_id]))
                    continue
                at = self.clock()
                if document.kind == "cancel":
                    original = originals.get(document.claim.claim_id)
                    if original is None:
                        raise Poison(f"reversal of claim {document.claim.claim_id}, which has no one-bill")
                    bill = SettlementResult.from_json(original).model_copy(update={"status": "reversed", "settled_at": at})
                    reversals.append((bill.claim_id, at))
                else:
                    bill = one_bill(document, at=at)
                    broken = check_invariants(bill, document)
                    if broken:
                        broken_count += 1
                        log.error("invariant_broken", claim_id=document.claim.claim_id, reasons=broken,
                                  person_id=document.person.person_id)
                        await repo.record_broken(c, document.claim.claim_id, document.kind, broken, document.to_json())
                        out.append(dead_letter(self.name, record, "invariant broken: " + "; ".join(broken), at))
                        continue
                body = bill.to_json()
                if document.kind == "settle":
                    bills.append((bill, document, body))
                    originals[bill.claim_id] = body
                elif document.kind == "cancel":
                    inbox.append((document.message_id, body))
                if document.kind != "trial":
                    done[document.message_id] = body
                confirmed[bill.status] = confirmed.get(bill.status, 0) + 1
                if document.received_at is not None and document.kind == "settle":
                    waited.append(max(0.0, (at - document.received_at).total_seconds()))
                out.append(self._answer(bill, body))
            if bills or reversals or inbox:
                await repo.save_batch(c, bills, reversals, inbox)
        if broken_count:
            BROKEN.inc(broken_count)
        for status, count in confirmed.items():
            CONFIRMED.labels(status).inc(count)
        for seconds in waited:
            END_TO_END.observe(seconds)
        return out

    async def one_bill_of(self, claim_id: str) -> SettlementResult | None:
        async with self.db.acquire() as c:
            body = await repo.bill(c, claim_id)
        return SettlementResult.from_json(body) if body else None


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(SettlementStage, settings)
