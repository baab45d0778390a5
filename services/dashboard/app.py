"""The operator dashboard: a Starlette app on DASHBOARD_PORT.

Pages: ``/login`` and ``/`` (the dashboard, which polls the JSON endpoints
every few seconds). JSON: ``/api/pipeline``, ``/api/funds``,
``/api/claims/{claim_id}``, ``/api/clearing`` (and ``/api/clearing.csv``);
operators only: ``POST /api/reviews/{claim_id}``,
``POST /api/dead-letters/{id}/replay`` and ``POST /api/clearing/close``
(clearing: ``clearing.py``). ``/health`` and ``/metrics`` are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import secrets
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import orjson
import structlog
from prometheus_client import Counter, Gauge, make_asgi_app
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from medsettle import db
from medsettle.contract import LEVEL_NAMES
from medsettle.db import INFRASTRUCTURE_ERRORS
from medsettle.policy import PolicyBook, scheme_of
from medsettle.runtime import now
from medsettle.settings import Settings
from services.dashboard import clearing as clearing_
from services.dashboard import repository as repo
from services.dashboard import simulation
from services.dashboard.auth import LoginThrottle, SecureCookiesOverHttps, User, Users, without_categories
from services.dashboard.figures import (
    average,
    budget_lines,
    level_order,
    money,
    payout_bands,
    percent,
    share_of_year_gone,
)
from services.dashboard.upstream import Upstream

log = structlog.get_logger()

STATIC = Path(__file__).with_name("static")
ACTIONS = Counter("dashboard_operator_actions_total", "operator actions taken on the dashboard", ["action", "outcome"])
# The funds as Prometheus (and so Grafana) sees them, refreshed in the background.
FUND_SPENT = Gauge("dashboard_fund_spent_yuan", "spent this year by a fund under a policy (settled one-bills)",
                   ["policy", "fund"])
FUND_BUDGET = Gauge("dashboard_fund_budget_yuan", "annual budget of a fund under a policy", ["policy", "fund"])
FUND_SHARE = Gauge("dashboard_fund_spent_share_percent", "share of the annual budget spent", ["policy", "fund"])
FUND_WARNING = Gauge("dashboard_fund_warning", "1 when a fund's spend runs ahead of the year or over budget",
                     ["policy", "fund"])
YEAR_GONE = Gauge("dashboard_year_elapsed_percent", "share of the year gone")
PENDING_REVIEWS = Gauge("dashboard_pending_reviews", "injury claims waiting for an operator")
STUCK_CLAIMS = Gauge("dashboard_stuck_claims", "accepted claims with no one-bill after the stuck threshold")
REFRESH_SECONDS = 15.0
SESSION_SECONDS = 8 * 3600


class BadRequest(ValueError):
    """A query parameter that cannot be used; the message says which."""


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _int_param(request: Request, name: str, *, default: int | None = None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"参数 {name} 应为整数，收到 {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"参数 {name} 应在 {low}–{high} 之间，收到 {value}")
    return value


class Dashboard:
    """What the pages show, read from the database and the other services."""

    def __init__(self, settings: Settings, *, clock: Callable[[], dt.datetime] = now,
                 upstream: Upstream | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.users = Users(settings.dashboard_users, development=settings.dashboard_development_users)
        self.throttle = LoginThrottle(settings.login_throttle_failures, settings.login_throttle_seconds)
        self.policies = PolicyBook(settings.policy_dir, on_error=lambda e: log.error("policy_file_refused", error=e))
        self.upstream = upstream or Upstream(
            eligibility_url=settings.eligibility_api_url,
            operations_url=settings.operations_api_url,
            metrics_urls=settings.service_metrics_urls, service_token=settings.operator_api_token,
        )
        self.pool: asyncpg.Pool | None = None
        self.clearing_pool: asyncpg.Pool | None = None  # the only writes: closing a clearing month
        self.payout_bands = payout_bands(settings.dashboard_payout_bands)
        self.clearing_close_day = settings.clearing_close_day

    async def start(self) -> None:
        if not self.settings.database_url:
            raise RuntimeError("DATABASE_URL is not set (make run sets it to the embedded server)")
        if not self.users.names:  # nobody could sign in: a configuration mistake, said at once
            raise RuntimeError("DASHBOARD_USERS has no users (python -m services.dashboard hash-password makes one)")
        self.clearing_pool = await db.create_pool(self.settings.database_url, clearing_.SCHEMA, size=1)
        await db.migrate(self.clearing_pool, clearing_.SCHEMA, clearing_.MIGRATIONS)
        self.pool = await repo.create_pool(self.settings.database_url, size=self.settings.dashboard_pool_size)
        if self.users.development:
            log.warning("dashboard_development_users", users=self.users.names,
                        note="DASHBOARD_USERS is not set: the development pair of services/dashboard/README.md applies")

    async def stop(self) -> None:
        await self.upstream.close()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self.clearing_pool is not None:
            await self.clearing_pool.close()
            self.clearing_pool = None

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the dashboard is not started"
        return self.pool

    # ------------------------------------------------------------ pipeline

    async def pipeline(self) -> dict[str, Any]:
        scrape = await self.upstream.scrape()
        dead = await self.upstream.dead_letters()
        body: dict[str, Any] = {"at": _iso(self.clock())}
        try:
            async with self.db.acquire() as c:
                flow = await repo.throughput(c)
                lat = await repo.latency(c)
                stuck_after = self.settings.dashboard_stuck_after_seconds
                stuck_count, stuck = await repo.stuck_claims(c, after_seconds=stuck_after)
                review_count, reviews = await repo.pending_reviews(c)
        except repo.MISSING_SCHEMA as exc:
            body["database"] = f"结算库尚未就绪：{exc}"
            flow, lat, stuck_count, stuck, review_count, reviews = (
                repo.Throughput(0, []), repo.Latency(0, None, None, "—"), 0, [], 0, [])
        else:
            body["database"] = "ok"
        body["throughput"] = {
            "per_second": money(Decimal(flow.last_minute) / 60),
            "last_minute": flow.last_minute,
            "bucket_seconds": 10,
            "series": [[_iso(t), n] for t, n in flow.series],
        }
        body["latency"] = {
            "count": lat.count, "window": lat.window,
            "p50_ms": None if lat.p50 is None else round(lat.p50 * 1000, 1),
            "p99_ms": None if lat.p99 is None else round(lat.p99 * 1000, 1),
        }
        body["lag"] = {
            "stages": [
                {"service": service, "lag": int(sum(topics.values())), "topics": {t: int(v) for t, v in topics.items()}}
                for service, topics in sorted(scrape.lag.items())
            ],
            "unreachable": scrape.unreachable,
        }
        if dead.ok:
            items = dead.body or []
            body["dead_letters"] = {"source": "operations", "count": sum(1 for d in items if d["status"] != "replayed"),
                                    "listed": len(items), "items": items[:50], "error": None}
        else:
            body["dead_letters"] = {"source": "metrics", "count": int(sum(scrape.dead_letters.values())),
                                    "listed": 0, "items": [], "error": dead.error}
        body["stuck"] = {"count": stuck_count, "after_seconds": self.settings.dashboard_stuck_after_seconds,
                         "items": [_waiting(w) for w in stuck]}
        body["reviews"] = {"count": review_count, "items": [_waiting(w) for w in reviews]}
        return body

    # --------------------------------------------------------------- funds

    def _years(self, with_bills: list[int]) -> list[int]:
        return sorted({p.year for p in self.policies.all()} | set(with_bills))

    def default_year(self, years: list[int]) -> int:
        this_year = self.clock().year
        if not years or this_year in years:
            return this_year
        past = [y for y in years if y <= this_year]
        return max(past) if past else min(years)

    async def funds(self, year: int | None, policy: str | None) -> dict[str, Any]:
        async with self.db.acquire() as c:
            years = self._years(await repo.years_with_bills(c))
            year = year or self.default_year(years)
            spend = {s.policy: s for s in await repo.spend_by_policy(c, year)}
            levels = await repo.ratio_by_level(c, year, policy)
            bands = await repo.serious_illness_bands(c, year, policy, self.payout_bands)
            hospitals = await repo.by_hospital(c, year, policy)
            names = await repo.hospital_names(c, [h.hospital_code for h in hospitals])

        today = self.clock().date()
        elapsed = share_of_year_gone(today, year)
        configured = {}  # per scheme (region-year), its latest revision: the year's budgets and name
        for found in sorted(self.policies.all(), key=lambda p: (p.in_force_from, p.revision)):
            if found.year == year:
                configured[scheme_of(found.policy)] = found
        policies = []
        totals_budget: dict[str, Decimal] = {}
        totals_spent: dict[str, Decimal] = {}
        for policy_id in sorted(set(configured) | set(spend)):
            found = configured.get(policy_id)
            budgets = dict(found.budgets) if found else {}
            spent = spend[policy_id].funds if policy_id in spend else {}
            lines = budget_lines(policy_id, budgets, spent, elapsed)
            for line in lines:
                totals_spent[line.fund_code] = totals_spent.get(line.fund_code, Decimal(0)) + line.spent
                if line.budget:
                    totals_budget[line.fund_code] = totals_budget.get(line.fund_code, Decimal(0)) + line.budget
            policies.append({
                "policy": policy_id,
                "name": found.name if found else f"{policy_id}（无政策文件）",
                "claims": spend[policy_id].claims if policy_id in spend else 0,
                "lines": [line.as_json() for line in lines],
            })
        totals = budget_lines("合计", totals_budget, totals_spent, elapsed)

        total = sum((lv.total for lv in levels), Decimal(0))
        fund_total = sum((lv.fund_total for lv in levels), Decimal(0))
        return {
            "year": year,
            "years": years or [year],
            "today": today.isoformat(),
            "elapsed_share": money(elapsed),
            "policy": policy,
            "policies": policies,
            "totals": [line.as_json() for line in totals],
            "warnings": sum(1 for p in policies for line in p["lines"] if line["warning"]),
            "ratio": {
                "overall": {"claims": sum(lv.claims for lv in levels), "total": money(total),
                            "fund_total": money(fund_total), "ratio": money(percent(fund_total, total))},
                "by_level": [
                    {"level": lv.level, "level_name": LEVEL_NAMES.get(lv.level, lv.level), "claims": lv.claims,
                     "total": money(lv.total), "fund_total": money(lv.fund_total),
                     "ratio": money(percent(lv.fund_total, lv.total))}
                    for lv in sorted(levels, key=lambda lv: level_order(lv.level))
                ],
            },
            "serious_illness": [
                {"band": label, "count": band.count, "amount": money(band.amount)}
                for (label, _, _), band in zip(self.payout_bands, bands, strict=True)
            ],
            "hospitals": [
                {"hospital_code": h.hospital_code, "name": names.get(h.hospital_code, ""), "level": h.level,
                 "level_name": LEVEL_NAMES.get(h.level, h.level), "claims": h.claims, "admissions": h.admissions,
                 "total": money(h.total), "fund_total": money(h.fund_total),
                 "average_per_admission": money(average(h.inpatient_total, h.admissions)),
                 "ratio": money(percent(h.fund_total, h.total))}
                for h in hospitals
            ],
        }

    # ------------------------------------------------------------ clearing

    async def clearing(self, year: int, month: int | None) -> tuple[bytes, bytes]:
        """A month's statement (or the year's, month by month) as JSON and CSV bytes."""
        async with self.db.acquire() as c:
            if month is None:
                return await clearing_.read_year(c, year)
            _, body, csv_bytes = await clearing_.read_month(c, clearing_.month_start(year, month))
            return body, csv_bytes

    async def close_clearing(self, year: int, month: int, by: str) -> bytes:
        assert self.clearing_pool is not None, "the dashboard is not started"
        async with self.clearing_pool.acquire() as c:
            done = await clearing_.close_month(c, clearing_.month_start(year, month), now=self.clock(), by=by)
        log.info("clearing_closed", month=f"{year}-{month:02d}", by=done.closed_by, at=_iso(done.closed_at))
        return done.body

    async def close_due_clearing(self) -> None:
        """Months whose scheduled close (``CLEARING_CLOSE_DAY``) has passed."""
        if self.clearing_close_day is None or self.clearing_pool is None:
            return
        async with self.clearing_pool.acquire() as c:
            months = await clearing_.close_due_months(c, now=self.clock(), close_day=self.clearing_close_day)
        for month in months:
            log.info("clearing_closed", month=month, by="schedule")

    async def refresh_gauges(self) -> None:
        """Publish this year's fund figures and the queues as Prometheus gauges."""
        funds = await self.funds(None, None)
        YEAR_GONE.set(float(funds["elapsed_share"]))
        for policy in funds["policies"]:
            for line in policy["lines"]:
                labels = (policy["policy"], line["fund_code"])
                FUND_SPENT.labels(*labels).set(float(line["spent"]))
                FUND_WARNING.labels(*labels).set(1 if line["warning"] else 0)
                if line["budget"] is not None:
                    FUND_BUDGET.labels(*labels).set(float(line["budget"]))
                    FUND_SHARE.labels(*labels).set(float(line["spent_share"]))
        async with self.db.acquire() as c:
            stuck, _ = await repo.stuck_claims(c, after_seconds=self.settings.dashboard_stuck_after_seconds, limit=1)
            reviews, _ = await repo.pending_reviews(c, limit=1)
        STUCK_CLAIMS.set(stuck)
        PENDING_REVIEWS.set(reviews)

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.close_due_clearing()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.error("clearing_not_closed", error=repr(exc))
            try:
                await self.refresh_gauges()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("dashboard_gauges_not_refreshed", error=repr(exc))
            await asyncio.sleep(REFRESH_SECONDS)

    async def claim(self, claim_id: str) -> repo.FoundClaim | None:
        async with self.db.acquire() as c:
            return await repo.find_claim(c, claim_id)


