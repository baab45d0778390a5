"""Random sequences of one person's year through the pipeline's pure
decisions (tests/unit/money_model.py): settles, trials, cancels of any
earlier claim, resends, injury claims withdrawn from review, claims that
fail and are sent again, registry changes and policy revisions published
between them, with service dates on both sides of each revision's
``effective_from``. After every step:

- every answer keeps CONTRACT §5's sums, no amount is negative;
- a resend is answered as before and changes nothing;
- each fund's accumulator holds exactly what the standing claims' one-bills
  paid (nothing counted twice, a failed or reversed claim not at all);
- each standing claim was settled under the revision in force on its
  service date among those published when it entered, and its bill names
  it; its compliant amount, deductible and basic payment are that
  revision's (the oracle computes each standing claim under its own
  revision); basic's ``*_due`` counters hold the standing claims' own
  amounts;
- serious illness (CONTRACT §6): after a settle the year's payments are
  F(the standing claims' base), F of the settling claim's revision, whenever the claim could pay the difference
  (it pays at most its own base) and nothing was overpaid before it; else
  the claim paid exactly that difference, or 0;
- basic: after a settle each kind of visit's payments are the policy
  applied to the standing claims (min(limit, their amounts)) unless the
  claim paid all it could;
- a trial answers what the settle right after it pays, and counts nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from decimal import Decimal

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.contract import RejectionCode, SettlementResult
from medsettle.money import ZERO, clamp, fen, share
from medsettle.policy import Policy, load_policy
from medsettle.settings import ROOT
from services.insurer.rules import banded_payment
from tests.factories import claim_body, hospital_record, item, person_record
from tests.unit.money_model import MemoryPipeline, MemoryPolicies

POLICY = load_policy(ROOT / "policies" / "340421-2024.yaml")


def revision(policy_id: str, effective_from: str, change) -> Policy:
    """A later revision of the reference policy, from ``effective_from``, as a file would hold it."""
    raw = POLICY.model_dump(mode="json")
    raw.update(policy=policy_id, effective_from=effective_from, name=f"{POLICY.name}（{effective_from} 起调整）")
    change(raw)
    return Policy.model_validate(raw)


def _second(raw: dict) -> None:
    """From 1 July: higher inpatient ratios, a higher outpatient limit, a lower serious-illness threshold and
    higher bands, more assistance for subsistence, a lower backstop cap at county hospitals."""
    levels = raw["basic"]["inpatient"]["levels"]
    levels["village"]["ratio"] = levels["township"]["ratio"] = 90
    levels["county"]["ratio"] = 80
    raw["basic"]["outpatient"]["annual_limit"] = 600
    raw["serious_illness"].update(threshold=10000, favoured_threshold=5000)
    for band, ratio in zip(raw["serious_illness"]["bands"], (65, 75, 85)):
        band["ratio"] = ratio
    raw["assistance"]["categories"]["subsistence"]["ratio"] = 75
    raw["backstop"]["annual_cap_by_level"]["county"] = 2500


def _third(raw: dict) -> None:
    """From 1 October: B items pay 15% first, a lower city deductible, chronic outpatients 70% within a LOWER
    limit (earlier claims may have been paid more than it: the next pays nothing), and a different
    serious-illness threshold and favoured points."""
    raw["basic"]["b_pre_self_pay"] = 15
    raw["basic"]["inpatient"]["levels"]["city"]["deductible"] = 800
    raw["basic"]["chronic_outpatient"].update(ratio=70, annual_limit=4000)
    raw["serious_illness"].update(threshold=12000, favoured_threshold=6000, favoured_extra_points=10)


LATER_REVISIONS = (revision("340421-2024-r2", "2024-07-01", _second), revision("340421-2024-r3", "2024-10-01", _third))
"""Published by a sequence's ``revision`` steps, in any order (a file added while the pipeline runs)."""
DATES = ("2024-01-01", "2024-03-10", "2024-06-30", "2024-07-01", "2024-08-15", "2024-09-30", "2024-10-01",
         "2024-12-31")
"""Service dates, on both sides of each revision's ``effective_from``."""
PERSON = "340421199001011234"
HOSPITALS = {"village": "H3404210101", "county": "H3404210001", "city": "H3404000001"}
LEVEL_OF = {code: level for level, code in HOSPITALS.items()}
FUNDS = ("basic", "serious_illness", "assistance", "backstop")
STAGE_OF = {"basic": "basic", "serious_illness": "insurer", "assistance": "assistance", "backstop": "backstop"}
D = Decimal

