"""Medical assistance (医疗救助, fund 610100), hand-worked.

Base: the claim's compliant burden left after basic and serious illness, for
every visit type. Outpatient claims make easy examples: the basic fund pays
at most its small outpatient limit and serious illness does not apply.
"""

from decimal import Decimal

import pytest

from medsettle.contract import LayerName
from services.pipeline import Ledger
from tests.factories import document

D = Decimal
AS = LayerName.ASSISTANCE


def settle(policy, ledger, **claim):
    return ledger.settle(policy, document(policy, **claim))


def layers(doc):
    return tuple(doc.layer_amount(name) for name in (LayerName.BASIC, LayerName.SERIOUS_ILLNESS, AS))


def explanation(doc):
    return next(layer.explanation for layer in doc.layers if layer.layer == AS)


def outpatient(policy, ledger, a, categories, **claim):
    return settle(policy, ledger, level="village", visit_type="outpatient", a=a, categories=categories, **claim)


# =========================================================================== 340421


def test_extreme_poverty_gets_100_percent_with_no_cap(reference_policy):
    doc = outpatient(reference_policy, Ledger(), "100000", ["extreme_poverty"])
    # basic 100000 × 55% → outpatient limit 400; no serious illness for outpatients
    # base 100000 - 400 = 99600 × 100% = 99600, no annual cap
    assert layers(doc) == (D("400.00"), D("0.00"), D("99600.00"))


