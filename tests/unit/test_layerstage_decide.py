"""The layer stages' batch decision (libs/medsettle/layerstage.py ``decide``)
without a broker or a database, for each of basic, insurer, assistance and
backstop with its real rule: seeded random years of batches of settles,
trials, cancels (of a stored claim, of one never settled here, before its
settle in the same batch), compensations, settles already failed upstream,
a claim whose layer fails and is sent again as the next attempt, exact
resends and duplicates within a batch and across batches, against what is
stored kept in memory the way ``layer_repository.save_batch`` keeps it in
one statement. After every batch:

- ``decide`` leaves what it was given as it was; one body per document;
- a batch decides what its documents decide one by one (the same bodies and
  the same stored layers, answers and accumulators), and it raises ``Poison``
  only when one of them alone does (the runtime then handles the batch one
  by one, dead-lettering that one);
- a resend is answered with the stored bytes and writes nothing;
- a trial writes nothing and answers what its settle would pay now; a settle
  failed upstream goes on as it came, its attempt stored as failed;
- nothing is counted twice: each accumulator is the sum of the deltas of
  the claims standing (settled, not reversed), so after a reversal it is
  the one without the claim, and a failed claim counts nothing;
- each accumulator is saved at the version the batch read, once per batch
  that changed it; no inbox row is written twice.

Cases are drawn from ``random.Random(seed)`` over documents built once: a
case costs what ``decide`` costs, not what drawing it does.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import Counter
from typing import Any

import orjson
import pytest

from medsettle import layerstage
from medsettle.accumulator import Counters
from medsettle.contract import SettlementDocument
from medsettle.runtime import Poison
from services.pipeline import LAYERS
from tests.unit.batch_years import (ATTEMPTS, CASES, CLAIMS, FAVOURED, PLAIN, POLICY, REASONS, draw, reached,
                                    settle_document)

UNLOADED = "340421-1999"  # a policy this stage has not loaded: the layer fails the claim
SEEDS_PER_LAYER = 150
# K4's layer fails at attempt 0, K5's policy is not loaded here, K6 comes already failed upstream at attempt 0


@dataclasses.dataclass(frozen=True)
class Message:
    document: SettlementDocument
    claim_json: dict[str, Any]
    body: bytes  # as read from the topic


def message(doc: SettlementDocument) -> Message:
    body = doc.to_json()
    raw = orjson.loads(body)
    return Message(SettlementDocument.trusted(raw), raw["claim"], body)


def failing(rule):  # noqa: ANN001, ANN201
    def apply(policy, doc, state):  # noqa: ANN001, ANN202
        if doc.claim.claim_id == "K4" and doc.attempt == 0:
            raise ValueError("the layer cannot handle K4's first attempt")
        return rule(policy, doc, state)
    return apply


def layer_at(position: int) -> layerstage.Layer:
    """The stage at ``position`` with its rule, failing K4's first attempt, and the one policy loaded."""
    stage = LAYERS[position]
    return layerstage.Layer(stage.layer, failing(stage.rule), stage.accumulator,  # type: ignore[arg-type]
                            {POLICY.policy: POLICY}.get)


def documents(position: int) -> dict[tuple[str, int, str], Message]:
    """Each (claim, attempt, kind) as it reaches the layer at ``position``: run
    through the layers before it (on empty accumulators)."""
    out: dict[tuple[str, int, str], Message] = {}
    for claim_id in CLAIMS:
        base = settle_document(claim_id)
        for stage in LAYERS[:position]:
            base = stage.rule(POLICY, base, stage.accumulator()).document  # type: ignore[misc]
        if claim_id == "K5":
            base = base.model_copy(update={"policy": UNLOADED})
        for attempt in range(ATTEMPTS):
            doc = base.model_copy(update={"attempt": attempt})
            settle = doc
            if claim_id == "K6" and attempt == 0:
                settle = doc.model_copy(update={"failure": "an earlier layer: ValueError: it could not"})
            out[(claim_id, attempt, "settle")] = message(settle)
            out[(claim_id, attempt, "trial")] = message(doc.model_copy(update={"kind": "trial"}))
            for reason in REASONS:
                out[(claim_id, attempt, reason)] = message(doc.model_copy(update={"kind": "cancel",
                                                                                  "cancel_reason": reason}))
            out[(claim_id, attempt, "undo")] = message(doc.model_copy(update={
                "kind": "cancel", "failure": "insurer: ValueError: it could not", "layers": [], "breakdown": None,
                "deductible": None}))
    return out