LEVELS = sorted(HOSPITALS)
VISITS = ("inpatient", "inpatient", "outpatient", "chronic_outpatient")
CATEGORIES = ["poverty_registered", "subsistence", "extreme_poverty", "monitored"]

money = st.integers(min_value=0, max_value=12_000).map(lambda n: D(n) * 25)
claim_spec = st.fixed_dictionaries({
    "level": st.sampled_from(LEVELS), "visit_type": st.sampled_from(VISITS),
    "a": money, "b": money, "c": st.sampled_from([D(0), D(300)]), "on": st.sampled_from(DATES),
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
    st.tuples(st.just("revision"), st.integers(0, len(LATER_REVISIONS) - 1)),
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


@dataclass(frozen=True)
class Standing:
    """A standing claim as the oracle sees it: its visit, the revision it was settled under, and what that
    revision makes of it on its own (before any annual limit)."""

    visit_type: str
    policy: Policy
    favoured: bool
    compliant: Decimal
    deductible: Decimal
    own_basic: Decimal  # the basic payment before the annual limit: what its ``*_due`` counter holds


def amounts_of(body: dict) -> dict[str, Decimal]:
    """The claim's items by category."""
    found = {"A": ZERO, "B": ZERO, "C": ZERO}
    for entry in body["items"]:
        found[entry["category"]] += D(entry["amount"])
    return found


def standing(policy: Policy, body: dict, favoured: bool) -> Standing:
    """The claim in ``body`` under ``policy`` alone: CONTRACT §6 written out (no price limits, no referral)."""
    rules, level, visit = policy.basic, LEVEL_OF[body["hospital_code"]], body["visit_type"]
    assert policy.fund_share_cap is None and not rules.inpatient.ratio_bands, "the oracle knows no such rule"
    inpatient = rules.inpatient
    assert not (inpatient.repeat_admission_deductible_reduction or inpatient.repeat_admission_no_deductible_for)
    items = amounts_of(body)
    compliant = items["A"] + items["B"] - share(items["B"], rules.b_pre_self_pay)
    if visit == "inpatient":
        full = inpatient.levels[level].deductible
        if favoured:
            full = share(full, inpatient.favoured_deductible_share)
        deductible = min(fen(full), compliant)
        ratio = inpatient.levels[level].ratio
        if level in inpatient.referral_penalty_levels:
            ratio -= inpatient.referral_penalty_points
        if favoured:
            ratio += inpatient.favoured_ratio_points
        own = fen((compliant - deductible) * clamp(ratio, ZERO, D(100)) / 100)
    elif visit == "outpatient":
        deductible, own = ZERO, share(compliant, rules.outpatient.ratio_by_level[level])
    else:
        deductible, own = ZERO, share(compliant, rules.chronic_outpatient.ratio)
    return Standing(visit, policy, favoured, compliant, deductible, own)


class Year:
    """One person's year: what was sent, what stands."""

    def __init__(self) -> None:
        self.published: list[Policy] = [POLICY]  # the revisions published so far
        self.pipeline = MemoryPipeline(MemoryPolicies(self.published))
        self.categories: list[str] = []
        self.insured = True
        self.suspended: set[str] = set()
        self.serial = 0
        self.sent: list[tuple[dict, SettlementResult]] = []  # every message with the last answer it got
        self.bills: dict[str, SettlementResult] = {}  # the standing one-bills (settled, not reversed)
        self.claims: dict[str, Standing] = {}  # the standing claims as the oracle computes them
        self.order: list[str] = []
        self.register()

    def register(self) -> None:
        self.pipeline.register(
            persons=[person_record(PERSON, categories=self.categories, paid_years=(2024,) if self.insured else ())],
            hospitals=[hospital_record(code, level, suspended=level in self.suspended)
                       for level, code in HOSPITALS.items()])

    def publish(self, policy: Policy) -> None:
        self.pipeline.policies.publish(policy)
        if policy not in self.published:
            self.published.append(policy)

    def in_force(self, on: str) -> Policy:
        """The oracle's choice of revision: the latest ``effective_from`` on or before the service date."""
        day = dt.date.fromisoformat(on)
        return max((p for p in self.published if p.in_force_from <= day), key=lambda p: (p.in_force_from, p.revision))

    def body(self, spec: dict, kind: str = "settle", **extra) -> dict:
        self.serial += 1
        on = spec.get("on", "2024-03-10")
        items = [item(cat, spec[cat.lower()]) for cat in "ABC" if spec[cat.lower()] > 0] or [item("A", "10")]
        return claim_body(claim_id=f"K{self.serial:04d}", hospital_code=HOSPITALS[spec["level"]], person_id=PERSON,
                          visit_type=spec["visit_type"], kind=kind, items=items, discharged_on=on, admitted_on=on,
                          **extra)

    def send(self, body: dict) -> SettlementResult:
        answers = self.pipeline.send(body)
        assert len(answers) == 1, answers
        for answer in answers:
            sums_hold(answer)
        self.sent.append((body, answers[-1]))
        return answers[-1]

    def totals(self) -> dict[str, Decimal]:
        return {f: sum((getattr(b, f) for b in self.bills.values()), ZERO) for f in FUNDS}

    def accumulated(self, found: dict | None = None) -> dict[str, Decimal]:
        found = self.pipeline.accumulators(PERSON) if found is None else found
        basic = found["basic"]
        return {"basic": basic.inpatient_paid + basic.outpatient_paid + basic.chronic_outpatient_paid,
                **{f: found[STAGE_OF[f]].paid for f in FUNDS[1:]}}

    def si_base(self) -> Decimal:
        return sum((b.compliant - b.basic for cid, b in self.bills.items()
                    if self.claims[cid].visit_type != "outpatient"), ZERO)

    def basic_due(self) -> dict[str, Decimal]:
        """Each kind of visit's standing claims' own basic amounts, each under its own revision."""
        due = {"inpatient": ZERO, "outpatient": ZERO, "chronic_outpatient": ZERO}
        for claim in self.claims.values():
            due[claim.visit_type] += claim.own_basic
        return due

    # ------------------------------------------------------------ checks
    def check_books(self) -> None:
        accumulators = self.pipeline.accumulators(PERSON)
        assert not any(a.is_negative() for a in accumulators.values()), accumulators
        assert self.accumulated(accumulators) == self.totals()
        assert accumulators["insurer"].base == self.si_base()
        basic = accumulators["basic"]
        assert {kind: getattr(basic, f"{kind}_due") for kind in ("inpatient", "outpatient", "chronic_outpatient")} \
            == self.basic_due()

    def settled(self, body: dict, answer: SettlementResult) -> None:
        """A claim now stands: settled under the revision in force on its service date, as that revision has it."""
        policy = self.in_force(body["discharged_on"])
        assert answer.policy == policy.policy, (answer.policy, policy.policy, body["discharged_on"])
        claim = standing(policy, body, policy.favoured(self.categories))
        assert (answer.compliant, answer.deductible) == (claim.compliant, claim.deductible)
        self.bills[body["claim_id"]] = answer
        self.claims[body["claim_id"]] = claim

    def check_settle(self, answer: SettlementResult, spec: dict, before: dict[str, Decimal], kind_before: Decimal,
                     due_before: Decimal) -> None:
        """After a settle: serious illness is F of the settling claim's revision on the standing claims' base,
        basic pays the settling claim's revision's limit applied to the standing claims' own amounts."""
        if answer.status != "settled":
            return
        after = self.totals()
        claim = self.claims[answer.claim_id]
        policy, favoured = claim.policy, claim.favoured
        if spec["visit_type"] != "outpatient":
            this = answer.compliant - answer.basic
            due = banded_payment(policy.serious_illness, favoured, self.si_base())
            expected = before["serious_illness"] + min(this, max(ZERO, due - before["serious_illness"]))
            assert after["serious_illness"] == expected
            if before["serious_illness"] <= due and due - before["serious_illness"] <= this:
                assert after["serious_illness"] == due  # the year's payments add up to F of the year's base
        # basic: per kind, min(limit, what the standing claims' amounts are) unless the claim paid all it could
        limit = {"inpatient": policy.basic.inpatient.annual_limit, "outpatient": policy.basic.outpatient.annual_limit,
                 "chronic_outpatient": policy.basic.chronic_outpatient.annual_limit}[spec["visit_type"]]
        kind_paid = sum((b.basic for cid, b in self.bills.items()
                         if self.claims[cid].visit_type == spec["visit_type"]), ZERO)
        basic_due = self.basic_due()[spec["visit_type"]]
        assert basic_due == due_before + claim.own_basic
        owed = min(limit, basic_due)  # the standing claims' amounts, this one's included
        room = answer.compliant - answer.deductible
        # exactly: the year's payments under this revision's limit less those made, within the claim's room
        assert answer.basic == max(ZERO, min(owed - kind_before, room)), (answer.basic, owed, kind_before, room)
        if kind_before <= owed:  # always, unless a later revision lowered the limit below what was paid
            assert kind_paid == owed or (answer.basic == room and kind_paid < owed), (kind_paid, owed)

    def kind_before(self, visit_type: str) -> tuple[Decimal, Decimal]:
        """What the standing claims of a kind of visit were paid and were due, before a settle."""
        paid = sum((b.basic for cid, b in self.bills.items() if self.claims[cid].visit_type == visit_type), ZERO)
        return paid, self.basic_due()[visit_type]


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
    for action, *args in steps:
        if action in ("settle", "trial_then_settle"):
            spec = args[0]
            body = year.body(spec)
            before, accumulators = year.totals(), year.pipeline.accumulators(PERSON)
            kind_before = year.kind_before(spec["visit_type"])
            if action == "trial_then_settle":
                trial = year.send({**body, "type": "trial"})
                assert year.pipeline.accumulators(PERSON) == accumulators  # a trial counts nothing
                assert year.send({**body, "type": "trial"}).model_dump(exclude={"settled_at"}) == \
                    trial.model_dump(exclude={"settled_at"})  # and never sees itself
            answer = year.send(body)
            if action == "trial_then_settle" and answer.status == "settled":
                assert trial.status == "trial"
                assert [getattr(trial, f) for f in FUNDS] == [getattr(answer, f) for f in FUNDS]
                assert trial.policy == answer.policy  # the same revision, in force when each entered
                again = year.send({**body, "type": "trial"})
                assert again.rejection.code == RejectionCode.DUPLICATE_CLAIM  # a trial of a settled claim
            if answer.status == "settled":
                year.settled(body, answer)
                year.check_settle(answer, spec, before, *kind_before)
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
                del year.bills[claim_id], year.claims[claim_id]
            else:
                assert answer.status in ("rejected", "reversed")
        elif action == "resend" and year.sent:
            body, last = year.sent[args[0] % len(year.sent)]
            if body["type"] == "trial":
                continue
            latest = [a for b, a in year.sent if b["claim_id"] == body["claim_id"] and b["type"] != "trial"][-1]
            before = year.pipeline.accumulators(PERSON)
            totals = year.totals()
            kind_before = year.kind_before(body["visit_type"]) if body["type"] == "settle" else (ZERO, ZERO)
            answer = year.send(body)
            stored = latest.status != "rejected" or latest.rejection.code == RejectionCode.DUPLICATE_CLAIM
            if not stored and answer.status == "settled":  # refused before (nothing stored): a settle now
                year.settled(body, answer)  # under the revision in force now
                year.check_settle(answer, body, totals, *kind_before)
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
                before, kind_before = year.totals(), year.kind_before(spec["visit_type"])
                again = year.send(body)  # sent again later: settles normally
                assert again.status in ("settled", "rejected")
                if again.status == "settled":
                    year.settled(body, again)
                    year.check_settle(again, spec, before, *kind_before)
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
        elif action == "revision":  # a later revision published: in force from its date for claims from now on
            year.publish(LATER_REVISIONS[args[0]])
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
                "b": random_amount(rng), "c": rng.choice((D(0), D(300))), "on": rng.choice(DATES)}

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
        lambda: ("revision", rng.randrange(len(LATER_REVISIONS))),
    )
    length = rng.randint(1, 10) if rng.random() < 0.85 else rng.randint(11, 30)
    steps = [rng.choice(makers)() for _ in range(length)]
    early = [("revision", n) for n in range(len(LATER_REVISIONS)) if rng.random() < 0.3]  # published early on
    return [*early, *steps] if rng.random() < 0.5 else [*steps[:1], *early, *steps[1:]]


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
