"""The replay and its report, pure: no broker, no database."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import msgspec
import orjson
import pytest

from medsettle.policy import Policy, load_policy
from services.pipeline import Ledger
from services.simulation.replay import Bill, RecordedClaim, Replayer, events, read_bill
from services.simulation.report import Tally
from tests.factories import document

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "340421-2024.yaml")
T0 = dt.datetime(2024, 3, 10, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))
FUND_LAYERS = ("basic", "serious_illness", "assistance", "backstop")


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def recorded(doc, settled: int, reversed_: int | None = None, paid=None) -> RecordedClaim:
    """A claim as the platform would have recorded it: ``paid`` by the policy in force."""
    paid = paid or (Decimal(0),) * 4
    total = doc.claim.total
    return RecordedClaim(bill=Bill.of(doc), settled_at=at(settled), reversed_at=None if reversed_ is None else at(reversed_),
                         paid=paid, total=total, compliant=Decimal(0), personal=total - sum(paid))


def candidate(**changes) -> Policy:
    raw = POLICY.model_dump(mode="json")
    for path, value in changes.items():
        node = raw
        *parents, last = path.split("__")
        for name in parents:
            node = node[name]
        node[last] = value
    return Policy.model_validate(raw)


def amounts(doc) -> tuple[Decimal, ...]:
    return tuple(sum((l.amount for l in doc.layers if l.layer.value == name), Decimal(0)) for name in FUND_LAYERS)


def test_events_put_each_reversal_where_it_happened():
    a = recorded(document(POLICY, a="100"), settled=0, reversed_=5)
    b = recorded(document(POLICY, a="100"), settled=3)
    c = recorded(document(POLICY, a="100"), settled=9)
    assert events([a, b, c]) == [("settle", 0), ("settle", 1), ("cancel", 0), ("settle", 2)]


def test_a_reversal_takes_out_what_its_settle_added_before_the_next_claim():
    person = "340421199001010011"
    first = document(POLICY, a="40000", person_id=person)  # basic 29,550; base 10,450
    second = document(POLICY, a="40000", person_id=person)
    reversed_first = Replayer(POLICY).person_year(person, [recorded(first, 0, 5), recorded(second, 9)])
    kept_first = Replayer(POLICY).person_year(person, [recorded(first, 0), recorded(second, 9)])
    # With the first reversed, the second claim's base of 10,450 alone stays under the 15,000 threshold.
    assert reversed_first.claims[1].paid[1] == Decimal("0.00")
    # With it kept, the base reaches 20,900: (20,900 − 15,000) × 60% = 3,540.
    assert kept_first.claims[1].paid[1] == Decimal("3540.00")
    assert reversed_first.serious_illness_base == Decimal("10450.00")
    assert reversed_first.accumulators["basic"].admissions == {"county": Decimal(1)}


def test_the_policy_in_force_reproduces_the_services_layer_functions():
    """The same documents through ``Ledger`` (the layer functions in order) and the replay."""
    ledger = Ledger()
    person = "340421199001010012"
    docs = [document(POLICY, a=a, b="3000", person_id=person, categories=["poverty_registered"], level=level)
            for a, level in (("9000", "county"), ("30000", "city"), ("2500", "township"), ("70000", "province"))]
    expected = [amounts(ledger.settle(POLICY, d)) for d in docs]
    year = Replayer(POLICY).person_year(person, [recorded(d, i) for i, d in enumerate(docs)])
    assert [c.paid for c in year.claims] == expected
    assert sum(expected[-1]) > 0


def test_raising_the_county_inpatient_ratio_moves_only_the_basic_fund_of_county_claims():
    """County inpatient ratio 75% → 80%, by hand: worked example 1 (compliant 9,800, deductible 600)
    pays basic (9,800 − 600) × 80% = 7,360 instead of 6,900; its base 2,440 stays under the threshold,
    so the other funds pay 0 as before, and the person pays 460 less. A township claim is untouched."""
    raised = candidate(basic__inpatient__levels__county__ratio=80)
    county = document(POLICY, a="8000", b="2000", c="500", person_id="340421199001010013")
    township = document(POLICY, a="8000", b="2000", c="500", person_id="340421199001010014", level="township")
    actual = {d.claim.claim_id: amounts(Ledger().settle(POLICY, d)) for d in (county, township)}
    assert actual[county.claim.claim_id] == (Decimal("6900.00"), 0, 0, 0)
    assert actual[township.claim.claim_id] == (Decimal("8160.00"), 0, 0, 0)  # (9,800 − 200) × 85%
    tally = Tally(change_threshold=Decimal(100))
    replayer = Replayer(raised)
    for doc in (county, township):
        claim = recorded(doc, 0, paid=actual[doc.claim.claim_id])
        tally.add(replayer.person_year(doc.person.person_id, [claim]), raised, POLICY)
    report = tally.report(region="340421", year=2024, candidate=raised, live=POLICY, budgets={})
    assert {code: (f["actual"], f["simulated"]) for code, f in report["funds"].items()} == {
        "390100": ("15060.00", "15520.00"), "390200": ("0.00", "0.00"),
        "610100": ("0.00", "0.00"), "640100": ("0.00", "0.00")}
    assert report["funds"]["390100"]["change"] == "460.00"
    assert report["total"] == "21000.00"
    assert report["compensation_ratio"] == {"actual": "71.71", "simulated": "73.90"}  # 15,060 and 15,520 of 21,000
    levels = {row["key"]: (row["actual"], row["simulated"]) for row in report["by_level"]}
    assert levels == {"township": ("77.71", "77.71"), "county": ("65.71", "70.10")}
    change = report["personal_change"]
    assert (change["pay_more"], change["pay_less"]) == (0, 1)
    assert change["largest_decreases"] == [
        {"person": "340421********0013", "actual": "3600.00", "simulated": "3140.00", "change": "-460.00"}]
    assert report["differences"] == {"claims": 1, "persons": 1}


def test_a_candidate_that_favours_monitored_people_recomputes_who_is_favoured():
    favouring = candidate(favoured_categories=["poverty_registered", "subsistence", "extreme_poverty", "monitored"])
    doc = document(POLICY, a="8000", b="2000", c="500", person_id="340421199001010015", categories=["monitored"])
    assert doc.person.favoured is False
    year = Replayer(favouring).person_year(doc.person.person_id, [recorded(doc, 0)])
    # Favoured: deductible 300, ratio 80%: (9,800 − 300) × 80% = 7,600.
    assert year.claims[0].paid[0] == Decimal("7600.00")


def test_budget_use_is_cumulative_by_service_month():
    doc = document(POLICY, a="8000", b="2000", c="500", person_id="340421199001010016", discharged_on="2024-05-20",
                   admitted_on="2024-05-10")
    tally = Tally()
    claim = recorded(doc, 0, paid=(Decimal("6900.00"), 0, 0, 0))
    tally.add(Replayer(POLICY).person_year(doc.person.person_id, [claim]), POLICY, POLICY)
    report = tally.report(region="340421", year=2024, candidate=POLICY, live=POLICY,
                          budgets={"390100": Decimal("69000")})
    months = report["budget_use"]["390100"]["months"]
    assert [m["simulated_share"] for m in months[3:6]] == ["0.00", "10.00", "10.00"]
    assert report["budget_use"]["390200"]["budget"] is None
    assert report["differences"] == {"claims": 0, "persons": 0}


def test_a_year_without_claims_reports_zeros_and_no_ratio():
    report = Tally().report(region="340421", year=2030, candidate=POLICY, live=None, budgets={})
    assert (report["claims"], report["persons"], report["total"]) == (0, 0, "0.00")
    assert report["compensation_ratio"] == {"actual": None, "simulated": None}
    assert report["funds"]["390100"] == {"name": "城乡居民基本医疗保险统筹基金", "actual": "0.00", "simulated": "0.00",
                                         "change": "0.00", "change_percent": None}
    assert report["by_level"] == [] and report["live_policy"] is None


def test_tallies_of_two_chunks_merge_into_the_tally_of_both():
    docs = [document(POLICY, a=a, person_id=f"34042119900101{n:04d}", categories=c)
            for n, (a, c) in enumerate((("9000", []), ("40000", ["subsistence"]), ("70000", ["poverty_registered"])))]
    replayer = Replayer(POLICY)
    years = [replayer.person_year(d.person.person_id, [recorded(d, 0)]) for d in docs]
    whole, first, second = Tally(largest=2), Tally(largest=2), Tally(largest=2)
    for year in years:
        whole.add(year, POLICY, POLICY)
    first.add(years[0], POLICY, POLICY)
    for year in years[1:]:
        second.add(year, POLICY, POLICY)
    first.merge(second)
    kwargs = dict(region="340421", year=2024, candidate=POLICY, live=POLICY, budgets={"390100": Decimal(1000000)})
    assert first.report(**kwargs) == whole.report(**kwargs)
    assert len(whole.report(**kwargs)["personal_change"]["largest_decreases"]) == 2


def test_a_stored_document_is_read_as_its_bill_and_a_malformed_one_names_its_field():
    doc = document(POLICY, a="100", b="50.5", categories=["subsistence"], level="township")
    bill = read_bill(doc.to_json())
    assert [(i.category, i.quantity, i.unit_price, i.amount, i.limit_price) for i in bill.claim.items] == [
        (i.category, i.quantity, i.unit_price, i.amount, i.limit_price) for i in doc.claim.items]
    assert (bill.claim.claim_id, bill.claim.visit_type, bill.claim.discharged_on, bill.claim.referral) == (
        doc.claim.claim_id, doc.claim.visit_type, doc.claim.discharged_on, doc.claim.referral)
    assert (bill.person.categories, bill.person.favoured, bill.hospital.level) == (("subsistence",), True, "township")
    raw = orjson.loads(doc.to_json())
    raw["claim"]["items"][0]["category"] = "D"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.claim\.items\[0\]\.category"):
        read_bill(orjson.dumps(raw))
    raw["claim"]["items"][0]["category"] = "A"
    del raw["hospital"]
    with pytest.raises(msgspec.ValidationError, match="hospital"):
        read_bill(orjson.dumps(raw))
