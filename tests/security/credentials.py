"""The operator users and the dashboard's service credential the tests run with."""

from __future__ import annotations

import functools

import httpx

from medsettle.access import OperatorGuard, Users, hash_password

OPERATOR = ("li-operator", "operator-test-password")
VIEWER = ("wang-viewer", "viewer-test-password")
SERVICE_TOKEN = "dashboard-service-token-for-tests"


@functools.cache
def users() -> dict[str, dict[str, str]]:
    """``DASHBOARD_USERS`` of the tests: one operator, one viewer."""
    return {OPERATOR[0]: {"password_hash": hash_password(OPERATOR[1]), "role": "operator"},
            VIEWER[0]: {"password_hash": hash_password(VIEWER[1]), "role": "viewer"}}


def guard() -> OperatorGuard:
    return OperatorGuard(Users(users()), SERVICE_TOKEN)


def as_operator() -> httpx.BasicAuth:
    return httpx.BasicAuth(*OPERATOR)


def as_viewer() -> httpx.BasicAuth:
    return httpx.BasicAuth(*VIEWER)
