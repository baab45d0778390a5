"""Who may see the dashboard and who may act on it.

Users come from ``DASHBOARD_USERS`` (JSON ``{"name": {"password_hash": ...,
"role": "viewer"|"operator"}}``). Viewers see everything; operators may also
approve or reject reviews and replay dead letters. Passwords are stored as
scrypt hashes: ``python -m services.dashboard hash-password`` makes one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")

# The development pair `make run` uses when DASHBOARD_USERS is not set
# (services/dashboard/README.md). Never use them anywhere people can reach.
DEV_USERS: dict[str, tuple[str, Role]] = {
    "viewer": ("viewer-dev", "viewer"),
    "operator": ("operator-dev", "operator"),
}

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
    """The dashboard's users, each with a password hash and a role."""

    def __init__(self, configured: dict[str, dict[str, str]]) -> None:
        self.development = not configured
        if self.development:
            configured = {name: {"password_hash": hash_password(password), "role": role}
                          for name, (password, role) in DEV_USERS.items()}
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
