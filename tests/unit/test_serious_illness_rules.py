"""Serious-illness insurance (大病保险, fund 390200), hand-worked.

Base: the year's accumulated ``compliant - basic`` over inpatient and chronic
outpatient claims; each claim pays F(before + this) - F(before).
"""

from decimal import Decimal

from medsettle.contract import LayerName
from services.pipeline import Ledger
from tests.factories import document

D = Decimal
SI = LayerName.SERIOUS_ILLNESS


def settle(policy, ledger, **claim):
    return ledger.settle(policy, document(policy, **claim))


def amounts(doc):
    return doc.layer_amount(LayerName.BASIC), doc.layer_amount(SI)


def explanation(doc):
    return next(layer.explanation for layer in doc.layers if layer.layer == SI)


def si_base(ledger, person_id="340421199001011234"):
    return ledger.get("insurer", person_id, 2024).base


# =========================================================================== 340421


def test_a_burden_below_the_threshold_pays_nothing(reference_policy):
    ledger = Ledger()
    doc = settle(reference_policy, ledger, level="county", a="8000", b="2000", c="500")
    # worked example 1: base 9800 - 6900 = 2900 < 15000
    assert amounts(doc) == (D("6900.00"), D("0.00"))
    assert si_base(ledger) == D("2900.00")
    text = explanation(doc)
    assert "起付线 15000.00 元" in text and "累计未超过起付线" in text


