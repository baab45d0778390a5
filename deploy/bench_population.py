"""The bench's county: people in every category, hospitals of every level,
and a day's claim mix (mostly outpatient, inpatient with 1–40 items, a tail of
large claims, a few pre-settlements and reversals). Deterministic per seed.

Everything here is data: no I/O. Claims are built lazily from pre-built item
lists so that making one costs microseconds, not the bench's time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

REGIONS = (("340421", 0.9), ("150900", 0.1))  # both have a 2024 policy in policies/
LEVEL_COUNTS = {"village": 120, "township": 24, "county": 6, "city": 3, "province": 2, "out_of_province": 4}

CATEGORY_MIX: tuple[tuple[tuple[str, ...], float], ...] = (
    ((), 0.80),
    (("poverty_registered",), 0.07),
    (("subsistence",), 0.05),
    (("extreme_poverty",), 0.02),
    (("monitored",), 0.03),
    (("poverty_registered", "subsistence"), 0.03),
)

CATALOGUE: dict[str, list[tuple[str, str, str, str | None]]] = {
    "A": [("XA001", "阿司匹林肠溶片", "35.50", None), ("XA002", "头孢呋辛钠注射液", "18.20", None),
          ("XA003", "床位费", "40.00", None), ("XA004", "血常规检查", "25.00", None),
          ("XA005", "普通护理", "30.00", None), ("XA006", "氯化钠注射液", "4.80", None),
          ("XA007", "胸部X线摄影", "70.00", None), ("XA008", "心电图检查", "22.00", None)],
    "B": [("XB001", "阿托伐他汀钙片", "62.30", None), ("XB002", "磁共振检查", "580.00", "520.00"),
          ("XB003", "氯吡格雷片", "96.00", None), ("XB004", "胰岛素注射液", "68.50", None),
          ("XB005", "CT 检查", "260.00", None)],
    "C": [("XC001", "进口人工晶体", "3800.00", None), ("XC002", "特需病房差价", "150.00", None),
          ("XC003", "保健品", "88.00", None)],
}
LARGE = [("XA900", "心脏介入手术费", "A", "68000.00"), ("XA901", "髋关节置换术", "A", "42000.00"),
         ("XB900", "靶向药物", "B", "12500.00"), ("XA902", "重症监护", "A", "3200.00")]


def _item(code: str, name: str, category: str, price: str, quantity: int, limit: str | None) -> dict[str, Any]:
    unit = Decimal(price)
    return {"code": code, "name": name, "category": category, "quantity": str(quantity),
            "unit_price": f"{unit:.2f}", "amount": f"{unit * quantity:.2f}", "limit_price": limit}


def _pick_items(rng: random.Random, count: int, quantity_upto: int) -> list[dict[str, Any]]:
    items = []
    for _ in range(count):
        category = rng.choices("ABC", weights=(70, 25, 5))[0]
        code, name, price, limit = rng.choice(CATALOGUE[category])
        items.append(_item(code, name, category, price, rng.randint(1, quantity_upto), limit))
    return items


@dataclass
class Population:
    """Persons and hospitals as registry records, and the claim factory."""

    persons: int
    seed: int = 20240310
    run: str = "B"
    hospitals: list[dict[str, Any]] = field(default_factory=list)
    _by_level: dict[str, list[str]] = field(default_factory=dict)
    _outpatient_items: list[list[dict[str, Any]]] = field(default_factory=list)
    _inpatient_items: list[list[dict[str, Any]]] = field(default_factory=list)
    _large_items: list[list[dict[str, Any]]] = field(default_factory=list)
    _serial: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        for level, count in LEVEL_COUNTS.items():
            for n in range(count):
                region = "340421" if level in ("village", "township", "county") else "340400"
                code = f"H{region}{'VTCYPO'[list(LEVEL_COUNTS).index(level)]}{n:04d}"
                self.hospitals.append({"hospital_code": code, "name": f"{level} 医院 {n}", "region": region,
                                       "level": level, "designated": True, "suspended": False})
                self._by_level.setdefault(level, []).append(code)
        self._outpatient_items = [_pick_items(rng, rng.randint(1, 5), 3) for _ in range(500)]
        self._inpatient_items = [_pick_items(rng, rng.randint(1, 40), 10) for _ in range(500)]
        for _ in range(40):
            items = _pick_items(rng, rng.randint(100, 400), 20)
            code, name, category, price = rng.choice(LARGE)
            items.append(_item(code, name, category, price, 1, None))
            self._large_items.append(items)

    # ------------------------------------------------------------- registry

    @staticmethod
    def person_id(n: int) -> str:
        """A unique 18-character identity number per person number."""
        return f"{'340421' if n % 10 else '150900'}{n:012d}"

    def person(self, n: int) -> dict[str, Any]:
        rng = random.Random(self.seed * 7919 + n)
        region = "340421" if n % 10 else "150900"
        roll, categories = rng.random(), ()
        for option, weight in CATEGORY_MIX:
            if roll < weight:
                categories = option
                break
            roll -= weight
        insured = n % 200 != 7  # one in two hundred has not paid this year
        return {
            "person_id": self.person_id(n), "name": "张三" if n % 2 else "李秀英", "region": region,
            "coverage": [{"year": 2024, "paid": insured}, {"year": 2023, "paid": True}],
            "categories": [{"category": c, "valid_from": "2023-01-01", "valid_to": None} for c in categories],
            "blacklisted": False,
        }

    # --------------------------------------------------------------- claims

    def claim(self, rng: random.Random) -> dict[str, Any]:
        """One claim of the day's mix: 65% outpatient, 10% chronic outpatient,
        25% inpatient (1–40 items), of which one in fifty is a large claim
        (100–400 items and a costly procedure); 2% are pre-settlements."""
        self._serial += 1
        person = self.person_id(rng.randrange(self.persons))
        roll = rng.random()
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        discharged = f"2024-{month:02d}-{day:02d}"
        admitted = None
        if roll < 0.65:
            visit, level = "outpatient", rng.choices(("village", "township", "county"), weights=(60, 30, 10))[0]
            items = rng.choice(self._outpatient_items)
        elif roll < 0.75:
            visit, level = "chronic_outpatient", rng.choice(("township", "county"))
            items = rng.choice(self._outpatient_items)
        else:
            visit = "inpatient"
            level = rng.choices(("township", "county", "city", "province", "out_of_province"),
                                weights=(25, 45, 18, 8, 4))[0]
            items = rng.choice(self._large_items if rng.random() < 0.02 else self._inpatient_items)
            admitted = f"2024-{month:02d}-{max(1, day - rng.randint(1, 12)):02d}"
        hospital = rng.choice(self._by_level[level])
        return {
            "type": "trial" if rng.random() < 0.02 else "settle",
            "claim_id": f"{hospital}-{self.run}-{self._serial:08d}",
            "hospital_code": hospital,
            "person_id": person,
            "visit_type": visit,
            "admitted_on": admitted,
            "discharged_on": discharged,
            "referral": level in ("city", "province", "out_of_province") and rng.random() < 0.8,
            "injury": False,
            "diagnosis_codes": ["I63.900"] if visit == "inpatient" else ["J06.900"],
            "items": items,
            "submitted_at": f"{discharged}T10:00:00+08:00",
        }

    @staticmethod
    def cancel(claim_id: str, hospital_code: str) -> dict[str, Any]:
        return {"type": "cancel", "claim_id": claim_id, "hospital_code": hospital_code, "reason": "患者要求重新结算"}


__all__ = ["Population"]