def _waiting(w: repo.WaitingClaim) -> dict[str, Any]:
    return {"claim_id": w.claim_id, "hospital_code": w.hospital_code, "person_id_masked": w.person_id_masked,
            "total": money(w.total), "visit_type": w.visit_type, "received_at": _iso(w.received_at),
            "waiting_since": _iso(w.waiting_since)}


# ----------------------------------------------------------------- the web


def _user(request: Request, dashboard: Dashboard) -> User | None:
    name = request.session.get("user")
    return dashboard.users.get(name) if isinstance(name, str) else None


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


LOGIN_PAGE = (STATIC / "login.html")


def build_app(settings: Settings | None = None, *, clock: Callable[[], dt.datetime] = now,
              upstream: Upstream | None = None) -> Starlette:
    """The dashboard's ASGI app: nothing is connected before its lifespan starts."""
    settings = settings or Settings()
    dashboard = Dashboard(settings, clock=clock, upstream=upstream)
    secret = settings.dashboard_secret or secrets.token_urlsafe(32)

    def viewer(handler: Callable) -> Callable:
        async def guarded(request: Request) -> Response:
            user = _user(request, dashboard)
            if user is None:
                return _json({"error": "请先登录"}, 401)
            try:
                return await handler(request, user)
            except BadRequest as exc:
                return _json({"error": str(exc)}, 400)
            except INFRASTRUCTURE_ERRORS as exc:
                return _json({"error": f"数据库暂不可用：{type(exc).__name__}"}, 503)
            except repo.MISSING_SCHEMA:
                return _json({"error": "结算库尚未就绪：各服务尚未完成启动（表不存在）"}, 503)
        return guarded

    def operator(handler: Callable) -> Callable:
        async def guarded(request: Request, user: User) -> Response:
            if not user.may_act:
                ACTIONS.labels(handler.__name__, "refused").inc()
                log.warning("dashboard_action_refused", user=user.name, role=user.role, action=handler.__name__)
                refusal = f"无权操作：用户 {user.name} 的角色为只读（viewer），此操作需要经办员（operator）权限"
                return _json({"error": refusal}, 403)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return _json({"error": "请以 application/json 提交"}, 415)
            return await handler(request, user)
        guarded.__name__ = handler.__name__
        return viewer(guarded)

    async def index(request: Request) -> Response:
        if _user(request, dashboard) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def login_page(request: Request) -> Response:
        failed = request.query_params.get("failed") == "1"
        page = LOGIN_PAGE.read_text(encoding="utf-8")
        notice = '<p class="error" role="alert">用户名或密码错误</p>' if failed else ""
        if request.query_params.get("failed") == "wait":
            notice = '<p class="error" role="alert">登录失败次数过多，请稍后再试</p>'
        dev = ('<p class="dev">开发环境（make run）：可用 viewer / viewer-dev（只读）'
               "或 operator / operator-dev（经办员）登录</p>") if dashboard.users.development else ""
        return HTMLResponse(page.replace("<!--notice-->", notice).replace("<!--dev-->", dev))

    async def login(request: Request) -> Response:
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))  # the login form, urlencoded
        name, password = form.get("username", [""])[0], form.get("password", [""])[0]
        address = request.client.host if request.client else None
        if dashboard.throttle.retry_after(name, address) > 0:  # throttled: the password is not even checked
            log.warning("dashboard_login_throttled", user=html.escape(name)[:64], address=address)
            return RedirectResponse("/login?failed=wait", status_code=303)
        user = dashboard.users.authenticate(name, password)
        if user is None:
            dashboard.throttle.failed(name, address)
            log.warning("dashboard_login_failed", user=html.escape(name)[:64], address=address)
            return RedirectResponse("/login?failed=1", status_code=303)
        dashboard.throttle.succeeded(name)
        request.session.clear()
        request.session.update({"user": user.name, "role": user.role})
        log.info("dashboard_login", user=user.name, role=user.role)
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def health(_: Request) -> Response:
        try:
            async with dashboard.db.acquire() as c:
                await c.fetchval("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - reported
            return _json({"service": "dashboard", "status": "down", "database": "down", "error": repr(exc)}, 503)
        return _json({"service": "dashboard", "status": "ok", "database": "ok"})

    @viewer
    async def me(_: Request, user: User) -> Response:
        return _json({"user": user.name, "role": user.role, "may_act": user.may_act})

    @viewer
    async def pipeline(_: Request, __: User) -> Response:
        return _json(await dashboard.pipeline())

    @viewer
    async def funds(request: Request, _: User) -> Response:
        year = _int_param(request, "year", low=2000, high=2100)
        policy = request.query_params.get("policy") or None
        return _json(await dashboard.funds(year, policy))

    @viewer
    async def claim(request: Request, user: User) -> Response:
        found = await dashboard.claim(request.path_params["claim_id"].strip())
        if found is None:
            return _json({"error": f"未找到结算单 {request.path_params['claim_id']}"}, 404)
        one_bill = found.one_bill if user.may_act else without_categories(found.one_bill)
        return _json({"claim_id": found.claim_id, "status": found.status, "one_bill": one_bill,
                      "reversed_at": _iso(found.reversed_at), "hospital_code": found.hospital_code,
                      "person_id_masked": found.person_id_masked, "review_reason": found.review_reason})

    def _period(request: Request) -> tuple[int, int | None]:
        year = _int_param(request, "year", default=dashboard.clock().year, low=2000, high=2100)
        month = _int_param(request, "month", low=1, high=12)
        assert year is not None
        return year, month

    @viewer
    async def clearing(request: Request, _: User) -> Response:
        body, _csv = await dashboard.clearing(*_period(request))
        return Response(body, media_type="application/json")

    @viewer
    async def clearing_export(request: Request, _: User) -> Response:
        year, month = _period(request)
        _body, text = await dashboard.clearing(year, month)  # UTF-8 with a BOM, as stored when closed
        name = f"clearing-{year}" + (f"-{month:02d}" if month else "") + ".csv"
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    @operator
    async def close_clearing(request: Request, user: User) -> Response:
        try:
            body = orjson.loads(await request.body())
            year, month = int(body["year"]), int(body["month"])
        except (ValueError, TypeError, KeyError):
            return _json({"error": "请求体应为 {\"year\": 2024, \"month\": 3}"}, 400)
        if not (2000 <= year <= 2100 and 1 <= month <= 12):
            return _json({"error": f"年份 {year} 或月份 {month} 无效"}, 400)
        try:
            closed = await dashboard.close_clearing(year, month, user.name)
        except clearing_.ClearingRefused as exc:
            ACTIONS.labels("close_clearing", "refused").inc()
            return _json({"error": str(exc)}, 409)
        ACTIONS.labels("close_clearing", "ok").inc()
        return Response(closed, media_type="application/json")

    @viewer
    async def dead_letters(_: Request, __: User) -> Response:
        answer = await dashboard.upstream.dead_letters()
        return _json({"items": answer.body or [], "error": answer.error}, 200 if answer.ok else answer.status)

    @operator
    async def review(request: Request, user: User) -> Response:
        claim_id = request.path_params["claim_id"]
        try:
            body = await request.json()
        except ValueError:
            return _json({"error": "请求体不是 JSON"}, 400)
        decision = body.get("decision") if isinstance(body, dict) else None
        if decision not in ("approve", "reject"):
            return _json({"error": "decision 应为 approve 或 reject"}, 400)
        reason = body.get("reason") or None
        answer = await dashboard.upstream.review(claim_id, approve=decision == "approve", reason=reason,
                                                 reviewer=user.name)
        ACTIONS.labels("review", "ok" if answer.ok else "failed").inc()
        log.info("dashboard_review", user=user.name, claim_id=claim_id, decision=decision, ok=answer.ok)
        if not answer.ok:
            return _json({"error": answer.error}, answer.status)
        return _json({"ok": True, "claim_id": claim_id, "decision": decision, "result": answer.body})

    @operator
    async def replay(request: Request, user: User) -> Response:
        dead_letter_id = request.path_params["dead_letter_id"]
        answer = await dashboard.upstream.replay(dead_letter_id, operator=user.name)
        ACTIONS.labels("replay", "ok" if answer.ok else "failed").inc()
        log.info("dashboard_replay", user=user.name, dead_letter_id=dead_letter_id, ok=answer.ok)
        if not answer.ok:
            return _json({"error": answer.error}, answer.status)
        return _json({"ok": True, "id": dead_letter_id, "result": answer.body})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await dashboard.start()
        refresher = asyncio.create_task(dashboard.refresh_forever())
        try:
            yield
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
            await dashboard.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/health", health),
            Mount("/metrics", make_asgi_app()),
            Route("/api/me", me),
            Route("/api/pipeline", pipeline),
            Route("/api/funds", funds),
            Route("/api/claims/{claim_id:path}", claim),
            Route("/api/clearing", clearing),
            Route("/api/clearing.csv", clearing_export),
            Route("/api/clearing/close", close_clearing, methods=["POST"]),
            Route("/api/dead-letters", dead_letters, methods=["GET"]),
            Route("/api/dead-letters/{dead_letter_id}/replay", replay, methods=["POST"]),
            Route("/api/reviews/{claim_id:path}", review, methods=["POST"]),
            *simulation.routes(settings, viewer, operator, lambda r: _user(r, dashboard) is not None),  # 方案测算
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(SecureCookiesOverHttps), Middleware(SessionMiddleware, secret_key=secret, session_cookie="medsettle_dashboard",
                               max_age=SESSION_SECONDS, same_site="strict", https_only=False)],
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    return app


def run(settings: Settings | None = None) -> None:
    """``python -m services.dashboard``."""
    import uvicorn

    from medsettle.logs import configure_logging

    settings = settings or Settings()
    configure_logging("dashboard", settings.log_level, settings.log_format)
    uvicorn.run(build_app(settings), host=settings.dashboard_host, port=settings.dashboard_port,
                log_level="warning", access_log=False)
