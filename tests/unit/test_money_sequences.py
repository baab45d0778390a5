"""Random sequences of one person's year through the pipeline's pure
decisions (tests/unit/money_model.py): settles, trials, cancels of any
earlier claim, resends, injury claims withdrawn from review, claims that
fail and are sent again, registry changes between them. After every step:

- every answer keeps CONTRACT §5's sums, no amount is negative;
- a resend is answered as before and changes nothing;
- each fund's accumulator holds exactly what the standing claims' one-bills
  paid (nothing counted twice, a failed or reversed claim not at all);
- serious illness (CONTRACT §6): after a settle the year's payments are
  F(the standing claims' base) whenever the claim could pay the difference
  (it pays at most its own base) and nothing was overpaid before it; else
  the claim paid exactly that difference, or 0;
- basic: after a settle each kind of visit's payments are the policy
  applied to the standing claims (min(limit, their amounts)) unless the
  claim paid all it could;
- a trial answers what the settle right after it pays, and counts nothing.
"""

from __future__ import annotations

import logging
import random
from decimal import Decimal

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.contract import LayerName, RejectionCode, SettlementResult
from medsettle.money import ZERO
from medsettle.policy import load_policy
from medsettle.settings import ROOT
from services.insurer.rules import banded_payment
from tests.factories import claim_body, hospital_record, item, person_record
from tests.unit.money_model import MemoryPipeline

POLICY = load_policy(ROOT / "policies" / "340421-2024.yaml")
PERSON = "340421199001011234"
HOSPITALS = {"village": "H3404210101", "county": "H3404210001", "city": "H3404000001"}
FUNDS = ("basic", "serious_illness", "assistance", "backstop")
STAGE_OF = {"basic": "basic", "serious_illness": "insurer", "assistance": "assistance", "backstop": "backstop"}
D = Decimal

LEVELS = sorted(HOSPITALS)
VISITS = ("inpatient", "inpatient", "outpatient", "chronic_outpatient")
CATEGORIES = ["poverty_registered", "subsistence", "extreme_poverty", "monitored"]

money = st.integers(min_value=0, max_value=12_000).map(lambda n: D(n) * 25)
claim_spec = st.fixed_dictionaries({
    "level": st.sampled_from(LEVELS), "visit_type": st.sampled_from(VISITS),
    "a": money, "b": money, "c": st.sampled_from([D(0), D(300)]),
})
step = st.one_of(
    st.tuples(st.just("settle"), claim_spec),
    st.tuples(st.just("trial_then_settle"), claim_spec),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("resend"), st.integers(0, 30)),
    st.tuples(st.just("injury_withdrawn"), claim_spec),
    st.tuples(st.just("fails_then_resent"), claim_spec, st.sampled_from(["invariant", "insurer"])),
    st.tuples(st.just("categories"), st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True)),
    st.tuples(st.just("suspend"), st.sampled_from(LEVELS), st.booleans()),
    st.tuples(st.just("coverage"), st.booleans()),
)


def sums_hold(answer: SettlementResult) -> None:
    if answer.status == "rejected":
        assert answer.rejection is not None and answer.rejection.message
        return
    if answer.status == "pending_review":
        return
    amounts = {name: getattr(answer, name) for name in (
        "total", "self_pay", "over_limit_self_pay", "pre_self_pay", "compliant", "deductible", *FUNDS,
        "fund_total", "personal")}
    assert all(v is not None and v >= 0 for v in amounts.values()), amounts
    funds = sum((amounts[f] for f in FUNDS), ZERO)
    assert amounts["fund_total"] == funds
    assert funds + amounts["personal"] == amounts["total"]
    assert (amounts["self_pay"] + amounts["over_limit_self_pay"] + amounts["pre_self_pay"]
            + amounts["compliant"]) == amounts["total"]


