"""Basic insurance (基本医保, fund 390100), hand-worked row by row.

Reference policy 340421-2024 (CONTRACT §6) first, then the second region
150900-2024. Every expected amount is worked out in the comment next to it.
"""

from decimal import Decimal

import pytest

from medsettle.contract import LayerName
from services.basic.rules import BasicAccumulator, settle_basic
from services.pipeline import Ledger
from tests.factories import document, item

D = Decimal


def basic(policy, *, accumulator=None, **claim):
    """The basic layer alone, on a fresh (or given) accumulator."""
    outcome = settle_basic(policy, document(policy, **claim), accumulator or BasicAccumulator())
    return outcome.document, outcome.delta


def settle(policy, ledger, **claim):
    """All four layers through a ledger, so accumulators carry over."""
    return ledger.settle(policy, document(policy, **claim))


def paid(doc, layer=LayerName.BASIC):
    return doc.layer_amount(layer)


# ============================================================ 340421-2024: inpatient


@pytest.mark.parametrize(
    ("level", "deductible", "expected"),
    [
        ("village", "200.00", "8330.00"),  # (10000 - 200) × 85% = 9800 × 0.85 = 8330
        ("township", "200.00", "8330.00"),  # (10000 - 200) × 85% = 8330
        ("county", "600.00", "7050.00"),  # (10000 - 600) × 75% = 9400 × 0.75 = 7050
        ("city", "1000.00", "5850.00"),  # (10000 - 1000) × 65% = 9000 × 0.65 = 5850
        ("province", "1500.00", "4675.00"),  # (10000 - 1500) × 55% = 8500 × 0.55 = 4675
        ("out_of_province", "2000.00", "4000.00"),  # (10000 - 2000) × 50% = 8000 × 0.5 = 4000
    ],
)
def test_inpatient_deductible_and_ratio_follow_the_hospital_level_with_referral(
    reference_policy, level, deductible, expected
):
    doc, _ = basic(reference_policy, level=level, referral=True, a="10000")
    assert doc.deductible == D(deductible)
    assert paid(doc) == D(expected)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("village", "8330.00"),  # no penalty below city: (10000 - 200) × 85% = 8330
        ("township", "8330.00"),  # (10000 - 200) × 85% = 8330
        ("county", "7050.00"),  # no penalty at county: (10000 - 600) × 75% = 7050
        ("city", "4950.00"),  # 65% - 10 = 55%: (10000 - 1000) × 55% = 9000 × 0.55 = 4950
        ("province", "3825.00"),  # 55% - 10 = 45%: (10000 - 1500) × 45% = 8500 × 0.45 = 3825
        ("out_of_province", "3200.00"),  # 50% - 10 = 40%: (10000 - 2000) × 40% = 8000 × 0.4 = 3200
    ],
)
def test_inpatient_without_referral_loses_ten_points_only_at_city_and_above(reference_policy, level, expected):
    doc, _ = basic(reference_policy, level=level, referral=False, a="10000")
    assert paid(doc) == D(expected)


@pytest.mark.parametrize(
    ("level", "referral", "deductible", "expected"),
    [
        ("village", True, "100.00", "8910.00"),  # 200 / 2 = 100; (10000 - 100) × (85+5)% = 9900 × 0.9 = 8910
        ("township", True, "100.00", "8910.00"),  # same as village: 8910
        ("county", True, "300.00", "7760.00"),  # 600 / 2 = 300; (10000 - 300) × 80% = 9700 × 0.8 = 7760
        ("city", True, "500.00", "6650.00"),  # 1000 / 2 = 500; (10000 - 500) × 70% = 9500 × 0.7 = 6650
        ("province", True, "750.00", "5550.00"),  # 1500 / 2 = 750; (10000 - 750) × 60% = 9250 × 0.6 = 5550
        ("out_of_province", True, "1000.00", "4950.00"),  # 2000 / 2 = 1000; 9000 × 55% = 4950
        ("city", False, "500.00", "5700.00"),  # 65 - 10 + 5 = 60%: (10000 - 500) × 60% = 5700
        ("out_of_province", False, "1000.00", "4050.00"),  # 50 - 10 + 5 = 45%: 9000 × 0.45 = 4050
    ],
)
def test_favoured_people_pay_half_the_deductible_and_get_five_points_more(
    reference_policy, level, referral, deductible, expected
):
    doc, _ = basic(reference_policy, level=level, referral=referral, categories=["subsistence"], a="10000")
    assert doc.deductible == D(deductible)
    assert paid(doc) == D(expected)


