"""Clearing (清算): what the funds owe each hospital for a month, and closing it.

A statement covers the settlements and reversals that *happened* in a month
of China Standard Time (UTC+8): a one-bill's ``settled_at`` puts it in a month
as a positive line, its ``reversed_at`` (结算撤销) as a negative line in the
month of the reversal, whatever the service date. Each line is one claim's
event; beside them the statement sums them per hospital and fund, and per
fund. Summed over every month, the lines equal the standing one-bills: a
claim settled and never reversed counts once, a reversed one nets to zero.

A month, once it has ended, is closed by an operator (``POST
/api/clearing/close``) or on a schedule (``CLEARING_CLOSE_DAY``). Closing
stores the statement's JSON and CSV bytes and every line it holds
(``clearing.statements``, ``clearing.statement_lines``, migrations in
``migrations/``); a closed month is always answered with those bytes and
never changes. Months close one after the other, empty ones too (a
statement of zero); before the first close, the first month with lines
comes first. A settlement or reversal that reaches the database after its
month was closed (a transaction that committed late) is carried into the
next month to close, so nothing is lost and nothing is counted twice.

The first part of this module is pure (entries in, statement and CSV out);
the second is its SQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import asyncpg
import orjson

from medsettle.contract import FUNDS, mask_person_id

CST = dt.timezone(dt.timedelta(hours=8), "CST")
ZERO = Decimal("0.00")
FUND_NAMES = {code: name for code, name, _ in FUNDS}
FUND_FIELDS = {code: layer.value for code, _, layer in FUNDS}  # 390100 -> basic, ...
EVENT_NAMES = {"settled": "结算", "reversed": "撤销"}
BASIS = "按结算、撤销发生时间（北京时间）所在月份；撤销记为撤销当月的负数行；月份结账后不再变动，结账后到达的业务计入下一个未结账月份"
MIGRATIONS = Path(__file__).with_name("migrations")
SCHEMA = "clearing"

Event = Literal["settled", "reversed"]


class ClearingRefused(ValueError):
    """A close that cannot be done (the month has not ended, an earlier month is open)."""


# ------------------------------------------------------------------ months


def month_start(year: int, month: int) -> dt.datetime:
    if not 1 <= month <= 12:
        raise ValueError(f"month {month} is not 1–12")
    return dt.datetime(year, month, 1, tzinfo=CST)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def month_of(moment: dt.datetime) -> dt.datetime:
    """The CST month a moment falls in (its first instant)."""
    local = moment.astimezone(CST)
    return dt.datetime(local.year, local.month, 1, tzinfo=CST)


def period(start: dt.datetime) -> str:
    return f"{start:%Y-%m}"


def close_due(start: dt.datetime, close_day: int) -> dt.datetime:
    """When a month closes on the schedule: day ``close_day`` of the next month, 00:00 CST."""
    return next_month(start) + dt.timedelta(days=close_day - 1)


# ----------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One claim's settlement (amounts as paid) or reversal (amounts negated)."""

    claim_id: str
    hospital_code: str
    event: Event
    at: dt.datetime
    service_date: dt.date
    policy: str
    person_id_masked: str
    visit_type: str
    total: Decimal
    basic: Decimal
    serious_illness: Decimal
    assistance: Decimal
    backstop: Decimal
    fund_total: Decimal

    def fund(self, code: str) -> Decimal:
        return getattr(self, FUND_FIELDS[code])

    @property
    def sign(self) -> int:
        return 1 if self.event == "settled" else -1


def _yuan(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _order(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.hospital_code, e.at, e.claim_id, e.event))


