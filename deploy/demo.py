"""``make demo``: a small, realistic county and a day of claims, against the
running system (``make run``). Prints each one-bill as a cashier reads it.

Publishes hospitals of every level and people in every category to the
registry feeds, waits a moment for eligibility to take them in, sends the
day's claims on ``his.claims``, and reads the answers on ``his.settlements``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from medsettle import topics
from medsettle.contract import CATEGORY_NAMES, LEVEL_NAMES, SettlementResult
from medsettle.settings import Settings

HOSPITALS = [
    ("H3404210101", "城关镇桃园村卫生室", "village"),
    ("H3404210201", "新集镇卫生院", "township"),
    ("H3404210001", "县人民医院", "county"),
    ("H3404210002", "县中医院", "county"),
    ("H3404000001", "市第一人民医院", "city"),
    ("H3400000001", "省立医院", "province"),
    ("H3100000001", "上海市第六人民医院", "out_of_province"),
]

PEOPLE = [
    ("340421195503120011", "王建国", []),
    ("340421196208150022", "李秀英", ["poverty_registered"]),
    ("340421197001010033", "张桂兰", ["subsistence"]),
    ("340421194811230044", "刘德福", ["extreme_poverty"]),
    ("340421198504060055", "陈晓东", ["monitored"]),
    ("340421195909090066", "赵玉梅", ["poverty_registered", "subsistence"]),
    ("340421200102280077", "孙浩然", []),
    ("340421197712120088", "周淑芬", ["subsistence"]),
]

CATALOGUE = {
    "A": [("XA001", "阿司匹林肠溶片", "35.50"), ("XA002", "头孢呋辛钠注射液", "18.20"), ("XA003", "床位费", "40.00"),
          ("XA004", "血常规检查", "25.00"), ("XA005", "普通护理", "30.00")],
    "B": [("XB001", "阿托伐他汀钙片", "62.30"), ("XB002", "磁共振检查", "580.00"), ("XB003", "氯吡格雷片", "96.00")],
    "C": [("XC001", "进口人工晶体", "3800.00"), ("XC002", "特需病房差价", "150.00")],
}


def _item(category: str, quantity: int, rng: random.Random) -> dict[str, Any]:
    code, name, price = rng.choice(CATALOGUE[category])
    unit = Decimal(price)
    return {"code": code, "name": name, "category": category, "quantity": str(quantity),
            "unit_price": f"{unit:.2f}", "amount": f"{unit * quantity:.2f}", "limit_price": None}


def day_of_claims(rng: random.Random, run: str) -> list[dict[str, Any]]:
    claims = []
    for n, (person_id, _, _) in enumerate(PEOPLE):
        code, _, level = HOSPITALS[n % len(HOSPITALS)]
        inpatient = n % 3 != 2
        items = [_item("A", rng.randint(5, 40), rng) for _ in range(rng.randint(2, 6))]
        items += [_item("B", rng.randint(1, 6), rng) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            items.append(_item("C", 1, rng))
        if level in ("province", "out_of_province"):
            items.append({"code": "XA900", "name": "心脏介入手术费", "category": "A", "quantity": "1",
                          "unit_price": "68000.00", "amount": "68000.00", "limit_price": None})
        claims.append({
            "type": "settle",
            "claim_id": f"{code}-2024-{run}{n:03d}",
            "hospital_code": code,
            "person_id": person_id,
            "visit_type": "inpatient" if inpatient else ("chronic_outpatient" if n % 2 else "outpatient"),
            "admitted_on": "2024-03-02" if inpatient else None,
            "discharged_on": "2024-03-10",
            "referral": level in ("city", "province", "out_of_province"),
            "injury": False,
            "diagnosis_codes": ["I63.900"],
            "items": items if inpatient else items[:3],
            "submitted_at": "2024-03-10T10:00:00+08:00",
        })
    return claims


def print_bill(bill: SettlementResult, people: dict[str, tuple[str, list[str]]], hospitals: dict[str, tuple[str, str]]) -> None:
    hospital_name, level = hospitals.get(bill.hospital_code, (bill.hospital_code, ""))
    line = "─" * 64
    print(line)
    print(f"  医疗费用结算单（一单制）   单据号 {bill.claim_id}")
    print(f"  医疗机构 {hospital_name}（{LEVEL_NAMES.get(level, level)}）   参保人 {bill.person_id_masked}")
    if bill.status == "rejected" and bill.rejection is not None:
        print(f"  结算被拒绝 [{bill.rejection.code.value}]：{bill.rejection.message}")
        return
    for label, value in (("医疗总费用", bill.total), ("全自费", bill.self_pay), ("超限价自费", bill.over_limit_self_pay),
                         ("先行自付", bill.pre_self_pay), ("政策范围内费用", bill.compliant), ("起付线", bill.deductible)):
        print(f"  {label:<10}{value:>14} 元")
    for detail in bill.fund_details:
        print(f"  {detail.name:<16}{detail.amount:>14} 元")
    print(f"  {'基金支付合计':<10}{bill.fund_total:>14} 元")
    print(f"  {'个人支付':<10}{bill.personal:>14} 元")
    for layer in bill.layers:
        print(f"    · {layer.explanation}")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for every answer")
    args = parser.parse_args(argv)
    settings = Settings()
    bootstrap = settings.kafka_bootstrap_servers
    rng = random.Random(20240310)
    run = uuid.uuid4().hex[:4].upper()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(topics.SETTLEMENTS, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=20)
    await producer.start()
    await consumer.start()
    try:
        await consumer.seek_to_end()
        for code, name, level in HOSPITALS:
            record = {"hospital_code": code, "name": name, "region": "340421", "level": level,
                      "designated": True, "suspended": False}
            await producer.send_and_wait(topics.HOSPITALS, orjson.dumps(record), key=code.encode())
        for person_id, name, categories in PEOPLE:
            record = {"person_id": person_id, "name": name, "region": "340421",
                      "coverage": [{"year": 2024, "paid": True}],
                      "categories": [{"category": c, "valid_from": "2024-01-01", "valid_to": None} for c in categories],
                      "blacklisted": False}
            await producer.send_and_wait(topics.PERSONS, orjson.dumps(record), key=person_id.encode())
        print(f"登记 {len(HOSPITALS)} 家医疗机构、{len(PEOPLE)} 名参保人（含各类困难群众）", file=sys.stderr)
        await asyncio.sleep(2.0)  # the registry and the claims are different topics: let eligibility take it in

        claims = day_of_claims(rng, run)
        for claim in claims:
            await producer.send_and_wait(topics.CLAIMS, orjson.dumps(claim), key=claim["claim_id"].encode())
        wanted = {c["claim_id"] for c in claims}
        answers: dict[str, SettlementResult] = {}
        deadline = time.monotonic() + args.timeout
        while wanted - answers.keys() and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    bill = SettlementResult.from_json(record.value)
                    if bill.claim_id in wanted:
                        answers[bill.claim_id] = bill
        people = {p: (name, cats) for p, name, cats in PEOPLE}
        hospitals = {code: (name, level) for code, name, level in HOSPITALS}
        for claim in claims:
            bill = answers.get(claim["claim_id"])
            if bill is not None:
                print_bill(bill, people, hospitals)
                cats = people[claim["person_id"]][1]
                print(f"    （参保人类别：{'、'.join(CATEGORY_NAMES[c] for c in cats) or '普通参保人'}）")
        missing = wanted - answers.keys()
        print("─" * 64)
        settled = sum(1 for b in answers.values() if b.status == "settled")
        print(f"{len(claims)} 笔结算，已结算 {settled} 笔，未收到回执 {len(missing)} 笔")
        return 1 if missing else 0
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
