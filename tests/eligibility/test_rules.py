"""Eligibility's rules alone: the registry as of the service date, and
messages a hospital clerk can act on (masked identities, the next step)."""

import functools

from medsettle.contract import Hospital, Person, RejectionCode, SettleClaim
from medsettle.policy import PolicyBook
from medsettle.settings import ROOT
from services.eligibility.rules import Eligible, check_eligibility
from tests.factories import claim_body, hospital_record, person_record

PERSON = "340421199001011234"
COUNTY = Hospital.model_validate(hospital_record("H3404210001", "county"))


@functools.cache
def policies() -> PolicyBook:
    return PolicyBook(ROOT / "policies")


def verdict(*, person: dict | None = None, hospital: Hospital | None = COUNTY, **claim):
    body = SettleClaim.model_validate(claim_body(a="1000", person_id=PERSON, hospital_code="H3404210001", **claim))
    found = Person.model_validate(person) if person is not None else None
    return check_eligibility(body, hospital, found, policies().get)


def test_categories_count_on_the_service_date_not_the_admission_date():
    person = person_record(PERSON, categories=["subsistence"], valid_from="2024-01-01", valid_to="2024-06-30")
    inside = verdict(person=person, admitted_on="2024-06-01", discharged_on="2024-06-30")
    across = verdict(person=person, admitted_on="2024-06-25", discharged_on="2024-07-01")
    assert isinstance(inside, Eligible) and inside.person.categories == ["subsistence"] and inside.person.favoured
    assert isinstance(across, Eligible) and across.person.categories == [] and not across.person.favoured


def test_the_coverage_year_is_the_year_of_the_service_date():
    person = person_record(PERSON, paid_years=(2023,))
    refused = verdict(person=person, admitted_on="2023-12-28", discharged_on="2024-01-02")
    assert refused.code == RejectionCode.NOT_INSURED
    assert "2024 年度未缴费" in refused.message and "出院日期 2024-01-02" in refused.message


def test_every_rejection_message_names_the_problem_masks_the_person_and_says_what_to_do():
    ordinary = person_record(PERSON)
    cases = {
        RejectionCode.UNKNOWN_HOSPITAL: verdict(person=ordinary, hospital=None),
        RejectionCode.HOSPITAL_NOT_DESIGNATED: verdict(person=ordinary, hospital=Hospital.model_validate(
            hospital_record("H3404210001", "county", designated=False))),
        RejectionCode.HOSPITAL_SUSPENDED: verdict(person=ordinary, hospital=Hospital.model_validate(
            hospital_record("H3404210001", "county", suspended=True))),
        RejectionCode.UNKNOWN_PERSON: verdict(person=None),
        RejectionCode.BLACKLISTED: verdict(person=person_record(PERSON, blacklisted=True)),
        RejectionCode.NOT_INSURED: verdict(person=person_record(PERSON, paid_years=(2023,))),
        RejectionCode.NO_POLICY: verdict(person=person_record(PERSON, region="999999")),
    }
    for code, rejection in cases.items():
        assert rejection.code == code
        assert PERSON not in rejection.message
        assert any(step in rejection.message for step in ("请", "可持票据")), rejection.message
        if code in (RejectionCode.UNKNOWN_PERSON, RejectionCode.BLACKLISTED, RejectionCode.NOT_INSURED):
            assert "340421********1234" in rejection.message
        elif code != RejectionCode.NO_POLICY:
            assert "H3404210001" in rejection.message
