"""The public contract's messages (CONTRACT.md §3–§5) as pydantic v2 models.

Amounts are ``Decimal`` yuan. On the wire they are decimal strings with two
decimals; floats are refused so that no amount ever passes through binary
floating point.

Each message is defined once, here. The stages' fast path (a document read
back from our own topics without validation, documents and one-bills written
without pydantic's serializer, which calls back into Python for every
amount) is derived from these models' fields by ``medsettle.wire`` at first
use, and gives exactly what validation and ``model_dump(mode="json")`` give
(tests/bench/test_fast_paths.py). Every field carries a description and an
example: ``make docs`` writes them into the AsyncAPI and OpenAPI documents.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from medsettle import wire
from medsettle.money import ZERO, fen
from medsettle.wire import built

MAX_AMOUNT = Decimal("1000000000")  # 10^9 yuan: far above any real bill
MAX_ITEMS = 5000


def _decimal(value: Any, *, places: int | None, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError(f"{what} must be a decimal string such as \"12.50\"")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} {str(value)[:40]!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{what} must be a finite number")
    if number < 0:
        raise ValueError(f"{what} may not be negative")
    if number >= MAX_AMOUNT:
        raise ValueError(f"{what} is implausibly large")
    exponent = number.as_tuple().exponent
    if places is not None and isinstance(exponent, int) and -exponent > places:
        raise ValueError(f"{what} has more than {places} decimals")
    return number


def _plain(value: Any, places: int) -> Decimal | None:
    """The common case, quickly: a decimal string within range and places
    (``None`` for anything else, which ``_decimal`` then explains)."""
    if type(value) is not str:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if number.is_finite() and 0 <= number < MAX_AMOUNT and number.as_tuple().exponent >= -places:  # type: ignore[operator]
        return number
    return None


def _identity_number(value: Any) -> Any:
    """A resident identity number's final check character ``x`` is read as ``X`` (CONTRACT §3)."""
    if isinstance(value, str):
        value = value.strip()
        if value.endswith("x"):
            value = value[:-1] + "X"
    return value


PersonId = Annotated[str, BeforeValidator(_identity_number)]


def _money(value: Any) -> Decimal:
    number = _plain(value, 2)
    return fen(number if number is not None else _decimal(value, places=2, what="amount"))


def _quantity(value: Any) -> Decimal:
    number = _plain(value, 4)
    return number if number is not None else _decimal(value, places=4, what="quantity")


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json"),
]
Quantity = Annotated[
    Decimal,
    BeforeValidator(_quantity),
    PlainSerializer(lambda d: f"{d.normalize():f}", return_type=str, when_used="json"),
]
# Amounts that we compute ourselves (may carry any sign internally, e.g. deltas).
Amount = Annotated[
    Decimal,
    PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json"),
]

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def of(cls, **values: Any) -> Self:
        """What ``cls(**values)`` gives when every field is given and already
        valid (a rule computed it from validated values: a layer, a
        breakdown), built without validating again; a missing or unknown
        field is a ``TypeError``. Every layer of every claim makes some."""
        if values.keys() != cls.__pydantic_fields__.keys():
            raise TypeError(f"{cls.__name__} needs exactly the fields {sorted(cls.__pydantic_fields__)}, "
                            f"not {sorted(values)}")
        return built(cls, values)  # type: ignore[no-any-return]


