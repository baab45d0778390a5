"""Property-based tests: random persons and random years of claims, through
the four layers, for both shipped policies (and for random valid policies).

Whatever the claims, every one-bill keeps the contract's sums, no layer is
negative or pays more than its base, annual limits and caps hold across the
year, accumulators only grow, and reversing every claim brings them back to
zero.
"""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.contract import CATEGORIES, LEVELS, LayerName
from medsettle.money import ZERO, fen, share
from medsettle.policy import Policy, dump_policy
from medsettle.settings import ROOT
from services.pipeline import Ledger, layer_functions
from services.settlement.onebill import check_invariants, one_bill
from services.simulation.replay import Bill, RecordedClaim, Replayer
from tests.factories import document

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(SETTINGS, max_examples=100)
FEWEST = settings(SETTINGS, max_examples=50)
AT = dt.datetime(2024, 12, 31, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))
PERSON = "340421199001011234"
STAGES = [name for name, _, _ in layer_functions()]
TITLES = {LayerName.BASIC: "基本医保：", LayerName.SERIOUS_ILLNESS: "大病保险：",
          LayerName.ASSISTANCE: "医疗救助：", LayerName.BACKSTOP: "政府兜底："}


RAW = {name: yaml.safe_load((ROOT / "policies" / f"{name}.yaml").read_text(encoding="utf-8"))
       for name in ("340421-2024", "150900-2024")}


def raw_policy(name: str) -> dict:
    return copy.deepcopy(RAW[name])


# ------------------------------------------------------------------ strategies


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda c: Decimal(c) / 100)


@st.composite
def claim_items(draw) -> dict:
    category = draw(st.sampled_from("AABBC"))
    quantity = Decimal(draw(st.sampled_from(["1", "1", "2", "3", "0.5", "1.25", "12"])))
    unit = draw(st.one_of(cents(0, 200_00), cents(0, 8_000_00), cents(0, 150_000_00), cents(100_000_00, 600_000_00)))
    limit = draw(st.one_of(st.none(), cents(0, int(unit * 200) + 1)))
    return {
        "code": f"X{category}", "name": "项目", "category": category,
        "quantity": f"{quantity.normalize():f}", "unit_price": f"{unit:.2f}",
        "amount": f"{fen(quantity * unit):.2f}", "limit_price": None if limit is None else f"{limit:.2f}",
    }


@st.composite
def claims(draw) -> dict:
    return {
        "visit_type": draw(st.sampled_from(["inpatient", "inpatient", "outpatient", "chronic_outpatient"])),
        "level": draw(st.sampled_from(LEVELS)),
        "referral": draw(st.booleans()),
        "items": draw(st.lists(claim_items(), min_size=1, max_size=4)),
    }


persons = st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=3)
years = st.lists(claims(), min_size=1, max_size=8)


def percent(places: int = 1) -> st.SearchStrategy[str]:
    return st.integers(0, 100 * 10**places).map(lambda n: f"{Decimal(n) / 10**places}")


def yuan(high: int) -> st.SearchStrategy[str]:
    return st.integers(0, high * 100).map(lambda n: f"{Decimal(n) / 100:.2f}")


def optional(strategy):
    return st.one_of(st.none(), strategy)


def ascending(high: int, size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, high), unique=True, min_size=0, max_size=size).map(sorted)


