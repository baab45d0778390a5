"""The services the dashboard talks to over HTTP: eligibility's review API,
the operations service's dead letters, and every service's /metrics.

Any of them may be down: each call returns what it could get and says what
it could not, and the dashboard shows that instead of failing.

Every call to an operator API carries the dashboard's service credential
(``OPERATOR_API_TOKEN``, ``Authorization: Bearer``); an action also names the
signed-in user it is taken for (``X-On-Behalf-Of``), whose role the service
checks again and whose name goes into its audit log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.dashboard.figures import mask_identities_in


@dataclass
class Answer:
    """What an upstream call came back with."""

    ok: bool
    status: int  # the HTTP status to pass on (502/503 when the service could not be reached)
    body: Any = None
    error: str | None = None


@dataclass
class Scrape:
    lag: dict[str, dict[str, float]] = field(default_factory=dict)  # service -> topic -> records
    dead_letters: dict[str, float] = field(default_factory=dict)  # service -> dead letters published
    handled: dict[str, float] = field(default_factory=dict)  # service -> messages handled
    unreachable: list[str] = field(default_factory=list)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return mask_identities_in(response.text[:300]) or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return mask_identities_in(str(body[key]))
    return mask_identities_in(str(body)[:300])


class Upstream:
    def __init__(self, *, eligibility_url: str, operations_url: str, metrics_urls: dict[str, str],
                 timeout: float = 3.0, transport: httpx.AsyncBaseTransport | None = None,
                 service_token: str | None = None) -> None:
        self.eligibility_url = eligibility_url.rstrip("/")
        self.operations_url = operations_url.rstrip("/")
        self.metrics_urls = metrics_urls
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._credential = {"authorization": f"Bearer {service_token}"} if service_token else {}

    async def close(self) -> None:
        await self.client.aclose()

    async def _call(self, method: str, url: str, what: str, *, on_behalf_of: str | None = None,
                    **kwargs: Any) -> Answer:
        headers = dict(self._credential)
        if on_behalf_of:
            headers["x-on-behalf-of"] = on_behalf_of
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            return Answer(False, 503, error=f"{what}不可达（{type(exc).__name__}），请稍后重试")
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            return Answer(True, response.status_code, body)
        status = response.status_code if 400 <= response.status_code < 500 else 502
        return Answer(False, status, error=f"{what}拒绝了请求：{_error_text(response)}")

    # ---------------------------------------------------------- reviews

    async def review(self, claim_id: str, *, approve: bool, reason: str | None, reviewer: str) -> Answer:
        decision = "approve" if approve else "reject"
        return await self._call(
            "POST", f"{self.eligibility_url}/reviews/{claim_id}", "资格审核服务（eligibility）",
            json={"decision": decision, "approve": approve, "reason": reason}, on_behalf_of=reviewer,
        )

    # ----------------------------------------------------- dead letters

    async def dead_letters(self) -> Answer:
        answer = await self._call("GET", f"{self.operations_url}/dead-letters", "运维服务（operations）")
        if answer.ok:
            body = answer.body
            if isinstance(body, dict):
                lists = (body[k] for k in ("dead_letters", "items", "results") if isinstance(body.get(k), list))
                body = next(lists, [])
            answer.body = [_dead_letter(d) for d in (body or []) if isinstance(d, dict)]
        return answer

    async def replay(self, dead_letter_id: str, *, operator: str) -> Answer:
        return await self._call("POST", f"{self.operations_url}/dead-letters/{dead_letter_id}/replay",
                                "运维服务（operations）", json={}, on_behalf_of=operator)

    # ---------------------------------------------------------- metrics

    async def scrape(self) -> Scrape:
        result = Scrape()

        async def one(service: str, url: str) -> None:
            try:
                response = await self.client.get(url, timeout=1.5, follow_redirects=True)
                response.raise_for_status()
            except httpx.HTTPError:
                result.unreachable.append(service)
                return
            _read_metrics(response.text, result)

        await asyncio.gather(*(one(s, u) for s, u in self.metrics_urls.items()))
        result.unreachable.sort()
        return result


def _read_metrics(text: str, into: Scrape) -> None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            service = sample.labels.get("service", "")
            if sample.name == "settlement_consumer_lag":
                topics = into.lag.setdefault(service, {})
                topic = sample.labels.get("topic", "")
                topics[topic] = topics.get(topic, 0.0) + sample.value
            elif sample.name == "settlement_dead_letters_total":
                into.dead_letters[service] = into.dead_letters.get(service, 0.0) + sample.value
            elif sample.name == "settlement_messages_handled_total":
                into.handled[service] = into.handled.get(service, 0.0) + sample.value


def _dead_letter(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields a dead letter is shown with, identity numbers masked."""
    def text(*keys: str) -> str | None:
        value = next((raw[k] for k in keys if raw.get(k) is not None), None)
        return None if value is None else mask_identities_in(str(value))

    return {
        "id": text("id", "dead_letter_id"),
        "stage": text("stage", "service"),
        "topic": text("topic", "source_topic"),
        "error": text("error", "reason"),
        "failed_at": text("failed_at", "received_at", "at"),
        "status": text("status", "state") or ("replayed" if raw.get("replayed_at") else "open"),
    }
