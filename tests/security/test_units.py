"""Fast checks of the pieces: masking, the throttle, cookies, categories."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from medsettle.access import HIDDEN_CATEGORY, LoginThrottle, OperatorGuard, Refused, Users, hide_categories
from medsettle.logs import mask_identities, mask_text
from services.dashboard.auth import SecureCookiesOverHttps
from services.operations.app import shown
from tests.security import credentials


def test_identity_numbers_are_masked_wherever_they_sit_in_a_text():
    for text in ("340421199001011234", "b'\\xff340421199001011234'", "ID340421199001011234x", "证号:34042119900101123X。"):
        masked = mask_text(text)
        assert "199001011" not in masked and "340421********" in masked, masked
    assert mask_text("H3404210001-2024-000123") == "H3404210001-2024-000123"  # a claim id is not an identity number
    assert mask_text("12345678901234567890") == "12345678901234567890"  # nor a longer number


def test_a_validation_error_never_quotes_its_input_into_a_log_or_an_answer():
    error = ("1 validation error for PersonRecord\n  Value error [type=value_error, input_value={'person_id': "
             "'340421199001011234', 'name': '欧阳娜娜'}, input_type=dict]")
    masked = mask_text(error)
    assert "欧阳娜娜" not in masked and "input_value=***" in masked and "input_type=dict" in masked
    cut_off = mask_text('unreadable: {"person_id": "340421199001011234", "name": "欧阳娜娜", "items": [')
    assert "欧阳娜娜" not in cut_off and '"name": "欧***"' in cut_off


def test_log_events_mask_names_identities_and_secrets_by_key():
    event = mask_identities(None, "", {"person_id": "340421199001011234", "name": "欧阳娜娜",
                                       "password": "pw", "operator_api_token": "t", "authorization": "Basic x",
                                       "nested": {"persons": [{"name": "司马相如", "person_id": "34042119900101123x"}]}})
    assert event["person_id"] == "340421********1234" and event["name"] == "欧***"
    assert event["password"] == event["operator_api_token"] == event["authorization"] == "***"
    assert event["nested"]["persons"][0] == {"name": "司***", "person_id": "340421********123x"}


def test_a_dead_letter_shows_no_name_or_identity_and_categories_only_to_operators():
    original = ('{"person_id": "340421199001011234", "name": "欧阳娜娜", "region": 5, '
                '"categories": [{"category": "subsistence", "valid_from": "2024-01-01"}]}')
    letter = {"id": 1, "key": "340421199001011234", "original": original, "encoding": "utf-8",
              "error": "invalid registry record: name 欧阳娜娜 of 340421199001011234 is wrong", "headers": {}}
    for_viewer, for_operator = shown(letter), shown(letter, categories=True)
    for view in (for_viewer, for_operator):
        text = str(view)
        assert "欧阳娜娜" not in text and "340421199001011234" not in text, text
        assert "欧***" in view["original"] and "340421********1234" in view["original"] and "欧***" in view["error"]
        assert view["key"] == "340421********1234"
    assert "subsistence" not in for_viewer["original"] and HIDDEN_CATEGORY in for_viewer["original"]
    assert "subsistence" in for_operator["original"]


def test_category_names_are_hidden_from_texts_and_fields():
    bill = {"layers": [{"explanation": "医疗救助：低保对象：政策范围内 100.00 × 70% = 70.00"}],
            "person": {"categories": ["subsistence"]}}
    hidden = hide_categories(bill)
    assert "低保对象" not in str(hidden) and "subsistence" not in str(hidden)


def test_the_throttle_locks_a_name_after_repeated_failures_until_the_window_passes():
    now = [0.0]
    throttle = LoginThrottle(failures=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("li", "10.0.0.1") == 0
        throttle.failed("li", "10.0.0.1")
    assert throttle.retry_after("li", "10.0.0.2") == 60  # the name, from anywhere
    assert throttle.retry_after("wang", "10.0.0.1") == 0  # one address may be a proxy for many
    now[0] = 61
    assert throttle.retry_after("li", "10.0.0.1") == 0
    throttle.failed("li", None)
    throttle.succeeded("li")
    assert throttle._recent("user:li") == []


def test_the_guard_needs_configured_credentials_and_gives_roles():
    nobody = OperatorGuard(Users({}), None)  # nothing configured: nobody gets in, not even with a token
    with pytest.raises(Refused) as refused:
        nobody.principal("Bearer anything", None, None)
    assert refused.value.status == 401
    guard = credentials.guard()
    operator = guard.principal(httpx.BasicAuth(*credentials.OPERATOR)._auth_header, None, "127.0.0.1")
    assert (operator.name, operator.role, operator.via) == (credentials.OPERATOR[0], "operator", "password")
    acting = guard.principal(f"Bearer {credentials.SERVICE_TOKEN}", credentials.VIEWER[0], None)
    assert (acting.name, acting.may_act) == (credentials.VIEWER[0], False)  # the dashboard cannot lift a viewer
    assert guard.principal(f"Bearer {credentials.SERVICE_TOKEN}", None, None).role == "viewer"


async def test_cookies_are_secure_over_https_and_plain_over_http():
    async def set_cookie(_):
        response = PlainTextResponse("ok")
        response.set_cookie("session", "v", httponly=True)
        return response

    app = SecureCookiesOverHttps(Starlette(routes=[Route("/", set_cookie)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://dashboard.example") as tls:
        assert "; Secure" in (await tls.get("/")).headers["set-cookie"]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as plain:
        assert "secure" not in (await plain.get("/")).headers["set-cookie"].lower()


async def test_the_dashboards_session_cookie_is_secure_when_served_over_https():
    from medsettle.settings import Settings
    from services.dashboard.app import build_app

    app = build_app(Settings(dashboard_users=credentials.users(), database_url="postgresql://unused/x"))
    transport = httpx.ASGITransport(app=app)
    form = {"username": credentials.OPERATOR[0], "password": credentials.OPERATOR[1]}
    async with httpx.AsyncClient(transport=transport, base_url="https://dashboard.example") as tls:
        cookie = (await tls.post("/login", data=form)).headers["set-cookie"]
    assert cookie.startswith("medsettle_dashboard=") and "; Secure" in cookie and "httponly" in cookie.lower()
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as plain:
        assert "secure" not in (await plain.post("/login", data=form)).headers["set-cookie"].lower()