@pytest.mark.parametrize(
    ("categories", "deductible", "expected"),
    [
        (["poverty_registered"], "300.00", "7760.00"),  # favoured: (10000 - 300) × 80% = 7760
        (["subsistence"], "300.00", "7760.00"),  # favoured: (10000 - 300) × 80% = 7760
        (["extreme_poverty"], "300.00", "7760.00"),  # favoured: (10000 - 300) × 80% = 7760
        (["monitored"], "600.00", "7050.00"),  # monitored is not favoured: (10000 - 600) × 75% = 7050
        ([], "600.00", "7050.00"),  # ordinary: (10000 - 600) × 75% = 7050
    ],
)
def test_favoured_means_poverty_registered_subsistence_or_extreme_poverty(
    reference_policy, categories, deductible, expected
):
    doc, _ = basic(reference_policy, level="county", categories=categories, a="10000")
    assert doc.deductible == D(deductible)
    assert paid(doc) == D(expected)


def test_deductible_is_capped_at_the_compliant_amount(reference_policy):
    doc, _ = basic(reference_policy, level="county", a="450")
    # county deductible 600 > compliant 450: the claim bears only 450; (450 - 450) × 75% = 0
    assert doc.deductible == D("450.00")
    assert paid(doc) == D("0.00")


def test_reference_policy_deductible_is_the_same_for_every_admission(reference_policy):
    ledger = Ledger()
    first = settle(reference_policy, ledger, level="county", a="10000")
    second = settle(reference_policy, ledger, level="county", a="10000")
    # 340421 has no repeat-admission reduction: both (10000 - 600) × 75% = 7050
    assert (first.deductible, second.deductible) == (D("600.00"), D("600.00"))
    assert (paid(first), paid(second)) == (D("7050.00"), D("7050.00"))


def test_inpatient_annual_limit_of_300000_is_reached_across_admissions(reference_policy):
    ledger = Ledger()
    first = settle(reference_policy, ledger, level="county", a="400000")
    # (400000 - 600) × 75% = 399400 × 0.75 = 299550, under 300000
    assert paid(first) == D("299550.00")
    second = settle(reference_policy, ledger, level="county", a="10000")
    # (10000 - 600) × 75% = 7050, but only 300000 - 299550 = 450 is left
    assert paid(second) == D("450.00")
    assert "年度限额 300000.00 元" in second.layers[0].explanation
    third = settle(reference_policy, ledger, level="county", a="10000")
    # the limit is used up: 300000 - 300000 = 0
    assert paid(third) == D("0.00")
    outpatient = settle(reference_policy, ledger, level="county", visit_type="outpatient", a="100")
    # the outpatient limit is separate: 100 × 50% = 50
    assert paid(outpatient) == D("50.00")


# ========================================================= 340421-2024: outpatient


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("village", "55.00"),  # 100 × 55% = 55
        ("township", "55.00"),  # 100 × 55% = 55
        ("county", "50.00"),  # 100 × 50% = 50
        ("city", "50.00"),  # 100 × 50% = 50
        ("province", "50.00"),  # 100 × 50% = 50
        ("out_of_province", "50.00"),  # 100 × 50% = 50
    ],
)
def test_outpatient_pays_55_percent_at_village_and_township_and_50_above(reference_policy, level, expected):
    doc, _ = basic(reference_policy, level=level, visit_type="outpatient", a="100")
    assert doc.deductible == D("0.00")  # no deductible for outpatients
    assert paid(doc) == D(expected)


def test_outpatient_has_no_deductible_and_no_favoured_preference(reference_policy):
    doc, _ = basic(reference_policy, level="village", visit_type="outpatient", categories=["subsistence"], a="100")
    # favoured rules are inpatient only: 100 × 55% = 55, deductible 0
    assert doc.deductible == D("0.00")
    assert paid(doc) == D("55.00")


def test_outpatient_annual_limit_of_400_is_reached_across_visits(reference_policy):
    ledger = Ledger()
    kw = dict(level="village", visit_type="outpatient", a="300")
    first, second, third, fourth = (settle(reference_policy, ledger, **kw) for _ in range(4))
    assert paid(first) == D("165.00")  # 300 × 55% = 165
    assert paid(second) == D("165.00")  # 165; paid 330 so far
    assert paid(third) == D("70.00")  # 165 > 400 - 330 = 70 left
    assert paid(fourth) == D("0.00")  # 400 - 400 = 0 left


