"""Who may see the dashboard and who may act on it.

Users come from ``DASHBOARD_USERS`` (JSON ``{"name": {"password_hash": ...,
"role": "viewer"|"operator"}}``); the same users reach the services' operator
APIs (``medsettle.access``, which holds the user store). Viewers see
everything but a person's assistance categories; operators may also approve
or reject reviews and replay dead letters. Passwords are stored as scrypt
hashes: ``python -m services.dashboard hash-password`` makes one. With no
users configured nobody can sign in; ``make run`` configures the development
pair (``deploy/dev_credentials.py``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medsettle.access import ROLES, LoginThrottle, Role, User, Users, hash_password, verify_password
from medsettle.access import hide_categories as without_categories

__all__ = ["ROLES", "LoginThrottle", "Role", "SecureCookiesOverHttps", "User", "Users", "hash_password",
           "verify_password", "without_categories"]


class SecureCookiesOverHttps:
    """Marks every cookie ``Secure`` on a request that came over HTTPS (the
    request's scheme, which uvicorn takes from ``X-Forwarded-Proto`` when the
    proxy is trusted, ``FORWARDED_ALLOW_IPS``), so that a browser never sends
    the session back over plain HTTP; plain-HTTP development keeps working."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie" and b"; secure" not in value.lower():
                        value += b"; Secure"
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secure)
