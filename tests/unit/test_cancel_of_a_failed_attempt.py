"""A cancel of a claim whose attempt failed, taken by eligibility before it
has read the SETTLEMENT_FAILED answer (its attempt still in flight as far as
it knows): each layer finds the attempt taken back by its compensation and
passes the cancel on counting nothing, and the settlement stage, which keeps
the failure, answers it CLAIM_NOT_FOUND, the answer eligibility gives once it
knows. The pure decisions (``layerstage.decide``, the settlement stage's
``decide``), alone and wired together in memory (``money_model``)."""

from __future__ import annotations

import orjson
import pytest

from medsettle import layerstage
from medsettle.contract import RejectionCode, SettlementDocument, SettlementResult, not_found_message
from medsettle.runtime import Poison
from services.settlement import decide as settlement
from services.settlement.onebill import check_invariants
from tests.factories import claim_body, document, hospital_record, person_record
from tests.unit.money_model import AT, MemoryPipeline

PERSON = "340421199001011234"
COUNTY = "H3404210001"


def pipeline() -> MemoryPipeline:
    model = MemoryPipeline()
    model.register(persons=[person_record(PERSON)], hospitals=[hospital_record(COUNTY, "county")])
    (settled,) = model.send(claim_body(a="40000", person_id=PERSON, hospital_code=COUNTY))
    assert settled.status == "settled"
    return model


def fail(model: MemoryPipeline, claim: dict, how: str) -> SettlementResult:
    """``claim`` sent while its one-bill breaks an invariant, or while the insurer has lost its policy files."""
    insurer = model.layers["insurer"]
    kept = insurer.layer
    if how == "invariant":
        model.settlement.check = lambda bill, document: ["a test-only broken invariant"]
    else:
        insurer.layer = layerstage.Layer(kept.name, kept.apply, kept.accumulator_type, lambda policy_id: None)
    try:
        (answer,) = model.send(claim)
    finally:
        model.settlement.check = check_invariants
        insurer.layer = kept
    assert answer.rejection is not None and answer.rejection.code == RejectionCode.SETTLEMENT_FAILED
    return answer


@pytest.mark.parametrize("how", ["invariant", "insurer"])
def test_a_cancel_taken_before_eligibility_read_the_failure_is_answered_claim_not_found_counting_nothing(how):
    model = pipeline()
    before = model.accumulators(PERSON)
    claim = claim_body(a="40000", person_id=PERSON, hospital_code=COUNTY)
    fail(model, claim, how)
    assert model.accumulators(PERSON) == before
    model.answers.clear()  # as if eligibility had not read the SETTLEMENT_FAILED answer yet
    cancel = {"type": "cancel", "claim_id": claim["claim_id"], "hospital_code": COUNTY, "reason": "患者退费"}

    (answer,) = model.send(cancel)

    assert answer.status == "rejected" and answer.rejection is not None
    assert answer.rejection.code == RejectionCode.CLAIM_NOT_FOUND
    assert answer.rejection.message == not_found_message(claim["claim_id"], COUNTY)
    assert model.accumulators(PERSON) == before  # nothing taken back twice
    assert model.answers == set()  # it says nothing of the attempt: not read as a reversal
    # the same cancel again (eligibility sends it on again): the same answer, from what each stage stored
    (again,) = model.send(cancel)
    assert again.model_dump(exclude={"settled_at"}) == answer.model_dump(exclude={"settled_at"})
    assert model.accumulators(PERSON) == before


def documents(reference_policy) -> tuple[SettlementDocument, SettlementDocument, SettlementDocument]:
    """A settle, its compensation and a cancel of the same attempt."""
    settle = document(reference_policy, a="1000", claim_id="H1-2024-000031", person_id=PERSON)
    compensation = settle.model_copy(update={"kind": "cancel", "failure": "a test-only broken invariant"})
    return settle, compensation, settle.model_copy(update={"kind": "cancel", "cancel_reason": "患者退费"})


def test_a_layer_passes_on_a_cancel_of_an_attempt_its_compensation_took_back_and_refuses_any_other(
        reference_policy):
    model = MemoryPipeline()
    basic = model.layers["basic"]
    settle, compensation, cancel = documents(reference_policy)
    batch = lambda d: [(d, orjson.loads(d.to_json())["claim"])]  # noqa: E731
    with pytest.raises(Poison, match="no settled layer to reverse"):  # nothing settled, nothing failed
        basic.handle(batch(cancel))
    basic.handle(batch(settle))
    counted = basic.accumulator(PERSON)
    assert counted.inpatient_paid > 0
    basic.handle(batch(compensation))
    assert basic.accumulator(PERSON).inpatient_paid == 0

    (body,) = basic.handle(batch(cancel)).bodies

    assert SettlementDocument.from_json(body) == cancel  # on, untouched: nothing counted, nothing reversed
    assert basic.accumulator(PERSON).inpatient_paid == 0
    assert basic.answers[cancel.message_id] == body  # a redelivery is answered the same