class Strict(BaseModel):
    """Inbound messages: unknown fields are ignored, known ones are checked."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


VisitType = Literal["inpatient", "outpatient", "chronic_outpatient"]
Level = Literal["village", "township", "county", "city", "province", "out_of_province"]
Category = Literal["poverty_registered", "subsistence", "extreme_poverty", "monitored"]
ItemCategory = Literal["A", "B", "C"]

LEVELS: tuple[Level, ...] = ("village", "township", "county", "city", "province", "out_of_province")
CATEGORIES: tuple[Category, ...] = ("poverty_registered", "subsistence", "extreme_poverty", "monitored")

LEVEL_NAMES: dict[str, str] = {
    "village": "村级",
    "township": "乡镇级",
    "county": "县级",
    "city": "市级",
    "province": "省级",
    "out_of_province": "省外",
}
VISIT_NAMES: dict[str, str] = {"inpatient": "住院", "outpatient": "普通门诊", "chronic_outpatient": "慢性病门诊"}
CATEGORY_NAMES: dict[str, str] = {
    "poverty_registered": "建档立卡贫困人口",
    "subsistence": "低保对象",
    "extreme_poverty": "特困供养人员",
    "monitored": "防返贫监测对象",
}


# --------------------------------------------------------------------- his.claims


class Item(Strict):
    """One line of the bill (CONTRACT §3)."""

    code: str = Field(min_length=1, max_length=64, description="the item's code in the catalogue",
                      examples=["XA01"])
    name: str = Field("", max_length=200, description="the item's name", examples=["阿司匹林肠溶片"])
    category: ItemCategory = Field(description="A 甲类 (fully in scope), B 乙类 (10% pre-self-pay, 先行自付), "
                                               "C 丙类 (self-pay, 全自费)", examples=["A"])
    quantity: Quantity = Field(description="decimal string, never negative", examples=["2"])
    unit_price: Money = Field(description="yuan, a decimal string with two decimals, never negative",
                              examples=["35.50"])
    amount: Money = Field(description="quantity × unit_price, to the fen (else AMOUNT_MISMATCH)", examples=["71.00"])
    limit_price: Money | None = Field(None, description="最高限价: when set and exceeded, (unit_price - limit_price) "
                                                        "× quantity is over-limit self-pay (超限价自费)",
                                      examples=[None, "30.00"])

    def computed_amount(self) -> Decimal:
        return fen(self.quantity * self.unit_price)


class SettleClaim(Strict):
    """A real settlement (``settle``) or a pre-settlement (``trial``)."""

    type: Literal["settle", "trial"] = Field(
        description="settle (real settlement), or trial (pre-settlement, 预结算: computed with the person's current "
                    "accumulators, nothing is committed)", examples=["settle"])
    claim_id: Code = Field(description="the hospital's id of the claim; the same id with identical content gets "
                                       "the same answer again, with other content DUPLICATE_CLAIM",
                           examples=["H3404210001-2024-000123"])
    hospital_code: Code = Field(description="the hospital's code (registry.hospitals)", examples=["H3404210001"])
    person_id: PersonId = Field(min_length=6, max_length=32, pattern=r"^[0-9A-Za-z]+$",
                                description="18-character resident identity number; a final x is read as X",
                                examples=["340421199001011234"])
    visit_type: VisitType = Field(description="inpatient, outpatient (门诊统筹) or chronic_outpatient (慢性病门诊)",
                                  examples=["inpatient"])
    admitted_on: dt.date | None = Field(None, description="admission date; required for an inpatient claim, may be "
                                                          "omitted for an outpatient visit", examples=["2024-03-01"])
    discharged_on: dt.date = Field(description="the service date (an outpatient's visit date); its calendar year is "
                                               "the accumulation year", examples=["2024-03-10"])
    referral: bool = Field(False, description="referred (转诊): without it an inpatient at a city, province or "
                                              "out-of-province hospital gets a ratio 10 points lower",
                           examples=[False])
    injury: bool = Field(False, description="意外伤害: held as pending_review until an operator approves or "
                                            "rejects it", examples=[False])
    diagnosis_codes: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=50, description="diagnosis codes (ICD-10)", examples=[["I63.900"]])
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS, description="the bill's items, at least one",
                            examples=[[{"code": "XA01", "name": "阿司匹林肠溶片", "category": "A", "quantity": "2",
                                        "unit_price": "35.50", "amount": "71.00", "limit_price": None}]])
    submitted_at: dt.datetime | None = Field(None, description="when the hospital sent it, ISO 8601 with offset",
                                             examples=["2024-03-10T10:00:00+08:00"])

    @model_validator(mode="after")
    def _dates(self) -> SettleClaim:
        if self.visit_type == "inpatient" and self.admitted_on is None:
            raise ValueError("admitted_on is required for an inpatient claim")
        if self.admitted_on is not None and self.admitted_on > self.discharged_on:
            raise ValueError("admitted_on is after discharged_on")
        if not 2000 <= self.discharged_on.year <= 2100:
            raise ValueError("discharged_on is out of range")
        return self

    @property
    def year(self) -> int:
        return self.discharged_on.year

    @property
    def total(self) -> Decimal:
        return sum((item.amount for item in self.items), Decimal("0.00"))

    def content_key(self, dumped: dict[str, Any] | None = None) -> str:
        """What makes two sends of one claim "identical content": everything
        but ``type`` and ``submitted_at`` (a resend may carry a new time).
        ``dumped``: this claim's ``model_dump(mode="json")``, when the caller
        has made it already."""
        dumped = dumped if dumped is not None else self.model_dump(mode="json")
        body = {name: value for name, value in dumped.items() if name not in ("type", "submitted_at")}
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


class CancelClaim(Strict):
    """结算撤销: reversal of a settled claim."""

    type: Literal["cancel"] = Field(description="cancel (结算撤销)", examples=["cancel"])
    claim_id: Code = Field(description="the settled claim to reverse", examples=["H3404210001-2024-000123"])
    hospital_code: Code = Field(description="the hospital's code", examples=["H3404210001"])
    reason: str | None = Field(None, max_length=500, description="why it is cancelled", examples=["患者退费"])


class InvalidMessage(ValueError):
    """An inbound message that cannot be used, with what can be read of it."""

    def __init__(self, message: str, claim_id: str | None = None, hospital_code: str | None = None):
        super().__init__(message)
        self.message = message
        self.claim_id = claim_id
        self.hospital_code = hospital_code


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        text = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {text}")
    more = len(error.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _readable(raw: dict[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
        return value
    return None


MAX_MESSAGE_BYTES = 512 * 1024
"""The largest claim accepted (a bill of about 2,500 items). Its settlement
document is the claim and a few kilobytes the stages add, and must stay
under the 1 MiB a Kafka producer sends by default: a claim of just under
1 MiB used to be accepted, and then its document could not be published,
so the partition stalled on it. A larger claim is rejected INVALID_MESSAGE
with its size."""


_VISIBLE_ID = {
    field: re.compile(rb'"' + field.encode() + rb'"\s*:\s*"([A-Za-z0-9._\-]{1,64})"')
    for field in ("claim_id", "hospital_code")
}


def _visible(body: bytes, field: str) -> str | None:
    """An id that can be read in a message that does not parse as a whole."""
    found = _VISIBLE_ID[field].search(body[:65536])
    return found.group(1).decode() if found else None


def parse_claim(body: bytes) -> SettleClaim | CancelClaim:
    """Parse a ``his.claims`` value, or raise ``InvalidMessage`` saying why.

    Even a message that is not JSON at all is answered when its ``claim_id``
    and ``hospital_code`` can be read in it (CONTRACT §5)."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(body)} bytes, over the {MAX_MESSAGE_BYTES} limit",
                             _visible(body, "claim_id"), _visible(body, "hospital_code"))
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"not UTF-8 JSON: {exc}", _visible(body, "claim_id"), _visible(body, "hospital_code")) from None
    if not isinstance(raw, dict):
        raise InvalidMessage("message is not a JSON object")
    claim_id, hospital_code = _readable(raw, "claim_id"), _readable(raw, "hospital_code")
    kind = raw.get("type")
    model: type[SettleClaim] | type[CancelClaim]
    if kind in ("settle", "trial"):
        model = SettleClaim
    elif kind == "cancel":
        model = CancelClaim
    else:
        raise InvalidMessage("type: must be settle, trial or cancel", claim_id, hospital_code)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidMessage(_describe(exc), claim_id, hospital_code) from None
    except RecursionError:
        raise InvalidMessage("message is nested too deeply", claim_id, hospital_code) from None


