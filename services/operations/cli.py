"""Dead letters from the command line.

    python -m services.operations.cli list [--all]
    python -m services.operations.cli show ID
    python -m services.operations.cli replay ID [--operator NAME]

Reads the operations schema (``DATABASE_URL``) and replays through
``KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

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
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            message = replay_message(letter)
            await producer.send_and_wait(message.topic, message.value, key=message.key,
                                         headers=[(k, v.encode()) for k, v in message.headers.items()])
        finally:
            await producer.stop()
        await repo.mark_replayed(c, args.id, args.operator)
        print(f"replayed {args.id} to {letter['topic']}")
        return 0
    finally:
        await c.close()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
