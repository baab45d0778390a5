"""The stages' fast paths give exactly what the validating paths give."""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pytest

from deploy.bench_population import Population
from medsettle.contract import (
    HospitalFacts,
    PersonFacts,
    RejectionCode,
    SettleClaim,
    SettlementDocument,
    SettlementResult,
    rejection,
)
from medsettle.policy import PolicyBook
from medsettle.settings import ROOT
from services.pipeline import Ledger
from services.settlement.onebill import one_bill


def documents(count: int) -> list[SettlementDocument]:
    book = PolicyBook(ROOT / "policies")
    population = Population(50, seed=7)
    rng = random.Random(7)
    ledger = Ledger()
    found = []
    for n in range(count):
        body = population.claim(rng)
        claim = SettleClaim.model_validate(body)
        policy = book.get("340421", 2024)
        categories = [["subsistence"], [], ["poverty_registered", "monitored"]][n % 3]
        document = SettlementDocument(
            kind=body["type"], claim=claim, policy=policy.policy,
            person=PersonFacts(person_id=claim.person_id, region="340421", categories=categories,
                               favoured=policy.favoured(categories)),
            hospital=HospitalFacts(hospital_code=claim.hospital_code, level="county", name="县人民医院"),
            received_at=dt.datetime(2024, 3, 10, 10, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        )
        found.append(document)  # as eligibility sends it: no layer yet
        found.append(ledger.settle(policy, document))  # as settlement reads it: four layers
    found.append(found[-1].model_copy(update={"kind": "cancel", "cancel_reason": "撤销"}))
    return found


def test_a_trusted_document_equals_the_validated_one_and_writes_the_same_bytes() -> None:
    for document in documents(24):  # settle and trial, before and after the layers, a cancel, large claims
        body = document.to_json()
        raw = orjson.loads(body)
        trusted = SettlementDocument.trusted(raw)
        assert trusted == SettlementDocument.from_json(body)
        assert trusted.to_json() == body
        assert trusted.to_json(claim_json=raw["claim"]) == body
        assert trusted.claim.total == document.claim.total


def test_documents_and_one_bills_are_written_as_pydantic_writes_them() -> None:
    """The writers that skip pydantic's serializer (medsettle.wire, derived
    from the models' fields) give its bytes exactly, for every field."""
    found = documents(24)
    utc = dt.datetime(2024, 3, 10, 2, 0, 0, tzinfo=dt.UTC)
    found.append(found[1].model_copy(update={"received_at": utc, "cancel_reason": "重复"}))
    found.append(found[1].model_copy(update={"received_at": None, "deductible": None, "breakdown": None}))
    for document in found:
        assert document.to_json() == orjson.dumps(document.model_dump(mode="json"))
    bills: list[SettlementResult] = [one_bill(d, at=utc) for d in found if d.breakdown is not None]
    bills += [one_bill(found[-3], at=dt.datetime(2024, 3, 10, 10, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
                       status="reversed")]
    bills += [rejection(code, f"理由 {code.value}", claim_id="C1", hospital_code="H1",
                        person_id="340421199001011234" if n % 2 else None, at=None if n % 3 else utc)
              for n, code in enumerate(RejectionCode)]
    assert any(b.fund_details for b in bills) and any(b.rejection for b in bills)
    for bill in bills:
        assert bill.to_json() == orjson.dumps(bill.model_dump(mode="json"))


def test_a_one_bill_built_without_validation_equals_the_validated_one() -> None:
    """``one_bill`` builds the bill from values already valid: what validating them builds, the same fields
    given, the same bytes."""
    at = dt.datetime(2024, 3, 10, 10, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    bills = [one_bill(d, at=at, status=status) for d in documents(12) if d.breakdown is not None
             for status in (None, "reversed")]
    assert bills
    for bill in bills:
        validated = SettlementResult(**{name: getattr(bill, name) for name in bill.model_fields_set})
        assert validated == bill and validated.model_fields_set == bill.model_fields_set
        assert validated.to_json() == bill.to_json()
        assert [d.model_fields_set for d in validated.fund_details] == [d.model_fields_set for d in bill.fund_details]


def test_the_document_eligibility_builds_without_validation_equals_the_validated_one() -> None:
    """Eligibility's ``document`` builds from values already valid: what validating them builds, the same
    fields given, the same bytes."""
    from services.eligibility.decide import StoredState, _Batch
    from services.eligibility.rules import Eligible

    at = dt.datetime(2024, 3, 10, 10, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    batch = _Batch(StoredState(), lambda: at, lambda region, on: None)
    for n, sent in enumerate(d for d in documents(6) if not d.layers):
        verdict = Eligible(PolicyBook(ROOT / "policies").by_id(sent.policy), sent.person, sent.hospital)
        built = batch.document(sent.kind, sent.claim, verdict, n % 3)
        validated = SettlementDocument(kind=sent.kind, claim=sent.claim, policy=sent.policy, person=sent.person,
                                       hospital=sent.hospital, received_at=at, attempt=n % 3)
        assert built == validated and built.model_fields_set == validated.model_fields_set
        assert list(built.__dict__) == list(validated.__dict__)
        assert built.to_json() == validated.to_json() == orjson.dumps(validated.model_dump(mode="json"))


def test_a_malformed_document_is_still_refused_by_validation() -> None:
    raw = orjson.loads(documents(1)[1].to_json())
    raw["claim"]["items"][0]["amount"] = 12.5  # a float: never an amount
    with pytest.raises(ValueError):
        SettlementDocument.trusted(raw)
    del raw["claim"]
    with pytest.raises(ValueError):
        SettlementDocument.trusted(raw)


def test_the_in_memory_layers_bench_settles_the_same_year_alike_each_time() -> None:
    """``python -m deploy.simulate_bench --in-memory N``: its digest is of
    the claims' outcomes only, so two versions of the layers can be compared."""
    from deploy.simulate_bench import POLICY, layers_bench

    first, second = layers_bench(60, 2, POLICY), layers_bench(60, 1, POLICY)
    assert first["sha256"] == second["sha256"] and first["claims"] == 60
    assert len(first["runs_wall_s"]) == 2 and first["us_per_claim"]["cpu"] > 0


@pytest.mark.parametrize("name", ["340421-2024", "150900-2024"])
def test_what_the_layers_build_without_validation_equals_what_validation_builds(name: str) -> None:
    """Each rule builds its layer, breakdown, delta and outcome from values it
    computed (``Frozen.of``, ``Counters.of``, ``LayerOutcome.of``): validating
    the same values again gives equal models, the same counters set and the
    same JSON."""
    from deploy.simulate_bench import in_memory_year

    policy = PolicyBook(ROOT / "policies").by_id(name)
    assert policy is not None
    ledger, outcomes = Ledger(), []

    def recording(apply):
        def layer(policy, document, state):
            outcomes.append(apply(policy, document, state))
            return outcomes[-1]
        return layer

    ledger.layers = [(stage, recording(apply), kind) for stage, apply, kind in ledger.layers]
    for n, body in enumerate(in_memory_year(300, policy), 1):
        ledger.settle(policy, SettlementDocument.model_validate(body))
        if n % 20 == 0:
            ledger.reverse(body["claim"]["claim_id"])
    assert len(outcomes) == 1200
    for outcome in outcomes:
        delta = outcome.delta
        validated = type(delta)(**{field: getattr(delta, field) for field in delta.model_fields_set})
        assert validated == delta and validated.model_fields_set == delta.model_fields_set
        assert validated.model_dump_json() == delta.model_dump_json()
        document = outcome.document
        assert type(outcome).model_validate({"document": document, "delta": delta}) == outcome
        for model in [*document.layers, document.breakdown]:
            again = type(model).model_validate(model.model_dump())
            assert again == model and again.model_dump_json() == model.model_dump_json()
        assert SettlementDocument.model_validate(document.model_dump()) == document
        assert document.to_json() == orjson.dumps(document.model_dump(mode="json"))
