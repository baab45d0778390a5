"""CONTRACT §6's two worked examples, to the fen, through the pure layers."""

from decimal import Decimal

from services.pipeline import Ledger
from services.settlement.onebill import check_invariants, one_bill
from tests.factories import document

import datetime as dt

AT = dt.datetime(2024, 3, 10, 10, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_worked_example_1_ordinary_resident_at_a_county_hospital(reference_policy):
    doc = document(reference_policy, level="county", a="8000", b="2000", c="500")
    settled = Ledger().settle(reference_policy, doc)
    bill = one_bill(settled, at=AT)
    assert check_invariants(bill, settled) == []
    assert (bill.total, bill.pre_self_pay, bill.compliant, bill.self_pay) == (
        Decimal("10500.00"), Decimal("200.00"), Decimal("9800.00"), Decimal("500.00"))
    assert bill.deductible == Decimal("600.00")
    assert bill.basic == Decimal("6900.00")
    assert (bill.serious_illness, bill.assistance, bill.backstop) == (Decimal("0.00"),) * 3
    assert bill.personal == Decimal("3600.00")
    assert "(9800.00 - 600.00) × 75% = 6900.00" in bill.layers[0].explanation


def test_worked_example_2_poverty_and_subsistence_at_a_province_hospital_with_referral(reference_policy):
    doc = document(reference_policy, level="province", categories=["poverty_registered", "subsistence"],
                   referral=True, a="150000", b="50000", c="10000")
    settled = Ledger().settle(reference_policy, doc)
    bill = one_bill(settled, at=AT)
    assert check_invariants(bill, settled) == []
    assert bill.total == Decimal("210000.00")
    assert bill.pre_self_pay == Decimal("5000.00")
    assert bill.compliant == Decimal("195000.00")
    assert bill.deductible == Decimal("750.00")
    assert bill.basic == Decimal("116550.00")
    assert bill.serious_illness == Decimal("48212.50")
    assert bill.assistance == Decimal("21166.25")
    assert bill.backstop == Decimal("0.00")
    assert bill.personal == Decimal("24071.25")