def statement(start: dt.datetime, entries: Iterable[Entry], names: dict[str, str], *,
              closed_at: dt.datetime | None = None, closed_by: str | None = None) -> dict[str, Any]:
    """A month's statement: per-claim lines, per hospital and fund, per fund.

    ``count`` is net: a settlement counts 1, a reversal -1. Lines and totals
    list a fund only where it paid (or took back) something.
    """
    ordered = _order(entries)
    label = period(start)
    by_hospital: dict[tuple[str, str], list[Any]] = {}
    by_fund: dict[str, list[Any]] = {}
    details = []
    for entry in ordered:
        details.append({
            "claim_id": entry.claim_id, "hospital_code": entry.hospital_code,
            "hospital_name": names.get(entry.hospital_code, ""),
            "event": entry.event, "event_name": EVENT_NAMES[entry.event],
            "at": entry.at.astimezone(CST).isoformat(timespec="milliseconds"),
            "service_date": entry.service_date.isoformat(), "policy": entry.policy,
            "person_id_masked": entry.person_id_masked, "visit_type": entry.visit_type,
            "total": _yuan(entry.total),
            "funds": {code: _yuan(entry.fund(code)) for code in FUND_FIELDS},
            "fund_total": _yuan(entry.fund_total),
        })
        for code in FUND_FIELDS:
            amount = entry.fund(code)
            if amount:
                for key, table in (((entry.hospital_code, code), by_hospital), (code, by_fund)):
                    count_amount = table.setdefault(key, [0, ZERO])  # type: ignore[arg-type]
                    count_amount[0] += entry.sign
                    count_amount[1] += amount
    amount = sum((entry.fund_total for entry in ordered), ZERO)
    return {
        "year": start.year, "month": start.month, "period": label,
        "status": "closed" if closed_at is not None else "open",
        "closed_at": closed_at.astimezone(CST).isoformat(timespec="milliseconds") if closed_at else None,
        "closed_by": closed_by,
        "basis": BASIS,
        "lines": [
            {"month": label, "hospital_code": hospital, "hospital_name": names.get(hospital, ""),
             "fund_code": code, "fund_name": FUND_NAMES[code], "count": ca[0], "amount": _yuan(ca[1])}
            for (hospital, code), ca in sorted(by_hospital.items())
        ],
        "by_fund": [
            {"fund_code": code, "fund_name": FUND_NAMES[code], "count": ca[0], "amount": _yuan(ca[1])}
            for code, ca in sorted(by_fund.items())
        ],
        "details": details,
        "entries": len(details),
        "settled": sum(1 for e in ordered if e.event == "settled"),
        "reversed": sum(1 for e in ordered if e.event == "reversed"),
        "amount": _yuan(amount),
    }


CSV_HEADER = ["清算月份", "行类型", "医疗机构编码", "医疗机构名称", "基金编码", "基金名称", "结算单号", "业务类型",
              "业务时间", "出院日期", "笔数", "金额（元）"]
DETAIL, SUBTOTAL, TOTAL = "明细", "机构小计", "基金合计"


def csv_rows(body: dict[str, Any]) -> list[list[str]]:
    """A statement's CSV rows (no header): for each hospital its detail lines
    (one per claim and fund that paid), then its total per fund; at the end
    the total per fund and the grand total."""
    rows: list[list[str]] = []
    label = body["period"]
    subtotals: dict[str, list[dict[str, Any]]] = {}
    for line in body["lines"]:
        subtotals.setdefault(line["hospital_code"], []).append(line)
    details: dict[str, list[dict[str, Any]]] = {}
    for detail in body["details"]:
        details.setdefault(detail["hospital_code"], []).append(detail)
    for hospital in sorted(set(details) | set(subtotals)):
        for d in details.get(hospital, []):
            for code, amount in d["funds"].items():
                if Decimal(amount):
                    rows.append([label, DETAIL, hospital, d["hospital_name"], code, FUND_NAMES[code], d["claim_id"],
                                 d["event_name"], d["at"], d["service_date"],
                                 "1" if d["event"] == "settled" else "-1", amount])
        for line in subtotals.get(hospital, []):
            rows.append([label, SUBTOTAL, hospital, line["hospital_name"], line["fund_code"], line["fund_name"],
                         "", "", "", "", str(line["count"]), line["amount"]])
    for line in body["by_fund"]:
        rows.append([label, TOTAL, "", "", line["fund_code"], line["fund_name"], "", "", "", "",
                     str(line["count"]), line["amount"]])
    rows.append([label, TOTAL, "", "", "", "合计", "", "", "", "", str(body["entries"]), body["amount"]])
    return rows


def render_csv(bodies: Iterable[dict[str, Any]]) -> bytes:
    """UTF-8 with a BOM (so spreadsheet programs read the Chinese headers), CRLF lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for body in bodies:
        writer.writerows(csv_rows(body))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def render_json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def tie_out(body: dict[str, Any]) -> list[str]:
    """What does not add up in a statement (empty when it ties out): every
    detail's funds sum to its fund total, the per-hospital lines and the
    per-fund totals sum to the details, the statement's amount to them all."""
    problems = []
    per_fund: dict[str, Decimal] = {}
    per_line: dict[tuple[str, str], Decimal] = {}
    grand = ZERO
    for d in body["details"]:
        funds = {code: Decimal(a) for code, a in d["funds"].items()}
        if sum(funds.values(), ZERO) != Decimal(d["fund_total"]):
            problems.append(f"{d['claim_id']} {d['event']}: funds {sum(funds.values(), ZERO)} != {d['fund_total']}")
        for code, amount in funds.items():
            per_fund[code] = per_fund.get(code, ZERO) + amount
            key = (d["hospital_code"], code)
            per_line[key] = per_line.get(key, ZERO) + amount
        grand += Decimal(d["fund_total"])
    for line in body["lines"]:
        if per_line.get((line["hospital_code"], line["fund_code"]), ZERO) != Decimal(line["amount"]):
            problems.append(f"line {line['hospital_code']} {line['fund_code']}: {line['amount']}")
    for line in body["by_fund"]:
        if per_fund.get(line["fund_code"], ZERO) != Decimal(line["amount"]):
            problems.append(f"fund {line['fund_code']}: {line['amount']} != {per_fund.get(line['fund_code'])}")
    if grand != Decimal(body["amount"]):
        problems.append(f"amount {body['amount']} != {grand}")
    return problems


