"""A service's own small HTTP server: ``/metrics`` (Prometheus), ``/health``,
and whatever routes the service adds (its operator API)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route


class ServiceHttp:
    def __init__(self, name: str, host: str, port: int, health: Callable[[], Awaitable[dict]],
                 routes: Sequence[BaseRoute] = ()) -> None:
        async def health_route(_: Request) -> JSONResponse:
            try:
                body = await health()
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                return JSONResponse({"service": name, "status": "down", "error": repr(exc)}, status_code=503)
            ok = body.get("status") == "ok"
            return JSONResponse({"service": name, **body}, status_code=200 if ok else 503)

        self.app = Starlette(routes=[Route("/health", health_route), Mount("/metrics", make_asgi_app()), *routes])
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port,
                                                    log_level="warning", lifespan="off"))
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(100):
            if self.server.started:
                return
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