@dataclasses.dataclass
class Store:
    """What a layer stage's tables hold; ``save`` writes a decision as ``save_batch``'s one statement does."""

    answers: dict[str, bytes] = dataclasses.field(default_factory=dict)
    accumulators: dict[layerstage.Key, tuple[dict, int]] = dataclasses.field(default_factory=dict)
    layers: dict[str, Any] = dataclasses.field(default_factory=dict)

    def load(self, batch: layerstage.Batch) -> layerstage.StoredState:
        cancels, keys, claim_ids = layerstage.needs(batch)
        return layerstage.StoredState({m: self.answers[m] for m in cancels if m in self.answers},
                                      {k: self.accumulators[k] for k in keys if k in self.accumulators},
                                      {c: self.layers[c] for c in claim_ids if c in self.layers})

    def save(self, decision: layerstage.Decision) -> None:
        for key, (state, version) in decision.accumulators.items():
            assert self.accumulators.get(key, ({}, 0))[1] == version, "saved at a version the batch did not read"
            self.accumulators[key] = (orjson.loads(orjson.dumps(state.model_dump(mode="json"))), version + 1)
        before = dict(self.layers)  # every part of the statement sees the rows as they were
        for row in decision.new_layers.values():
            old = before.get(row.claim_id)
            if old is None or (old.attempt < row.attempt and old.status != "settled"):
                self.layers[row.claim_id] = row
            else:
                pytest.fail(f"a new layer for {row.claim_id} the statement would not write over {old.status} "
                            f"attempt {old.attempt}")
        for claim_id in decision.reversed_ids:
            assert claim_id not in decision.new_layers, "one statement would change a layer twice"
            self.layers[claim_id] = dataclasses.replace(before[claim_id], status="reversed")
        messages = [m for m, _ in decision.inbox]
        assert len(messages) == len(set(messages)) and not set(messages) & set(self.answers), "inbox row twice"
        self.answers.update(decision.inbox)

    def state(self, layer: layerstage.Layer, key: layerstage.Key) -> Counters:
        return layer.accumulator_type.model_validate(self.accumulators.get(key, ({}, 0))[0])


def snapshot(stored: layerstage.StoredState) -> tuple:
    """A copy of what ``decide`` is given (rows are frozen, their deltas and the states are not): cheaper than
    ``copy.deepcopy``, which cost a third of a case."""
    return (dict(stored.answers), {k: (orjson.dumps(s), v) for k, (s, v) in stored.accumulators.items()},
            {c: (row, orjson.dumps(row.delta)) for c, row in stored.layers.items()})


def run(layer: layerstage.Layer, store: Store, batch: list[Message]) -> layerstage.Decision:
    """Load, decide, save: what ``LayerStage.process`` does."""
    pairs = [(m.document, m.claim_json) for m in batch]
    stored = store.load(pairs)
    before = snapshot(stored)
    decision = layerstage.decide(layer, pairs, stored)
    assert snapshot(stored) == before, "decide changed what it was given"
    assert len(decision.bodies) == len(batch)
    store.save(decision)
    return decision


def read(body: bytes) -> SettlementDocument:
    return SettlementDocument.trusted(orjson.loads(body))


