"""Who may use the operator APIs, and as what.

People are the dashboard's users (``DASHBOARD_USERS``: JSON ``{"name":
{"password_hash": "scrypt$...", "role": "viewer"|"operator"}}``); the same
users sign in to the dashboard and, with HTTP Basic, to every service's
operator API. Viewers read; operators also decide reviews and replay dead
letters. The dashboard's own calls carry the service credential
(``OPERATOR_API_TOKEN``, ``Authorization: Bearer ...``) and name the signed-in
user they act for (``X-On-Behalf-Of``); the service gives them that user's
role from its own copy of the users, so a dashboard cannot lift a viewer to an
operator. The token alone reads.

No users and no token configured: nobody gets in. Development credentials
exist only under ``make run`` (``deploy/dev_credentials.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (salt and hash in URL-safe base64)."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    encode = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"scrypt${_N}${_R}${_P}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        decode = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
        expected = decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


class Users:
    """People with a password hash and a role."""

    def __init__(self, configured: dict[str, dict[str, str]], *, development: bool = False) -> None:
        self.development = development  # only make run says so: the login page then names the pair
        self._users: dict[str, tuple[str, Role]] = {}
        for name, entry in configured.items():
            role = entry.get("role", "viewer")
            if role not in ROLES:
                raise ValueError(f"DASHBOARD_USERS: user {name!r} has role {role!r}, not one of {ROLES}")
            if not entry.get("password_hash", "").startswith("scrypt$"):
                raise ValueError(f"DASHBOARD_USERS: user {name!r} needs a password_hash made by hash-password")
            self._users[name] = (entry["password_hash"], role)  # type: ignore[assignment]
        self._dummy = hash_password("not a password")

    def authenticate(self, name: str, password: str) -> User | None:
        stored, role = self._users.get(name, (self._dummy, "viewer"))
        ok = verify_password(password, stored)  # also for unknown names: the same time either way
        return User(name, role) if ok and name in self._users else None

    @property
    def names(self) -> list[str]:
        return sorted(self._users)

    def get(self, name: str) -> User | None:
        entry = self._users.get(name)
        return User(name, entry[1]) if entry else None


class LoginThrottle:
    """Failed sign-ins counted per user name and per client address: after
    ``failures`` of them for one name within ``window`` seconds (or ten times
    as many from one address, which may be a proxy many people share), that
    name (or address) is refused without checking the password until the
    window has passed. A success clears the name's count. In memory, per
    process."""

    ADDRESS_FACTOR = 10

    def __init__(self, failures: int = 5, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self.clock = clock
        self._seen: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        cutoff = self.clock() - self.window
        times = [t for t in self._seen.get(key, []) if t > cutoff]
        if times:
            self._seen[key] = times
        else:
            self._seen.pop(key, None)
        return times

    def retry_after(self, name: str, address: str | None) -> float:
        """Seconds until ``name`` from ``address`` may try again (0: now)."""
        waits = []
        for key, allowed in ((f"user:{name}", self.failures),
                             (f"addr:{address}" if address else None, self.failures * self.ADDRESS_FACTOR)):
            if key is None:
                continue
            times = self._recent(key)
            if len(times) >= allowed:
                waits.append(times[-allowed] + self.window - self.clock())
        return max([0.0, *waits])

    def failed(self, name: str, address: str | None) -> None:
        now = self.clock()
        for key in (f"user:{name}", f"addr:{address}" if address else None):
            if key is not None:
                self._seen.setdefault(key, []).append(now)
        if len(self._seen) > 100_000:  # a flood of names: forget the oldest rather than grow without bound
            for key in list(self._seen)[:50_000]:
                del self._seen[key]

    def succeeded(self, name: str) -> None:
        self._seen.pop(f"user:{name}", None)


@dataclass(frozen=True)
class Principal:
    """Who is calling an operator API."""

    name: str  # the person (for the dashboard's calls: the signed-in user it acts for)
    role: Role
    via: Literal["password", "service"]  # HTTP Basic with a user's password, or the dashboard's service credential

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


class Refused(Exception):  # noqa: N818 - an answer, not a failure
    """Why a request gets no principal: 401 (no or wrong credentials) or 429 (throttled)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class OperatorGuard:
    """Checks the credentials of one request to an operator API."""

    def __init__(self, users: Users, service_token: str | None, throttle: LoginThrottle | None = None) -> None:
        self.users = users
        self._token = service_token.encode() if service_token else None
        self.throttle = throttle or LoginThrottle()

    @classmethod
    def from_settings(cls, settings: object) -> OperatorGuard:
        return cls(Users(getattr(settings, "dashboard_users", {}) or {}),
                   getattr(settings, "operator_api_token", None),
                   LoginThrottle(getattr(settings, "login_throttle_failures", 5),
                                 getattr(settings, "login_throttle_seconds", 300.0)))

    def principal(self, authorization: str | None, on_behalf_of: str | None, address: str | None) -> Principal:
        if not authorization:
            raise Refused(401, "需要凭据：HTTP Basic（运维用户）或服务凭据（Bearer）")
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            if self._token is None or not hmac.compare_digest(credentials.strip().encode(), self._token):
                raise Refused(401, "服务凭据无效")
            if not on_behalf_of:
                return Principal("dashboard", "viewer", "service")
            user = self.users.get(on_behalf_of)
            if user is None:
                raise Refused(401, f"服务凭据代为操作的用户 {on_behalf_of[:64]!r} 不存在")
            return Principal(user.name, user.role, "service")
        if scheme == "basic":
            try:
                name, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Refused(401, "HTTP Basic 凭据格式有误") from None
            wait = self.throttle.retry_after(name, address)
            if wait > 0:
                raise Refused(429, "登录失败次数过多，请稍后再试", wait)
            user = self.users.authenticate(name, password)
            if user is None:
                self.throttle.failed(name, address)
                raise Refused(401, "用户名或密码错误")
            self.throttle.succeeded(name)
            return Principal(user.name, user.role, "password")
        raise Refused(401, "不支持的认证方式（应为 Basic 或 Bearer）")


HIDDEN_CATEGORY = "（类别仅经办员可见）"


def hide_categories(value: object) -> object:
    """``value`` (a document, a dead letter's original, a one-bill) without a
    person's assistance categories: a ``categories`` field replaced, and the
    categories' names (低保对象, 特困供养人员, ...) taken out of every text, for
    people whose role does not need them."""
    from medsettle.contract import CATEGORY_NAMES

    if isinstance(value, dict):
        return {k: (HIDDEN_CATEGORY if k == "categories" else hide_categories(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_categories(v) for v in value]
    if isinstance(value, str):
        for name in CATEGORY_NAMES.values():
            value = value.replace(name, HIDDEN_CATEGORY)
        return value
    return value