# --------------------------------------------------------------------- SQL

_MONTH_OF = "date_trunc('month', (e.at AT TIME ZONE 'UTC') + interval '8 hours')::date"
_EVENTS = """WITH e AS (
        SELECT claim_id, hospital_code, 'settled' AS event, settled_at AS at, service_date, policy, person_id,
               visit_type, total, basic, serious_illness, assistance, backstop, fund_total
          FROM settlement.one_bills WHERE settled_at >= $1 AND settled_at < $2
        UNION ALL
        SELECT claim_id, hospital_code, 'reversed', reversed_at, service_date, policy, person_id,
               visit_type, -total, -basic, -serious_illness, -assistance, -backstop, -fund_total
          FROM settlement.one_bills WHERE reversed_at >= $1 AND reversed_at < $2)"""
# the settlements and reversals that happened in [$1, $2)
BEGINNING = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_UNCLEARED = ("NOT EXISTS (SELECT 1 FROM clearing.statement_lines l "
              "WHERE l.claim_id = e.claim_id AND l.event = e.event)")


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(row["claim_id"], row["hospital_code"], row["event"], row["at"], row["service_date"], row["policy"],
                 mask_person_id(row["person_id"]), row["visit_type"], row["total"], row["basic"],
                 row["serious_illness"], row["assistance"], row["backstop"], row["fund_total"])


async def latest_closed(c: asyncpg.Connection) -> dt.datetime | None:
    month = await c.fetchval("SELECT max(month) FROM clearing.statements")
    return dt.datetime(month.year, month.month, 1, tzinfo=CST) if month else None


async def next_to_close(c: asyncpg.Connection) -> dt.datetime | None:
    """The month after the latest closed one (None before the first close)."""
    latest = await latest_closed(c)
    return next_month(latest) if latest is not None else None


async def open_entries(c: asyncpg.Connection, start: dt.datetime) -> list[Entry]:
    """What an open month's statement holds: the settlements and reversals
    of the month and, when it is the next month to close, every earlier one
    that no closed statement holds (it reached the database after its month
    was closed)."""
    carries = start == await next_to_close(c)
    rows = await c.fetch(f"{_EVENTS} SELECT e.* FROM e WHERE {_UNCLEARED}",
                         BEGINNING if carries else start, next_month(start))
    return [_entry(r) for r in rows]


async def earliest_month_with_lines(c: asyncpg.Connection, before: dt.datetime) -> dt.datetime | None:
    """The first month before ``before`` with a settlement or reversal that no closed statement holds."""
    month = await c.fetchval(f"{_EVENTS} SELECT min({_MONTH_OF}) FROM e WHERE {_UNCLEARED}", BEGINNING, before)
    return dt.datetime(month.year, month.month, 1, tzinfo=CST) if month else None


@dataclass(frozen=True)
class Closed:
    month: dt.date
    closed_at: dt.datetime
    closed_by: str
    body: bytes  # JSON
    csv: bytes


async def closed(c: asyncpg.Connection, start: dt.datetime) -> Closed | None:
    row = await c.fetchrow(
        "SELECT month, closed_at, closed_by, body, csv FROM clearing.statements WHERE month = $1", start.date())
    return Closed(row["month"], row["closed_at"], row["closed_by"], row["body"], row["csv"]) if row else None


async def hospital_names(c: asyncpg.Connection, codes: list[str]) -> dict[str, str]:
    try:
        rows = await c.fetch(
            "SELECT hospital_code, body->>'name' AS name FROM eligibility.hospitals "
            "WHERE hospital_code = any($1::text[])", codes)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return {}
    return {r["hospital_code"]: r["name"] for r in rows if r["name"]}


async def read_month(c: asyncpg.Connection, start: dt.datetime) -> tuple[dict[str, Any], bytes, bytes]:
    """A month's statement as JSON and CSV bytes: a closed month's stored
    bytes, an open month's computed now (status ``open``)."""
    done = await closed(c, start)
    if done is not None:
        return orjson.loads(done.body), done.body, done.csv
    entries = await open_entries(c, start)
    names = await hospital_names(c, sorted({e.hospital_code for e in entries}))
    body = statement(start, entries, names)
    return body, render_json(body), render_csv([body])


