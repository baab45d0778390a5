"""structlog, JSON by default, with identity numbers and names masked.

Every event passes through ``mask_identities``: values of keys that hold a
person's identity or name are masked, and any 18-character resident identity
number found inside any string is masked too, as is the input a validation
error quotes (pydantic's ``input_value=...``, which may be a whole registry
record, name included). Secrets (keys, passwords, tokens, signatures) are
replaced by ``***``.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import orjson
import structlog

from medsettle.contract import mask_name, mask_person_id

# digits on neither side: an identity number glued to letters (b'\xff3404...', ID3404...) is still one
ID_NUMBER = re.compile(r"(?<!\d)(\d{6})(\d{8})(\d{3}[0-9Xx])(?!\d)")
# what a pydantic ValidationError quotes of the input, up to the type it names
QUOTED_INPUT = re.compile(r"input_value=.*?(?=, input_type=)", re.DOTALL)
ID_KEYS = {"person_id", "id_number", "idcard"}
NAME_KEYS = {"name", "person_name", "patient_name"}
# a name field inside a text (a JSON or Python fragment that could not be parsed as a whole)
NAME_FIELD = re.compile(r"""(["'](?:%s)["']\s*:\s*["'])([^"'\\]*)""" % "|".join(sorted(NAME_KEYS)))
SECRET_KEYS = {"key", "hospital_keys", "signature", "password", "secret", "token", "operator_api_token",
               "authorization", "dashboard_users", "password_hash", "sasl_plain_password"}


def mask_text(text: str) -> str:
    """``text`` with every resident identity number masked and the input a
    validation error quotes left out; a name field found in it (``"name": "..."``)
    masked."""
    text = QUOTED_INPUT.sub("input_value=***", text)
    text = NAME_FIELD.sub(lambda m: m.group(1) + mask_name(m.group(2)), text)
    return ID_NUMBER.sub(lambda m: m.group(1) + "*" * 8 + m.group(3), text)


_mask_text = mask_text


def names_in(value: Any) -> set[str]:
    """Every person's name held under a name key anywhere in ``value``."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in NAME_KEYS and isinstance(v, str) and v}
        return found.union(*(names_in(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(names_in(v) for v in value))
    return set()


def mask_names(text: str, names: set[str]) -> str:
    """``text`` with each of ``names`` masked wherever it appears."""
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, mask_name(name))
    return text


def _mask(key: str, value: Any) -> Any:
    if key in SECRET_KEYS:
        return "***"
    if isinstance(value, str):
        if key in ID_KEYS:
            return mask_person_id(value)
        if key in NAME_KEYS:
            return mask_name(value)
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(key, v) for v in value]
    return value


def mask_identities(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return {key: _mask(key, value) for key, value in event.items()}


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=lambda o: str(o)).decode()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and route the standard library's logging to it."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            structlog.processors.format_exc_info,
            mask_identities,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric if isinstance(numeric, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "faststream", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