def check_one(layer: layerstage.Layer, store: Store, m: Message) -> bytes | None:  # noqa: C901
    """What one document alone decides, given what is stored; its body, or None for a Poison."""
    doc = m.document
    claim_id, key = doc.claim.claim_id, (doc.person.person_id, doc.claim.year)
    row = store.layers.get(claim_id)
    answered = store.answers.get(doc.message_id)
    state = store.state(layer, key)
    version = store.accumulators.get(key, ({}, 0))[1]
    standing = row is not None and row.status == "settled" and row.attempt == doc.attempt
    # a cancel of an attempt whose compensation came through here, or that failed here or upstream (its
    # compensation still to come): passed on untouched, counting nothing
    failed = row is not None and row.status == "failed" and row.attempt == doc.attempt
    taken_back = doc.kind == "cancel" and not doc.compensating and (doc.compensation_id in store.answers or failed)
    if doc.kind == "cancel" and not doc.compensating and answered is None and not standing and not taken_back:
        with pytest.raises(Poison):
            run(layer, store, [m])
        return None
    decision = run(layer, store, [m])
    (body,) = decision.bodies
    if answered is not None or (doc.kind == "settle" and row is not None and row.attempt >= doc.attempt):
        # a resend, or a settle of an attempt superseded by a later one
        assert body == (answered if answered is not None else row.output), "a resend is answered as stored"
        assert not decision.writes
        return body
    if doc.kind == "settle" and doc.failure is not None:  # on as it came, its attempt kept as failed here
        assert body == m.body
        new = decision.new_layers[claim_id]
        assert (new.status, new.attempt, new.output, new.delta, new.amount) == ("failed", doc.attempt, body, {}, 0)
        assert not decision.accumulators and not decision.reversed_ids and not decision.inbox
        return body
    if doc.kind == "trial":
        assert not decision.writes, "a trial writes nothing"
        if doc.policy != POLICY.policy or (claim_id == "K4" and doc.attempt == 0):
            assert read(body).failure is not None
        else:
            paid = layer.apply(POLICY, doc, state).document.layer_amount(layer.name)
            assert read(body).layer_amount(layer.name) == paid, "what the settle pays now"
        return body
    if doc.kind == "settle":
        new = decision.new_layers[claim_id]
        assert (new.attempt, new.output) == (doc.attempt, body) and not decision.reversed_ids and not decision.inbox
        result = read(body)
        if new.status == "failed":
            assert result.failure is not None and new.delta == {} and not decision.accumulators
            assert doc.policy != POLICY.policy or (claim_id == "K4" and doc.attempt == 0)
        else:
            assert new.status == "settled" and result.failure is None
            assert new.amount == result.layer_amount(layer.name)
            assert decision.accumulators[key] == (state.add(layer.accumulator_type.model_validate(new.delta)),
                                                  version)
        return body
    # a cancel of a standing claim, or a compensation
    assert decision.inbox == [(doc.message_id, body)] and not decision.new_layers
    if standing:
        assert decision.reversed_ids == [claim_id]
        taken = layer.accumulator_type.model_validate(row.delta)
        assert decision.accumulators[key] == (state.add(taken, -1), version)
        assert store.layers[claim_id].status == "reversed"
    else:
        assert (doc.compensating or taken_back) and not decision.reversed_ids and not decision.accumulators
    if doc.compensating or not standing:
        assert body == m.body, "a compensation, or a cancel of an attempt taken back, goes on as it came"
    else:
        answer = read(body)
        original = read(row.output)
        assert (answer.kind, answer.cancel_reason) == ("cancel", doc.cancel_reason)
        assert answer.layers == original.layers and answer.breakdown == original.breakdown
    return body


def standing_sum(layer: layerstage.Layer, store: Store, key: layerstage.Key) -> Counters:
    total = layer.accumulator_type()
    for row in store.layers.values():
        if (row.person_id, row.year) == key and row.status == "settled":
            total = total.add(layer.accumulator_type.model_validate(row.delta))
    return total