def test_one_admission_crosses_the_serious_illness_threshold(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", a="80000")
    # basic (80000 - 600) × 75% = 59550; base 80000 - 59550 = 20450; (20450 - 15000) × 60% = 5450 × 0.6 = 3270
    assert amounts(doc) == (D("59550.00"), D("3270.00"))
    assert "5450.00 × 60% = 3270.00" in explanation(doc)


def test_second_admission_crosses_the_serious_illness_threshold(reference_policy):
    ledger = Ledger()
    first = settle(reference_policy, ledger, level="county", a="40000")
    # basic (40000 - 600) × 75% = 29550; base 10450 < 15000
    assert amounts(first) == (D("29550.00"), D("0.00"))
    second = settle(reference_policy, ledger, level="county", a="40000")
    # base 10450 again, accumulated 20900; F(20900) - F(10450) = (20900 - 15000) × 60% - 0 = 5900 × 0.6 = 3540
    assert amounts(second) == (D("29550.00"), D("3540.00"))
    assert si_base(ledger) == D("20900.00")  # 10450 + 10450
    assert "10450.00 → 20900.00" in explanation(second)


def test_the_first_band_ends_at_50000_above_the_threshold(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", a="258200")
    # basic (258200 - 600) × 75% = 257600 × 0.75 = 193200; base 258200 - 193200 = 65000 = 15000 + 50000
    # 50000 × 60% = 30000
    assert amounts(doc) == (D("193200.00"), D("30000.00"))


def test_the_part_beyond_50000_above_the_threshold_gets_70_percent(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", a="258600")
    # basic 258000 × 75% = 193500; base 65100; above 50100: 50000 × 60% + 100 × 70% = 30000 + 70 = 30070
    assert amounts(doc) == (D("193500.00"), D("30070.00"))
    assert "50000.00 × 60% + 100.00 × 70% = 30070.00" in explanation(doc)


def test_a_later_claim_continues_in_the_band_the_year_has_reached(reference_policy):
    ledger = Ledger()
    settle(reference_policy, ledger, level="county", a="258200")  # base 65000: the first band is full
    doc = settle(reference_policy, ledger, level="county", a="40000")
    # basic (40000 - 600) × 75% = 29550 (room 300000 - 193200 = 106800); base 10450, all in the 70% band:
    # 10450 × 70% = 7315
    assert amounts(doc) == (D("29550.00"), D("7315.00"))


def test_the_second_band_ends_at_100000_above_the_threshold_and_then_80_percent(reference_policy):
    ledger = Ledger()
    first = settle(reference_policy, ledger, level="county", a="415000")
    # basic (415000 - 600) × 75% = 310800 > 300000 annual limit → 300000; base 415000 - 300000 = 115000
    # above 15000: 100000 = 50000 × 60% + 50000 × 70% = 30000 + 35000 = 65000
    assert amounts(first) == (D("300000.00"), D("65000.00"))
    second = settle(reference_policy, ledger, level="county", a="1000")
    # basic limit used up: 0; base 1000, all above 100000: 1000 × 80% = 800
    assert amounts(second) == (D("0.00"), D("800.00"))


def test_favoured_people_get_five_points_more_in_every_band(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", categories=["subsistence"], a="415000")
    # basic (415000 - 300) × 80% = 331760 > 300000 → 300000; base 115000; above 7500: 107500
    # 50000 × 65% + 50000 × 75% + 7500 × 85% = 32500 + 37500 + 6375 = 76375
    assert amounts(doc) == (D("300000.00"), D("76375.00"))


def test_favoured_threshold_is_7500(reference_policy):
    favoured = settle(reference_policy, Ledger(), level="county", categories=["poverty_registered"], a="40000")
    # basic (40000 - 300) × 80% = 31760; base 8240; (8240 - 7500) × 65% = 740 × 0.65 = 481
    assert amounts(favoured) == (D("31760.00"), D("481.00"))
    assert "困难群众起付线 7500.00 元" in explanation(favoured)
    ordinary = settle(reference_policy, Ledger(), level="county", a="40000")
    # the same bill for an ordinary resident: base 10450 < 15000
    assert amounts(ordinary) == (D("29550.00"), D("0.00"))


def test_monitored_people_are_not_favoured_for_serious_illness(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", categories=["monitored"], a="40000")
    # ordinary rules: base 10450 < 15000
    assert amounts(doc) == (D("29550.00"), D("0.00"))


def test_a_claim_applies_its_own_favoured_status_to_the_accumulated_base(reference_policy):
    ledger = Ledger()
    settle(reference_policy, ledger, level="county", a="40000")  # ordinary: base 10450, paid 0
    doc = settle(reference_policy, ledger, level="county", categories=["subsistence"], a="10000")
    # basic (10000 - 300) × 80% = 7760; base 2240; favoured F(12690) - paid 0
    # = (12690 - 7500) × 65% = 3373.50, but a claim pays at most its own base: 2240
    assert amounts(doc) == (D("7760.00"), D("2240.00"))
    later = settle(reference_policy, ledger, level="county", categories=["subsistence"], a="2000")
    # basic (2000 - 300) × 80% = 1360; base 640, accumulated 13330; F(13330) = 5830 × 65% = 3789.50
    # less 2240 paid = 1549.50, at most 640: the year stays short of F until a claim has room
    assert amounts(later) == (D("1360.00"), D("640.00"))


def test_outpatient_claims_do_not_count_towards_serious_illness(reference_policy):
    ledger = Ledger()
    outpatient = settle(reference_policy, ledger, level="village", visit_type="outpatient", a="50000")
    # basic 50000 × 55% = 27500 → outpatient limit 400; nothing enters the base
    assert amounts(outpatient) == (D("400.00"), D("0.00"))
    assert si_base(ledger) == D("0.00")
    assert "普通门诊费用不计入大病保险" in explanation(outpatient)
    inpatient = settle(reference_policy, ledger, level="county", a="40000")
    # base only 10450 < 15000 (with the outpatient 49600 it would have crossed)
    assert amounts(inpatient) == (D("29550.00"), D("0.00"))


def test_chronic_outpatient_claims_count_towards_serious_illness(reference_policy):
    ledger = Ledger()
    chronic = settle(reference_policy, ledger, level="county", visit_type="chronic_outpatient", a="10000")
    # basic 10000 × 65% = 6500 → chronic limit 5000; base 10000 - 5000 = 5000 < 15000
    assert amounts(chronic) == (D("5000.00"), D("0.00"))
    inpatient = settle(reference_policy, ledger, level="county", a="40000")
    # base 10450, accumulated 15450: (15450 - 15000) × 60% = 450 × 0.6 = 270
    assert amounts(inpatient) == (D("29550.00"), D("270.00"))


def test_reference_policy_has_no_serious_illness_cap(reference_policy):
    doc = settle(reference_policy, Ledger(), level="county", a="1000000")
    # basic 300000 (limit); base 700000; above 685000:
    # 50000 × 60% + 50000 × 70% + 585000 × 80% = 30000 + 35000 + 468000 = 533000
    assert amounts(doc) == (D("300000.00"), D("533000.00"))


# =========================================================================== 150900


def test_second_region_burden_below_14000_pays_nothing(second_policy):
    doc = settle(second_policy, Ledger(), level="county", a="30000")
    # basic (30000 - 600) × 70% = 20580; base 9420 < 14000
    assert amounts(doc) == (D("20580.00"), D("0.00"))
    assert "起付线 14000.00 元" in explanation(doc)


def test_second_region_one_admission_crosses_the_threshold_at_60_percent(second_policy):
    doc = settle(second_policy, Ledger(), level="county", a="60000")
    # basic: above 59400 = 30000 × 70% + 29400 × 75% = 21000 + 22050 = 43050
    # base 60000 - 43050 = 16950; (16950 - 14000) × 60% = 2950 × 0.6 = 1770
    assert amounts(doc) == (D("43050.00"), D("1770.00"))
    assert "2950.00 × 60% = 1770.00" in explanation(doc)


def test_second_region_favoured_threshold_is_7000_at_65_percent(second_policy):
    doc = settle(second_policy, Ledger(), level="county", categories=["subsistence"], a="60000")
    # basic 43050 (no favoured preference); base 16950; (16950 - 7000) × 65% = 9950 × 0.65 = 6467.50
    assert amounts(doc) == (D("43050.00"), D("6467.50"))
    assert "困难群众起付线 7000.00 元" in explanation(doc)


def test_second_region_second_admission_crosses_the_threshold(second_policy):
    ledger = Ledger()
    first = settle(second_policy, ledger, level="county", a="30000")
    assert amounts(first) == (D("20580.00"), D("0.00"))  # base 9420 < 14000
    second = settle(second_policy, ledger, level="county", a="30000")
    # deductible 600 - 100 = 500: basic 29500 × 70% = 20650; base 9350; accumulated 18770
    # (18770 - 14000) × 60% = 4770 × 0.6 = 2862
    assert amounts(second) == (D("20650.00"), D("2862.00"))


def test_second_region_serious_illness_annual_cap_is_500000(second_policy):
    ledger = Ledger()
    first = settle(second_policy, ledger, level="county", a="1000000")
    # basic 21000 + 30000 + 104000 + 799400 × 85% = 834490 → limit 160000; base 840000
    # (840000 - 14000) × 60% = 826000 × 0.6 = 495600
    assert amounts(first) == (D("160000.00"), D("495600.00"))
    second = settle(second_policy, ledger, level="county", a="20000")
    # basic limit used: 0; base 20000 × 60% = 12000 > 500000 - 495600 = 4400 left
    assert amounts(second) == (D("0.00"), D("4400.00"))
    assert "年度封顶 500000.00 元" in explanation(second)
    third = settle(second_policy, ledger, level="county", a="20000")
    assert amounts(third) == (D("0.00"), D("0.00"))  # 500000 - 500000 = 0 left


def test_second_region_favoured_people_have_no_serious_illness_cap(second_policy):
    doc = settle(second_policy, Ledger(), level="county", categories=["subsistence"], a="1000000")
    # basic 160000; base 840000; (840000 - 7000) × 65% = 833000 × 0.65 = 541450 > 500000, not capped
    assert amounts(doc) == (D("160000.00"), D("541450.00"))


def test_second_region_outpatient_claims_do_not_count(second_policy):
    ledger = Ledger()
    doc = settle(second_policy, ledger, level="county", visit_type="outpatient", a="40000")
    # basic 40000 × 50% → limit 2000; serious illness 0 and nothing accumulated
    assert amounts(doc) == (D("2000.00"), D("0.00"))
    assert ledger.get("insurer", "340421199001011234", 2024).base == D("0.00")


def test_second_region_serious_illness_stops_at_90_percent_of_the_total(second_policy):
    ledger = Ledger()
    kw = dict(level="township", categories=["poverty_registered"])
    first = settle(second_policy, ledger, a="50000", **kw)
    # basic (50000 - 300) = 49700: 30000 × 80% + 19700 × 85% = 24000 + 16745 = 40745
    # base 9255; (9255 - 7000) × 65% = 2255 × 0.65 = 1465.75
    assert amounts(first) == (D("40745.00"), D("1465.75"))
    second = settle(second_policy, ledger, a="10000", **kw)
    # second township admission of a poverty_registered person: no deductible: 10000 × 80% = 8000
    # base 2000 × 65% = 1300, but 10000 × 90% - 8000 = 1000 is all that may be paid
    assert amounts(second) == (D("8000.00"), D("1000.00"))
    assert "各项基金合计不超过总费用的 90%" in explanation(second)
