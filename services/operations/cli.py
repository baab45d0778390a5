"""Dead letters from the command line.

    python -m services.operations.cli list [--all]
    python -m services.operations.cli show ID
    python -m services.operations.cli replay ID [--operator NAME]

Reads the operations schema (``DATABASE_URL``) and replays through
``KAFKA_BOOTSTRAP_SERVERS``. A replay is written to the operator audit log
(``operations.operator_audit``) as ``cli:<login>`` before it is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from medsettle import operator_audit
from medsettle.db import migrate
from medsettle.settings import Settings
from services.operations import repository as repo
from services.operations.app import replay_message, shown


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.operations.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--all", action="store_true", help="replayed ones too")
    sub.add_parser("show").add_argument("id", type=int)
    replay = sub.add_parser("replay")
    replay.add_argument("id", type=int)
    replay.add_argument("--operator", default="cli")
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    c = await asyncpg.connect(settings.database_url, server_settings={"search_path": "operations"})
    try:
        if args.command == "list":
            for d in await repo.listing(c, None if args.all else "new", 1000):
                print(f"{d['id']:>6}  {d['status']:<8} {d['stage']:<11} {d['topic']:<26} {shown(d)['error'][:80]}")
            return 0
        letter = await repo.one(c, args.id)
        if letter is None:
            print(f"no dead letter {args.id}", file=sys.stderr)
            return 1
        if args.command == "show":
            print(orjson.dumps(shown(letter), option=orjson.OPT_INDENT_2).decode())
            return 0
        entry = await _audit_begin(settings.database_url, args.id, args.operator)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                    **settings.kafka_client_security())
        await producer.start()
        try:
            message = replay_message(letter)
            await producer.send_and_wait(message.topic, message.value, key=message.key,
                                         headers=[(k, v.encode()) for k, v in message.headers.items()])
        finally:
            await producer.stop()
        await repo.mark_replayed(c, args.id, args.operator)
        await operator_audit.finish(c, entry, 200)
        print(f"replayed {args.id} to {letter['topic']}")
        return 0
    finally:
        await c.close()


async def _audit_begin(url: str, letter_id: int, operator: str) -> int:
    """The replay in the audit log, before it runs (the log created if this is its first entry)."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1, server_settings={"search_path": "operations"})
    assert pool is not None
    try:
        await migrate(pool, "operations", operator_audit.MIGRATIONS)
        async with pool.acquire() as c:
            return await operator_audit.begin(
                c, service="operations", principal=f"cli:{getpass.getuser()}", role="operator", via="database",
                action="replay", target=str(letter_id), method="CLI", path=f"replay {letter_id}",
                detail={"operator": operator[:64]}, address=None)
    finally:
        await pool.close()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