# ------------------------------------------------------------------ registry feeds


class Coverage(Strict):
    """A year of the person's enrolment."""

    year: int = Field(description="the insurance year", examples=[2024])
    paid: bool = Field(description="the year's contribution is paid: the person is insured that year",
                       examples=[True])


class CategorySpan(Strict):
    """A category the person is in; it counts when the service date falls inside its validity."""

    category: Category = Field(description="poverty_registered (建档立卡贫困人口), subsistence (低保), "
                                           "extreme_poverty (特困供养) or monitored (防返贫监测对象)",
                               examples=["subsistence"])
    valid_from: dt.date = Field(description="first day it counts", examples=["2024-01-01"])
    valid_to: dt.date | None = Field(None, description="last day it counts; null: open-ended", examples=[None])

    def covers(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class Person(Strict):
    """``registry.persons``: the latest message per ``person_id`` wins."""

    person_id: PersonId = Field(min_length=6, max_length=32, description="18-character resident identity number; "
                                "a final x is read as X", examples=["340421199001011234"])
    name: str = Field("", description="the person's name (masked in logs and APIs)", examples=["张三"])
    region: str = Field(min_length=1, max_length=16, description="the pooling region: with the service year it "
                                                                 "chooses the policy", examples=["340421"])
    coverage: list[Coverage] = Field(default_factory=list, description="the years the person is enrolled",
                                     examples=[[{"year": 2024, "paid": True}]])
    categories: list[CategorySpan] = Field(
        default_factory=list, description="the assistance categories the person is in",
        examples=[[{"category": "subsistence", "valid_from": "2024-01-01", "valid_to": None}]])
    blacklisted: bool = Field(False, description="claims are rejected BLACKLISTED", examples=[False])

    def insured_in(self, year: int) -> bool:
        return any(c.year == year and c.paid for c in self.coverage)

    def categories_on(self, day: dt.date) -> list[Category]:
        found = {span.category for span in self.categories if span.covers(day)}
        return [c for c in CATEGORIES if c in found]


class Hospital(Strict):
    """``registry.hospitals``: the latest message per ``hospital_code`` wins."""

    hospital_code: Code = Field(description="the hospital's code", examples=["H3404210001"])
    name: str = Field("", description="the hospital's name", examples=["县人民医院"])
    region: str = Field("", description="the hospital's region", examples=["340421"])
    level: Level = Field(description="village, township, county, city, province or out_of_province",
                         examples=["county"])
    designated: bool = Field(True, description="a designated hospital (定点); claims of others are rejected "
                                               "HOSPITAL_NOT_DESIGNATED", examples=[True])
    suspended: bool = Field(False, description="claims are rejected HOSPITAL_SUSPENDED", examples=[False])


# -------------------------------------------------- the document the stages carry


class LayerName(str, Enum):
    BASIC = "basic"
    SERIOUS_ILLNESS = "serious_illness"
    ASSISTANCE = "assistance"
    BACKSTOP = "backstop"


class Layer(Frozen):
    """What one fund paid of the claim, and why."""

    layer: LayerName = Field(description="basic, serious_illness, assistance or backstop", examples=["basic"])
    amount: Amount = Field(description="yuan, two decimals", examples=["6900.00"])
    explanation: str = Field(description="how the amount was reached, for people",
                             examples=["基本医保：政策范围内费用 9800.00 元；县级起付线 600.00 元；县级报销比例 75%；"
                                       "(9800.00 - 600.00) × 75% = 6900.00。基本医保支付 6900.00 元。"])


class Breakdown(Frozen):
    """How the bill divides before any fund pays (CONTRACT §6)."""

    total: Amount = Field(description="the bill: self_pay + over_limit_self_pay + pre_self_pay + compliant",
                          examples=["10500.00"])
    self_pay: Amount = Field(description="C items within the price limit (全自费)", examples=["500.00"])
    over_limit_self_pay: Amount = Field(description="every part above a price limit (超限价自费)", examples=["0.00"])
    pre_self_pay: Amount = Field(description="10% of B items within the price limit (先行自付)", examples=["200.00"])
    compliant: Amount = Field(description="A items + 90% of B items within the price limit (政策范围内费用)",
                              examples=["9800.00"])


BREAKDOWN_AMOUNTS: tuple[str, ...] = ("total", "self_pay", "over_limit_self_pay", "pre_self_pay", "compliant")
"""Breakdown's fields, in order."""


class PersonFacts(Frozen):
    """What the stages need to know of the person, as of the service date."""

    person_id: str = Field(description="18-character resident identity number", examples=["340421199001011234"])
    region: str = Field(description="the pooling region", examples=["340421"])
    categories: list[Category] = Field(default_factory=list, description="the categories valid on the service "
                                                                         "date", examples=[["subsistence"]])
    favoured: bool = Field(False, description="in poverty_registered, subsistence or extreme_poverty on the "
                                              "service date", examples=[True])


class HospitalFacts(Frozen):
    """What the stages need to know of the hospital."""

    hospital_code: str = Field(description="the hospital's code", examples=["H3404210001"])
    level: Level = Field(description="village, township, county, city, province or out_of_province",
                         examples=["county"])
    name: str = Field("", description="the hospital's name", examples=["县人民医院"])


class SettlementDocument(Frozen):
    """The settlement document each stage enriches and passes on."""

    kind: Literal["settle", "trial", "cancel"] = Field(description="settle, trial, or cancel (a reversal, or the "
                                                                   "compensation of a claim that failed)",
                                                       examples=["settle"])
    claim: SettleClaim = Field(description="the claim as eligibility accepted it (his.claims)")
    policy: str = Field(description="the policy that settles it: region and service year", examples=["340421-2024"])
    person: PersonFacts = Field(description="the person, as of the service date")
    hospital: HospitalFacts = Field(description="the hospital")
    breakdown: Breakdown | None = Field(None, description="how the bill divides, once the basic stage has "
                                                          "computed it")
    deductible: Amount | None = Field(None, description="the part of the deductible this claim bore",
                                      examples=["600.00"])
    layers: list[Layer] = Field(default_factory=list, description="the layers computed so far, in pipeline order",
                                examples=[[{"layer": "basic", "amount": "6900.00", "explanation": "..."}]])
    cancel_reason: str | None = Field(None, description="a cancel's reason", examples=[None, "患者退费"])
    received_at: dt.datetime | None = Field(None, description="when eligibility read the claim, ISO 8601 with "
                                                              "offset", examples=["2024-03-10T10:00:00.512+08:00"])
    attempt: int = Field(0, description="0, then 1, 2, ... each time a claim that failed is sent again",
                         examples=[0])
    failure: str | None = Field(None, description="why the platform could not settle it (SETTLEMENT_FAILED)",
                                examples=[None])

    @property
    def message_id(self) -> str:
        """Idempotency key of this document at a stage: a compensation (the
        reversal of what the layers counted for a claim that failed) is
        ``undo:``; a claim sent again after a failure carries its attempt."""
        return self._id("undo" if self.kind == "cancel" and self.failure is not None else self.kind)

    @property
    def compensation_id(self) -> str:
        """The message id of the compensation of this claim's attempt, were it to fail."""
        return self._id("undo")

    def _id(self, kind: str) -> str:
        suffix = f"#{self.attempt}" if self.attempt else ""
        return f"{kind}:{self.claim.claim_id}{suffix}"

    @property
    def compensating(self) -> bool:
        return self.kind == "cancel" and self.failure is not None

    def layer_amount(self, name: LayerName) -> Decimal:
        total = ZERO  # ``sum`` over a generator, written out: every layer of every claim asks
        for layer in self.layers:
            if layer.layer == name:
                total += layer.amount
        return total

    def funds_so_far(self) -> Decimal:
        total = ZERO
        for layer in self.layers:
            total += layer.amount
        return total

    def with_layer(self, layer: Layer, **changes: Any) -> SettlementDocument:
        """This document with ``layer`` (replacing one of the same name) and ``changes``, as
        ``model_copy(update=...)`` makes it (nothing validated again), without pydantic's copy: every layer
        of every claim, in the stages and in a replay, makes one."""
        name = layer.layer
        layers = [existing for existing in self.layers if existing.layer != name]
        layers.append(layer)
        return built(SettlementDocument, {**self.__dict__, "layers": layers, **changes})

    def to_json(self, claim_json: dict[str, Any] | None = None) -> bytes:
        """The document as JSON. ``claim_json``: this document's claim exactly
        as it was read (see ``trusted``), passed through instead of being
        serialised again."""
        if claim_json is None:
            return orjson.dumps(wire.writer(SettlementDocument)(self))
        return orjson.dumps(wire.writer(SettlementDocument, ("claim",))(self, claim_json))

    @classmethod
    def from_json(cls, body: bytes | str) -> SettlementDocument:
        return cls.model_validate(orjson.loads(body))

    @classmethod
    def trusted(cls, raw: dict[str, Any]) -> SettlementDocument:
        """A document one of our stages wrote (``to_json``), read without
        validating every amount again: the claim was validated at
        eligibility. Anything not in that shape is validated in full, so a
        malformed document still fails with a ``ValidationError``."""
        try:
            return wire.reader(cls)(raw)  # type: ignore[no-any-return]
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError):
            return cls.model_validate(raw)


