"""The gateway: the hospital HTTP API of CONTRACT §8 and §9, on FastAPI.

``POST /v1/claims`` checks the caller's signature, publishes the claim on
``his.claims`` as the hospital would (signed with the hospital's key, which
eligibility checks) and waits for its answer; ``GET /v1/claims/{claim_id}``
reads the caller's own answers; ``POST /v1/reconciliations`` compares a
hospital's books with the platform's.

Answers are learnt from ``his.settlements`` into the gateway's own schema
(``gateway``): every process reads every partition (no consumer group), so
each sees every answer; it wakes its own waiting requests as soon as it has
read the answer, then stores the batch (a ``GET`` or a reconciliation of this
process waits for that store first, so it finds what a ``POST`` was just
told). Upserts are idempotent, so two processes (or a process reading again
after a restart) store each answer once. How far the store has read is kept
per partition beside the answers, in the same statement: an answer told but
not stored before a crash is read and stored again after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from medsettle import topics
from medsettle.contract import MAX_MESSAGE_BYTES, SettlementResult
from medsettle.db import INFRASTRUCTURE_ERRORS, create_pool, migrate
from medsettle.hospital_keys import HospitalKeys, signature
from medsettle.settings import Settings
from services.gateway import repository as repo
from services.gateway.models import (
    CLAIM_MESSAGE,
    Accepted,
    ApiError,
    NationalSettlement,
    Reconciliation,
    ReconciliationRequest,
)
from services.gateway.national import national
from services.gateway.reconciliation import reconcile, settlement_day
from services.gateway.signing import HOSPITAL_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, refusal

log = structlog.get_logger()

SCHEMA = "gateway"
MIGRATIONS = Path(__file__).with_name("migrations")
KAFKA_SIGNATURE_HEADER = "x-signature"  # what eligibility checks (services/eligibility/app.py)
DEFAULT_WAIT_SECONDS = 10.0
MAX_WAIT_SECONDS = 30.0
_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

ANSWERS_TO: dict[str, frozenset[str]] = {
    "trial": frozenset({"trial", "rejected"}),
    "settle": frozenset({"settled", "rejected", "pending_review"}),
    "cancel": frozenset({"reversed", "rejected"}),
}
"""The answers that answer a request of each type (an earlier trial's answer
does not answer the settle that follows it under the same claim_id)."""
REJECTED = frozenset({"rejected"})  # a claim of no known type gets only a rejection


class Refused(Exception):
    """An answer other than 200: its status, code and message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"code": code, "message": message}), status_code=status,
                    media_type="application/json", headers=headers)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


# ------------------------------------------------------------------ answers


def answer_of(body: bytes) -> repo.Answer | None:
    """What the store keeps of a his.settlements message; ``None`` for one it cannot use."""
    try:
        raw = orjson.loads(body)
        hospital_code, claim_id, status = raw["hospital_code"], raw["claim_id"], raw["status"]
        if not (isinstance(hospital_code, str) and isinstance(claim_id, str) and status in repo.STANDING):
            return None
        if status == "accepted":
            return None
        settled_at = settled_on = None
        total = fund_total = None
        if status in ("settled", "reversed") and raw.get("total") is not None:
            total, fund_total = Decimal(raw["total"]), Decimal(raw["fund_total"])
        if status == "settled" and raw.get("settled_at"):
            settled_at = dt.datetime.fromisoformat(raw["settled_at"])
            settled_on = settlement_day(settled_at)
        code = (raw.get("rejection") or {}).get("code") if status == "rejected" else None
        return repo.Answer(hospital_code, claim_id, status, repo.standing(status, code), body,
                           settled_at, settled_on, total, fund_total)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation, AttributeError):
        return None


class Delivered:
    """An answer told to a waiting request: its body, when this process read it
    (``time.perf_counter``) and how long after the answer was put on the broker
    (the record's timestamp; ``None`` when it has none)."""

    __slots__ = ("body", "read_at", "read_lag_ms")

    def __init__(self, body: bytes, read_at: float, read_lag_ms: float | None) -> None:
        self.body, self.read_at, self.read_lag_ms = body, read_at, read_lag_ms


