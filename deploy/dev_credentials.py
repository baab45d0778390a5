"""The development credentials, for ``make run`` only.

``make run`` (``deploy/run.py``) gives every process it starts these
variables unless they are set already: the dashboard's development pair
(``viewer`` / ``viewer-dev`` and ``operator`` / ``operator-dev``, the same
users on the services' operator APIs), a random service credential for the
dashboard's calls, and the flag that makes the login page name the pair.
Nothing else reads this module: started any other way (``python -m
services.dashboard``, docker compose), a service has no users unless
``DASHBOARD_USERS`` says so, and compose refuses to start without them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import orjson

from medsettle.access import Role, hash_password

DEV_USERS: dict[str, tuple[str, Role]] = {
    "viewer": ("viewer-dev", "viewer"),
    "operator": ("operator-dev", "operator"),
}


def dev_users() -> dict[str, dict[str, str]]:
    """``DASHBOARD_USERS`` for the development pair (freshly salted hashes)."""
    return {name: {"password_hash": hash_password(password), "role": role}
            for name, (password, role) in DEV_USERS.items()}


def environment(current: Mapping[str, str]) -> dict[str, str]:
    """What ``make run`` adds to its children's environment (what ``current`` lacks)."""
    extra: dict[str, str] = {}
    if not current.get("DASHBOARD_USERS"):
        extra["DASHBOARD_USERS"] = orjson.dumps(dev_users()).decode()
        extra["DASHBOARD_DEVELOPMENT_USERS"] = "true"
    if not current.get("OPERATOR_API_TOKEN"):
        extra["OPERATOR_API_TOKEN"] = secrets.token_urlsafe(32)
    if not current.get("DASHBOARD_SECRET"):
        extra["DASHBOARD_SECRET"] = secrets.token_urlsafe(32)  # one per run: a restarted dashboard keeps sessions
    return extra