# ------------------------------------------------------------ his.settlements

FUNDS: tuple[tuple[str, str, LayerName], ...] = (
    ("390100", "城乡居民基本医疗保险统筹基金", LayerName.BASIC),
    ("390200", "城乡居民大病保险资金", LayerName.SERIOUS_ILLNESS),
    ("610100", "医疗救助基金", LayerName.ASSISTANCE),
    ("640100", "政府兜底基金", LayerName.BACKSTOP),
)


class RejectionCode(str, Enum):
    INVALID_MESSAGE = "INVALID_MESSAGE"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    UNKNOWN_HOSPITAL = "UNKNOWN_HOSPITAL"
    HOSPITAL_NOT_DESIGNATED = "HOSPITAL_NOT_DESIGNATED"
    HOSPITAL_SUSPENDED = "HOSPITAL_SUSPENDED"
    UNKNOWN_PERSON = "UNKNOWN_PERSON"
    NOT_INSURED = "NOT_INSURED"
    BLACKLISTED = "BLACKLISTED"
    DUPLICATE_CLAIM = "DUPLICATE_CLAIM"
    CLAIM_NOT_FOUND = "CLAIM_NOT_FOUND"
    ALREADY_REVERSED = "ALREADY_REVERSED"
    REVIEW_REJECTED = "REVIEW_REJECTED"
    NO_POLICY = "NO_POLICY"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    SETTLEMENT_FAILED = "SETTLEMENT_FAILED"