def year(layer: layerstage.Layer, pool: dict, seed: int) -> int:
    """One seeded year; how many documents it decided."""
    rng = random.Random(seed)
    whole, alone = Store(), Store()
    saves: Counter[layerstage.Key] = Counter()
    decided = 0
    for keys in draw(rng, list(CLAIMS)):
        batch = [pool[k] for k in keys]
        bodies = [check_one(layer, alone, m) for m in batch]
        decided += len(batch)
        try:
            decision = run(layer, whole, batch)
        except Poison:
            assert None in bodies, f"seed {seed}: the batch raised Poison, none of its documents alone does"
            for m in batch:  # as the runtime does: one by one, the poisoned one dead-lettered
                try:
                    saves.update(run(layer, whole, [m]).accumulators.keys())
                except Poison:
                    pass
        else:
            assert None not in bodies, f"seed {seed}: a document alone raised Poison, the batch did not"
            assert decision.bodies == bodies, f"seed {seed}: the batch answered otherwise than one by one"
            saves.update(decision.accumulators.keys())
        assert (whole.layers, whole.answers) == (alone.layers, alone.answers), f"seed {seed}"
        for key in {(m.document.person.person_id, m.document.claim.year) for m in batch}:
            state = whole.state(layer, key)
            assert state == alone.state(layer, key), f"seed {seed}: {key}"
            assert state == standing_sum(layer, whole, key), f"seed {seed}: counted other than the standing claims"
            assert not state.is_negative()
            assert whole.accumulators.get(key, ({}, 0))[1] == saves[key], f"seed {seed}: a version per save"
    return decided


@pytest.mark.parametrize("position", range(len(LAYERS)), ids=[s.name for s in LAYERS])
def test_a_layer_batch_decides_what_its_documents_decide_one_by_one_and_counts_each_standing_claim_once(position):
    layer = layer_at(position)
    pool = documents(position)
    decided = sum(year(layer, pool, seed) for seed in range(SEEDS_PER_LAYER))
    assert decided > SEEDS_PER_LAYER * 5


def test_the_years_drawn_reach_every_case():
    """The generator reaches what the test is about: resends, duplicates in
    a batch, cancels before their settle, compensations, next attempts."""
    seen = reached([draw(random.Random(seed), list(CLAIMS)) for seed in range(SEEDS_PER_LAYER)])
    assert all(seen[case] >= 20 for case in CASES), seen


def test_a_cancel_and_a_compensation_of_the_same_claim_in_one_batch_take_it_back_once():
    """The hospital cancels a claim while the settlement stage's compensation
    of it (a later layer failed it) is on its way: both can reach basic in
    one batch. The claim is taken back once: a compensation after the cancel
    goes on, a cancel after the compensation finds the attempt taken back
    and goes on untouched, counting nothing (the settlement stage answers it
    ``CLAIM_NOT_FOUND``), as it would alone."""
    layer = layer_at(0)
    pool = documents(0)
    settled = Store()
    run(layer, settled, [pool[("K1", 0, "settle")]])
    cancel, undo = pool[("K1", 0, REASONS[0])], pool[("K1", 0, "undo")]

    store = copy.deepcopy(settled)
    decision = run(layer, store, [cancel, undo])
    assert decision.accumulators[(PLAIN, 2024)][0] == layer.accumulator_type()  # type: ignore[misc]
    assert decision.reversed_ids == ["K1"] and decision.bodies[1] == undo.body

    decision = run(layer, copy.deepcopy(settled), [undo, cancel])
    assert decision.accumulators[(PLAIN, 2024)][0] == layer.accumulator_type()  # type: ignore[misc]
    assert decision.reversed_ids == ["K1"] and decision.bodies == [undo.body, cancel.body]


def test_a_settle_of_an_attempt_superseded_by_the_next_counts_nothing_and_is_answered_with_what_is_stored():
    """K4's first attempt failed here; it was compensated and settled as
    attempt 1. Attempt 0 delivered again (alone, or after attempt 1 in the
    same batch) is answered with the stored layer and counts nothing: the
    repository never writes an earlier attempt over a later one, so what it
    added to the accumulator could never be taken back."""
    layer = layer_at(0)
    pool = documents(0)
    key = (FAVOURED, 2024)
    for batches in ([[("K4", 0, "settle"), ("K4", 0, "undo")], [("K4", 1, "settle")], [("K4", 0, "settle")]],
                    [[("K4", 0, "settle"), ("K4", 0, "undo")], [("K4", 1, "settle"), ("K4", 0, "settle")]]):
        store = Store()
        for keys in batches:
            decision = run(layer, store, [pool[k] for k in keys])
        assert store.layers["K4"].attempt == 1 and store.layers["K4"].status == "settled"
        assert decision.bodies[-1] == store.layers["K4"].output
        assert store.state(layer, key) == standing_sum(layer, store, key) != layer.accumulator_type()