class Waiters:
    """Requests of this process waiting for their claim's answer."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], list[tuple[frozenset[str], asyncio.Future[Delivered]]]] = {}

    @contextlib.contextmanager
    def expect(self, hospital_code: str, claim_id: str, statuses: frozenset[str]) -> Any:
        future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        entry = (statuses, future)
        key = (hospital_code, claim_id)
        self._waiting.setdefault(key, []).append(entry)
        try:
            yield future
        finally:
            waiting = self._waiting.get(key, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._waiting.pop(key, None)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def deliver(self, answer: repo.Answer, put_at_ms: int | None = None) -> None:
        """Tell the requests waiting for ``answer`` (``put_at_ms``: its record's timestamp, Unix ms)."""
        waiting = self._waiting.get((answer.hospital_code, answer.claim_id))
        if not waiting:
            return
        read_at = time.perf_counter()
        lag = None if put_at_ms is None or put_at_ms < 0 else max(0.0, time.time() * 1000 - put_at_ms)
        for statuses, future in waiting:
            if answer.status in statuses and not future.done():
                future.set_result(Delivered(answer.body, read_at, lag))


# ------------------------------------------------------------------ the service


class Gateway:
    """The pool, the broker clients and the answers' reader of one gateway process."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.keys = HospitalKeys.from_settings(settings)
        self.waiters = Waiters()
        self.pool: asyncpg.Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task | None = None
        self._storing: asyncio.Future[None] | None = None  # the store of the batch just told to its waiters

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        settings = self.settings
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set: the gateway keeps its answers in PostgreSQL")
        self.pool = await create_pool(settings.database_url, SCHEMA, size=settings.db_pool_size)
        await migrate(self.pool, SCHEMA, MIGRATIONS)
        # a cashier waits on each claim: sent at once, not held for others to join it (linger)
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                         **{**settings.producer_options(), "linger_ms": 0},
                                         **settings.kafka_client_security())
        await self.producer.start()
        # a cashier waits on each answer: the broker answers the fetch at the first one
        options = {**settings.consumer_options(), "fetch_max_wait_ms": settings.gateway_fetch_max_wait_ms,
                   "fetch_min_bytes": 1}
        for group_only in ("session_timeout_ms", "heartbeat_interval_ms"):
            options.pop(group_only, None)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                         **options, **settings.kafka_client_security())
        await self.consumer.start()
        await self._assign()
        self._reader = asyncio.create_task(self._read_answers())
        log.info("gateway_started", hospitals=len(self.keys))

    async def _assign(self) -> None:
        assert self.consumer is not None and self.producer is not None and self.pool is not None
        # the producer asks for the topic's metadata (Apache Kafka tells a consumer of no topics nothing)
        try:
            partitions = await asyncio.wait_for(self.producer.partitions_for(topics.SETTLEMENTS), 20)
        except asyncio.TimeoutError:
            partitions = set()
        if not partitions:
            raise RuntimeError(f"topic {topics.SETTLEMENTS} not found")
        assigned = [TopicPartition(topics.SETTLEMENTS, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        async with self.pool.acquire() as c:
            done = await repo.offsets(c)
        for tp in assigned:
            if tp.partition in done:
                self.consumer.seek(tp, done[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 10)
        if self.pool is not None:
            await self.pool.close()

    async def _read_answers(self) -> None:
        assert self.consumer is not None and self.pool is not None
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=1000, max_records=self.settings.consumer_max_records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker away for a while: keep reading
                log.warning("answers_not_read", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            self._pace()
            if not batch:
                continue
            answers: list[repo.Answer] = []
            offsets: dict[int, int] = {}
            for tp, records in batch.items():
                for record in records:
                    answer = answer_of(record.value or b"")
                    if answer is None:
                        log.warning("answer_unreadable", partition=tp.partition, offset=record.offset)
                    else:
                        answers.append(answer)
                        # the cashier is told now; the store below is for GET, 对账 and restarts
                        self.waiters.deliver(answer, record.timestamp)
                offsets[tp.partition] = records[-1].offset + 1
            self._storing = asyncio.get_running_loop().create_future()
            try:
                async with self.pool.acquire() as c:
                    await repo.save_answers(c, answers, offsets)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - read again from the batch's start
                log.warning("answers_not_stored", error=repr(exc))
                for tp, records in batch.items():
                    self.consumer.seek(tp, records[0].offset)
                await asyncio.sleep(0.5)
            finally:
                self._storing.set_result(None)
                self._storing = None

    def _pace(self) -> None:
        """How long the reader's next fetch may be held: GATEWAY_FETCH_MAX_WAIT_MS while a
        request waits (a cashier at the counter), else FETCH_MAX_WAIT_MS, as every service's
        consumer (polling every 5 ms for no one cost the broker and this process CPU that the
        pipeline needs). Set on aiokafka's fetcher, which reads it for each fetch request; were
        that attribute gone, the reader would keep the short wait it was built with."""
        fetcher = getattr(self.consumer, "_fetcher", None)
        if hasattr(fetcher, "_fetch_max_wait_ms"):
            settings = self.settings
            fetcher._fetch_max_wait_ms = (  # type: ignore[union-attr]
                settings.gateway_fetch_max_wait_ms if self.waiters else max(settings.fetch_max_wait_ms,
                                                                            settings.gateway_fetch_max_wait_ms))

    async def _stored(self) -> None:
        """Wait for the store of the answers this process has just told (if any)."""
        storing = self._storing
        if storing is not None:
            await asyncio.shield(storing)

    # ----------------------------------------------------------- requests

    @property
    def reading(self) -> bool:
        """Whether answers are being learnt (a waiting request can be answered)."""
        return self._reader is not None and not self._reader.done()

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the gateway is not started"
        return self.pool

    async def submit(self, hospital_code: str, body: bytes, wait: float,
                     timing: Timing | None = None) -> tuple[int, bytes | dict[str, Any]]:
        """A claim of ``hospital_code``: (200, its answer) or (202, accepted); ``timing``
        gets when it was produced and answered."""
        raw = _object_with_ids(body)
        if raw.get("hospital_code") != hospital_code:
            raise Refused(403, "FORBIDDEN",
                          f"报文的 hospital_code 须为调用方 {hospital_code}，不能代其他医疗机构提交")
        claim_id = raw["claim_id"]
        # The rest of the claim is eligibility's to check: a claim with fields missing or
        # ill-typed comes back as its INVALID_MESSAGE rejection, as it does on Kafka.
        statuses = ANSWERS_TO.get(raw.get("type"), REJECTED)  # type: ignore[arg-type]
        key = self.keys.signing_key(hospital_code)
        assert key is not None  # the caller's signature was checked with it
        assert self.producer is not None
        with self.waiters.expect(hospital_code, claim_id, statuses) as answered:
            self._pace()
            await self.producer.send_and_wait(topics.CLAIMS, body, key=claim_id.encode(),
                                              headers=[(KAFKA_SIGNATURE_HEADER, signature(key, body).encode())])
            if timing is not None:
                timing.mark("produce")
            try:
                async with asyncio.timeout(wait):  # awaited directly: woken in one step when the reader sets it
                    delivered: Delivered = await answered
            except TimeoutError:
                pass
            else:
                if timing is not None:
                    timing.answered(delivered)
                return 200, delivered.body
        # Not answered yet: known as accepted from now on (an answer, stored by the
        # reader, is never overwritten by this), so that GET finds it and says so.
        async with self.db.acquire() as c:
            await repo.accept(c, hospital_code, claim_id)
        return 202, {"claim_id": claim_id, "status": "accepted"}

    async def claim(self, hospital_code: str, claim_id: str) -> repo.StoredClaim | None:
        await self._stored()
        async with self.db.acquire() as c:
            return await repo.claim(c, hospital_code, claim_id)

    async def reconcile(self, hospital_code: str, body: bytes) -> Reconciliation:
        try:
            request = ReconciliationRequest.model_validate_json(body)
        except ValidationError as exc:
            raise Refused(400, "INVALID_MESSAGE", _describe(exc)) from None
        if request.from_ > request.to:
            raise Refused(400, "INVALID_MESSAGE", "from 不能晚于 to")
        if request.claims is not None and len({c.claim_id for c in request.claims}) != len(request.claims):
            raise Refused(400, "INVALID_MESSAGE", "claims 中有重复的 claim_id")
        await self._stored()
        async with self.db.acquire() as c:
            ours = await repo.settled_between(c, hospital_code, request.from_, request.to)
        return reconcile(hospital_code, request, ours)


def _object_with_ids(body: bytes) -> dict[str, Any]:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "INVALID_MESSAGE", f"请求体不是 UTF-8 JSON：{exc}") from None
    if not isinstance(raw, dict):
        raise Refused(400, "INVALID_MESSAGE", "请求体须为 JSON 对象")
    for field in ("claim_id", "hospital_code"):
        value = raw.get(field)
        if not isinstance(value, str) or not _ID.match(value):
            raise Refused(400, "INVALID_MESSAGE",
                          f"{field}: 必填，1 至 64 位字母、数字、点、下划线或连字符")
    return raw


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


# ------------------------------------------------------------------ HTTP


Format = Literal["national"] | None
"""``?format=national``: the answer under the national platform's names."""


class Timing:
    """Where a request's time went inside this process, for its ``Server-Timing``
    header (ms): ``sign`` the body read and the signature checked, ``produce`` the
    claim on his.claims (the broker's acknowledgement), ``answer`` until the reader
    read its answer, ``read`` how long after the answer was put on his.settlements
    the reader read it (part of ``answer``), ``wake`` from then until the request ran
    again, ``gateway`` the whole (up to the response, not its writing)."""

    __slots__ = ("started", "last", "parts")

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.parts: list[tuple[str, float]] = []

    def mark(self, name: str, at: float | None = None) -> None:
        at = time.perf_counter() if at is None else at
        self.parts.append((name, (at - self.last) * 1000))
        self.last = at

    def answered(self, delivered: Delivered) -> None:
        self.mark("answer", delivered.read_at)
        if delivered.read_lag_ms is not None:
            self.parts.append(("read", delivered.read_lag_ms))
        self.mark("wake")

    def header(self) -> str:
        parts = [*self.parts, ("gateway", (time.perf_counter() - self.started) * 1000)]
        return ", ".join(f"{name};dur={ms:.2f}" for name, ms in parts)


class Caller:
    """A request whose signature checked: its hospital, its body and its timing."""

    def __init__(self, hospital_code: str, body: bytes, timing: Timing | None = None) -> None:
        self.hospital_code, self.body, self.timing = hospital_code, body, timing


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_MESSAGE_BYTES:
        raise Refused(400, "INVALID_MESSAGE", f"请求体 {declared} 字节，超过 {MAX_MESSAGE_BYTES} 字节的上限")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise Refused(400, "INVALID_MESSAGE", f"请求体超过 {MAX_MESSAGE_BYTES} 字节的上限")
        chunks.append(chunk)
    return b"".join(chunks)


def _path_with_query(request: Request) -> str:
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def create_app(settings: Settings | None = None, *, gateway: Gateway | None = None) -> FastAPI:
    settings = settings or Settings()
    gateway = gateway or Gateway(settings)
    app = FastAPI(
        title="One-stop settlement: hospital HTTP API",
        version="1",
        description="CONTRACT.md §8 (claims) and §9 (reconciliation). Every request is signed: "
                    f"{HOSPITAL_HEADER}, {TIMESTAMP_HEADER} (Unix seconds, within 300 s) and {SIGNATURE_HEADER} "
                    "= lowercase hex HMAC-SHA256(key, timestamp + \"\\n\" + method + \"\\n\" + path with query + "
                    "\"\\n\" + body).",
        lifespan=gateway.lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway

    async def signed(request: Request) -> Caller:
        timing = Timing()
        body = await _body(request)
        code = request.headers.get(HOSPITAL_HEADER)
        why = refusal(gateway.keys, code, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER),
                      request.method, _path_with_query(request), body, gateway.clock())
        if why is not None:
            raise Refused(401, "INVALID_SIGNATURE", why)
        assert code is not None
        timing.mark("sign")
        return Caller(code, body, timing)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> Response:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        return _error(400, "INVALID_MESSAGE", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(KafkaError)
    async def broker_down(_: Request, exc: KafkaError) -> Response:
        log.warning("gateway_broker_unavailable", error=repr(exc))
        return _error(503, "UNAVAILABLE", "结算平台暂时不可用，请稍后用同一单据号重新提交")

    for kind in INFRASTRUCTURE_ERRORS:
        app.add_exception_handler(kind, _unavailable)  # type: ignore[arg-type]

    errors = {status: {"model": ApiError, "description": text} for status, text in (
        (400, "INVALID_MESSAGE: the body is over 512 KiB, not a JSON object, or without claim_id / hospital_code "
              "(or a query parameter is wrong)"),
        (401, "INVALID_SIGNATURE: signature missing or wrong, no key for the hospital, timestamp over 300 s off"),
        (503, "UNAVAILABLE: the broker or the database did not answer; send the same claim again later"),
    )}
    accepted = {"model": Accepted, "description": "not answered within `wait`: GET the `Location` later",
                "headers": {"Location": {"schema": {"type": "string"}, "description": "/v1/claims/{claim_id}"}}}
    @app.post(
        "/v1/claims",
        summary="Send a claim (settle, trial or cancel) and wait for its answer",
        responses={
            200: {"model": SettlementResult, "description": "the his.settlements answer (a rejection too: status "
                                                            "rejected); with format=national, national names"},
            202: accepted,
            403: {"model": ApiError, "description": "FORBIDDEN: the claim's hospital_code is not the caller's"},
            **errors,
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ClaimMessage"}}}}},
    )
    async def post_claim(
        caller: Caller = Depends(signed),
        wait: float = Query(DEFAULT_WAIT_SECONDS, ge=0, allow_inf_nan=False,
                            description="seconds to wait for the answer; at most 30 (more waits 30)"),
        answer_format: Format = Query(None, alias="format", description="national: the national platform's names"),
    ) -> Response:
        timing = caller.timing
        status, answer = await gateway.submit(caller.hospital_code, caller.body, min(wait, MAX_WAIT_SECONDS), timing)
        if status == 202:
            assert isinstance(answer, dict)
            return _json(answer, 202, {"Location": f"/v1/claims/{answer['claim_id']}"})
        assert isinstance(answer, bytes)
        headers = {"Server-Timing": timing.header()} if timing is not None else None
        return _json(national(orjson.loads(answer)) if answer_format == "national" else answer, headers=headers)

    @app.get(
        "/v1/claims/{claim_id}",
        summary="The latest answer to one of the caller's claims",
        responses={
            200: {"model": SettlementResult, "description": "the latest his.settlements answer of the caller's claim"},
            202: accepted,
            404: {"model": ApiError, "description": "CLAIM_NOT_FOUND: the caller has no such claim"},
            **errors,
        },
    )
    async def get_claim(
        claim_id: str,
        caller: Caller = Depends(signed),
        answer_format: Format = Query(None, alias="format", description="national: the national platform's names"),
    ) -> Response:
        stored = await gateway.claim(caller.hospital_code, claim_id)
        if stored is None:
            raise Refused(404, "CLAIM_NOT_FOUND", f"医疗机构 {caller.hospital_code} 没有单据 {claim_id[:64]}")
        if stored.answer is None:
            return _json({"claim_id": claim_id, "status": "accepted"}, 202,
                         {"Location": f"/v1/claims/{quote(claim_id, safe='')}"})
        return _json(national(orjson.loads(stored.answer)) if answer_format == "national" else stored.answer)

    @app.post(
        "/v1/reconciliations",
        summary="对账: the caller's books for a period against the platform's",
        response_model=Reconciliation,
        responses=errors,  # type: ignore[arg-type]
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ReconciliationRequest"}}}}},
    )
    async def post_reconciliation(caller: Caller = Depends(signed)) -> Response:
        answer = await gateway.reconcile(caller.hospital_code, caller.body)
        return _json(answer.model_dump(mode="json", by_alias=True))

    @app.get("/health", summary="Whether this process can reach its database (public)", include_in_schema=False)
    async def health() -> Response:
        try:
            if not gateway.reading:
                raise RuntimeError("the reader of his.settlements has stopped")
            async with gateway.db.acquire() as c:
                await c.fetchval("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return _json({"service": "gateway", "status": "down", "error": repr(exc)}, 503)
        return _json({"service": "gateway", "status": "ok"})

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _unavailable(_: Request, exc: Exception) -> Response:
    log.warning("gateway_database_unavailable", error=repr(exc))
    return _error(503, "UNAVAILABLE", "结算平台暂时不可用，请稍后用同一单据号重新提交")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the bodies the handlers read themselves (so that a
    bad body gets §8's answer, not FastAPI's 422), the signature and the national form."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    ref = "#/components/schemas/{model}"
    for name, adapter, mode in (("ClaimMessage", CLAIM_MESSAGE, "validation"),
                                ("ReconciliationRequest", TypeAdapter(ReconciliationRequest), "validation"),
                                ("NationalSettlement", TypeAdapter(NationalSettlement), "serialization")):
        schema = adapter.json_schema(ref_template=ref, mode=mode)  # type: ignore[arg-type]
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = {
        name: {"type": "apiKey", "in": "header", "name": header, "description": text}
        for name, header, text in (
            ("HospitalCode", HOSPITAL_HEADER, "the calling hospital's code"),
            ("Timestamp", TIMESTAMP_HEADER, "Unix time in seconds, at most 300 s from the server's clock"),
            ("Signature", SIGNATURE_HEADER, "lowercase hex HMAC-SHA256(key, timestamp\\nMETHOD\\npath?query\\nbody)"),
        )
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            operation.get("responses", {}).pop("422", None)
            operation["security"] = [{"HospitalCode": [], "Timestamp": [], "Signature": []}]
            ok = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json")
            if path.startswith("/v1/claims") and ok is not None:
                ok["schema"] = {"anyOf": [ok["schema"], {"$ref": "#/components/schemas/NationalSettlement"}]}
            del method
    app.openapi_schema = document
    return document


def run(settings: Settings | None = None) -> None:
    """``python -m services.gateway``."""
    import uvicorn

    from medsettle.logs import configure_logging
    from medsettle.process import event_loop_factory, tune_garbage_collector

    settings = settings or Settings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    config = uvicorn.Config(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                            log_level="warning", access_log=False, lifespan="on", http="httptools")
    server = uvicorn.Server(config)

    async def serve() -> None:
        tune_garbage_collector(settings.gc_threshold)
        await server.serve()

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve())
