"""Policy revisions within a year, on the running pipeline (real broker, real
PostgreSQL): a claim is settled under the revision in force on its service
date, chosen once by eligibility and used by every stage; its bill names it;
the accumulators run on across revisions; a revision added while running
takes effect without a restart; a revision changed in place is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from medsettle.policy import Policy, load_policy
from medsettle.settings import ROOT
from services.assistance.app import AssistanceStage
from services.backstop.app import BackstopStage
from services.basic.app import BasicStage
from services.eligibility.app import EligibilityStage
from services.insurer.app import SeriousIllnessStage
from services.settlement.app import SettlementStage
from tests.dashboard.conftest import drop_database
from tests.e2e.test_money_edges import drive_sequence
from tests.factories import claim_body, hospital_record, person_record
from tests.harness import Pipeline, fresh_database, pipeline_settings
from tests.infra import own_broker
from tests.unit.money_model import MemoryPipeline, MemoryPolicies

COUNTY = "H3404217001"
PERSON = "340421197501017001"
LAYER_STAGES = (BasicStage, SeriousIllnessStage, AssistanceStage, BackstopStage)
RECHECK = 10.0  # a PolicyBook looks at its folder again at its first lookup 2 s after its last look: ample


def second_revision() -> dict[str, Any]:
    """340421-2024-r2 from 1 July: county inpatients 80% (was 75%), serious-illness threshold 5,000 (was 15,000)."""
    body = yaml.safe_load((ROOT / "policies" / "340421-2024.yaml").read_text(encoding="utf-8"))
    body["policy"] = "340421-2024-r2"
    body["effective_from"] = "2024-07-01"
    body["name"] = "340421 城乡居民医保 2024 年度补偿方案（7月1日起调整）"
    body["basic"]["inpatient"]["levels"]["county"]["ratio"] = 80
    body["serious_illness"]["threshold"] = 5000
    return body


@pytest.fixture(scope="module")
async def revisions(database_url: str, embedded_broker_factory: Any, tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[tuple[Pipeline, Path]]:
    folder = tmp_path_factory.mktemp("revisions")
    for name in ("340421-2024.yaml", "150900-2024.yaml"):  # the shipped files, without their seals
        shutil.copy(ROOT / "policies" / name, folder / name)
    url = await fresh_database(database_url, prefix="rev")
    async with own_broker(embedded_broker_factory) as bootstrap:  # consumer groups of its own
        pipeline = Pipeline(pipeline_settings(bootstrap, url).model_copy(update={"policy_dir": folder}))
        await pipeline.start()
        try:
            await pipeline.register(persons=[person_record(PERSON)], hospitals=[hospital_record(COUNTY, "county")])
            yield pipeline, folder
        finally:
            await pipeline.stop()
            await drop_database(database_url, url)


async def until_in_force(pipeline: Pipeline, revision: dict[str, Any], on: dt.date) -> None:
    """Until eligibility's policy book, looking at its folder again as it does on its own, has ``revision``
    in force ``on`` that date (the later stages look a revision they do not know up at once)."""
    book = pipeline.stage(EligibilityStage).policies
    deadline = time.monotonic() + RECHECK
    while (found := book.get(revision["region"], on)) is None or found.policy != revision["policy"]:
        assert time.monotonic() < deadline, f"{revision['policy']} not in force on {on} after {RECHECK} s: {found}"
        await asyncio.sleep(0.05)


async def until_refused(pipeline: Pipeline, path: Path) -> None:
    """Until the policy book of eligibility and of every layer stage, looking at its folder again as it
    does on its own, has refused ``path`` as it now is."""
    stages = [pipeline.stage(kind) for kind in (EligibilityStage, *LAYER_STAGES)]
    refused: set[str] = set()
    originals = {stage.name: stage.policies.on_error for stage in stages}
    for stage in stages:
        def report(message: str, name: str = stage.name) -> None:
            if str(path) in message and "changed in place" in message:
                refused.add(name)
            originals[name](message)
        stage.policies.on_error = report
    try:
        deadline = time.monotonic() + RECHECK
        while len(refused) < len(stages):
            assert time.monotonic() < deadline, f"only {sorted(refused)} refused {path.name} after {RECHECK} s"
            for stage in stages:
                stage.policies.by_id(path.stem)  # a lookup: the book looks at its folder again when it is time
            await asyncio.sleep(0.05)
    finally:
        for stage in stages:
            stage.policies.on_error = originals[stage.name]


async def settle(pipeline: Pipeline, n: int, discharged_on: str, *, kind: str = "settle", answer: int = 1,
                 **amounts: str):
    claim = claim_body(claim_id=f"REV-{n:03d}", person_id=PERSON, hospital_code=COUNTY, kind=kind,
                       discharged_on=discharged_on, admitted_on=discharged_on, **amounts)
    await pipeline.hospital.send(claim)
    bill = (await pipeline.hospital.answers(claim["claim_id"], answer))[answer - 1]
    assert bill.status == ("trial" if kind == "trial" else "settled"), bill.rejection
    return bill


async def policies_used(pipeline: Pipeline, claim_id: str) -> dict[str, str]:
    """The revision each stage stored for a claim (its layer row; settlement: its one-bill)."""
    used = {}
    for kind in (*LAYER_STAGES, SettlementStage):
        stage = pipeline.stage(kind)
        table = "one_bills" if kind is SettlementStage else "layers"
        async with stage.db.acquire() as c:
            used[stage.name] = await c.fetchval(f"SELECT policy FROM {table} WHERE claim_id = $1", claim_id)
    return used


async def test_each_claim_is_settled_by_every_stage_under_the_revision_in_force_on_its_service_date(revisions):
    pipeline, folder = revisions

    # before the revision exists: 2024's first revision
    first = await settle(pipeline, 1, "2024-03-10", a="8000", b="2000", c="500")  # worked example 1
    assert first.policy == "340421-2024"
    assert (first.basic, first.serious_illness) == (Decimal("6900.00"), Decimal("0.00"))

    # the bureau publishes a revision from 1 July while the system runs: no restart
    (folder / "340421-2024-r2.yaml").write_text(yaml.safe_dump(second_revision(), allow_unicode=True),
                                                encoding="utf-8")
    await until_in_force(pipeline, second_revision(), dt.date(2024, 8, 10))

    second = await settle(pipeline, 2, "2024-08-10", a="10000")
    assert second.policy == "340421-2024-r2"
    assert second.basic == Decimal("7520.00")  # (10,000 - 600) × 80%, the revision's county ratio
    # serious illness on the year's base across both revisions: 2,900 (claim 1) + 2,480 = 5,380,
    # above the revision's threshold of 5,000: 380 × 60%. Claim 2 alone (2,480) would pay nothing.
    assert second.serious_illness == Decimal("228.00")
    assert second.personal == Decimal("2252.00")

    # sent later, served before 1 July: the first revision, with the year's accumulators as they stand
    trial = await settle(pipeline, 3, "2024-06-30", kind="trial", a="1000")
    third = await settle(pipeline, 3, "2024-06-30", answer=2, a="1000")  # its 2nd answer, after the trial's
    assert trial.policy == third.policy == "340421-2024"
    assert (third.basic, third.serious_illness) == (Decimal("300.00"), Decimal("0.00"))  # 75%; base 6,080 < 15,000

    for bill in (first, second, third):
        assert await policies_used(pipeline, bill.claim_id) == {
            "basic": bill.policy, "insurer": bill.policy, "assistance": bill.policy, "backstop": bill.policy,
            "settlement": bill.policy}

    # the accumulators ran on across the revisions (keyed by person and year, not revision)
    basic = await pipeline.accumulator(BasicStage, PERSON)
    assert basic.inpatient_paid == Decimal("6900.00") + Decimal("7520.00") + Decimal("300.00")
    assert basic.admissions == {"county": Decimal(3)}
    insurer = await pipeline.accumulator(SeriousIllnessStage, PERSON)
    assert insurer.base == Decimal("2900.00") + Decimal("2480.00") + Decimal("700.00")


async def test_a_revision_changed_in_place_is_refused_and_claims_keep_its_first_content(revisions):
    pipeline, folder = revisions
    path = folder / "340421-2024.yaml"
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    body["basic"]["inpatient"]["levels"]["county"]["ratio"] = 60  # changed in place, mid-year
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await until_refused(pipeline, path)

    bill = await settle(pipeline, 4, "2024-04-01", a="2000")
    assert bill.policy == "340421-2024"
    assert bill.basic == Decimal("1050.00")  # (2,000 - 600) × 75%: the revision as first loaded, not 60%
    assert set((await policies_used(pipeline, bill.claim_id)).values()) == {"340421-2024"}


async def test_random_sequences_across_a_revision_answer_as_the_pure_decisions_do(revisions):
    """The property test's short form across a revision: seeded sequences of two people with service dates
    on both sides of r2's 1 July, through the running pipeline and through the pure decisions in memory
    holding the same two revisions, give the same answers (each naming its revision) and accumulators."""
    pipeline, folder = revisions
    second = folder / "340421-2024-r2.yaml"
    if not second.exists():  # run on its own: the revision the first test publishes
        second.write_text(yaml.safe_dump(second_revision(), allow_unicode=True), encoding="utf-8")
        await until_in_force(pipeline, second_revision(), dt.date(2024, 8, 10))
    policies = [load_policy(ROOT / "policies" / "340421-2024.yaml"), Policy.model_validate(second_revision())]
    hospitals = {"village": "H3404217002", "county": COUNTY, "city": "H3404217003"}
    registry = [hospital_record(code, level) for level, code in hospitals.items()]
    await pipeline.register(hospitals=registry)
    rng = random.Random(24)
    used = set()
    for n in range(2):
        person = f"34042119750101{7110 + n}"
        model = MemoryPipeline(MemoryPolicies(policies))
        records = [person_record(person, categories=rng.choice([[], ["subsistence"], ["poverty_registered"]]))]
        await pipeline.register(persons=records)
        model.register(persons=records, hospitals=registry)
        answers = await drive_sequence(pipeline, model, person, rng, hospitals,
                                       dates=("2024-03-10", "2024-06-30", "2024-07-01", "2024-09-30"))
        used |= {a.policy for a in answers if a.status in ("settled", "trial")}
    assert used == {"340421-2024", "340421-2024-r2"}