class Rejection(Frozen):
    """Why a claim was rejected (CONTRACT §5)."""

    code: RejectionCode = Field(description="what was wrong, one of the contract's codes",
                                examples=["NOT_INSURED"])
    message: str = Field(description="what was wrong and what to do, for people",
                         examples=["参保人 340421********1234 2024 年度未缴费（出院日期 2024-03-10），不能享受医保待遇"])


class FundDetail(Frozen):
    """What one fund paid, by its national fund-payment type."""

    fund_pay_type: str = Field(description="390100 basic, 390200 serious illness, 610100 assistance, "
                                           "640100 backstop", examples=["390100"])
    name: str = Field(description="the fund's name", examples=["城乡居民基本医疗保险统筹基金"])
    amount: Amount = Field(description="yuan, two decimals", examples=["6900.00"])


class SettlementResult(Frozen):
    """The one-bill (一单制) confirmed to the hospital on ``his.settlements``."""

    claim_id: str = Field(description="the hospital's id of the claim", examples=["H3404210001-2024-000123"])
    hospital_code: str = Field(description="the hospital's code", examples=["H3404210001"])
    person_id_masked: str | None = Field(None, description="the person's identity number, masked",
                                         examples=["340421********1234"])
    status: Literal["settled", "trial", "rejected", "reversed", "pending_review"] = Field(
        description="settled, trial, rejected, reversed (repeats the amounts of the settlement it reverses) or "
                    "pending_review", examples=["settled"])
    policy: str | None = Field(None, description="the policy that settled it", examples=["340421-2024"])
    total: Amount | None = Field(None, description="the bill: self_pay + over_limit_self_pay + pre_self_pay + "
                                                   "compliant; absent from a rejection", examples=["10500.00"])
    self_pay: Amount | None = Field(None, description="C items within the price limit (全自费)",
                                    examples=["500.00"])
    over_limit_self_pay: Amount | None = Field(None, description="every part above a price limit (超限价自费)",
                                               examples=["0.00"])
    pre_self_pay: Amount | None = Field(None, description="10% of B items within the price limit (先行自付)",
                                        examples=["200.00"])
    compliant: Amount | None = Field(None, description="A items + 90% of B items within the price limit "
                                                       "(政策范围内费用)", examples=["9800.00"])
    deductible: Amount | None = Field(None, description="the part of the deductible this claim bore (0 for "
                                                        "outpatients)", examples=["600.00"])
    basic: Amount | None = Field(None, description="basic insurance, fund 390100", examples=["6900.00"])
    serious_illness: Amount | None = Field(None, description="serious-illness insurance, fund 390200",
                                           examples=["0.00"])
    assistance: Amount | None = Field(None, description="medical assistance, fund 610100", examples=["0.00"])
    backstop: Amount | None = Field(None, description="government backstop, fund 640100", examples=["0.00"])
    fund_total: Amount | None = Field(None, description="basic + serious_illness + assistance + backstop",
                                      examples=["6900.00"])
    personal: Amount | None = Field(None, description="what the person pays: total - fund_total",
                                    examples=["3600.00"])
    fund_details: list[FundDetail] = Field(
        default_factory=list, description="what each fund paid, the four funds in order",
        examples=[[{"fund_pay_type": "390100", "name": "城乡居民基本医疗保险统筹基金", "amount": "6900.00"},
                   {"fund_pay_type": "390200", "name": "城乡居民大病保险资金", "amount": "0.00"},
                   {"fund_pay_type": "610100", "name": "医疗救助基金", "amount": "0.00"},
                   {"fund_pay_type": "640100", "name": "政府兜底基金", "amount": "0.00"}]])
    layers: list[Layer] = Field(default_factory=list, description="each layer's amount and explanation",
                                examples=[[{"layer": "basic", "amount": "6900.00", "explanation": "..."}]])
    rejection: Rejection | None = Field(None, description="why it was rejected: set exactly when status is "
                                                          "rejected", examples=[None])
    settled_at: dt.datetime | None = Field(None, description="when the answer was given, ISO 8601 with offset",
                                           examples=["2024-03-10T10:00:01.234+08:00"])

    def to_json(self) -> bytes:
        return orjson.dumps(wire.writer(SettlementResult)(self))

    @classmethod
    def from_json(cls, body: bytes | str) -> SettlementResult:
        return cls.model_validate(orjson.loads(body))