def test_extreme_poverty_inpatient_assistance_takes_what_basic_and_serious_illness_leave(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", categories=["extreme_poverty"], a="10000")
    # basic (10000 - 300) × 80% = 7760; base 2240 < 7500 so no serious illness; 2240 × 100% = 2240
    assert layers(doc) == (D("7760.00"), D("0.00"), D("2240.00"))


def test_subsistence_gets_70_percent(reference_policy):
    doc = outpatient(reference_policy, Ledger(), "1000", ["subsistence"])
    # basic 1000 × 55% = 550 → limit 400; base 600 × 70% = 420
    assert layers(doc) == (D("400.00"), D("0.00"), D("420.00"))
    assert "低保对象：600.00 × 70% = 420.00" in explanation(doc)


def test_subsistence_annual_cap_of_50000_is_reached_across_claims(reference_policy):
    ledger = Ledger()
    first = outpatient(reference_policy, ledger, "60000", ["subsistence"])
    # basic 400 (limit); base 59600 × 70% = 41720
    assert layers(first) == (D("400.00"), D("0.00"), D("41720.00"))
    second = outpatient(reference_policy, ledger, "20000", ["subsistence"])
    # basic 0 (limit used); base 20000 × 70% = 14000 > 50000 - 41720 = 8280 left
    assert layers(second) == (D("0.00"), D("0.00"), D("8280.00"))
    third = outpatient(reference_policy, ledger, "20000", ["subsistence"])
    assert layers(third)[2] == D("0.00")  # 50000 - 50000 = 0 left
    assert "该类别年度封顶 50000.00 元，已救助 50000.00 元，本次至多 0.00 元" in explanation(third)


def test_a_single_subsistence_claim_is_cut_to_the_annual_cap(reference_policy):
    doc = outpatient(reference_policy, Ledger(), "80000", ["subsistence"])
    # base 80000 - 400 = 79600 × 70% = 55720 > 50000
    assert layers(doc)[2] == D("50000.00")


@pytest.mark.parametrize("category", ["poverty_registered", "monitored"])
def test_poverty_registered_and_monitored_get_50_percent_to_an_annual_cap_of_30000(reference_policy, category):
    ledger = Ledger()
    first = outpatient(reference_policy, ledger, "1000", [category])
    # basic 400; base 600 × 50% = 300
    assert layers(first) == (D("400.00"), D("0.00"), D("300.00"))
    second = outpatient(reference_policy, ledger, "50000", [category])
    # basic 0; base 50000 × 50% = 25000 (paid 300 + 25000 = 25300)
    assert layers(second) == (D("0.00"), D("0.00"), D("25000.00"))
    third = outpatient(reference_policy, ledger, "20000", [category])
    # base 20000 × 50% = 10000 > 30000 - 25300 = 4700 left
    assert layers(third) == (D("0.00"), D("0.00"), D("4700.00"))


def test_several_categories_get_the_most_favourable_one(reference_policy):
    doc = settle(reference_policy, Ledger(), level="province", referral=True,
                 categories=["poverty_registered", "subsistence"], a="150000", b="50000", c="10000")
    # worked example 2: left after basic and serious illness 195000 - 116550 - 48212.50 = 30237.50
    # subsistence 70% = 21166.25 beats poverty_registered 50% = 15118.75
    assert layers(doc) == (D("116550.00"), D("48212.50"), D("21166.25"))
    text = explanation(doc)
    assert "30237.50 × 70% = 21166.25" in text
    assert "按最有利的低保对象标准" in text


def test_extreme_poverty_beats_subsistence(reference_policy):
    doc = outpatient(reference_policy, Ledger(), "1000", ["subsistence", "extreme_poverty"])
    # base 600: 100% = 600 beats 70% = 420
    assert layers(doc)[2] == D("600.00")


def test_a_second_category_still_pays_when_the_first_ones_cap_is_used(reference_policy):
    ledger = Ledger()
    outpatient(reference_policy, ledger, "70000", ["poverty_registered"])  # 69600 × 50% = 34800 → cap 30000
    doc = outpatient(reference_policy, ledger, "10000", ["poverty_registered", "subsistence"])
    # basic 0 (outpatient limit used), base 10000. The year's assistance is min(cap, what the claims were
    # due, each within the caps on its own): poverty_registered min(30000, 30000 + 5000) - 30000 paid = 0;
    # subsistence min(50000, 30000 + 7000) - 30000 = 7000
    assert layers(doc)[2] == D("7000.00")


def test_no_category_means_no_assistance_and_says_why(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", a="8000", b="2000", c="500")
    assert layers(doc)[2] == D("0.00")
    assert explanation(doc) == "医疗救助：不属于医疗救助对象，本次救助 0.00 元。"


# =========================================================================== 150900


def test_second_region_extreme_poverty_small_claim_is_cut_to_10000(second_policy):
    doc = outpatient(second_policy, Ledger(), "20000", ["extreme_poverty"])
    # basic 20000 × 50% = 10000 → limit 2000; base 18000 × 100% = 18000;
    # total 20000 < 30000: at most 10000 per claim (90% cap: 18000 - 2000 = 16000 does not bind)
    assert layers(doc) == (D("2000.00"), D("0.00"), D("10000.00"))
    assert "单次至多 10000.00 元" in explanation(doc)


def test_second_region_extreme_poverty_large_claim_stops_at_90_percent_of_the_total(second_policy):
    doc = outpatient(second_policy, Ledger(), "40000", ["extreme_poverty"])
    # basic 2000; base 38000 × 100% = 38000; 40000 × 90% - 2000 = 34000
    assert layers(doc) == (D("2000.00"), D("0.00"), D("34000.00"))


def test_second_region_subsistence_small_claim_gets_70_percent(second_policy):
    doc = outpatient(second_policy, Ledger(), "5000", ["subsistence"])
    # basic 5000 × 50% = 2500 → limit 2000; base 3000 × 70% = 2100 (90% cap: 4500 - 2000 = 2500)
    assert layers(doc) == (D("2000.00"), D("0.00"), D("2100.00"))


def test_second_region_subsistence_large_claim_gets_80_percent(second_policy):
    doc = outpatient(second_policy, Ledger(), "40000", ["subsistence"])
    # basic 2000; base 38000 × 80% = 30400 (90% cap: 36000 - 2000 = 34000); no 10000 per-claim cap
    assert layers(doc) == (D("2000.00"), D("0.00"), D("30400.00"))


def test_second_region_a_total_of_exactly_30000_is_a_large_claim(second_policy):
    doc = outpatient(second_policy, Ledger(), "30000", ["subsistence"])
    # 30000 is not under 30000: basic 2000; base 28000 × 80% = 22400 (90% cap: 27000 - 2000 = 25000)
    assert layers(doc)[2] == D("22400.00")


def test_second_region_a_total_just_under_30000_is_a_small_claim(second_policy):
    doc = outpatient(second_policy, Ledger(), "29999.99", ["subsistence"])
    # basic 2000; base 27999.99 × 70% = 19599.993 → 19599.99 > 10000 per-claim cap
    assert layers(doc)[2] == D("10000.00")


def test_second_region_the_claim_total_includes_self_pay_items(second_policy):
    doc = outpatient(second_policy, Ledger(), "20000", ["subsistence"], c="10000")
    # total 20000 + 10000 = 30000: large. basic 2000; base 18000 × 80% = 14400 (90% cap 27000 - 2000 = 25000)
    assert layers(doc)[2] == D("14400.00")


def test_second_region_poverty_registered_small_claim_gets_nothing_and_says_why(second_policy):
    doc = outpatient(second_policy, Ledger(), "5000", ["poverty_registered"])
    # total 5000 < 30000: 0%; base 3000 × 0% = 0
    assert layers(doc) == (D("2000.00"), D("0.00"), D("0.00"))
    text = explanation(doc)
    assert "不足 30000.00 元" in text
    assert "3000.00 × 0% = 0.00" in text


def test_second_region_poverty_registered_large_claim_gets_80_percent(second_policy):
    doc = outpatient(second_policy, Ledger(), "40000", ["poverty_registered"])
    # basic 2000; base 38000 × 80% = 30400
    assert layers(doc)[2] == D("30400.00")
    assert "达到 30000.00 元" in explanation(doc)


def test_second_region_monitored_people_get_no_assistance(second_policy):
    doc = outpatient(second_policy, Ledger(), "40000", ["monitored"])
    assert layers(doc)[2] == D("0.00")
    assert explanation(doc) == "医疗救助：所属类别（防返贫监测对象）本统筹区不予救助，本次救助 0.00 元。"


def test_second_region_annual_cap_of_100000_for_every_category(second_policy):
    ledger = Ledger()
    first = outpatient(second_policy, ledger, "100000", ["extreme_poverty"])
    # basic 2000; base 98000 × 100% = 98000; 90% cap: 90000 - 2000 = 88000
    assert layers(first) == (D("2000.00"), D("0.00"), D("88000.00"))
    second = outpatient(second_policy, ledger, "50000", ["extreme_poverty"])
    # basic 0; base 50000 × 100% = 50000; 90% cap 45000; annual cap 100000 - 88000 = 12000 left
    assert layers(second) == (D("0.00"), D("0.00"), D("12000.00"))
    assert "年度封顶 100000.00 元，已救助 88000.00 元" in explanation(second)


def test_second_region_several_categories_get_the_most_favourable_one(second_policy):
    doc = outpatient(second_policy, Ledger(), "5000", ["poverty_registered", "subsistence"])
    # small claim: subsistence 3000 × 70% = 2100 beats poverty_registered 0%
    assert layers(doc)[2] == D("2100.00")
    doc = outpatient(second_policy, Ledger(), "5000", ["poverty_registered", "extreme_poverty"])
    # extreme_poverty 3000 × 100% = 3000, cut by the 90% cap: 5000 × 90% - 2000 = 2500
    assert layers(doc)[2] == D("2500.00")


def test_second_region_assistance_stops_at_90_percent_of_the_total(second_policy):
    doc = settle(second_policy, Ledger(), level="township", categories=["poverty_registered"], a="50000")
    # basic 49700: 30000 × 80% + 19700 × 85% = 40745; serious illness (9255 - 7000) × 65% = 1465.75
    # large claim: (50000 - 40745 - 1465.75) × 80% = 7789.25 × 0.8 = 6231.40,
    # but 50000 × 90% - 40745 - 1465.75 = 45000 - 42210.75 = 2789.25
    assert layers(doc) == (D("40745.00"), D("1465.75"), D("2789.25"))
    assert "各项基金合计不超过总费用的 90%，本次至多 2789.25 元" in explanation(doc)


def test_second_region_inpatient_assistance_for_subsistence(second_policy):
    doc = settle(second_policy, Ledger(), level="county", categories=["subsistence"], a="20000")
    # basic (20000 - 600) × 70% = 13580; base 6420 < 7000: no serious illness
    # small claim 70%: 6420 × 0.7 = 4494 (90% cap 18000 - 13580 = 4420 binds)
    assert layers(doc) == (D("13580.00"), D("0.00"), D("4420.00"))