def test_the_settlement_stage_answers_a_cancel_of_a_failed_attempt_claim_not_found_naming_no_message(
        reference_policy):
    settle, compensation, cancel = documents(reference_policy)
    failure = settlement.Failure(settle.claim.claim_id, 0, PERSON, ["x"], settle.to_json(), compensation.to_json())
    stored = settlement.StoredState(failures={(settle.claim.claim_id, 0): failure})

    decision = settlement.decide([(cancel, cancel.to_json())], stored, clock=lambda: AT)

    ((answer,),) = decision.emits
    assert isinstance(answer, settlement.Answer) and not answer.names_message
    result = SettlementResult.from_json(answer.body)
    assert result.rejection is not None and result.rejection.code == RejectionCode.CLAIM_NOT_FOUND
    assert decision.inbox == [(cancel.message_id, answer.body)] and not decision.reversals
    # redelivered: the stored answer again, still naming no message
    again = settlement.decide([(cancel, cancel.to_json())], settlement.StoredState(
        answers=dict(decision.inbox), failures=stored.failures), clock=lambda: AT)
    assert again.emits == [[answer]] and not again.writes
    # a cancel of an attempt that did not fail and has no one-bill is still refused (settlement.dlq)
    with pytest.raises(LookupError, match="no one-bill"):
        settlement.decide([(cancel, cancel.to_json())], settlement.StoredState(), clock=lambda: AT)


def through(model: MemoryPipeline, body: bytes) -> list[settlement.Emit]:
    """A document through the four layers and the settlement stage, as on the topics; what settlement emits."""
    for layer in model.layers.values():
        raw = orjson.loads(body)
        (body,) = layer.handle([(SettlementDocument.trusted(raw), raw["claim"])]).bodies
    return model.settlement.handle([(SettlementDocument.trusted(orjson.loads(body)), body)])


def test_a_cancel_ahead_of_the_compensation_reverses_what_the_layers_counted_and_is_answered_claim_not_found(
        reference_policy):
    """Taken while the claim was still on its way, the cancel reaches the layers before the compensation of
    the one-bill that broke an invariant: it reverses what they counted, the settlement stage answers it
    CLAIM_NOT_FOUND, and the compensation then finds nothing left to take back."""
    model = MemoryPipeline()
    settle, _, cancel = documents(reference_policy)
    model.settlement.check = lambda bill, document: ["a test-only broken invariant"]
    dead, compensate = through(model, settle.to_json())
    model.settlement.check = check_invariants
    assert isinstance(dead, settlement.DeadLetter) and isinstance(compensate, settlement.Compensate)
    assert model.layers["basic"].accumulator(PERSON).inpatient_paid > 0

    (answer,) = through(model, cancel.to_json())

    assert isinstance(answer, settlement.Answer) and not answer.names_message
    assert SettlementResult.from_json(answer.body).rejection.code == RejectionCode.CLAIM_NOT_FOUND
    assert model.layers["basic"].accumulator(PERSON).inpatient_paid == 0
    (failed,) = through(model, compensate.body)  # then the compensation: nothing left, the failure answered
    assert SettlementResult.from_json(failed.body).rejection.code == RejectionCode.SETTLEMENT_FAILED
    assert all(layer.accumulator(PERSON) == type(layer.accumulator(PERSON))() for layer in model.layers.values())


def test_a_cancel_ahead_of_the_compensation_of_a_layer_that_failed_is_answered_claim_not_found(reference_policy):
    """The insurer cannot handle the claim (its policy not loaded): basic counted it, the layers after the
    insurer passed it on failed. A cancel taken while the claim was on its way reaches the layers before
    the compensation: basic reverses what it counted, the insurer and the layers after it find the attempt
    failed and pass the cancel on, and the settlement stage answers it CLAIM_NOT_FOUND; the compensation
    then finds nothing left to take back and is answered SETTLEMENT_FAILED."""
    model = MemoryPipeline()
    settle, _, cancel = documents(reference_policy)
    insurer = model.layers["insurer"]
    kept = insurer.layer
    insurer.layer = layerstage.Layer(kept.name, kept.apply, kept.accumulator_type, lambda policy_id: None)
    dead, compensate = through(model, settle.to_json())
    insurer.layer = kept
    assert isinstance(dead, settlement.DeadLetter) and isinstance(compensate, settlement.Compensate)
    assert model.layers["basic"].accumulator(PERSON).inpatient_paid > 0
    assert {name: layer.layers[settle.claim.claim_id].status for name, layer in model.layers.items()} == {
        "basic": "settled", "insurer": "failed", "assistance": "failed", "backstop": "failed"}

    (answer,) = through(model, cancel.to_json())

    assert isinstance(answer, settlement.Answer) and not answer.names_message
    assert SettlementResult.from_json(answer.body).rejection.code == RejectionCode.CLAIM_NOT_FOUND
    assert model.layers["basic"].accumulator(PERSON).inpatient_paid == 0
    (again,) = through(model, cancel.to_json())  # redelivered: answered the same, nothing taken twice
    assert again.body == answer.body and model.layers["basic"].accumulator(PERSON).inpatient_paid == 0
    (failed,) = through(model, compensate.body)  # then the compensation: nothing left, the failure answered
    assert SettlementResult.from_json(failed.body).rejection.code == RejectionCode.SETTLEMENT_FAILED
    assert all(layer.accumulator(PERSON) == type(layer.accumulator(PERSON))() for layer in model.layers.values())