async def read_year(c: asyncpg.Connection, year: int) -> tuple[bytes, bytes]:
    """The year month by month (months with nothing and not closed left out)."""
    bodies = []
    for month in range(1, 13):
        body, _, _ = await read_month(c, month_start(year, month))
        if body["entries"] or body["status"] == "closed":
            bodies.append(body)
    by_fund: dict[str, list[Any]] = {}
    for body in bodies:
        for line in body["by_fund"]:
            count_amount = by_fund.setdefault(line["fund_code"], [0, ZERO])
            count_amount[0] += line["count"]
            count_amount[1] += Decimal(line["amount"])
    whole = {
        "year": year, "month": None, "period": str(year), "basis": BASIS,
        "months": [{"period": b["period"], "status": b["status"], "closed_at": b["closed_at"],
                    "closed_by": b["closed_by"], "entries": b["entries"], "amount": b["amount"]} for b in bodies],
        "lines": [line for b in bodies for line in b["lines"]],
        "by_fund": [{"fund_code": code, "fund_name": FUND_NAMES[code], "count": ca[0], "amount": _yuan(ca[1])}
                    for code, ca in sorted(by_fund.items())],
        "details": [d | {"month": b["period"]} for b in bodies for d in b["details"]],
        "entries": sum(b["entries"] for b in bodies),
        "amount": _yuan(sum((Decimal(b["amount"]) for b in bodies), ZERO)),
    }
    return render_json(whole), render_csv(bodies)


async def close_month(c: asyncpg.Connection, start: dt.datetime, *, now: dt.datetime, by: str) -> Closed:
    """Close a month: store its statement's bytes and the lines it holds.

    Closing a closed month returns what was stored. Refused (``ClearingRefused``)
    before the month has ended or while an earlier month with lines is open.
    """
    async with c.transaction():
        await c.execute("SELECT pg_advisory_xact_lock($1)", zlib.crc32(b"clearing:close"))
        done = await closed(c, start)
        if done is not None:
            return done
        end = next_month(start)
        if now < end:
            raise ClearingRefused(f"{period(start)} 尚未结束（北京时间 {end:%Y-%m-%d %H:%M} 结束），不能结账")
        due = await next_to_close(c)
        if due is not None and due != start:
            raise ClearingRefused(f"月份按顺序结账：已结账至 {period(due - dt.timedelta(days=1))}，下一个应结账的是 {period(due)}"
                                  if start > due else f"{period(start)} 早于已结账的月份，其后到达的业务计入 {period(due)}")
        if due is None:
            earlier = await earliest_month_with_lines(c, start)
            if earlier is not None:
                raise ClearingRefused(f"{period(earlier)} 尚未结账且有结算业务，请先结账 {period(earlier)}")
        entries = await open_entries(c, start)
        names = await hospital_names(c, sorted({e.hospital_code for e in entries}))
        body = statement(start, entries, names, closed_at=now, closed_by=by)
        problems = tie_out(body)
        if problems:  # never stored: a statement that does not add up is a bug, not a close
            raise RuntimeError(f"clearing statement {period(start)} does not tie out: {problems}")
        json_bytes, csv_bytes = render_json(body), render_csv([body])
        await c.execute(
            """INSERT INTO clearing.statements (month, closed_at, closed_by, entries, amount, body, csv, sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            start.date(), now, by, len(entries), Decimal(body["amount"]), json_bytes, csv_bytes,
            hashlib.sha256(csv_bytes).hexdigest(),
        )
        await c.executemany(
            """INSERT INTO clearing.statement_lines (claim_id, event, month, hospital_code, at, basic,
                   serious_illness, assistance, backstop, fund_total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            [(e.claim_id, e.event, start.date(), e.hospital_code, e.at, e.basic, e.serious_illness, e.assistance,
              e.backstop, e.fund_total) for e in entries],
        )
        return Closed(start.date(), now, by, json_bytes, csv_bytes)


async def close_due_months(c: asyncpg.Connection, *, now: dt.datetime, close_day: int) -> list[str]:
    """Close, in order, every month whose scheduled close (``close_day`` of
    the next month) has passed, from the month after the latest closed one
    (before the first close: from the first month with lines); return them."""
    done = []
    start = await next_to_close(c) or await earliest_month_with_lines(c, month_of(now))
    while start is not None and close_due(start, close_day) <= now:
        await close_month(c, start, now=now, by="schedule")
        done.append(period(start))
        start = next_month(start)
    return done