class Year:
    """One person's year: what was sent, what stands."""

    def __init__(self) -> None:
        self.pipeline = MemoryPipeline()
        self.categories: list[str] = []
        self.insured = True
        self.suspended: set[str] = set()
        self.serial = 0
        self.sent: list[tuple[dict, SettlementResult]] = []  # every message with the last answer it got
        self.bills: dict[str, SettlementResult] = {}  # the standing one-bills (settled, not reversed)
        self.order: list[str] = []
        self.register()

    def register(self) -> None:
        self.pipeline.register(
            persons=[person_record(PERSON, categories=self.categories, paid_years=(2024,) if self.insured else ())],
            hospitals=[hospital_record(code, level, suspended=level in self.suspended)
                       for level, code in HOSPITALS.items()])

    def body(self, spec: dict, kind: str = "settle", **extra) -> dict:
        self.serial += 1
        items = [item(cat, spec[cat.lower()]) for cat in "ABC" if spec[cat.lower()] > 0] or [item("A", "10")]
        return claim_body(claim_id=f"K{self.serial:04d}", hospital_code=HOSPITALS[spec["level"]], person_id=PERSON,
                          visit_type=spec["visit_type"], kind=kind, items=items, **extra)

    def send(self, body: dict) -> SettlementResult:
        answers = self.pipeline.send(body)
        assert len(answers) == 1, answers
        for answer in answers:
            sums_hold(answer)
        self.sent.append((body, answers[-1]))
        return answers[-1]

    def totals(self) -> dict[str, Decimal]:
        return {f: sum((getattr(b, f) for b in self.bills.values()), ZERO) for f in FUNDS}

    def accumulated(self) -> dict[str, Decimal]:
        found = self.pipeline.accumulators(PERSON)
        basic = found["basic"]
        return {"basic": basic.inpatient_paid + basic.outpatient_paid + basic.chronic_outpatient_paid,
                **{f: found[STAGE_OF[f]].paid for f in FUNDS[1:]}}

    def si_base(self) -> Decimal:
        return sum((b.compliant - b.basic for cid, b in self.bills.items() if self.visits[cid] != "outpatient"), ZERO)

    visits: dict[str, str]

    # ------------------------------------------------------------ checks
    def check_books(self) -> None:
        accumulators = self.pipeline.accumulators(PERSON)
        assert not any(a.is_negative() for a in accumulators.values()), accumulators
        assert self.accumulated() == self.totals()
        assert accumulators["insurer"].base == self.si_base()

    def check_settle(self, answer: SettlementResult, spec: dict, before: dict[str, Decimal],
                     basic_due: dict) -> None:
        if answer.status != "settled":
            return
        after = self.totals()
        favoured = POLICY.favoured(self.categories)
        if spec["visit_type"] != "outpatient":
            this = answer.compliant - answer.basic
            due = banded_payment(POLICY.serious_illness, favoured, self.si_base())
            expected = before["serious_illness"] + min(this, max(ZERO, due - before["serious_illness"]))
            assert after["serious_illness"] == expected
            if before["serious_illness"] <= due and due - before["serious_illness"] <= this:
                assert after["serious_illness"] == due  # the year's payments add up to F of the year's base
        # basic: per kind, min(limit, what the standing claims' amounts are) unless the claim paid all it could
        limit = {"inpatient": POLICY.basic.inpatient.annual_limit, "outpatient": POLICY.basic.outpatient.annual_limit,
                 "chronic_outpatient": POLICY.basic.chronic_outpatient.annual_limit}[spec["visit_type"]]
        kind_paid = sum((b.basic for cid, b in self.bills.items() if self.visits[cid] == spec["visit_type"]), ZERO)
        owed = min(limit, basic_due[spec["visit_type"]])  # the standing claims' amounts, this one's included
        room = answer.compliant - answer.deductible
        assert kind_paid == owed or (answer.basic == room and kind_paid < owed), (kind_paid, owed)

    def basic_due(self) -> dict[str, Decimal]:
        basic = self.pipeline.accumulators(PERSON)["basic"]
        return {"inpatient": basic.inpatient_due, "outpatient": basic.outpatient_due,
                "chronic_outpatient": basic.chronic_outpatient_due}


