"""The public contract's messages: parsing ``his.claims`` and writing
``his.settlements`` (CONTRACT §3 and §5)."""

import copy
import datetime as dt
from decimal import Decimal

import orjson
import pytest

from medsettle.contract import (
    BREAKDOWN_AMOUNTS,
    ONE_BILL_AMOUNTS,
    Breakdown,
    CancelClaim,
    InvalidMessage,
    SettleClaim,
    SettlementResult,
    mask_person_id,
    parse_claim,
)
from services.pipeline import Ledger
from services.settlement.onebill import one_bill
from tests.factories import document

# CONTRACT §3, verbatim.
EXAMPLE = {
    "type": "settle",
    "claim_id": "H3404210001-2024-000123",
    "hospital_code": "H3404210001",
    "person_id": "340421199001011234",
    "visit_type": "inpatient",
    "admitted_on": "2024-03-01",
    "discharged_on": "2024-03-10",
    "referral": False,
    "injury": False,
    "diagnosis_codes": ["I63.900"],
    "items": [
        {"code": "XA01", "name": "阿司匹林肠溶片", "category": "A",
         "quantity": "2", "unit_price": "35.50", "amount": "71.00", "limit_price": None}
    ],
    "submitted_at": "2024-03-10T10:00:00+08:00",
}


def body(**changes):
    message = copy.deepcopy(EXAMPLE)
    for key, value in changes.items():
        if value is ...:
            message.pop(key, None)
        else:
            message[key] = value
    return orjson.dumps(message)


def with_item(**changes):
    first = {**EXAMPLE["items"][0], **changes}
    return body(items=[first])


def rejected(raw):
    with pytest.raises(InvalidMessage) as caught:
        parse_claim(raw)
    return caught.value


# ---------------------------------------------------------------- accepted


def test_the_contracts_example_claim_is_accepted():
    claim = parse_claim(orjson.dumps(EXAMPLE))
    assert isinstance(claim, SettleClaim)
    assert claim.claim_id == "H3404210001-2024-000123"
    assert claim.visit_type == "inpatient"
    assert claim.admitted_on == dt.date(2024, 3, 1)
    assert claim.year == 2024
    assert claim.total == Decimal("71.00")  # 2 × 35.50
    item = claim.items[0]
    assert (item.quantity, item.unit_price, item.amount, item.limit_price) == (
        Decimal("2"), Decimal("35.50"), Decimal("71.00"), None)


def test_a_trial_claim_is_accepted():
    assert parse_claim(body(type="trial")).type == "trial"


def test_an_outpatient_claim_needs_no_admission_date():
    claim = parse_claim(body(visit_type="outpatient", admitted_on=...))
    assert claim.admitted_on is None and claim.discharged_on == dt.date(2024, 3, 10)


def test_a_cancel_needs_only_type_claim_id_hospital_code_and_a_reason():
    claim = parse_claim(orjson.dumps({"type": "cancel", "claim_id": "C1", "hospital_code": "H1", "reason": "退费"}))
    assert isinstance(claim, CancelClaim)
    assert (claim.claim_id, claim.hospital_code, claim.reason) == ("C1", "H1", "退费")


# ---------------------------------------------------------------- rejected


def test_non_json_bytes_are_rejected():
    error = rejected(b"\xff\xfe not json at all")
    assert "not UTF-8 JSON" in error.message
    assert (error.claim_id, error.hospital_code) == (None, None)


def test_a_json_array_is_rejected():
    error = rejected(orjson.dumps([EXAMPLE]))
    assert error.message == "message is not a JSON object"
    assert (error.claim_id, error.hospital_code) == (None, None)


@pytest.mark.parametrize("field", ["person_id", "visit_type", "discharged_on", "items"])
def test_a_missing_field_is_rejected_naming_it_and_still_reads_the_ids(field):
    error = rejected(body(**{field: ...}))
    assert f"{field}: Field required" in error.message
    assert (error.claim_id, error.hospital_code) == ("H3404210001-2024-000123", "H3404210001")


def test_a_message_missing_its_ids_is_rejected_without_them():
    error = rejected(body(claim_id=..., hospital_code=...))
    assert "claim_id: Field required" in error.message and "hospital_code: Field required" in error.message
    assert (error.claim_id, error.hospital_code) == (None, None)