@st.composite
def policies(draw) -> Policy:
    """A random valid policy, shaped like one of the two shipped files."""
    raw = raw_policy(draw(st.sampled_from(["340421-2024", "150900-2024"])))
    raw["favoured_categories"] = draw(st.lists(st.sampled_from(CATEGORIES), unique=True))
    raw["fund_share_cap"] = draw(optional(percent()))
    basic = raw["basic"]
    basic["b_pre_self_pay"] = draw(percent())
    ip = basic["inpatient"]
    ip["levels"] = {level: {"deductible": draw(yuan(3000)), "ratio": draw(percent())} for level in LEVELS}
    ip["annual_limit"] = draw(yuan(400_000))
    ip["referral_penalty_levels"] = draw(st.lists(st.sampled_from(LEVELS), unique=True))
    ip["referral_penalty_points"] = draw(st.integers(0, 20))
    ip["favoured_deductible_share"] = draw(percent())
    ip["favoured_ratio_points"] = draw(st.integers(-5, 15))
    ip["repeat_admission_deductible_reduction"] = draw(yuan(500))
    ip["repeat_admission_no_deductible_for"] = draw(st.lists(st.sampled_from(CATEGORIES), unique=True))
    ip["ratio_bands"] = [{"above": above, "extra_points": draw(st.integers(-10, 30))}
                         for above in draw(ascending(300_000, 3))]
    basic["outpatient"] = {"ratio_by_level": {level: draw(percent()) for level in LEVELS},
                           "annual_limit": draw(yuan(5000))}
    basic["chronic_outpatient"] = {"ratio": draw(percent()), "annual_limit": draw(yuan(20000))}
    si = raw["serious_illness"]
    si["threshold"], si["favoured_threshold"] = draw(yuan(30000)), draw(yuan(30000))
    uptos = draw(ascending(200_000, 3))
    si["bands"] = [{"upto": upto, "ratio": draw(percent())} for upto in uptos] + [
        {"upto": None, "ratio": draw(percent())}]
    si["favoured_extra_points"] = draw(st.integers(0, 10))
    si["annual_cap"], si["favoured_annual_cap"] = draw(optional(yuan(600_000))), draw(optional(yuan(600_000)))
    large_from = draw(optional(yuan(50_000)))
    raw["assistance"] = {
        "categories": {
            category: {
                "ratio": draw(percent()),
                "large_claim_ratio": draw(optional(percent())) if large_from is not None else None,
                "annual_cap": draw(optional(yuan(60_000))),
            }
            for category in draw(st.lists(st.sampled_from(CATEGORIES), unique=True))
        },
        "large_claim_from": large_from,
        "small_claim_cap": draw(optional(yuan(20_000))) if large_from is not None else None,
        "annual_cap": draw(optional(yuan(150_000))),
    }
    raw["backstop"] = {
        "enabled": draw(st.booleans()),
        "categories": draw(st.lists(st.sampled_from(CATEGORIES), unique=True, min_size=1)),
        "annual_cap_by_level": {level: draw(yuan(20_000)) for level in LEVELS},
    }
    return Policy.model_validate(raw)


# ------------------------------------------------------------------ running a year


def grows(before, after) -> bool:
    for name in type(before).model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if isinstance(old, dict):
            if any(new.get(key, ZERO) < value for key, value in old.items()):
                return False
        elif new < old:
            return False
    return True


def run_year(policy: Policy, categories: list[str], year: list[dict]):
    """Settle each claim through a Ledger, recording what each layer returned
    (its delta). Returns [(document, deltas, before, after)] per claim."""
    ledger = Ledger()
    deltas: dict[str, object] = {}

    def recording(stage, apply):
        def layer(policy, document, accumulator):
            outcome = apply(policy, document, accumulator)
            deltas[stage] = outcome.delta
            return outcome
        return layer

    ledger.layers = [(stage, recording(stage, apply), kind) for stage, apply, kind in ledger.layers]
    settled = []
    start = dt.date(2024, 1, 1)
    for index, spec in enumerate(year):
        day = (start + dt.timedelta(days=index * 40)).isoformat()
        doc = document(policy, level=spec["level"], categories=categories, visit_type=spec["visit_type"],
                       referral=spec["referral"], items=spec["items"], discharged_on=day, admitted_on=day)
        before = {stage: ledger.get(stage, PERSON, 2024) for stage in STAGES}
        deltas.clear()
        result = ledger.settle(policy, doc)
        after = {stage: ledger.get(stage, PERSON, 2024) for stage in STAGES}
        for stage in STAGES:
            assert after[stage] == before[stage].add(deltas[stage])
        settled.append((result, dict(deltas), before, after))
    return settled


