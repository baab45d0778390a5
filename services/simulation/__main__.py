"""Policy simulation (补偿方案测算) from the command line.

    python -m services.simulation --policy FILE --region CODE --year YYYY [--out FILE]
        [--budget 390100=60000000 ...] [--threshold 100] [--largest 10] [--workers N]

``make simulate POLICY=... REGION=... YEAR=... [OUT=...]`` runs it. Reads
``DATABASE_URL`` (read-only), prints the comparison and writes its JSON to
``--out`` (default ``simulation-results/simulation.json``). An invalid
candidate is refused with the file, the field and the reason; exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from medsettle.policy import PolicyError, load_policy
from medsettle.settings import Settings
from services.simulation.runner import Request, SimulationError, simulate

DEFAULT_OUT = Path("simulation-results/simulation.json")


def _budget(text: str) -> tuple[str, Decimal]:
    code, _, amount = text.partition("=")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"--budget {text!r}: want FUND=YUAN, e.g. 390100=60000000") from None
    if code not in ("390100", "390200", "610100", "640100") or not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(
            f"--budget {text!r}: want FUND=YUAN with FUND one of 390100 390200 610100 640100")
    return code, value


def table(report: dict[str, Any]) -> str:
    """The comparison as a cashier's office prints it: plain columns."""
    lines = [
        f"补偿方案测算 {report['candidate']['policy']} {report['candidate']['name']}",
        f"region {report['region']}, {report['year']} claims "
        f"(policy in force: {report['live_policy'] or 'not loaded'}): "
        f"{report['claims']} claims ({report['reversals']} reversed), {report['persons']} persons, "
        f"total {report['total']}",
        "",
        f"{'fund':<34}{'actual':>18}{'simulated':>18}{'change':>18}{'change %':>10}",
    ]
    for code, fund in report["funds"].items():
        lines.append(f"{code + ' ' + fund['name']:<30}{fund['actual']:>18}{fund['simulated']:>18}{fund['change']:>18}"
                     f"{fund['change_percent'] or '-':>10}")
    ft = report["fund_total"]
    lines.append(f"{'all funds':<34}{ft['actual']:>18}{ft['simulated']:>18}{ft['change']:>18}")
    ratio = report["compensation_ratio"]
    lines += ["", f"{'compensation ratio (funds / total), %':<40}{'actual':>10}{'simulated':>12}",
              f"{'overall':<40}{ratio['actual'] or '-':>10}{ratio['simulated'] or '-':>12}"]
    for row in report["by_level"]:
        lines.append(f"{'  level ' + row['key']:<40}{row['actual'] or '-':>10}{row['simulated'] or '-':>12}")
    for row in report["by_category"]:
        lines.append(f"{'  category ' + row['key']:<40}{row['actual'] or '-':>10}{row['simulated'] or '-':>12}")
    reached = report["serious_illness_threshold_reached"]
    lines += ["", f"persons above the serious-illness threshold: actual {reached['actual']}, "
                  f"simulated {reached['simulated']}",
              "", f"{'persons by yearly fund payout':<40}{'actual':>10}{'simulated':>12}"]
    for row in report["payout_buckets"]:
        lines.append(f"{'  ' + row['bucket']:<40}{row['actual']:>10}{row['simulated']:>12}")
    lines += ["", "budget use by month, cumulative % of the annual budget (actual / simulated):"]
    for code, use in report["budget_use"].items():
        if use["budget"] is None:
            lines.append(f"  {code}: no budget")
            continue
        shares = " ".join(f"{m['month']}:{m['actual_share']}/{m['simulated_share']}" for m in use["months"])
        lines.append(f"  {code} (budget {use['budget']}): {shares}")
    change = report["personal_change"]
    lines += ["", f"persons paying more by over {change['threshold']}: {change['pay_more']}; "
                  f"paying less by over {change['threshold']}: {change['pay_less']}"]
    for title, rows in (("largest increases", change["largest_increases"]),
                        ("largest decreases", change["largest_decreases"])):
        if rows:
            lines.append(f"  {title}: " + ", ".join(f"{r['person']} {r['change']}" for r in rows))
    lines.append(f"claims paid differently: {report['differences']['claims']}, "
                 f"persons: {report['differences']['persons']}")
    return "\n".join(lines)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.simulation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, type=Path, help="the candidate policy file (YAML)")
    parser.add_argument("--region", required=True, help="whose claims: the pooling region's code")
    parser.add_argument("--year", required=True, type=int, help="which year's claims")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--budget", type=_budget, action="append", default=[],
                        help="FUND=YUAN: an annual budget, instead of the candidate's budgets section")
    parser.add_argument("--threshold", type=Decimal, default=Decimal(100),
                        help="yuan: persons paying more or less by more than this are counted")
    parser.add_argument("--largest", type=int, default=10, help="how many of the largest changes to list")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: one per CPU)")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    args = parser.parse_args(argv)
    settings = Settings()
    url = args.database_url or settings.database_url
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        candidate = load_policy(args.policy)
    except PolicyError as exc:
        print(f"candidate refused:\n{exc}", file=sys.stderr)
        return 2
    request = Request(region=args.region, year=args.year, candidate=candidate, budgets=dict(args.budget),
                      change_threshold=args.threshold, largest=args.largest, workers=args.workers)
    started = time.perf_counter()
    try:
        report = await simulate(url, request, policy_dir=settings.policy_dir)
    except SimulationError as exc:
        print(f"simulation refused: {exc}", file=sys.stderr)
        return 2
    report["seconds"] = round(time.perf_counter() - started, 2)
    print(table(report))
    print(f"\n{report['claims']} claims in {report['seconds']} s ({report['workers']} workers); JSON: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