@pytest.mark.parametrize("field", ["amount", "unit_price", "quantity"])
def test_a_float_is_rejected_as_an_amount_or_quantity(field):
    error = rejected(with_item(**{field: {"amount": 71.0, "unit_price": 35.5, "quantity": 2.0}[field]}))
    assert f"items.0.{field}" in error.message
    assert "must be a decimal string" in error.message
    assert (error.claim_id, error.hospital_code) == ("H3404210001-2024-000123", "H3404210001")


def test_a_negative_quantity_is_rejected():
    error = rejected(with_item(quantity="-2"))
    assert "items.0.quantity: quantity may not be negative" in error.message
    assert error.claim_id == "H3404210001-2024-000123"


def test_a_negative_amount_is_rejected():
    error = rejected(with_item(amount="-71.00"))
    assert "items.0.amount: amount may not be negative" in error.message


def test_an_amount_with_more_than_two_decimals_is_rejected():
    error = rejected(with_item(amount="71.001"))
    assert "items.0.amount: amount has more than 2 decimals" in error.message
    assert error.hospital_code == "H3404210001"


def test_an_amount_that_is_not_a_number_is_rejected():
    error = rejected(with_item(unit_price="35,50"))
    assert "items.0.unit_price" in error.message and "is not a decimal number" in error.message


@pytest.mark.parametrize("kind", ["refund", None, 3])
def test_an_unknown_type_is_rejected(kind):
    error = rejected(body(type=kind))
    assert error.message == "type: must be settle, trial or cancel"
    assert (error.claim_id, error.hospital_code) == ("H3404210001-2024-000123", "H3404210001")


def test_an_unknown_visit_type_is_rejected():
    error = rejected(body(visit_type="emergency"))
    assert "visit_type" in error.message


def test_an_inpatient_claim_without_admitted_on_is_rejected():
    error = rejected(body(admitted_on=...))
    assert "admitted_on is required for an inpatient claim" in error.message
    assert (error.claim_id, error.hospital_code) == ("H3404210001-2024-000123", "H3404210001")


def test_a_claim_admitted_after_discharge_is_rejected():
    error = rejected(body(admitted_on="2024-03-11"))
    assert "admitted_on is after discharged_on" in error.message


def test_a_claim_without_items_is_rejected():
    error = rejected(body(items=[]))
    assert "items:" in error.message and "at least 1 item" in error.message
    assert (error.claim_id, error.hospital_code) == ("H3404210001-2024-000123", "H3404210001")


def test_an_unknown_item_category_is_rejected():
    error = rejected(with_item(category="D"))
    assert "items.0.category" in error.message


def test_an_unreadable_claim_id_is_not_reported_back():
    error = rejected(body(claim_id=12345, items=[]))
    assert error.claim_id is None
    assert error.hospital_code == "H3404210001"


def test_truncated_json_still_reports_the_ids_it_shows():
    error = rejected(orjson.dumps(EXAMPLE)[:120])
    assert (error.claim_id, error.hospital_code) == ("H3404210001-2024-000123", "H3404210001")


# ---------------------------------------------------------------- outbound


def test_a_person_id_is_masked_as_in_the_contract():
    assert mask_person_id("340421199001011234") == "340421********1234"


def test_a_short_person_id_is_masked_too():
    assert mask_person_id("12345678") == "12****78"