@pytest.mark.parametrize("level", ["village", "township", "county", "city", "province", "out_of_province"])
def test_chronic_outpatient_pays_65_percent_at_any_level_without_deductible(reference_policy, level):
    doc, _ = basic(reference_policy, level=level, visit_type="chronic_outpatient", a="1000")
    assert doc.deductible == D("0.00")
    assert paid(doc) == D("650.00")  # 1000 × 65% = 650


def test_chronic_outpatient_annual_limit_of_5000_is_reached_across_visits(reference_policy):
    ledger = Ledger()
    kw = dict(level="county", visit_type="chronic_outpatient", a="4000")
    first, second, third = (settle(reference_policy, ledger, **kw) for _ in range(3))
    assert paid(first) == D("2600.00")  # 4000 × 65% = 2600
    assert paid(second) == D("2400.00")  # 2600 > 5000 - 2600 = 2400 left
    assert paid(third) == D("0.00")  # 5000 - 5000 = 0 left


# ============================================== 340421-2024: splitting the bill


def test_b_items_pay_ten_percent_first(reference_policy):
    doc, _ = basic(reference_policy, level="county", b="1000")
    bd = doc.breakdown
    assert bd.pre_self_pay == D("100.00")  # 1000 × 10% = 100
    assert bd.compliant == D("900.00")  # 1000 - 100 = 900
    assert paid(doc) == D("225.00")  # (900 - 600) × 75% = 300 × 0.75 = 225


def test_b_pre_self_pay_is_rounded_to_the_fen_half_up(reference_policy):
    doc, _ = basic(reference_policy, level="village", visit_type="outpatient", b="333.35")
    bd = doc.breakdown
    assert bd.pre_self_pay == D("33.34")  # 333.35 × 10% = 33.335 → 33.34 (half up)
    assert bd.compliant == D("300.01")  # 333.35 - 33.34 = 300.01
    assert paid(doc) == D("165.01")  # 300.01 × 55% = 165.0055 → 165.01


def test_c_items_are_self_pay_and_not_compliant(reference_policy):
    doc, _ = basic(reference_policy, level="county", a="1000", c="500")
    bd = doc.breakdown
    assert (bd.total, bd.self_pay, bd.compliant) == (D("1500.00"), D("500.00"), D("1000.00"))  # 1000 + 500
    assert paid(doc) == D("300.00")  # (1000 - 600) × 75% = 300


def test_a_claim_of_only_c_items_pays_nothing_and_says_why(reference_policy):
    doc, _ = basic(reference_policy, level="county", c="500")
    assert doc.breakdown.self_pay == D("500.00")
    assert doc.breakdown.compliant == D("0.00")
    assert doc.deductible == D("0.00")  # min(600, compliant 0) = 0
    assert paid(doc) == D("0.00")
    assert "无政策范围内费用" in doc.layers[0].explanation


@pytest.mark.parametrize(
    ("category", "self_pay", "pre_self_pay", "compliant"),
    [
        ("A", "0.00", "0.00", "100.00"),  # 120 - (60 - 50) × 2 = 100 within the limit, all compliant
        ("B", "0.00", "10.00", "90.00"),  # 100 within: 10% = 10 pre-self-pay, 90 compliant
        ("C", "100.00", "0.00", "0.00"),  # 100 within: all self-pay
    ],
)
def test_the_part_above_a_limit_price_is_over_limit_self_pay_for_every_category(
    reference_policy, category, self_pay, pre_self_pay, compliant
):
    items = [item(category, "120", quantity="2", limit_price="50.00")]  # unit 60.00, limit 50.00
    doc, _ = basic(reference_policy, level="village", visit_type="outpatient", items=items)
    bd = doc.breakdown
    assert bd.total == D("120.00")  # 2 × 60
    assert bd.over_limit_self_pay == D("20.00")  # (60 - 50) × 2 = 20
    assert (bd.self_pay, bd.pre_self_pay, bd.compliant) == (D(self_pay), D(pre_self_pay), D(compliant))


def test_an_item_at_or_under_its_limit_price_has_no_over_limit_part(reference_policy):
    items = [item("A", "100", quantity="2", limit_price="50.00"), item("B", "80", quantity="2", limit_price="50.00")]
    doc, _ = basic(reference_policy, level="village", visit_type="outpatient", items=items)
    bd = doc.breakdown
    assert bd.over_limit_self_pay == D("0.00")  # unit 50 = limit 50 and unit 40 < limit 50
    assert bd.pre_self_pay == D("8.00")  # 80 × 10% = 8
    assert bd.compliant == D("172.00")  # 100 + 80 - 8 = 172
    assert paid(doc) == D("94.60")  # 172 × 55% = 94.6


