"""Seeded years of batches for the stages' pure decisions
(test_layerstage_decide.py, test_settlement_decide.py): each message is a
(claim_id, attempt, kind), kind one of ``settle``, ``trial``, a cancel's
reason, ``undo`` (the settlement stage's compensation of a failed attempt).
Drawn with ``random.Random(seed)``: a year costs what deciding it costs, not
what drawing it does (drawing a sequence took hypothesis two fifths of a
case's time in test_money_sequences.py)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from medsettle.contract import SettlementDocument
from medsettle.policy import load_policy
from medsettle.settings import ROOT
from tests.factories import document

ATTEMPTS = 3
REASONS = ("患者转院", "录入有误")
Key = tuple[str, int, str]
POLICY = load_policy(ROOT / "policies" / "340421-2024.yaml")
PLAIN, FAVOURED = "340421199001011234", "340421199001015678"
# claim_id: (person, categories, claim); each test says which of them fail where
CLAIMS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "K1": (PLAIN, [], {"level": "county", "a": "40000"}),
    "K2": (PLAIN, [], {"level": "village", "visit_type": "outpatient", "a": "600", "b": "200"}),
    "K3": (FAVOURED, ["subsistence"], {"level": "county", "a": "60000", "c": "300"}),
    "K4": (FAVOURED, ["subsistence"], {"level": "city", "a": "25000"}),
    "K5": (PLAIN, [], {"level": "county", "a": "3000"}),
    "K6": (FAVOURED, ["subsistence"], {"level": "county", "a": "8000"}),
}


def settle_document(claim_id: str) -> SettlementDocument:
    """The claim's settle as eligibility sends it on."""
    person, categories, claim = CLAIMS[claim_id]
    return document(POLICY, claim_id=claim_id, person_id=person, categories=categories, **claim)


def always(claim_id: str, attempt: int) -> bool:
    return True


def draw(rng: random.Random, claims: Sequence[str], *, compensated: Callable[[str, int], bool] = always,
         cancelled: Callable[[str, int], bool] = always) -> list[list[Key]]:
    """A year of 1 to 8 batches of 1 to 6 messages: new ones, resends of any
    earlier one or duplicates within the batch, settles of an attempt a later
    one superseded. A claim is sent again as its next attempt only in a batch
    after its compensation (eligibility waits for the failure to be
    answered); a compensation follows its settle (the settlement stage sends
    it for a settle that reached it), of an attempt that can fail
    (``compensated``); a cancel may come at any time, before any settle too,
    of an attempt that can get through (``cancelled``)."""
    attempt = dict.fromkeys(claims, 0)
    settled: set[tuple[str, int]] = set()
    undone: set[tuple[str, int]] = set()
    sent: list[Key] = []
    batches = []
    for _ in range(rng.randint(1, 8)):
        batch: list[Key] = []
        for _ in range(rng.randint(1, 6)):
            later = [c for c in claims if attempt[c]]
            if sent and rng.random() < 0.2:
                key = rng.choice(sent + batch)  # a resend, or a duplicate within the batch
            elif later and rng.random() < 0.2:  # an attempt superseded by the next, delivered again
                claim_id = rng.choice(later)
                key = (claim_id, rng.randrange(attempt[claim_id]), "settle")
            else:
                claim_id = rng.choice(claims)
                n = attempt[claim_id]
                kind = rng.choice(("settle", "settle", "settle", "trial", *REASONS, "undo", "undo"))
                if ((kind == "undo" and ((claim_id, n) not in settled or not compensated(claim_id, n)))
                        or (kind in REASONS and not cancelled(claim_id, n))):
                    kind = "settle"
                key = (claim_id, n, kind)
                if kind == "settle":
                    settled.add((claim_id, n))
                elif kind == "undo":
                    undone.add((claim_id, n))
            batch.append(key)
        sent += batch
        batches.append(batch)
        for claim_id, n in sorted(undone):
            if attempt[claim_id] == n and n + 1 < ATTEMPTS and rng.random() < 0.8:
                attempt[claim_id] = n + 1
    return batches


def reached(years: Sequence[list[list[Key]]]) -> Counter[str]:
    """How often the years reach each case the tests are about."""
    seen: Counter[str] = Counter()
    for batches in years:
        sent: set[Key] = set()
        for batch in batches:
            settles: set[Key] = set()
            for claim_id, n, kind in batch:
                seen["resend" if (claim_id, n, kind) in sent else "new"] += 1
                seen["duplicate in a batch"] += batch.count((claim_id, n, kind)) > 1
                seen["next attempt"] += n > 0 and kind == "settle"
                seen["superseded attempt"] += kind == "settle" and (claim_id, n + 1, kind) in sent
                seen["compensation"] += kind == "undo"
                seen["cancel and compensation in a batch"] += kind == "undo" and any(
                    (claim_id, n, r) in batch for r in REASONS)
                if kind in REASONS and (claim_id, n, "settle") not in sent | settles:
                    seen["cancel before any settle"] += 1
                if kind == "settle":
                    settles.add((claim_id, n, kind))
            sent |= set(batch)
    return seen


CASES = ("resend", "duplicate in a batch", "next attempt", "superseded attempt", "compensation",
         "cancel and compensation in a batch", "cancel before any settle")