@pytest.fixture(autouse=True)
def _info_logs_dropped():
    """The stages log every rejection, reversal and review at info: rendered (and captured) for every step
    of every case, that was a twentieth of these tests. Warnings and errors still show."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        cache_logger_on_first_use=False)
    yield
    structlog.configure(**saved)


FAILED: list[str] = []  # the failures the sequences produced (the fixed tests check they happen)


def run(steps) -> None:
    year = Year()
    year.visits = {}
    for action, *args in steps:
        if action in ("settle", "trial_then_settle"):
            spec = args[0]
            body = year.body(spec)
            before, accumulators = year.totals(), year.pipeline.accumulators(PERSON)
            if action == "trial_then_settle":
                trial = year.send({**body, "type": "trial"})
                assert year.pipeline.accumulators(PERSON) == accumulators  # a trial counts nothing
                assert year.send({**body, "type": "trial"}).model_dump(exclude={"settled_at"}) == \
                    trial.model_dump(exclude={"settled_at"})  # and never sees itself
            answer = year.send(body)
            if action == "trial_then_settle" and answer.status == "settled":
                assert trial.status == "trial"
                assert [getattr(trial, f) for f in FUNDS] == [getattr(answer, f) for f in FUNDS]
                again = year.send({**body, "type": "trial"})
                assert again.rejection.code == RejectionCode.DUPLICATE_CLAIM  # a trial of a settled claim
            if answer.status == "settled":
                year.bills[body["claim_id"]] = answer
                year.visits[body["claim_id"]] = spec["visit_type"]
                year.check_settle(answer, spec, before, year.basic_due())
            else:
                assert answer.status == "rejected"
                assert year.pipeline.accumulators(PERSON) == accumulators
            year.order.append(body["claim_id"])
        elif action == "cancel" and year.order:
            claim_id = year.order[args[0] % len(year.order)]
            body = next(b for b, _ in year.sent if b["claim_id"] == claim_id and b["type"] == "settle")
            answer = year.send({"type": "cancel", "claim_id": claim_id, "hospital_code": body["hospital_code"]})
            if claim_id in year.bills:
                assert answer.status == "reversed"
                assert [getattr(answer, f) for f in FUNDS] == [getattr(year.bills[claim_id], f) for f in FUNDS]
                del year.bills[claim_id]
            else:
                assert answer.status in ("rejected", "reversed")
        elif action == "resend" and year.sent:
            body, last = year.sent[args[0] % len(year.sent)]
            if body["type"] == "trial":
                continue
            latest = [a for b, a in year.sent if b["claim_id"] == body["claim_id"] and b["type"] != "trial"][-1]
            before = year.pipeline.accumulators(PERSON)
            answer = year.send(body)
            stored = latest.status != "rejected" or latest.rejection.code == RejectionCode.DUPLICATE_CLAIM
            if not stored and answer.status == "settled":  # refused before (nothing stored): a settle now
                year.bills[body["claim_id"]] = answer
                year.visits[body["claim_id"]] = body["visit_type"]
                year.order.append(body["claim_id"])
            else:
                assert year.pipeline.accumulators(PERSON) == before  # never counted twice
            if latest.status in ("settled", "reversed", "pending_review") or (
                    latest.rejection and latest.rejection.code == RejectionCode.DUPLICATE_CLAIM):
                # an answer once given stands, whatever the registry says now
                assert answer.model_dump(exclude={"settled_at"}) == latest.model_dump(exclude={"settled_at"})
        elif action == "injury_withdrawn":
            body = year.body(args[0], injury=True)
            accumulators = year.pipeline.accumulators(PERSON)
            held = year.send(body)
            if held.status == "pending_review":
                withdrawn = year.send({"type": "cancel", "claim_id": body["claim_id"],
                                       "hospital_code": body["hospital_code"]})
                assert withdrawn.status == "reversed"
                assert all(getattr(withdrawn, f) == ZERO for f in (*FUNDS, "total", "fund_total", "personal"))
            assert year.pipeline.accumulators(PERSON) == accumulators
        elif action == "fails_then_resent":
            spec, how = args
            body = year.body(spec)
            accumulators, dead = year.pipeline.accumulators(PERSON), len(year.pipeline.settlement.dead_letters)
            if how == "invariant":
                year.pipeline.settlement.check = lambda bill, document: ["a test-only broken invariant"]
            else:
                policies = year.pipeline.layers["insurer"].layer
                year.pipeline.layers["insurer"].layer = type(policies)(
                    policies.name, policies.apply, policies.accumulator_type, lambda policy_id: None)
            try:
                answer = year.send(body)
            finally:
                year.pipeline.settlement.check = __import__(
                    "services.settlement.onebill", fromlist=["check_invariants"]).check_invariants
                if how != "invariant":
                    year.pipeline.layers["insurer"].layer = policies
            if answer.status == "rejected" and answer.rejection.code == RejectionCode.SETTLEMENT_FAILED:
                FAILED.append(how)
                assert year.pipeline.accumulators(PERSON) == accumulators  # whatever a layer counted, taken back
                assert len(year.pipeline.settlement.dead_letters) == dead + 1
                before = year.totals()
                again = year.send(body)  # sent again later: settles normally
                assert again.status in ("settled", "rejected")
                if again.status == "settled":
                    year.bills[body["claim_id"]] = again
                    year.visits[body["claim_id"]] = spec["visit_type"]
                    year.check_settle(again, spec, before, year.basic_due())
                year.order.append(body["claim_id"])
            else:
                assert answer.status == "rejected"  # refused by eligibility before any layer
        elif action == "categories":
            year.categories = args[0]
            year.register()
        elif action == "suspend":
            level, suspended = args
            (year.suspended.add if suspended else year.suspended.discard)(level)
            year.register()
        elif action == "coverage":
            year.insured = args[0]
            year.register()
        year.check_books()


SEEDED_CASES = 2000
"""Sequences of the seeded generator below, each checked after every step as ``run`` does."""
SHRUNK_CASES = 100
"""Sequences hypothesis draws (and shrinks when one fails)."""


def random_amount(rng: random.Random) -> Decimal:
    """As ``money`` draws: a multiple of 25 yuan up to 300,000, the ends more often than the middle."""
    end = rng.random()
    return D(0) if end < 0.08 else D(300_000) if end < 0.12 else D(rng.randint(0, 12_000)) * 25


def random_steps(rng: random.Random) -> list[tuple]:
    """One person's year drawn as ``step`` draws it: the same kinds of steps, equally likely, in sequences
    of 1 to 30 (mostly up to 10: hypothesis's lists average 7.4 steps here)."""
    def spec() -> dict:
        return {"level": rng.choice(LEVELS), "visit_type": rng.choice(VISITS), "a": random_amount(rng),
                "b": random_amount(rng), "c": rng.choice((D(0), D(300)))}

    makers = (
        lambda: ("settle", spec()),
        lambda: ("trial_then_settle", spec()),
        lambda: ("cancel", rng.randint(0, 30)),
        lambda: ("resend", rng.randint(0, 30)),
        lambda: ("injury_withdrawn", spec()),
        lambda: ("fails_then_resent", spec(), rng.choice(("invariant", "insurer"))),
        lambda: ("categories", rng.sample(CATEGORIES, rng.randint(0, 2))),
        lambda: ("suspend", rng.choice(LEVELS), rng.random() < 0.5),
        lambda: ("coverage", rng.random() < 0.5),
    )
    length = rng.randint(1, 10) if rng.random() < 0.85 else rng.randint(11, 30)
    return [rng.choice(makers)() for _ in range(length)]


def test_two_thousand_seeded_years_keep_the_money_right():
    """The bulk of the cases: drawing a sequence took hypothesis about 6 ms of CPU, two fifths of a case
    (the pure functions took about 8 ms to run it), so the many cases come from ``random.Random(seed)``;
    a failure names its seed and steps (``run(random_steps(random.Random(seed)))`` replays it)."""
    for seed in range(SEEDED_CASES):
        steps = random_steps(random.Random(seed))
        try:
            run(steps)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, steps {steps}: {exc}") from exc


@settings(max_examples=SHRUNK_CASES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=30))
def test_a_year_of_settles_trials_cancels_resends_failures_and_registry_changes_keeps_the_money_right(steps):
    run(steps)


def test_the_issue_sequence_three_claims_the_first_reversed_then_a_fourth():
    spec = {"level": "county", "visit_type": "inpatient", "a": D(40000), "b": D(0), "c": D(0)}
    run([("settle", spec)] * 3 + [("cancel", 0), ("settle", spec), ("resend", 0), ("resend", 4)])


@pytest.mark.parametrize("how", ["invariant", "insurer"])
def test_a_failure_between_settled_claims_is_answered_and_counted_nowhere(how):
    spec = {"level": "city", "visit_type": "inpatient", "a": D(90000), "b": D(5000), "c": D(300)}
    FAILED.clear()
    run([("categories", ["poverty_registered"]), ("settle", spec), ("fails_then_resent", spec, how),
         ("settle", spec), ("cancel", 1), ("settle", spec)])
    assert FAILED == [how]