def test_over_limit_parts_of_mixed_items_add_up(reference_policy):
    items = [
        item("A", "300", quantity="3", limit_price="80.00"),  # unit 100: over (100 - 80) × 3 = 60, within 240
        item("B", "50.50", quantity="1", limit_price="40.25"),  # over 50.50 - 40.25 = 10.25, within 40.25
        item("C", "30", quantity="1"),  # no limit: self-pay 30
    ]
    doc, _ = basic(reference_policy, level="county", referral=True, items=items)
    bd = doc.breakdown
    assert bd.total == D("380.50")  # 300 + 50.50 + 30
    assert bd.over_limit_self_pay == D("70.25")  # 60 + 10.25
    assert bd.pre_self_pay == D("4.03")  # 40.25 × 10% = 4.025 → 4.03
    assert bd.compliant == D("276.22")  # 240 + 40.25 - 4.03
    assert bd.self_pay == D("30.00")
    # 30 + 70.25 + 4.03 + 276.22 = 380.50 = total
    assert bd.self_pay + bd.over_limit_self_pay + bd.pre_self_pay + bd.compliant == bd.total
    assert doc.deductible == D("276.22")  # under the county deductible of 600: all of it
    assert paid(doc) == D("0.00")


def test_an_admission_is_counted_per_level_in_the_accumulator(reference_policy):
    _, delta = basic(reference_policy, level="city", referral=True, a="10000")
    assert delta.admissions == {"city": D(1)}
    assert delta.inpatient_paid == D("5850.00")  # (10000 - 1000) × 65%
    _, delta = basic(reference_policy, level="city", visit_type="outpatient", a="100")
    assert delta.admissions == {}  # outpatient visits are no admissions
    assert delta.outpatient_paid == D("50.00")  # 100 × 50%


# ============================================================ 150900-2024: inpatient


@pytest.mark.parametrize(
    ("level", "deductible", "expected"),
    [
        ("village", "300.00", "7760.00"),  # village as township: (10000 - 300) × 80% = 9700 × 0.8 = 7760
        ("township", "300.00", "7760.00"),  # (10000 - 300) × 80% = 7760
        ("county", "600.00", "6580.00"),  # (10000 - 600) × 70% = 9400 × 0.7 = 6580
        ("city", "1200.00", "5720.00"),  # (10000 - 1200) × 65% = 8800 × 0.65 = 5720
        ("province", "1500.00", "5100.00"),  # (10000 - 1500) × 60% = 8500 × 0.6 = 5100
        ("out_of_province", "2000.00", "4400.00"),  # (10000 - 2000) × 55% = 8000 × 0.55 = 4400
    ],
)
def test_second_region_first_admission_deductible_and_base_ratio_by_level(second_policy, level, deductible, expected):
    doc, _ = basic(second_policy, level=level, referral=True, a="10000")
    assert doc.deductible == D(deductible)
    assert paid(doc) == D(expected)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("city", "5720.00"),  # no referral penalty: (10000 - 1200) × 65% = 5720
        ("province", "5100.00"),  # (10000 - 1500) × 60% = 5100
        ("out_of_province", "4400.00"),  # (10000 - 2000) × 55% = 4400
    ],
)
def test_second_region_has_no_referral_penalty(second_policy, level, expected):
    doc, _ = basic(second_policy, level=level, referral=False, a="10000")
    assert paid(doc) == D(expected)


@pytest.mark.parametrize("categories", [["poverty_registered"], ["subsistence"], ["extreme_poverty"]])
def test_second_region_first_admission_gives_favoured_people_no_preference(second_policy, categories):
    doc, _ = basic(second_policy, level="county", categories=categories, a="10000")
    # no halving, no extra points: (10000 - 600) × 70% = 6580
    assert doc.deductible == D("600.00")
    assert paid(doc) == D("6580.00")


def test_second_admission_at_the_same_level_has_a_deductible_100_lower(second_policy):
    ledger = Ledger()
    first = settle(second_policy, ledger, level="county", a="10000")
    second = settle(second_policy, ledger, level="county", a="10000")
    third = settle(second_policy, ledger, level="county", a="10000")
    assert (first.deductible, paid(first)) == (D("600.00"), D("6580.00"))  # (10000 - 600) × 70% = 6580
    assert (second.deductible, paid(second)) == (D("500.00"), D("6650.00"))  # 600 - 100 = 500; 9500 × 70% = 6650
    assert (third.deductible, paid(third)) == (D("500.00"), D("6650.00"))  # still 100 lower, not 200
    assert "起付线降低 100.00 元为 500.00 元" in second.layers[0].explanation


