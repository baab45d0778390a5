"""Request signatures of the hospital HTTP API (CONTRACT §8), for the
gateway that checks them and for any client that makes them.

The signed text is ``timestamp + "\\n" + METHOD + "\\n" + path with query +
"\\n" + body`` (the body empty for a GET); the signature is lowercase hex
HMAC-SHA256 of it under the hospital's key; the timestamp is Unix seconds and
may be at most ``MAX_SKEW_SECONDS`` from the server's clock.
"""

from __future__ import annotations

import time

from medsettle.hospital_keys import HospitalKeys, signature

MAX_SKEW_SECONDS = 300
HOSPITAL_HEADER = "X-Hospital-Code"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"


def signed_text(timestamp: str, method: str, path_with_query: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{path_with_query}\n".encode() + body


def sign_request(key: str, timestamp: str, method: str, path_with_query: str, body: bytes = b"") -> str:
    return signature(key, signed_text(timestamp, method, path_with_query, body))


def signed_headers(hospital_code: str, key: str, method: str, path_with_query: str, body: bytes = b"",
                   *, now: float | None = None) -> dict[str, str]:
    """The three headers of a signed request (``now``: Unix time to sign at)."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        HOSPITAL_HEADER: hospital_code,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign_request(key, timestamp, method, path_with_query, body),
    }


def refusal(keys: HospitalKeys, hospital_code: str | None, timestamp: str | None, sent: str | None,
            method: str, path_with_query: str, body: bytes, now: float) -> str | None:
    """Why a request is not signed as §8 asks, or ``None`` when it is."""
    if not hospital_code or not timestamp or not sent:
        return f"请求须带 {HOSPITAL_HEADER}、{TIMESTAMP_HEADER} 和 {SIGNATURE_HEADER} 三个请求头"
    if hospital_code not in keys:
        return f"医疗机构 {hospital_code[:64]} 没有签名密钥，不能调用本接口"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return f"{TIMESTAMP_HEADER} 须为 Unix 时间（秒，十进制整数）"
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return f"{TIMESTAMP_HEADER} 与服务器时间相差超过 {MAX_SKEW_SECONDS} 秒，请校准时钟后重新签名"
    if not keys.verifies(hospital_code, signed_text(timestamp, method, path_with_query, body), sent):
        return "签名不正确：HMAC-SHA256(密钥, 时间戳\\n方法\\n路径及查询串\\n请求体)，小写十六进制"
    return None
