"""The audit rules alone: pure functions, no I/O."""

import datetime as dt
from decimal import Decimal

from services.eligibility.audit import (
    COST_OUTLIER,
    NO_COST,
    OVERLAPPING_STAY,
    DiagnosisCost,
    Stay,
    cost_outlier,
    overlapping_stays,
    random_sample,
    sampled,
)


def stay(claim_id: str, hospital: str, admitted: str, discharged: str) -> Stay:
    return Stay(claim_id, hospital, dt.date.fromisoformat(admitted), dt.date.fromisoformat(discharged))


def test_stays_at_two_hospitals_that_overlap_are_flagged_with_the_other_stay():
    county = stay("C1", "H1", "2024-03-01", "2024-03-10")
    city = stay("C2", "H2", "2024-03-09", "2024-03-15")
    flag = overlapping_stays(city, [county])
    assert flag is not None and flag.kind == OVERLAPPING_STAY and flag.related_claim_id == "C1"
    assert "2024-03-01 至 2024-03-10" in flag.reason


def test_a_transfer_on_the_day_of_discharge_and_stays_at_one_hospital_are_not_overlaps():
    county = stay("C1", "H1", "2024-03-01", "2024-03-10")
    assert overlapping_stays(stay("C2", "H2", "2024-03-10", "2024-03-15"), [county]) is None
    assert overlapping_stays(stay("C3", "H1", "2024-03-05", "2024-03-08"), [county]) is None
    assert overlapping_stays(stay("C4", "H2", "2024-02-01", "2024-03-01"), [county]) is None


def test_a_day_stay_inside_another_stay_is_an_overlap():
    county = stay("C1", "H1", "2024-03-01", "2024-03-10")
    assert overlapping_stays(stay("C2", "H2", "2024-03-05", "2024-03-05"), [county]) is not None


def test_a_cost_is_an_outlier_only_above_the_factor_once_enough_claims_are_known():
    five = DiagnosisCost(5, Decimal("5000.00"))  # average 1,000
    rule = {"factor": Decimal("3"), "min_claims": 5}
    assert cost_outlier("C", Decimal("3000.01"), "I63.900", "county", "inpatient", five, **rule).kind == COST_OUTLIER
    assert cost_outlier("C", Decimal("3000.00"), "I63.900", "county", "inpatient", five, **rule) is None
    four = DiagnosisCost(4, Decimal("4000.00"))
    assert cost_outlier("C", Decimal("90000.00"), "I63.900", "county", "inpatient", four, **rule) is None
    assert cost_outlier("C", Decimal("90000.00"), "I63.900", "county", "inpatient", NO_COST, **rule) is None
    flag = cost_outlier("C", Decimal("4500.00"), "I63.900", "county", "inpatient", five, **rule)
    assert "4500.00" in flag.reason and "1000.00" in flag.reason and "4.5 倍" in flag.reason and "县级" in flag.reason


def test_the_random_sample_is_reproducible_and_about_the_rate():
    ids = [f"H3404210001-2024-{n:06d}" for n in range(20_000)]
    drawn = [i for i in ids if sampled(i, 0.01)]
    assert 140 <= len(drawn) <= 260  # 1% of 20,000 is 200
    assert drawn == [i for i in ids if sampled(i, 0.01)]
    assert not any(sampled(i, 0.0) for i in ids[:1000]) and all(sampled(i, 1.0) for i in ids[:1000])
    assert random_sample(drawn[0], 0.01).reason == "随机抽查（抽样比例 1.00%）"