def test_a_first_admission_at_another_level_bears_the_full_deductible(second_policy):
    ledger = Ledger()
    settle(second_policy, ledger, level="county", a="10000")
    city = settle(second_policy, ledger, level="city", a="10000")
    # first admission at city: full 1200; (10000 - 1200) × 65% = 5720
    assert (city.deductible, paid(city)) == (D("1200.00"), D("5720.00"))


def test_village_counts_as_township_for_the_second_admission(second_policy):
    ledger = Ledger()
    settle(second_policy, ledger, level="village", a="10000")
    township = settle(second_policy, ledger, level="township", a="10000")
    # village as township: the second township-level admission: 300 - 100 = 200; 9800 × 80% = 7840
    assert (township.deductible, paid(township)) == (D("200.00"), D("7840.00"))


def test_poverty_registered_pay_no_deductible_from_the_second_admission_at_a_level(second_policy):
    ledger = Ledger()
    kw = dict(level="county", categories=["poverty_registered"], a="10000")
    first = settle(second_policy, ledger, **kw)
    second = settle(second_policy, ledger, **kw)
    assert (first.deductible, paid(first)) == (D("600.00"), D("6580.00"))  # (10000 - 600) × 70% = 6580
    assert (second.deductible, paid(second)) == (D("0.00"), D("7000.00"))  # 10000 × 70% = 7000
    assert "免起付线" in second.layers[0].explanation


def test_subsistence_people_get_only_the_100_reduction_on_a_second_admission(second_policy):
    ledger = Ledger()
    kw = dict(level="county", categories=["subsistence"], a="10000")
    settle(second_policy, ledger, **kw)
    second = settle(second_policy, ledger, **kw)
    assert (second.deductible, paid(second)) == (D("500.00"), D("6650.00"))  # 600 - 100; 9500 × 70% = 6650


@pytest.mark.parametrize(
    ("a", "expected"),
    [
        # county: deductible 600, base ratio 70%, bands on the part above the deductible
        ("30600", "21000.00"),  # above 30000: 30000 × 70% = 21000 (the first band only)
        ("30700", "21075.00"),  # above 30100: 30000 × 70% + 100 × 75% = 21000 + 75 = 21075
        ("70600", "51000.00"),  # above 70000: 21000 + 40000 × 75% = 21000 + 30000 = 51000
        ("70700", "51080.00"),  # above 70100: 51000 + 100 × 80% = 51080
        ("200600", "155000.00"),  # above 200000: 51000 + 130000 × 80% = 51000 + 104000 = 155000
    ],
)
def test_second_region_inpatient_ratio_rises_by_band_of_the_amount_above_the_deductible(second_policy, a, expected):
    doc, _ = basic(second_policy, level="county", a=a)
    assert paid(doc) == D(expected)


def test_second_region_top_band_above_200000_gets_fifteen_points_more(second_policy):
    doc, _ = basic(second_policy, level="out_of_province", a="212000")
    # above 2000: 210000 = 30000 × 55% + 40000 × 60% + 130000 × 65% + 10000 × 70%
    #           = 16500 + 24000 + 84500 + 7000 = 132000
    assert paid(doc) == D("132000.00")
    assert "30000.00 × 55% + 40000.00 × 60% + 130000.00 × 65% + 10000.00 × 70% = 132000.00" in doc.layers[0].explanation


def test_second_region_bands_start_again_with_each_admission(second_policy):
    ledger = Ledger()
    settle(second_policy, ledger, level="county", a="20000")
    second = settle(second_policy, ledger, level="county", a="20000")
    # per admission: (20000 - 500) = 19500, all under 30000: 19500 × 70% = 13650
    assert paid(second) == D("13650.00")


def test_second_region_inpatient_annual_limit_of_160000_is_reached_across_admissions(second_policy):
    ledger = Ledger()
    first = settle(second_policy, ledger, level="county", a="200600")
    assert paid(first) == D("155000.00")  # 21000 + 30000 + 130000 × 80% = 155000
    second = settle(second_policy, ledger, level="county", a="10000")
    # (10000 - 500) × 70% = 6650 > 160000 - 155000 = 5000 left
    assert paid(second) == D("5000.00")
    third = settle(second_policy, ledger, level="county", a="10000")
    assert paid(third) == D("0.00")  # 160000 - 160000 = 0


