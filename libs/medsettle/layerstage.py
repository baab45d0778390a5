"""A layer stage: basic, insurer (serious illness), assistance, backstop.

A batch goes: decode -> load the stored state -> ``decide`` (pure: no I/O)
-> save what it decided in one statement -> publish, keyed by ``person_id``;
the runtime commits the offsets once the broker has confirmed.

What ``decide`` does with each document:

- ``settle``: the layer is stored with its delta and the accumulator grows.
  A layer that cannot handle the claim (its policy not loaded here, the
  layer function failing) counts nothing, stores the layer as ``failed``
  and passes the document on carrying the ``failure``; the settlement stage
  answers it SETTLEMENT_FAILED once what earlier layers counted is taken
  back. A document already failed upstream is passed on untouched, its
  claim's attempt stored here as failed too.
- ``trial``: computed on the current accumulator; nothing is written.
- ``cancel``: the stored delta is subtracted again and the layer is marked
  reversed; the document goes on carrying the original amounts. A
  compensation (a cancel carrying a ``failure``) takes back whatever this
  layer counted for the failed claim, and passes on when it counted nothing.
  A cancel of an attempt whose compensation came through here before (one
  eligibility took before it read the SETTLEMENT_FAILED answer), or of one
  that failed here or upstream and whose compensation is still to come (a
  cancel taken while the claim was on its way), finds it failed: it passes
  on untouched, counting nothing, and the settlement stage, which keeps the
  failure, answers it ``CLAIM_NOT_FOUND``.
- A redelivered message re-publishes what was stored: a settle finds its
  layer's output, a cancel its inbox row. A claim sent again after a failure
  (a higher ``attempt``) is settled afresh; a settle of an earlier attempt
  delivered after it counts nothing and gets the stored layer's output. A
  cancel and a compensation of one claim in one batch take it back once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError

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
Key = tuple[str, int]  # (person_id, year)


@dataclass(frozen=True)
class Layer:
    """What ``decide`` needs to know of a stage: which layer, its pure function and its accumulator."""

    name: LayerName
    apply: LayerFunction
    accumulator_type: type[Counters]
    find_policy: Callable[[str], Policy | None]


@dataclass(frozen=True)
class StoredState:
    """What is stored for a batch: the cancels' answers by message id, the
    accumulators with their versions, the layers stored for its claims."""

    answers: dict[str, bytes] = field(default_factory=dict)
    accumulators: dict[Key, repo.Stored] = field(default_factory=dict)
    layers: dict[str, repo.LayerRow] = field(default_factory=dict)


@dataclass
class Decision:
    """What a batch writes (``accumulators``: the new state and the version
    it was read at) and the bodies it publishes, one per document, in order."""

    accumulators: dict[Key, tuple[Counters, int]] = field(default_factory=dict)
    new_layers: dict[str, repo.LayerRow] = field(default_factory=dict)
    reversed_ids: list[str] = field(default_factory=list)
    inbox: list[tuple[str, bytes]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    documents: list[tuple[SettlementDocument, dict[str, Any]] | None] = field(default_factory=list)
    """Beside each body, the document it is (with its claim as JSON) when this batch made it, ``None`` for a
    body stored before: what the next stage would read from the body, for a caller that hands it on in
    memory (the sequence test's in-memory pipeline); the stage itself publishes the bodies."""
    paid: dict[str, Decimal] = field(default_factory=lambda: {"settled": Decimal(0), "reversed": Decimal(0)})
    failed: list[tuple[str, str]] = field(default_factory=list)  # (claim_id, reason)

    @property
    def writes(self) -> bool:
        return bool(self.accumulators or self.new_layers or self.reversed_ids or self.inbox)


Batch = Sequence[tuple[SettlementDocument, dict[str, Any]]]
"""Each document with its claim exactly as it was read (passed through unchanged)."""


def needs(batch: Batch) -> tuple[list[str], set[Key], list[str]]:
    """What ``decide`` will look up: cancels' message ids (and their attempts'
    compensations'), accumulators, claims' layers."""
    return (
        [i for d, _ in batch if d.kind == "cancel" for i in (d.message_id, d.compensation_id)],
        {(d.person.person_id, d.claim.year) for d, _ in batch},
        [d.claim.claim_id for d, _ in batch if d.kind != "trial"],
    )


def _body(outcome: SettlementDocument, document: SettlementDocument, claim_json: dict[str, Any]
          ) -> tuple[bytes, tuple[SettlementDocument, dict[str, Any]]]:
    """The enriched document as JSON, and with its claim's JSON; the claim, which no layer changes, as it came."""
    if outcome.claim is document.claim:
        return outcome.to_json(claim_json=claim_json), (outcome, claim_json)
    return outcome.to_json(), (outcome, outcome.claim.model_dump(mode="json"))


def _failed_row(document: SettlementDocument, key: Key, output: bytes) -> repo.LayerRow:
    """A settle this layer counted nothing for, because it or a layer before it could not handle it."""
    return repo.LayerRow(claim_id=document.claim.claim_id, person_id=key[0], year=key[1], policy=document.policy,
                         amount=Decimal("0.00"), delta={}, output=output, status="failed", attempt=document.attempt)


def decide(layer: Layer, batch: Batch, stored: StoredState) -> Decision:
    """The batch's decision, a pure function of the documents and what was stored.

    Raises ``Poison`` only for a cancel that finds nothing to reverse (a
    cancel eligibility never sends for a claim that is not settled) and
    whose attempt has not failed."""
    done = dict(stored.answers)
    previous = stored.layers
    decision = Decision()
    versions: dict[Key, int] = {}
    states: dict[Key, Counters] = {}
    for key in {(d.person.person_id, d.claim.year) for d, _ in batch}:
        state, versions[key] = stored.accumulators.get(key, ({}, 0))  # version 0: none stored yet
        states[key] = layer.accumulator_type.model_validate(state)
    changed: set[Key] = set()

    def compute(document: SettlementDocument, state: Counters) -> LayerOutcome | str:
        policy = layer.find_policy(document.policy)
        if policy is None:
            return f"{layer.name.value}: policy {document.policy} is not loaded"
        try:
            return layer.apply(policy, document, state)
        except (ArithmeticError, AssertionError, KeyError, LookupError, TypeError, ValueError) as exc:
            return f"{layer.name.value}: {type(exc).__name__}: {exc}"[:1000]

    for document, claim_json in batch:
        key = (document.person.person_id, document.claim.year)
        claim_id = document.claim.claim_id
        message_id = document.message_id  # a property that formats a string: once per document
        if message_id in done:
            decision.bodies.append(done[message_id])
            decision.documents.append(None)
            continue
        row = decision.new_layers.get(claim_id) or previous.get(claim_id)
        if document.kind == "settle" and row is not None and row.attempt >= document.attempt:
            # handled before, or superseded by a later attempt: counts nothing, answered with what is stored
            decision.bodies.append(row.output)
            decision.documents.append(None)
            continue
        sent: tuple[SettlementDocument, dict[str, Any]] = (document, claim_json)
        if document.kind != "cancel" and document.failure is not None:  # failed upstream: nothing to count here
            body = document.to_json(claim_json=claim_json)
            if document.kind == "settle":  # kept as failed here too: a cancel of the attempt then finds it failed
                decision.new_layers[claim_id] = _failed_row(document, key, body)
            decision.bodies.append(body)
            decision.documents.append(sent)
            continue
        if document.kind == "trial":
            outcome = compute(document, states[key])
            if isinstance(outcome, str):
                sent = (document.model_copy(update={"failure": outcome}), claim_json)
                body = sent[0].to_json(claim_json=claim_json)
            else:
                body, sent = _body(outcome.document, document, claim_json)
            decision.bodies.append(body)
            decision.documents.append(sent)
            continue
        if document.kind == "settle":
            outcome = compute(document, states[key])
            if isinstance(outcome, str):
                sent = (document.model_copy(update={"failure": outcome}), claim_json)
                body = sent[0].to_json(claim_json=claim_json)
                decision.new_layers[claim_id] = _failed_row(document, key, body)
                decision.failed.append((claim_id, outcome))
            else:
                states[key] = states[key].add(outcome.delta)
                changed.add(key)
                body, sent = _body(outcome.document, document, claim_json)
                decision.new_layers[claim_id] = repo.LayerRow(
                    claim_id=claim_id, person_id=key[0], year=key[1], policy=document.policy,
                    amount=outcome.document.layer_amount(layer.name),
                    delta=outcome.delta.model_dump(mode="json"), output=body, status="settled",
                    attempt=document.attempt,
                )
                decision.paid["settled"] += decision.new_layers[claim_id].amount
        else:  # cancel, or a compensation
            standing = (row is not None and row.status == "settled" and row.attempt == document.attempt
                        and claim_id not in decision.reversed_ids)  # a cancel and a compensation: reversed once
            if not standing:
                # the attempt failed: taken back here by its compensation, or failed here or upstream, its
                # compensation still to come (the cancel was taken while the claim was on its way)
                failed = document.compensation_id in done or (
                    row is not None and row.status == "failed" and row.attempt == document.attempt)
                if not document.compensating and not failed:
                    raise Poison(f"cancel of claim {claim_id}: no settled layer to reverse here")
                body = document.to_json(claim_json=claim_json)  # this layer counted nothing for it
            else:
                assert row is not None
                delta = layer.accumulator_type.model_validate(row.delta)
                states[key] = states[key].add(delta, -1)
                changed.add(key)
                if document.compensating:
                    body = document.to_json(claim_json=claim_json)
                else:
                    raw_original = orjson.loads(row.output)
                    original = SettlementDocument.trusted(raw_original)
                    sent = (original.model_copy(update={
                        "kind": "cancel", "cancel_reason": document.cancel_reason, "received_at": document.received_at,
                    }), raw_original["claim"])
                    body = sent[0].to_json(claim_json=sent[1])
                if row.claim_id in decision.new_layers:  # settled and reversed in this batch: stored as reversed
                    decision.new_layers[row.claim_id] = dataclasses.replace(row, status="reversed")
                else:
                    decision.reversed_ids.append(row.claim_id)
                decision.paid["reversed"] += row.amount
            decision.inbox.append((message_id, body))
        done[message_id] = body
        decision.bodies.append(body)
        decision.documents.append(sent)
    decision.accumulators = {k: (states[k], versions[k]) for k in changed}
    return decision


class LayerStage(Service):
    """A layer stage is its line of the pipeline (``services.pipeline``): a
    subclass sets ``definition`` to it, and takes its name, topics, layer,
    rule and accumulator from there."""

    definition: Any
    layer: LayerName
    in_topic: str
    out_topic: str
    accumulator_type: type[Counters]
    apply: LayerFunction
    migrations = MIGRATIONS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        stage = cls.__dict__.get("definition")
        if stage is not None:
            cls.name, cls.layer, cls.in_topic, cls.out_topic = stage.name, stage.layer, stage.consumes, stage.publishes
            cls.accumulator_type, cls.apply = stage.accumulator, staticmethod(stage.rule)

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.subscriptions = [self.in_topic]
        self.consumes = {self.in_topic: SettlementDocument}
        self.produces = {self.out_topic: SettlementDocument}
        self.policies = PolicyBook(settings.policy_dir, on_error=lambda e: log.error("policy_file_refused", error=e))

    def description(self) -> Layer:
        """What ``decide`` needs of this stage; the policies are looked up as the batch is decided."""
        return Layer(self.layer, type(self).apply, self.accumulator_type, self.policies.by_id)

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        batch: list[tuple[SettlementDocument, dict[str, Any]]] = []
        for record in records:
            try:
                raw = orjson.loads(record.value)
                batch.append((SettlementDocument.trusted(raw), raw["claim"]))
            except (ValidationError, orjson.JSONDecodeError, TypeError, KeyError) as exc:
                raise Poison(f"not a settlement document: {exc}") from None

        # No explicit transaction: one read, then one statement that writes
        # everything only if no accumulator it read has changed since
        # (layer_migrations/0002_optimistic.sql).
        async with self.db.acquire() as c:
            answers, accumulators, layers = await repo.load_batch(c, *needs(batch))
            decision = decide(self.description(), batch, StoredState(answers, accumulators, layers))
            if decision.writes:
                await repo.save_batch(
                    c, {k: (orjson.dumps(s.model_dump(mode="json")), v) for k, (s, v) in decision.accumulators.items()},
                    list(decision.new_layers.values()), decision.reversed_ids, decision.inbox,
                )
        for claim_id, reason in decision.failed:
            log.error("layer_failed", layer=self.layer.value, claim_id=claim_id, reason=reason)
        for kind, amount in decision.paid.items():
            if amount:
                PAID.labels(self.layer.value, kind).inc(float(amount))
        return [Outgoing(self.out_topic, d.person.person_id.encode(), body)
                for (d, _), body in zip(batch, decision.bodies, strict=True)]

    async def accumulator(self, person_id: str, year: int) -> Counters:
        async with self.db.acquire() as c:
            state = await repo.accumulator_of(c, person_id, year)
        return self.accumulator_type.model_validate(state or {})