def test_a_settlement_result_writes_amounts_as_strings_with_two_decimals(reference_policy):
    settled = Ledger().settle(reference_policy, document(reference_policy, level="county", a="8000", b="2000", c="500"))
    at = dt.datetime(2024, 3, 10, 10, 0, 1, 234000, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    sent = orjson.loads(one_bill(settled, at=at).to_json())
    # worked example 1
    assert {k: sent[k] for k in ("total", "self_pay", "over_limit_self_pay", "pre_self_pay", "compliant",
                                 "deductible", "basic", "serious_illness", "assistance", "backstop",
                                 "fund_total", "personal")} == {
        "total": "10500.00", "self_pay": "500.00", "over_limit_self_pay": "0.00", "pre_self_pay": "200.00",
        "compliant": "9800.00", "deductible": "600.00", "basic": "6900.00", "serious_illness": "0.00",
        "assistance": "0.00", "backstop": "0.00", "fund_total": "6900.00", "personal": "3600.00"}
    assert sent["person_id_masked"] == "340421********1234"
    assert sent["status"] == "settled" and sent["policy"] == "340421-2024"
    assert [(d["fund_pay_type"], d["amount"]) for d in sent["fund_details"]] == [
        ("390100", "6900.00"), ("390200", "0.00"), ("610100", "0.00"), ("640100", "0.00")]
    assert [(layer["layer"], layer["amount"]) for layer in sent["layers"]] == [
        ("basic", "6900.00"), ("serious_illness", "0.00"), ("assistance", "0.00"), ("backstop", "0.00")]
    assert sent["settled_at"].startswith("2024-03-10T10:00:01.234")
    assert sent["rejection"] is None


def test_whole_yuan_amounts_are_written_with_two_decimals():
    result = SettlementResult(claim_id="C1", hospital_code="H1", status="trial", total=Decimal("6900"),
                              basic=Decimal("0"), personal=Decimal("12.5"))
    sent = orjson.loads(result.to_json())
    assert (sent["total"], sent["basic"], sent["personal"]) == ("6900.00", "0.00", "12.50")
    assert SettlementResult.from_json(result.to_json()).total == Decimal("6900.00")


def test_a_claims_content_key_and_document_are_the_same_from_a_dump_made_once(reference_policy):
    # eligibility dumps an accepted claim once, for its hash and its document:
    # both must be exactly what they were when each made its own (stored hashes
    # decide DUPLICATE_CLAIM for claims sent again after an upgrade)
    doc = document(reference_policy, a="812.40", b="75.00", c="19.99")
    dumped = doc.claim.model_dump(mode="json")
    assert doc.claim.content_key(dumped) == doc.claim.content_key()
    assert "submitted_at" not in orjson.loads(doc.claim.content_key()) and "type" not in orjson.loads(doc.claim.content_key())
    assert doc.to_json(claim_json=dumped) == doc.to_json()
    resent = doc.claim.model_copy(update={"submitted_at": dt.datetime(2024, 3, 11, 9, tzinfo=dt.timezone.utc)})
    assert resent.content_key() == doc.claim.content_key()
    changed = doc.claim.model_copy(update={"referral": True})
    assert changed.content_key(changed.model_dump(mode="json")) != doc.claim.content_key()


def test_the_lists_of_amounts_are_the_models_fields_in_order() -> None:
    assert BREAKDOWN_AMOUNTS == tuple(Breakdown.model_fields)
    fields = list(SettlementResult.model_fields)
    assert list(ONE_BILL_AMOUNTS) == fields[fields.index("total"):fields.index("personal") + 1]


def test_a_final_check_character_x_is_read_as_capital_x_in_claims_and_the_registry():
    claim = parse_claim(orjson.dumps({**EXAMPLE, "person_id": "34042119900101123x"}))
    assert claim.person_id == "34042119900101123X"
    from medsettle.contract import Person

    assert Person.model_validate({"person_id": "34042119900101123x", "region": "340421"}).person_id == \
        "34042119900101123X"
    # the same claim with either spelling is the same content: a resend, not a duplicate
    again = parse_claim(orjson.dumps({**EXAMPLE, "person_id": "34042119900101123X"}))
    assert claim.content_key() == again.content_key()


def test_a_document_names_its_attempt_and_a_compensation_in_its_message_id(reference_policy):
    doc = document(reference_policy, claim_id="H1-2024-9", a="100")
    assert doc.message_id == "settle:H1-2024-9"
    retry = doc.model_copy(update={"attempt": 2})
    assert retry.message_id == "settle:H1-2024-9#2"
    undo = retry.model_copy(update={"kind": "cancel", "failure": "invariant broken"})
    assert undo.message_id == "undo:H1-2024-9#2" and undo.compensating
    from medsettle.contract import SettlementDocument

    assert SettlementDocument.trusted(orjson.loads(undo.to_json())) == undo