def test_second_region_single_admission_is_cut_to_the_annual_limit(second_policy):
    doc, _ = basic(second_policy, level="county", a="250600")
    # 21000 + 30000 + 104000 + 50000 × 85% = 197500 > 160000
    assert paid(doc) == D("160000.00")


# ========================================================= 150900-2024: the rest


def test_second_region_b_items_pay_twenty_percent_first(second_policy):
    doc, _ = basic(second_policy, level="county", visit_type="outpatient", b="1000")
    assert doc.breakdown.pre_self_pay == D("200.00")  # 1000 × 20%
    assert doc.breakdown.compliant == D("800.00")  # 1000 - 200
    assert paid(doc) == D("400.00")  # 800 × 50%


@pytest.mark.parametrize("level", ["village", "township", "county", "city", "province", "out_of_province"])
def test_second_region_outpatient_pays_50_percent_at_every_level(second_policy, level):
    doc, _ = basic(second_policy, level=level, visit_type="outpatient", a="100")
    assert doc.deductible == D("0.00")
    assert paid(doc) == D("50.00")  # 100 × 50%


def test_second_region_outpatient_annual_limit_of_2000(second_policy):
    ledger = Ledger()
    kw = dict(level="township", visit_type="outpatient", a="3000")
    first, second, third = (settle(second_policy, ledger, **kw) for _ in range(3))
    assert paid(first) == D("1500.00")  # 3000 × 50% = 1500
    assert paid(second) == D("500.00")  # 1500 > 2000 - 1500 = 500 left
    assert paid(third) == D("0.00")


def test_second_region_chronic_outpatient_pays_60_percent_to_an_annual_limit_of_5000(second_policy):
    ledger = Ledger()
    kw = dict(level="city", visit_type="chronic_outpatient", a="5000")
    first, second, third = (settle(second_policy, ledger, **kw) for _ in range(3))
    assert (first.deductible, paid(first)) == (D("0.00"), D("3000.00"))  # 5000 × 60% = 3000
    assert paid(second) == D("2000.00")  # 3000 > 5000 - 3000 = 2000 left
    assert paid(third) == D("0.00")


def test_second_region_over_limit_and_c_items(second_policy):
    items = [item("B", "150", quantity="3", limit_price="40.00"), item("C", "70")]
    doc, _ = basic(second_policy, level="county", visit_type="outpatient", items=items)
    bd = doc.breakdown
    assert bd.over_limit_self_pay == D("30.00")  # unit 50, limit 40: (50 - 40) × 3 = 30
    assert bd.pre_self_pay == D("24.00")  # (150 - 30) × 20% = 24
    assert bd.compliant == D("96.00")  # 120 - 24
    assert bd.self_pay == D("70.00")
    assert paid(doc) == D("48.00")  # 96 × 50%


# ====================================================================== explanations


def test_basic_explanation_shows_the_computation_in_chinese(reference_policy):
    doc, _ = basic(reference_policy, level="province", referral=False, categories=["poverty_registered"], a="10000")
    text = doc.layers[0].explanation
    # deductible 1500 / 2 = 750; ratio 55 - 10 + 5 = 50%: (10000 - 750) × 50% = 4625
    assert paid(doc) == D("4625.00")
    assert text.startswith("基本医保：")
    for part in ("政策范围内费用 10000.00 元", "省级起付线 1500.00 元", "750.00", "未办理转诊降低 10 个百分点",
                 "困难群众提高 5 个百分点", "(10000.00 - 750.00) × 50% = 4625.00", "基本医保支付 4625.00 元"):
        assert part in text


def test_basic_explanation_of_an_outpatient_says_there_is_no_deductible(reference_policy):
    doc, _ = basic(reference_policy, level="county", visit_type="outpatient", a="100")
    assert "普通门诊不设起付线，100.00 × 50% = 50.00" in doc.layers[0].explanation


def test_basic_explanation_of_a_reached_limit_says_so(reference_policy):
    acc = BasicAccumulator(outpatient_paid=D("400.00"))
    doc, _ = basic(reference_policy, accumulator=acc, level="county", visit_type="outpatient", a="100")
    assert paid(doc) == D("0.00")  # 400 - 400 = 0 left
    assert "普通门诊年度限额 400.00 元，已支付 400.00 元，本次按剩余额度 0.00 元支付" in doc.layers[0].explanation
