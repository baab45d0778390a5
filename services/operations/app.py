"""The operations service: keeps every dead letter of ``settlement.dlq`` and
lets operators list, inspect and replay them (HTTP on its METRICS_PORT, and
``python -m services.operations.cli``).

Replaying re-publishes the original record to its original topic with its
original key and headers; every stage is idempotent, so a replay of a record
that was in fact handled changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from medsettle import topics
from medsettle.access import hide_categories
from medsettle.logs import mask_identities, mask_names, mask_text, names_in
from medsettle.runtime import Outgoing, Service, create_app
from medsettle.settings import Settings
from services.operations import repository as repo

log = structlog.get_logger()
DLQ_SIZE = Gauge("settlement_dlq_size", "dead letters not yet replayed")


def replay_message(letter: dict[str, Any]) -> Outgoing:
    """The original record, as it was, to its original topic."""
    value = (base64.b64decode(letter["original"]) if letter["encoding"] == "base64"
             else letter["original"].encode("utf-8"))
    headers = {k: v for k, v in letter["headers"].items() if k not in ("x-error",)}
    return Outgoing(letter["topic"], letter["key"].encode() or None, value, headers)


def shown(letter: dict[str, Any], *, categories: bool = False) -> dict[str, Any]:
    """A dead letter as operators see it: identity numbers and names masked,
    inside the original record too (a JSON original is masked field by field,
    so a name under ``name`` is caught as well as an identity number anywhere);
    a person's assistance categories only for those who may act
    (``categories``), otherwise left out."""
    letter = dict(letter)
    if letter.get("encoding") != "base64" and isinstance(letter.get("original"), str):
        try:
            original = orjson.loads(letter["original"])
        except orjson.JSONDecodeError:
            pass
        else:
            names = names_in(original)  # the error may quote them: masked there too
            if names and isinstance(letter.get("error"), str):
                letter["error"] = mask_names(letter["error"], names)
            if not categories:
                original = hide_categories(original)
            letter["original"] = orjson.dumps(mask_identities(None, "", {"original": original})["original"]).decode()
    key = letter.pop("key", None)  # the record's key (a claim id, a person's identity number): not a secret
    shown = mask_identities(None, "", letter)
    if key is not None:
        shown["key"] = mask_text(str(key))
    return shown


class OperationsService(Service):
    name = "operations"
    subscriptions = (topics.DLQ,)
    migrations = Path(__file__).with_name("migrations")

    async def process(self, topic: str, records: Sequence[ConsumerRecord]) -> list[Outgoing]:
        letters = []
        for record in records:
            try:
                letter = orjson.loads(record.value)
                fields = {"stage": str, "topic": str, "error": str, "original": str, "partition": int, "offset": int}
                if isinstance(letter, dict) and all(isinstance(letter.get(k), t) for k, t in fields.items()):
                    letters.append(letter)
                    continue
            except orjson.JSONDecodeError:
                pass
            log.warning("unreadable_dead_letter", partition=record.partition, offset=record.offset)
        async with self.db.acquire() as c, c.transaction():
            await repo.keep(c, letters)
            DLQ_SIZE.set(await repo.count_new(c))
        return []

    async def replay(self, letter_id: int, operator: str) -> dict[str, Any] | None:
        async with self.db.acquire() as c:
            letter = await repo.one(c, letter_id)
        if letter is None:
            return None
        assert self.publisher is not None, "the runtime is not running"
        await self.publisher([replay_message(letter)])
        async with self.db.acquire() as c:
            await repo.mark_replayed(c, letter_id, operator)
        log.info("dead_letter_replayed", id=letter_id, topic=letter["topic"], operator=operator)
        return letter

    def routes(self) -> list:
        # credentials, roles and the audit log: medsettle.httpserver, for every route here
        async def listing(request: Request) -> JSONResponse:
            status = request.query_params.get("status")
            try:
                limit = min(max(int(request.query_params.get("limit", "200")), 1), 1000)
            except ValueError:
                return JSONResponse({"error": "limit 应为整数"}, status_code=400)
            async with self.db.acquire() as c:
                letters = await repo.listing(c, status, limit)
            categories = request.state.principal.may_act
            return JSONResponse({"dead_letters": [shown(d, categories=categories) for d in letters]})

        async def inspect(request: Request) -> JSONResponse:
            async with self.db.acquire() as c:
                letter = await repo.one(c, int(request.path_params["id"]))
            if letter is None:
                return JSONResponse({"error": "no such dead letter"}, status_code=404)
            return JSONResponse(shown(letter, categories=request.state.principal.may_act))

        async def replay(request: Request) -> JSONResponse:
            operator = request.state.principal.name  # the authenticated caller, whatever the body says
            letter = await self.replay(int(request.path_params["id"]), operator)
            if letter is None:
                return JSONResponse({"error": "no such dead letter"}, status_code=404)
            return JSONResponse({"replayed": letter["id"], "topic": letter["topic"]})

        return [
            Route("/dead-letters", listing),
            Route("/dead-letters/{id:int}", inspect),
            Route("/dead-letters/{id:int}/replay", replay, methods=["POST"]),
        ]


def app(settings: Settings | None = None):  # noqa: ANN201 - faststream app
    return create_app(OperationsService, settings)
