"""Government backstop (政府兜底, fund 640100), hand-worked.

340421: for poverty_registered people's inpatient and chronic-outpatient
claims, the year's own compliant burden is capped at 3,000 (village, township,
county), 5,000 (city) or 10,000 (province, out_of_province) by this claim's
level. 150900 has no backstop.
"""

from decimal import Decimal

import pytest

from medsettle.contract import LayerName
from services.pipeline import Ledger
from tests.factories import document

D = Decimal
BS = LayerName.BACKSTOP
POOR = ["poverty_registered"]


def settle(policy, ledger, **claim):
    return ledger.settle(policy, document(policy, **claim))


def layers(doc):
    return tuple(doc.layer_amount(name) for name in LayerName)


def explanation(doc):
    return next(layer.explanation for layer in doc.layers if layer.layer == BS)


def burden(ledger):
    return ledger.get("backstop", "340421199001011234", 2024).burden


# chronic outpatient, A 100000, poverty_registered, at any level:
#   basic 100000 × 65% = 65000 → chronic limit 5000
#   serious illness base 95000, favoured threshold 7500, above 87500:
#     50000 × 65% + 37500 × 75% = 32500 + 28125 = 60625
#   left 95000 - 60625 = 34375; assistance 50% = 17187.50 (under the 30000 cap)
#   left 17187.50 for the backstop to cap
@pytest.mark.parametrize(
    ("level", "backstop"),
    [
        ("village", "14187.50"),  # 17187.50 - 3000 = 14187.50
        ("township", "14187.50"),  # 17187.50 - 3000 = 14187.50
        ("county", "14187.50"),  # 17187.50 - 3000 = 14187.50
        ("city", "12187.50"),  # 17187.50 - 5000 = 12187.50
        ("province", "7187.50"),  # 17187.50 - 10000 = 7187.50
        ("out_of_province", "7187.50"),  # 17187.50 - 10000 = 7187.50
    ],
)
def test_backstop_caps_the_burden_by_the_level_of_the_claims_hospital(reference_policy, level, backstop):
    doc = settle(reference_policy, Ledger(), level=level, visit_type="chronic_outpatient", categories=POOR, a="100000")
    assert layers(doc) == (D("5000.00"), D("60625.00"), D("17187.50"), D(backstop))
    # what is left to the person is the cap: 100000 - 5000 - 60625 - 17187.50 - backstop
    assert D("100000") - sum(layers(doc)) == D("17187.50") - D(backstop)


