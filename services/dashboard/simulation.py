"""The dashboard's page 方案测算 (policy simulation), at ``/simulation``.

- ``GET /api/simulation/options``: the candidate files of the folder
  ``SIMULATION_POLICY_DIR`` (default: ``POLICY_DIR``) and the regions and
  years whose claims can be replayed (the policies in force).
- ``POST /api/simulation/run`` ``{"file", "region", "year", "threshold"}``:
  simulates a candidate of that folder (any logged-in user: it reads only).
- ``POST /api/simulation/upload`` ``{"filename", "content", "region", "year",
  "threshold"}``: simulates an uploaded candidate (operators only); it is
  validated as a policy file and not kept.

A refused candidate is answered 400 with the file, the field and the reason
(``medsettle.policy.load_policy``). One simulation runs at a time (409
otherwise): each takes both cores for as long as the year's claims need.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from medsettle.policy import PolicyBook, PolicyError, load_policy
from medsettle.settings import Settings
from services.simulation.runner import Request as SimulationRequest
from services.simulation.runner import SimulationError, simulate

log = structlog.get_logger()

PAGE = Path(__file__).with_name("static") / "simulation.html"
_FILE_NAME = re.compile(r"^[0-9A-Za-z]+-[0-9]{4}\.yaml$")
MAX_UPLOAD = 256 * 1024


class SimulationSettings(BaseSettings):
    """The page's own settings (environment variables of the same names)."""

    model_config = SettingsConfigDict(extra="ignore")

    simulation_policy_dir: Path | None = Field(None, description="folder of candidate policy files; unset: POLICY_DIR")
    simulation_workers: int = Field(0, description="worker processes of a simulation (0: one per CPU)")


class Refused(ValueError):
    def __init__(self, message: str, status: int = 400, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details or []


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class SimulationPage:
    def __init__(self, settings: Settings, page_settings: SimulationSettings | None = None) -> None:
        self.settings = settings
        own = page_settings or SimulationSettings()
        self.folder = own.simulation_policy_dir or settings.policy_dir
        self.workers = own.simulation_workers
        self.running = asyncio.Lock()

    def options(self) -> dict[str, Any]:
        files = []
        for path in sorted(self.folder.glob("*.yaml")):
            try:
                policy = load_policy(path)
                files.append({"file": path.name, "policy": policy.policy, "name": policy.name, "error": None})
            except PolicyError as exc:
                files.append({"file": path.name, "policy": None, "name": "", "error": str(exc)})
        live = [{"region": p.region, "year": p.year, "policy": p.policy, "name": p.name}
                for p in PolicyBook(self.settings.policy_dir).all()]
        return {"folder": str(self.folder), "candidates": files, "claims_of": live}

    @staticmethod
    def _choice(body: dict[str, Any]) -> tuple[str, int, Decimal]:
        region, year, threshold = body.get("region"), body.get("year"), body.get("threshold", "100")
        if not isinstance(region, str) or not region.isalnum():
            raise Refused("region：请选择统筹区")
        try:
            year = int(year)  # type: ignore[arg-type]
            threshold = Decimal(str(threshold))
        except (TypeError, ValueError, InvalidOperation):
            raise Refused("year / threshold：年度须为整数，变化额须为金额") from None
        if not threshold.is_finite() or threshold < 0:
            raise Refused("threshold：变化额须为非负金额")
        return region, year, threshold

    async def _run(self, path: Path, body: dict[str, Any]) -> dict[str, Any]:
        region, year, threshold = self._choice(body)
        try:
            candidate = load_policy(path)
        except PolicyError as exc:
            raise Refused("候选方案校验未通过", details=str(exc).splitlines()) from None
        if self.running.locked():
            raise Refused("已有一个测算在运行，请稍后再试", 409)
        async with self.running:
            request = SimulationRequest(region=region, year=year, candidate=candidate, change_threshold=threshold,
                                        workers=self.workers)
            try:
                return await simulate(self.settings.database_url or "", request, policy_dir=self.settings.policy_dir)
            except SimulationError as exc:
                raise Refused(str(exc)) from None

    async def run_file(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("file")
        if not isinstance(name, str) or name not in {p.name for p in self.folder.glob("*.yaml")}:
            raise Refused(f"file：候选方案目录中没有文件 {str(name)[:80]}")
        return await self._run(self.folder / name, body)

    async def run_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        name, content = body.get("filename"), body.get("content")
        if not isinstance(name, str) or not _FILE_NAME.match(name):
            raise Refused("filename：方案文件须命名为 统筹区-年度.yaml，如 340421-2025.yaml")
        if not isinstance(content, str) or len(content.encode()) > MAX_UPLOAD:
            raise Refused(f"content：须为不超过 {MAX_UPLOAD // 1024} KiB 的 YAML 文本")
        with tempfile.TemporaryDirectory(prefix="candidate-") as folder:
            path = Path(folder) / name
            path.write_text(content, encoding="utf-8")
            try:
                return await self._run(path, body)
            except Refused as exc:  # name the file as the operator knows it, not the temporary folder
                exc.details = [line.replace(str(path), name) for line in exc.details]
                raise


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise Refused("请求体须为 JSON 对象") from None
    if not isinstance(body, dict):
        raise Refused("请求体须为 JSON 对象")
    return body


def routes(settings: Settings, viewer: Callable, operator: Callable,
           is_logged_in: Callable[[Request], bool]) -> list[Route]:
    """The page's routes; ``viewer`` and ``operator`` are the dashboard's guards."""
    page = SimulationPage(settings)

    def answering(work: Callable) -> Callable:
        async def handler(request: Request, user: Any) -> Response:
            try:
                report = await work(await _body(request))
            except Refused as exc:
                return _json({"error": str(exc), "details": exc.details}, exc.status)
            log.info("simulation_run", user=user.name, candidate=report["candidate"]["policy"],
                     region=report["region"], year=report["year"], claims=report["claims"])
            return _json(report)
        handler.__name__ = work.__name__
        return handler

    async def show(request: Request) -> Response:
        if not is_logged_in(request):
            return RedirectResponse("/login", status_code=303)
        return FileResponse(PAGE, headers={"cache-control": "no-store"})

    async def options(_: Request, __: Any) -> Response:
        return JSONResponse(page.options())

    run = answering(page.run_file)
    upload = answering(page.run_upload)

    async def run_json(request: Request, user: Any) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _json({"error": "请以 application/json 提交"}, 415)
        return await run(request, user)

    return [
        Route("/simulation", show),
        Route("/api/simulation/options", viewer(options)),
        Route("/api/simulation/run", viewer(run_json), methods=["POST"]),
        Route("/api/simulation/upload", operator(upload), methods=["POST"]),
    ]
