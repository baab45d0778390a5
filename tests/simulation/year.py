"""A generated year of one region's claims, sent through the real pipeline."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from medsettle.contract import SettlementResult
from tests.factories import claim_body, person_record

CATEGORY_MIX = ([], [], ["poverty_registered"], ["subsistence"], ["extreme_poverty"], ["monitored"],
                ["poverty_registered", "subsistence"], [])
PERSONS = 48


def person_id(n: int) -> str:
    return f"3404211985{n:08d}"


def _claim(rng: random.Random, person: str, hospitals: dict[str, str]) -> dict[str, Any]:
    visit = rng.choices(["inpatient", "outpatient", "chronic_outpatient"], [6, 3, 2])[0]
    level = rng.choice(list(hospitals))
    month, day = rng.randint(1, 12), rng.randint(10, 28)
    discharged = f"2024-{month:02d}-{day:02d}"
    scale = {"inpatient": rng.choice([3000, 12000, 40000, 90000]), "outpatient": 300, "chronic_outpatient": 1500}[visit]
    amounts = {c: Decimal(rng.randint(0, scale * 100)) / 100 for c in ("a", "b", "c")}
    amounts["a"] += 1
    return claim_body(**{k: str(v) for k, v in amounts.items()}, person_id=person, hospital_code=hospitals[level],
                      visit_type=visit, referral=rng.random() < 0.5, discharged_on=discharged,
                      admitted_on=f"2024-{month:02d}-{day - 5:02d}")


async def settle_a_year(pipeline, hospitals: dict[str, str], seed: int = 19) -> dict[str, list[SettlementResult]]:
    """Settles about 300 claims of 48 persons of every category at every level,
    reverses about one in eight of them, and settles more claims of the same
    persons right behind the reversals (sent without waiting, so that a
    reversal and a person's next claim meet in one batch). Returns every
    answer the hospitals got, by claim."""
    rng = random.Random(seed)
    persons = [person_id(n) for n in range(PERSONS)]
    await pipeline.register(persons=[person_record(p, categories=CATEGORY_MIX[n % len(CATEGORY_MIX)])
                                     for n, p in enumerate(persons)])
    first = [_claim(rng, p, hospitals) for p in persons for _ in range(rng.randint(3, 7))]
    for claim in first:
        await pipeline.hospital.send(claim)
    for claim in first:
        assert (await pipeline.hospital.answer(claim["claim_id"], timeout=120)).status == "settled"
    cancelled = rng.sample(first, len(first) // 8)
    later = []
    for claim in cancelled:  # a cancel, and the same person's next claim right behind it
        await pipeline.hospital.send({"type": "cancel", "claim_id": claim["claim_id"],
                                      "hospital_code": claim["hospital_code"], "reason": "测试撤销"})
        nxt = _claim(rng, claim["person_id"], hospitals)
        later.append(nxt)
        await pipeline.hospital.send(nxt)
    later += [_claim(rng, p, hospitals) for p in rng.sample(persons, 20)]
    for claim in later[len(cancelled):]:
        await pipeline.hospital.send(claim)
    for claim in cancelled:
        answers = await pipeline.hospital.answers(claim["claim_id"], 2, timeout=120)
        assert answers[-1].status == "reversed"
    for claim in later:
        assert (await pipeline.hospital.answer(claim["claim_id"], timeout=120)).status == "settled"
    return {claim_id: list(answers) for claim_id, answers in pipeline.hospital.results.items()}