def test_an_inpatient_burden_above_3000_at_a_county_hospital_is_backstopped(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", categories=POOR, a="40000")
    # basic (40000 - 300) × 80% = 31760; serious illness (8240 - 7500) × 65% = 481
    # left 8240 - 481 = 7759; assistance 50% = 3879.50; left 3879.50; 0 + 3879.50 - 3000 = 879.50
    assert layers(doc) == (D("31760.00"), D("481.00"), D("3879.50"), D("879.50"))
    text = explanation(doc)
    assert "0.00 + 3879.50 - 3000.00 = 879.50" in text
    assert "县级医疗机构年度个人负担上限 3000.00 元" in text


def test_a_burden_under_the_cap_is_not_backstopped_and_says_why(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", categories=POOR, a="20000")
    # basic (20000 - 300) × 80% = 15760; base 4240 < 7500; assistance 4240 × 50% = 2120; left 2120 < 3000
    assert layers(doc) == (D("15760.00"), D("0.00"), D("2120.00"), D("0.00"))
    assert "累计未超过上限" in explanation(doc)


def test_the_burden_accumulates_across_claims_until_the_cap(reference_policy):
    ledger = Ledger()
    kw = dict(level="county", categories=POOR, a="20000")
    first = settle(reference_policy, ledger, **kw)
    assert layers(first)[3] == D("0.00")  # left 2120 < 3000 (as above)
    assert burden(ledger) == D("2120.00")
    second = settle(reference_policy, ledger, **kw)
    # basic 15760; serious illness base 4240, accumulated 8480: (8480 - 7500) × 65% = 637
    # left 4240 - 637 = 3603; assistance 50% = 1801.50; left 1801.50
    # 2120 + 1801.50 - 3000 = 921.50
    assert layers(second) == (D("15760.00"), D("637.00"), D("1801.50"), D("921.50"))
    assert burden(ledger) == D("3000.00")  # 2120 + 1801.50 - 921.50
    third = settle(reference_policy, ledger, **kw)
    # serious illness 4240 × 65% = 2756; left 1484; assistance 742; left 742, all above the cap
    assert layers(third) == (D("15760.00"), D("2756.00"), D("742.00"), D("742.00"))
    assert burden(ledger) == D("3000.00")


def test_a_higher_level_claim_uses_its_higher_cap(reference_policy):
    ledger = Ledger()
    settle(reference_policy, ledger, level="county", categories=POOR, a="40000")  # burden 3000 after 879.50
    doc = settle(reference_policy, ledger, level="city", visit_type="chronic_outpatient", categories=POOR, a="4000")
    # basic 4000 × 65% = 2600; serious illness base 1400 (accumulated 8240 → 9640, all above 7500): × 65% = 910
    # left 1400 - 910 = 490; assistance 245; left 245; 3000 + 245 = 3245 < city cap 5000
    assert layers(doc) == (D("2600.00"), D("910.00"), D("245.00"), D("0.00"))
    assert burden(ledger) == D("3245.00")


def test_a_lower_level_claim_after_a_burden_above_its_cap_is_backstopped_in_full(reference_policy):
    ledger = Ledger()
    first = settle(reference_policy, ledger, level="province", visit_type="chronic_outpatient", categories=POOR,
                   a="40000")
    # basic 5000 (limit); base 35000: (35000 - 7500) × 65% = 17875; left 17125; assistance 8562.50
    # left 8562.50 < province cap 10000
    assert layers(first) == (D("5000.00"), D("17875.00"), D("8562.50"), D("0.00"))
    doc = settle(reference_policy, ledger, level="county", categories=POOR, a="20000")
    # basic 15760; serious illness 4240 × 65% = 2756; left 1484; assistance 742; left 742
    # burden 8562.50 is already above the county cap 3000: all 742 is backstopped
    assert layers(doc) == (D("15760.00"), D("2756.00"), D("742.00"), D("742.00"))


@pytest.mark.parametrize("categories", [["subsistence"], ["monitored"], []])
def test_only_poverty_registered_people_are_backstopped(reference_policy, categories):
    doc = settle(reference_policy, Ledger(), level="county", visit_type="chronic_outpatient",
                 categories=categories, a="100000")
    assert layers(doc)[3] == D("0.00")
    assert explanation(doc) == "政府兜底：仅建档立卡贫困人口享受兜底保障，本次兜底 0.00 元。"


def test_outpatient_claims_are_not_backstopped_and_do_not_add_to_the_burden(reference_policy):
    ledger = Ledger()
    doc = settle(reference_policy, ledger, level="village", visit_type="outpatient", categories=POOR, a="50000")
    # basic 400 (limit); assistance (50000 - 400) × 50% = 24800; left 24800 but outpatient: no backstop
    assert layers(doc) == (D("400.00"), D("0.00"), D("24800.00"), D("0.00"))
    assert explanation(doc) == "政府兜底：普通门诊不属于兜底范围，本次兜底 0.00 元。"
    assert burden(ledger) == D("0.00")
    later = settle(reference_policy, ledger, level="county", categories=POOR, a="20000")
    # left 2120 (as above), the outpatient burden does not count: 2120 < 3000
    assert layers(later)[3] == D("0.00")


# =========================================================================== 150900


def test_second_region_has_no_backstop_and_says_so(second_policy):
    doc = settle(second_policy, Ledger(), level="county", visit_type="chronic_outpatient", categories=POOR,
                 a="100000")
    assert layers(doc)[3] == D("0.00")
    assert explanation(doc) == "政府兜底：本统筹区（150900）未实行政府兜底保障，本次兜底 0.00 元。"