def check_year(policy: Policy, categories: list[str], settled) -> None:
    favoured = policy.favoured(categories)
    basic_paid = {"inpatient": ZERO, "outpatient": ZERO, "chronic_outpatient": ZERO}
    serious_paid = assistance_paid = ZERO

    for doc, deltas, before, after in settled:
        bill = one_bill(doc, at=AT)
        assert check_invariants(bill, doc) == []
        claim, bd = doc.claim, doc.breakdown
        basic, serious, assistance, backstop = (doc.layer_amount(name) for name in LayerName)

        # every layer explains itself in Chinese, ending with what it paid
        for layer in doc.layers:
            assert layer.explanation.startswith(TITLES[layer.layer]), layer.explanation
            assert layer.explanation.endswith(f" {layer.amount:.2f} 元。"), layer.explanation

        # no layer is negative or pays more than its base
        assert ZERO <= basic <= bd.compliant
        assert ZERO <= serious <= bd.compliant - basic
        assert ZERO <= assistance <= bd.compliant - basic - serious
        assert ZERO <= backstop <= bd.compliant - basic - serious - assistance
        assert ZERO <= doc.deductible <= bd.compliant
        if claim.visit_type != "inpatient":
            assert doc.deductible == ZERO
        if claim.visit_type not in policy.serious_illness.visit_types:
            assert serious == ZERO
        if policy.fund_share_cap is not None:
            assert basic + serious + assistance <= share(bd.total, policy.fund_share_cap)

        # assistance: only the policy's categories; the small-claim cap
        rules = policy.assistance
        if not any(c in rules.categories for c in categories):
            assert assistance == ZERO
        if rules.large_claim_from is not None and bd.total < rules.large_claim_from:
            if rules.small_claim_cap is not None:
                assert assistance <= rules.small_claim_cap
            if all((rules.categories[c].ratio == 0) for c in categories if c in rules.categories):
                assert assistance == ZERO

        # backstop: only its categories and visit types; burden capped by this claim's level
        bs = policy.backstop
        counts = claim.visit_type in bs.visit_types
        if not bs.enabled or not counts or not any(c in bs.categories for c in categories):
            assert backstop == ZERO
        else:
            cap = bs.annual_cap_by_level[doc.hospital.level]
            assert after["backstop"].burden <= max(before["backstop"].burden, cap)
        if counts:
            assert deltas["backstop"].burden == bd.compliant - basic - serious - assistance - backstop
        else:
            assert deltas["backstop"].burden == ZERO

        # accumulators only grow within a year
        for stage in STAGES:
            assert grows(before[stage], after[stage]), stage
            assert not after[stage].is_negative()

        basic_paid[claim.visit_type] += basic
        serious_paid += serious
        assistance_paid += assistance

    # annual limits and caps across the year
    b = policy.basic
    assert basic_paid["inpatient"] <= b.inpatient.annual_limit
    assert basic_paid["outpatient"] <= b.outpatient.annual_limit
    assert basic_paid["chronic_outpatient"] <= b.chronic_outpatient.annual_limit
    final = settled[-1][3]
    assert final["basic"].inpatient_paid == basic_paid["inpatient"]
    assert final["basic"].outpatient_paid == basic_paid["outpatient"]
    assert final["basic"].chronic_outpatient_paid == basic_paid["chronic_outpatient"]
    assert sum(final["basic"].admissions.values(), ZERO) == sum(
        1 for doc, *_ in settled if doc.claim.visit_type == "inpatient")
    cap = policy.serious_illness.favoured_annual_cap if favoured else policy.serious_illness.annual_cap
    if cap is not None:
        assert serious_paid <= cap
    assert final["insurer"].paid == serious_paid
    caps = [rules.categories[c].annual_cap for c in categories if c in rules.categories]
    if caps and None not in caps:
        assert assistance_paid <= max(caps)
    if rules.annual_cap is not None:
        assert assistance_paid <= rules.annual_cap
    assert final["assistance"].paid == assistance_paid

    # reversing every claim brings the accumulators back to zero
    state = dict(final)
    for _, deltas, _, _ in reversed(settled):
        for stage in STAGES:
            state[stage] = state[stage].add(deltas[stage], -1)
            assert not state[stage].is_negative()
    for stage, _, kind in layer_functions():
        assert state[stage] == kind(), stage


