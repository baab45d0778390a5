"""A service's own small HTTP server: ``/metrics`` (Prometheus), ``/health``,
and whatever routes the service adds (its operator API).

Every route but ``/health`` and ``/metrics`` is an operator route, guarded
here, in one place (``OperatorAccess``), so that no service can add one that
is open by mistake:

- no credentials, or wrong ones: ``401``; too many wrong passwords: ``429``;
- reading (``GET``, ``HEAD``) needs a viewer, anything else an operator
  (a viewer gets ``403``);
- every action is written to the service's ``operator_audit`` table before it
  runs (an action that cannot be recorded is answered ``503`` and does not
  run) and its outcome after; the handler finds the caller in
  ``request.state.principal``.

``/health`` and ``/metrics`` stay open: Prometheus and the orchestrator read
them, and they hold no person's data (counters per service, topic and
partition; ``tests/security`` checks them for names and identity numbers).
In compose they are reachable only on the services' own network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import structlog
import uvicorn
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medsettle import operator_audit
from medsettle.access import OperatorGuard, Principal, Refused
from medsettle.logs import mask_identities

log = structlog.get_logger()

PUBLIC_PATHS = ("/health", "/metrics")
READING = ("GET", "HEAD")
MAX_BODY = 64 * 1024


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json",
                    headers=headers)


def _public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def _what(method: str, path: str, body: bytes) -> tuple[str, str | None, dict[str, Any]]:
    """The action, its target and what the request said about it (masked)."""
    segments = [s for s in path.split("/") if s]
    target = segments[1] if len(segments) > 1 else None
    detail: dict[str, Any] = {}
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {}
    if isinstance(parsed, dict):
        detail = {k: parsed[k] for k in ("decision", "reason") if isinstance(parsed.get(k), str)}
        detail = mask_identities(None, "", {k: v[:500] for k, v in detail.items()})
    last = segments[-1] if segments else ""
    action = detail.get("decision") or (last if len(segments) > 2 and not last.isdigit() else method)
    return str(action), target, detail


class OperatorAccess:
    """ASGI middleware: credentials, roles and the audit log of every operator route."""

    def __init__(self, app: ASGIApp, *, service: str, guard: OperatorGuard,
                 pool: Callable[[], asyncpg.Pool | None]) -> None:
        self.app = app
        self.service = service
        self.guard = guard
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        address = scope["client"][0] if scope.get("client") else None
        try:
            principal = self.guard.principal(headers.get("authorization"), headers.get("x-on-behalf-of"), address)
        except Refused as refused:
            extra = ({"www-authenticate": 'Basic realm="medsettle operator API", charset="UTF-8"'}
                     if refused.status == 401 else {"retry-after": str(max(1, round(refused.retry_after)))})
            log.warning("operator_api_refused", path=scope["path"], status=refused.status, address=address)
            await _refusal(refused.status, refused.message, extra)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        method = scope["method"]
        if method in READING:
            await self.app(scope, receive, send)
            return
        if not principal.may_act:
            log.warning("operator_action_refused", user=principal.name, role=principal.role, path=scope["path"])
            message = (f"无权操作：用户 {principal.name} 的角色为只读（viewer），"
                       "此操作需要经办员（operator）权限")
            await _refusal(403, message)(scope, receive, send)
            return
        await self._act(principal, scope, receive, send, address)

    async def _act(self, principal: Principal, scope: Scope, receive: Receive, send: Send,
                   address: str | None) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await _refusal(413, f"请求体超过 {MAX_BODY} 字节")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        action, target, detail = _what(scope["method"], scope["path"], body)
        pool = self.pool()
        try:
            if pool is None:
                raise RuntimeError("no database")
            async with pool.acquire() as c:
                entry = await operator_audit.begin(
                    c, service=self.service, principal=principal.name, role=principal.role, via=principal.via,
                    action=action, target=target, method=scope["method"], path=scope["path"], detail=detail,
                    address=address)
        except Exception as exc:  # noqa: BLE001 - answered: an action that is not recorded does not run
            log.error("operator_audit_unavailable", error=repr(exc), path=scope["path"])
            await _refusal(503, "审计日志暂不可写，操作未执行，请稍后重试")(scope, receive, send)
            return
        log.info("operator_action", user=principal.name, role=principal.role, via=principal.via, action=action,
                 target=target, audit_id=entry)
        replayed = False

        async def body_once() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, body_once, watch)
        finally:
            try:
                async with pool.acquire() as c:
                    await operator_audit.finish(c, entry, status)
            except Exception as exc:  # noqa: BLE001 - the entry stays, with no outcome
                log.error("operator_audit_outcome_not_written", audit_id=entry, error=repr(exc))


class ServiceHttp:
    def __init__(self, name: str, host: str, port: int, health: Callable[[], Awaitable[dict]],
                 routes: Sequence[BaseRoute] = (), *, settings: Any = None, pool: asyncpg.Pool | None = None,
                 guard: OperatorGuard | None = None) -> None:
        """``guard``: who may call the operator routes (default: ``DASHBOARD_USERS`` and
        ``OPERATOR_API_TOKEN`` of ``settings``); ``pool``: the service's pool, whose schema
        gets the audit log (no pool: reading works, every action is refused)."""
        async def health_route(_: Request) -> JSONResponse:
            try:
                body = await health()
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                return JSONResponse({"service": name, "status": "down", "error": repr(exc)}, status_code=503)
            ok = body.get("status") == "ok"
            return JSONResponse({"service": name, **body}, status_code=200 if ok else 503)

        if guard is None:
            if settings is None:
                from medsettle.settings import Settings

                settings = Settings()
            guard = OperatorGuard.from_settings(settings)
        self.name = name
        self.pool = pool
        self.app = Starlette(routes=[Route("/health", health_route), Mount("/metrics", make_asgi_app()), *routes])
        guarded = OperatorAccess(self.app, service=name, guard=guard, pool=lambda: self.pool)
        self.server = uvicorn.Server(uvicorn.Config(guarded, host=host, port=port,
                                                    log_level="warning", lifespan="off"))
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self.pool is not None:
            from medsettle.db import migrate

            await migrate(self.pool, self.name, operator_audit.MIGRATIONS)
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(100):
            if self.server.started:
                return
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


async def wait_healthy(url: str, timeout: float = 60.0, *, alive: Callable[[], None] | None = None,
                       every: float = 0.1) -> None:
    """Wait until the server at ``url`` answers ``/health`` with 200; ``alive``
    (called before each try) raises when the process behind it has exited."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if alive is not None:
                alive()
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(every)
    raise TimeoutError(f"{url} did not answer /health with 200 in {timeout:.0f} s")
