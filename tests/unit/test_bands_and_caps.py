"""The shared band and cap rules (medsettle.bands, medsettle.caps): hand-worked
cases, and properties over random bands and random years of claims."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.bands import banded, bands_above, bands_upto, parts, raised, shown
from medsettle.caps import fund_share_note, fund_share_room, within_annual_caps
from medsettle.money import ZERO, fen, share, yuan

D = Decimal
SETTINGS = settings(max_examples=300, deadline=None, database=None)
SERIOUS_ILLNESS = [(D(50000), D(60)), (D(100000), D(70)), (None, D(80))]  # 340421-2024


def test_worked_example_2s_serious_illness_bands_pay_48212_50() -> None:
    pieces = parts(bands_upto(SERIOUS_ILLNESS, D(5)), ZERO, D("70950.00"))
    assert pieces == [(D(50000), D(65)), (D("20950.00"), D(75))]
    assert banded(pieces) == D("48212.50")
    assert shown(pieces) == "50000.00 × 65% + 20950.00 × 75%"


def test_basic_ratio_bands_raise_the_levels_ratio_above_each_edge() -> None:
    county = bands_above(D(70), [(D(30000), D(5)), (D(70000), D(10)), (D(200000), D(15))])  # 150900-2024
    assert county == [(ZERO, D(30000), D(70)), (D(30000), D(70000), D(75)), (D(70000), D(200000), D(80)),
                      (D(200000), None, D(85))]
    pieces = parts(county, ZERO, D("80000.00"))
    assert pieces == [(D(30000), D(70)), (D(40000), D(75)), (D("10000.00"), D(80))]
    assert banded(pieces) == D("21000.00") + D("30000.00") + D("8000.00")
    assert shown(pieces) == "30000.00 × 70% + 40000.00 × 75% + 10000.00 × 80%"


def test_without_bands_the_whole_amount_is_paid_at_the_ratio() -> None:
    assert parts(bands_above(D(75), []), ZERO, D("9200.00")) == [(D("9200.00"), D(75))]
    assert banded(parts(bands_above(D(75), []), ZERO, D("9200.00"))) == D("6900.00")
    assert parts(bands_above(D(75), []), ZERO, ZERO) == [] and banded([]) == ZERO and shown([]) == ""


def test_a_ratio_raised_or_lowered_stays_within_0_and_100_percent() -> None:
    assert raised(D(95), D(10)) == D(100) and raised(D(5), D(-10)) == ZERO and raised(D("67.5"), D(5)) == D("72.5")


def test_parts_of_a_span_that_starts_inside_a_band() -> None:
    assert parts(bands_upto(SERIOUS_ILLNESS), D(40000), D(60000)) == [(D(10000), D(60)), (D(10000), D(70))]
    assert parts(bands_upto(SERIOUS_ILLNESS), D(120000), D(120000)) == []


def test_banded_rounds_the_sum_once_half_up() -> None:
    halves = [(ZERO, D("0.01"), D(50)), (D("0.01"), None, D(50))]
    assert banded(parts(halves, ZERO, D("0.02"))) == D("0.01")  # 0.005 + 0.005, not 0.01 + 0.01
    assert banded(parts(halves, ZERO, D("0.01"))) == D("0.01")  # 0.005 rounds up


def test_the_annual_cap_pays_the_room_left_then_nothing() -> None:
    assert within_annual_caps(D("350000.00"), D("290000.00"), (D(300000),)) == D("10000.00")
    assert within_annual_caps(D("400000.00"), D("300000.00"), (D(300000),)) == ZERO
    assert within_annual_caps(D("100.00"), D("200.00")) == ZERO  # never below 0


def test_room_a_reversal_freed_pays_what_the_cap_had_cut_up_to_the_claims_most() -> None:
    # the year's claims are due 310,000 with this one (20,000); 250,000 paid after a reversal
    assert within_annual_caps(D("310000.00"), D("250000.00"), (D(300000),), D("60000.00")) == D("50000.00")
    assert within_annual_caps(D("310000.00"), D("250000.00"), (D(300000),), D("30000.00")) == D("30000.00")


def test_several_caps_the_lowest_holds_and_none_caps_nothing() -> None:
    assert within_annual_caps(D("80000.00"), D("10000.00"), (D(50000), None, D(30000))) == D("20000.00")
    assert within_annual_caps(D("500.00"), D("100.00"), (None,)) == D("400.00")
    assert within_annual_caps(D("500.00"), D("100.00"), (), D("150.00")) == D("150.00")


def test_the_fund_share_cap_leaves_a_layer_what_the_layers_before_left() -> None:
    assert fund_share_room(None, D("10000.00")) is None
    assert fund_share_room(D(90), D("10000.00")) == D("9000.00")
    assert fund_share_room(D(90), D("10000.00"), D("6000.00"), D("2500.00")) == D("500.00")
    assert fund_share_room(D(90), D("10000.00"), D("9500.00")) == ZERO
    assert fund_share_note(D(90), D("500.00")) == "各项基金合计不超过总费用的 90%，本次至多 500.00 元"


# ------------------------------------------------------------------ properties

cents = st.integers(0, 40_000_000).map(lambda c: D(c) / 100)
ratios = st.integers(0, 1000).map(lambda n: D(n) / 10)
band_lists = st.tuples(st.lists(st.integers(1, 300_000), unique=True, max_size=4).map(sorted),
                       st.lists(ratios, min_size=5, max_size=5), st.integers(-20, 20)).map(
    lambda t: bands_upto([*zip(map(D, t[0]), t[1]), (None, t[1][-1])], D(t[2])))


@SETTINGS
@given(band_lists, st.lists(cents, min_size=3, max_size=3).map(sorted))
def test_bands_split_any_span_exactly_and_pay_no_more_than_it(bands, points) -> None:
    low, middle, high = points
    whole = parts(bands, low, high)
    assert sum((part for part, _ in whole), ZERO) == high - low  # the last band has no end
    assert all(part > 0 and ZERO <= ratio <= 100 for part, ratio in whole)
    exact = sum((part * ratio / 100 for part, ratio in whole), ZERO)
    halves = parts(bands, low, middle) + parts(bands, middle, high)
    assert sum((part * ratio / 100 for part, ratio in halves), ZERO) == exact  # claims split the year's bands
    assert banded(whole) == fen(exact) <= fen(high - low)
    assert banded(parts(bands, ZERO, middle)) <= banded(parts(bands, ZERO, high))


@SETTINGS
@given(st.lists(st.tuples(cents, st.booleans()), min_size=1, max_size=12), st.one_of(st.none(), cents))
def test_a_years_payments_are_min_cap_due_whenever_the_claim_could_pay_the_difference(claims, cap) -> None:
    """Each claim pays ``min(cap, due) - paid``: after it, the year's payments
    are ``min(cap, due)`` unless a reversal left more paid than that (the
    claim then pays 0: nothing is taken back)."""
    due = paid = ZERO
    standing: list[tuple[D, D]] = []
    for own, reverse_first in claims:
        if reverse_first and standing:
            reversed_own, reversed_pay = standing.pop(0)
            due, paid = due - reversed_own, paid - reversed_pay
        pay = within_annual_caps(due + own, paid, (cap,))
        due, paid = due + own, paid + pay
        standing.append((own, pay))
        year = due if cap is None else min(cap, due)
        assert pay >= 0
        assert paid == year or (pay == 0 and paid > year)


@SETTINGS
@given(cents, st.integers(0, 1000).map(lambda n: D(n) / 10), st.lists(cents, max_size=3))
def test_the_fund_share_room_is_what_the_earlier_layers_left_of_the_share(total, cap, earlier) -> None:
    room = fund_share_room(cap, total, *earlier)
    assert room == max(ZERO, share(total, cap) - sum(earlier, ZERO))


@SETTINGS
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**12, max_value=10**12, places=6)
       | st.integers(-10**9, 10**9).map(lambda n: D(n).scaleb(-3)) | st.integers(0, 10**6).map(D))
def test_yuan_writes_the_fen_rounded_amount_with_two_decimals(amount) -> None:
    assert yuan(amount) == f"{fen(amount):.2f}"