# ------------------------------------------------------------------ the properties


@pytest.fixture(scope="module", params=["340421-2024", "150900-2024"])
def shipped_policy(request, reference_policy, second_policy):
    return {"340421-2024": reference_policy, "150900-2024": second_policy}[request.param]


@SETTINGS
@given(categories=persons, year=years)
def test_a_year_of_random_claims_keeps_every_sum_limit_and_cap(shipped_policy, categories, year):
    check_year(shipped_policy, categories, run_year(shipped_policy, categories, year))


@FEWER
@given(categories=persons, year=st.lists(claims().map(lambda c: {**c, "visit_type": "inpatient"}),
                                          min_size=2, max_size=6))
def test_a_year_of_random_admissions_keeps_every_sum_limit_and_cap(shipped_policy, categories, year):
    check_year(shipped_policy, categories, run_year(shipped_policy, categories, year))


@FEWEST
@given(policy=policies(), categories=persons, year=years)
def test_any_valid_policy_keeps_every_sum_limit_and_cap(policy, categories, year):
    check_year(policy, categories, run_year(policy, categories, year))


@FEWEST
@given(policy=policies())
def test_a_policy_round_trips_through_its_model(policy):
    assert Policy.model_validate(yaml.load(dump_policy(policy), Loader=yaml.CSafeLoader)) == policy
    assert Policy.model_validate(policy.model_dump()) == policy


@pytest.mark.parametrize("name", ["340421-2024", "150900-2024"])
def test_a_shipped_policy_round_trips_through_its_model(name):
    policy = Policy.model_validate(raw_policy(name))
    assert Policy.model_validate(yaml.safe_load(dump_policy(policy))) == policy
    assert Policy.model_validate_json(policy.model_dump_json()) == policy


# ------------------------------------------------------------------ the simulation's replay


@FEWEST
@given(policy=policies(), categories=persons, year=years, reversals=st.lists(st.booleans(), min_size=8, max_size=8))
def test_the_simulation_replays_a_year_as_the_stages_settled_it(policy, categories, year, reversals):
    """The replay (each layer's arithmetic without its explanation, its own
    counters added to in place, each document read as a ``Bill``) pays what
    the stages' rules pay, claim by claim, some claims reversed before the
    next, and ends the year on the same counters."""
    ledger, recorded, paid = Ledger(), [], []
    start = dt.date(2024, 1, 1)
    for index, spec in enumerate(year):
        day = (start + dt.timedelta(days=index * 40)).isoformat()
        doc = document(policy, level=spec["level"], categories=categories, visit_type=spec["visit_type"],
                       referral=spec["referral"], items=spec["items"], discharged_on=day, admitted_on=day,
                       claim_id=f"C{index}")
        settled = ledger.settle(policy, doc)
        paid.append(tuple(settled.layer_amount(name) for name in
                          (LayerName.BASIC, LayerName.SERIOUS_ILLNESS, LayerName.ASSISTANCE, LayerName.BACKSTOP)))
        at = AT + dt.timedelta(hours=index)
        if reversals[index]:
            ledger.reverse(doc.claim.claim_id)
        recorded.append(RecordedClaim(Bill.of(doc), at, at + dt.timedelta(minutes=30) if reversals[index] else None,
                                      (ZERO,) * 4, doc.claim.total, ZERO, doc.claim.total))
    replayed = Replayer(policy).person_year(PERSON, recorded)
    assert [claim.paid for claim in replayed.claims] == paid
    for stage in STAGES:
        assert vars(replayed.accumulators[stage]) == dict(ledger.get(stage, PERSON, 2024)), stage
