"""The hospitals' signing keys (CONTRACT §7, §8): ``HOSPITAL_KEYS`` and an
optional keys file.

A hospital may hold several valid keys at once, so that a key can be rotated:
the new key is added beside the old one, the hospital switches, the old one
is removed. ``HOSPITAL_KEYS`` maps a hospital code to one key or a list of
keys (JSON); ``HOSPITAL_KEYS_FILE`` names a JSON file of the same shape,
read when the keys are loaded (not at import). Both may be given: a
hospital's keys are those of the two together. The first key listed is the
one a sender on the hospital's behalf signs with (the gateway); any listed
key is accepted.

Signatures are lowercase hex of HMAC-SHA256(key, message).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson


def signature(key: str, message: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` under ``key``."""
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class KeysError(ValueError):
    """A keys setting or file that cannot be used; the message says why."""


def _keys_of(code: Any, value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(code, str) or not code:
        raise KeysError(f"{where}: a hospital code must be a non-empty string")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise KeysError(f"{where}: the keys of {code} must be a non-empty string or a list of them")
    return tuple(values)


class HospitalKeys:
    """Every hospital's valid keys, the signing key first."""

    def __init__(self, keys: Mapping[str, Iterable[str]] | None = None) -> None:
        self._keys: dict[str, tuple[str, ...]] = {code: tuple(values) for code, values in (keys or {}).items()}

    def __repr__(self) -> str:  # never the keys themselves
        return f"HospitalKeys({len(self._keys)} hospitals)"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "HOSPITAL_KEYS") -> HospitalKeys:
        return cls({code: _keys_of(code, value, where) for code, value in raw.items()})

    @classmethod
    def from_file(cls, path: Path) -> HospitalKeys:
        try:
            raw = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise KeysError(f"keys file {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise KeysError(f"keys file {path}: must hold a JSON object of hospital code to key(s)")
        return cls.parse(raw, f"keys file {path}")

    @classmethod
    def from_settings(cls, settings: Any) -> HospitalKeys:
        """``settings.hospital_keys`` and ``settings.hospital_keys_file`` together."""
        keys = cls.parse(settings.hospital_keys or {})
        path = getattr(settings, "hospital_keys_file", None)
        return keys.merged(cls.from_file(path)) if path else keys

    def merged(self, other: HospitalKeys) -> HospitalKeys:
        combined = dict(self._keys)
        for code, values in other._keys.items():
            combined[code] = tuple(dict.fromkeys((*combined.get(code, ()), *values)))
        return HospitalKeys(combined)

    def __contains__(self, hospital_code: object) -> bool:
        return hospital_code in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def keys_of(self, hospital_code: str) -> tuple[str, ...]:
        return self._keys.get(hospital_code, ())

    def signing_key(self, hospital_code: str) -> str | None:
        """The key to sign with on the hospital's behalf (its first)."""
        keys = self._keys.get(hospital_code)
        return keys[0] if keys else None

    def verifies(self, hospital_code: str, message: bytes, sent: str | bytes) -> bool:
        """Whether ``sent`` is the signature of ``message`` under any of the hospital's keys."""
        given = sent if isinstance(sent, bytes) else sent.encode("utf-8", "replace")
        found = False
        for key in self._keys.get(hospital_code, ()):  # every key tried: no timing by position
            found |= hmac.compare_digest(given, signature(key, message).encode())
        return found
