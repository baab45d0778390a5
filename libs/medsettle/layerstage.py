"""A layer stage: basic, insurer (serious illness), assistance, backstop.

For each document it consumes, a stage applies its pure layer function to the
person's accumulator and, in one statement, writes the layer, the
accumulator change and, for a cancel, the inbox row; then the runtime
publishes the enriched document keyed by ``person_id`` and commits the offset.

- ``settle``: the layer is stored with its delta and the accumulator grows.
- ``trial``: computed on the current accumulator; nothing is written.
- ``cancel``: the stored delta is subtracted again and the layer is marked
  reversed; the document goes on carrying the original amounts.
- A redelivered message re-publishes what was stored: a settle finds its
  layer's output, a cancel its inbox row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError
from prometheus_client import Counter

from medsettle import layer_repository as repo
from medsettle.accumulator import Counters, LayerOutcome
from medsettle.contract import LayerName, SettlementDocument
from medsettle.policy import Policy, PolicyBook
from medsettle.runtime import Outgoing, Poison, Service
from medsettle.settings import Settings

log = structlog.get_logger()

PAID = Counter(
    "settlement_layer_yuan_total", "yuan paid by each layer on settled claims, and given back on reversals",
    ["layer", "kind"],
)
MIGRATIONS = Path(__file__).with_name("layer_migrations")

LayerFunction = Callable[[Policy, SettlementDocument, Any], LayerOutcome]


class LayerStage(Service):
    layer: LayerName
    in_topic: str
    out_topic: str
    accumulator_type: type[Counters]
    apply: LayerFunction
    migrations = MIGRATIONS

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.subscriptions = [self.in_topic]
        self.consumes = {self.in_topic: SettlementDocument}
        self.produces = {self.out_topic: SettlementDocument}
        self.policies = PolicyBook(settings.policy_dir, on_error=lambda e: log.error("policy_file_refused", error=e))

    def _policy(self, document: SettlementDocument) -> Policy:
        policy = self.policies.by_id(document.policy)
        if policy is None:
            raise Poison(f"policy {document.policy} is not loaded in {self.name}")
        return policy

    def _compute(self, document: SettlementDocument, state: Counters) -> LayerOutcome:
        return type(self).apply(self._policy(document), document, state)

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        documents: list[tuple[SettlementDocument, dict[str, Any]]] = []
        for record in records:
            try:
                raw = orjson.loads(record.value)
                documents.append((SettlementDocument.trusted(raw), raw["claim"]))
            except (ValidationError, orjson.JSONDecodeError, TypeError, KeyError) as exc:
                raise Poison(f"not a settlement document: {exc}") from None

        out: list[Outgoing] = []
        # No explicit transaction: one read, then one statement that writes
        # everything only if no accumulator it read has changed since
        # (layer_migrations/0002_optimistic.sql).
        async with self.db.acquire() as c:
            keys = {(d.person.person_id, d.claim.year) for d, _ in documents}
            done, stored, previous = await repo.load_batch(
                c, [d.message_id for d, _ in documents if d.kind == "cancel"], keys,
                [d.claim.claim_id for d, _ in documents if d.kind != "trial"],
            )
            for document, _ in documents:  # a settle handled before: answered with what its layer stored
                if document.kind == "settle" and document.claim.claim_id in previous:
                    done[document.message_id] = previous[document.claim.claim_id].output
            versions: dict[tuple[str, int], int] = {}
            states: dict[tuple[str, int], Counters] = {}
            for key in keys:
                state, versions[key] = stored.get(key, ({}, 0))  # version 0: none stored yet
                states[key] = self.accumulator_type.model_validate(state)
            changed: set[tuple[str, int]] = set()
            new_layers: dict[str, repo.LayerRow] = {}
            reversed_ids: list[str] = []
            inbox: list[tuple[str, bytes]] = []  # the cancels' answers; a settle's is its layer's output
            paid = {"settled": Decimal(0), "reversed": Decimal(0)}  # counted once the batch is written

            for document, claim_json in documents:
                key = (document.person.person_id, document.claim.year)
                if document.message_id in done:
                    out.append(self._outgoing(document, done[document.message_id]))
                    continue
                if document.kind == "trial":
                    outcome = self._compute(document, states[key])
                    out.append(self._outgoing(document, self._body(outcome.document, document, claim_json)))
                    continue
                if document.kind == "settle":
                    outcome = self._compute(document, states[key])
                    states[key] = states[key].add(outcome.delta)
                    changed.add(key)
                    body = self._body(outcome.document, document, claim_json)
                    new_layers[document.claim.claim_id] = repo.LayerRow(
                        claim_id=document.claim.claim_id, person_id=key[0], year=key[1],
                        policy=document.policy, amount=outcome.document.layer_amount(self.layer),
                        delta=outcome.delta.model_dump(mode="json"), output=body, status="settled",
                    )
                    paid["settled"] += new_layers[document.claim.claim_id].amount
                else:  # cancel
                    row = new_layers.get(document.claim.claim_id) or previous.get(document.claim.claim_id)
                    if row is None or row.status != "settled":
                        raise Poison(f"cancel of claim {document.claim.claim_id}: no settled layer to reverse here")
                    delta = self.accumulator_type.model_validate(row.delta)
                    states[key] = states[key].add(delta, -1)
                    changed.add(key)
                    raw_original = orjson.loads(row.output)
                    original = SettlementDocument.trusted(raw_original)
                    body = original.model_copy(
                        update={"kind": "cancel", "cancel_reason": document.cancel_reason, "received_at": document.received_at}
                    ).to_json(claim_json=raw_original["claim"])
                    if row.claim_id in new_layers:  # settled and reversed in this batch: stored as reversed
                        new_layers[row.claim_id] = dataclasses.replace(row, status="reversed")
                    else:
                        reversed_ids.append(row.claim_id)
                    paid["reversed"] += row.amount
                    inbox.append((document.message_id, body))
                done[document.message_id] = body
                out.append(self._outgoing(document, body))

            if changed or new_layers or reversed_ids or inbox:
                await repo.save_batch(
                    c, {k: (orjson.dumps(states[k].model_dump(mode="json")), versions[k]) for k in changed},
                    list(new_layers.values()), reversed_ids, inbox,
                )
        for kind, amount in paid.items():
            if amount:
                PAID.labels(self.layer.value, kind).inc(float(amount))
        return out

    @staticmethod
    def _body(outcome: SettlementDocument, document: SettlementDocument, claim_json: dict[str, Any]) -> bytes:
        """The enriched document as JSON; the claim, which no layer changes, as it came."""
        return outcome.to_json(claim_json=claim_json if outcome.claim is document.claim else None)

    def _outgoing(self, document: SettlementDocument, body: bytes) -> Outgoing:
        return Outgoing(self.out_topic, document.person.person_id.encode(), body)

    async def accumulator(self, person_id: str, year: int) -> Counters:
        async with self.db.acquire() as c:
            state = await repo.accumulator_of(c, person_id, year)
        return self.accumulator_type.model_validate(state or {})
