"""Reversals in any order, hand-worked (CONTRACT §6): every accumulated layer
keeps what it paid, so after a reversal the person's next claim settles the
difference and the year's payments come back to what the policy gives on the
claims that stand."""

from decimal import Decimal

from medsettle.contract import LayerName
from services.pipeline import Ledger
from tests.factories import document

D = Decimal
PERSON = "340421199001011234"


def settle(policy, ledger, claim_id, **claim):
    return ledger.settle(policy, document(policy, claim_id=claim_id, **claim))


def paid(ledger, stage):
    return ledger.get(stage, PERSON, 2024).paid


def test_serious_illness_after_the_first_of_three_claims_is_reversed_the_fourth_evens_the_year_out(
        reference_policy):
    ledger = Ledger()
    # county, A 40000: basic (40000 - 600) × 75% = 29550, base 10450 each
    docs = [settle(reference_policy, ledger, f"C{n}", level="county", a="40000") for n in (1, 2, 3)]
    # F(10450) = 0; F(20900) = 5900 × 60% = 3540; F(31350) = 16350 × 60% = 9810: 0, 3540, 6270
    assert [d.layer_amount(LayerName.SERIOUS_ILLNESS) for d in docs] == [D("0.00"), D("3540.00"), D("6270.00")]
    ledger.reverse("C1")
    # standing claims 2 and 3: base 20900, paid 9810 (more than F(20900) = 3540; what stands, stands)
    assert ledger.get("insurer", PERSON, 2024).base == D("20900.00")
    fourth = settle(reference_policy, ledger, "C4", level="county", a="40000")
    # F(31350) = 9810 less 9810 paid = 0 (the old rule, F(31350) - F(20900), paid 6270 more)
    assert fourth.layer_amount(LayerName.SERIOUS_ILLNESS) == D("0.00")
    assert paid(ledger, "insurer") == D("9810.00")


def test_serious_illness_after_a_reversal_of_the_last_claim_the_next_pays_what_the_year_is_due(reference_policy):
    ledger = Ledger()
    for n in (1, 2, 3):
        settle(reference_policy, ledger, f"C{n}", level="county", a="40000")  # paid 0, 3540, 6270
    ledger.reverse("C3")  # base 20900, paid 3540 = F(20900)
    ledger.reverse("C1")  # base 10450, paid 3540 (claim 2's payment stands)
    fourth = settle(reference_policy, ledger, "C4", level="county", a="80000")
    # basic (80000 - 600) × 75% = 59550, base 20450; accumulated 30900: F = 15900 × 60% = 9540, less 3540 = 6000
    assert fourth.layer_amount(LayerName.SERIOUS_ILLNESS) == D("6000.00")
    assert paid(ledger, "insurer") == D("9540.00")  # F of the standing claims' base 30900


def test_basic_outpatient_limit_freed_by_a_reversal_goes_to_the_claim_the_limit_had_cut(reference_policy):
    ledger = Ledger()
    kw = dict(level="village", visit_type="outpatient")
    one = settle(reference_policy, ledger, "O1", a="600", **kw)  # 600 × 55% = 330
    two = settle(reference_policy, ledger, "O2", a="600", **kw)  # 330, limit 400: 70
    assert (one.layer_amount(LayerName.BASIC), two.layer_amount(LayerName.BASIC)) == (D("330.00"), D("70.00"))
    ledger.reverse("O1")  # paid 70; claim 2 stands, due 330
    three = settle(reference_policy, ledger, "O3", a="100", **kw)
    # own 55; the year owes min(400, 330 + 55) = 385, less 70 paid = 315; at most this claim's 100
    assert three.layer_amount(LayerName.BASIC) == D("100.00")
    assert "撤销释放的额度补付" in three.layers[0].explanation
    four = settle(reference_policy, ledger, "O4", a="600", **kw)
    # own 330; min(400, 385 + 330) = 400, less 170 = 230: the year is at the limit again
    assert four.layer_amount(LayerName.BASIC) == D("230.00")
    assert ledger.get("basic", PERSON, 2024).outpatient_paid == D("400.00")


def test_assistance_cap_freed_by_a_reversal_goes_to_the_claim_the_cap_had_cut(reference_policy):
    ledger = Ledger()
    kw = dict(level="village", visit_type="outpatient", categories=["subsistence"])
    settle(reference_policy, ledger, "S1", a="60400", **kw)  # basic 400 (limit); base 60000 × 70% = 42000
    second = settle(reference_policy, ledger, "S2", a="20000", **kw)  # basic 0; 20000 × 70% = 14000, cap: 8000
    assert second.layer_amount(LayerName.ASSISTANCE) == D("8000.00")
    ledger.reverse("S1")  # paid 8000, claim 2 due 14000
    third = settle(reference_policy, ledger, "S3", a="10000", **kw)
    # basic 400 again (the outpatient limit freed); base 9600 × 70% = 6720;
    # the year owes min(50000, 14000 + 6720) = 20720, less 8000 = 12720, at most this claim's base 9600
    assert third.layer_amount(LayerName.BASIC) == D("400.00")
    assert third.layer_amount(LayerName.ASSISTANCE) == D("9600.00")


def test_a_reversed_claim_leaves_no_trace_in_any_accumulator(reference_policy):
    ledger = Ledger()
    settle(reference_policy, ledger, "K1", level="county", categories=["poverty_registered"], a="90000")
    before = {stage: ledger.get(stage, PERSON, 2024) for stage in ("basic", "insurer", "assistance", "backstop")}
    settle(reference_policy, ledger, "K2", level="city", categories=["poverty_registered"], a="50000", b="900")
    ledger.reverse("K2")
    assert {stage: ledger.get(stage, PERSON, 2024) for stage in before} == before