ONE_BILL_AMOUNTS: tuple[str, ...] = (*BREAKDOWN_AMOUNTS, "deductible", "basic", "serious_illness", "assistance",
                                     "backstop", "fund_total", "personal")
"""The one-bill's amounts, in the order of its fields."""


def mask_person_id(person_id: str) -> str:
    """``340421199001011234`` → ``340421********1234``."""
    if len(person_id) <= 10:
        return person_id[:2] + "*" * max(len(person_id) - 4, 0) + person_id[-2:]
    return person_id[:6] + "*" * (len(person_id) - 10) + person_id[-4:]


def mask_name(name: str) -> str:
    """``张三`` → ``张*``."""
    return name[:1] + "*" * (len(name) - 1) if name else name


def rejection(
    code: RejectionCode,
    message: str,
    *,
    claim_id: str,
    hospital_code: str,
    person_id: str | None = None,
    at: dt.datetime | None = None,
) -> SettlementResult:
    return SettlementResult(
        claim_id=claim_id,
        hospital_code=hospital_code,
        person_id_masked=mask_person_id(person_id) if person_id else None,
        status="rejected",
        rejection=Rejection(code=code, message=message),
        settled_at=at,
    )


def not_found_message(claim_id: str, hospital_code: str) -> str:
    """CLAIM_NOT_FOUND's message to a cancel that finds no settlement to reverse."""
    return f"未找到医疗机构 {hospital_code} 已结算的单据 {claim_id}，无法撤销；请核对单据号和机构编码"
