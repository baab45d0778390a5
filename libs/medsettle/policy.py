"""Compensation schemes (补偿方案) as data: one YAML file per region and year.

A file is validated by pydantic when it is loaded; a wrong field, an
overlapping band or a ratio outside 0–100% is refused with the file, the field
and the reason. Each service reads only its own section (``basic``,
``serious_illness``, ``assistance``, ``backstop``); eligibility only asks
whether a policy is in force.

``python -m medsettle.policy FILE...`` checks files (``make policy-check``).
"""

from __future__ import annotations

import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medsettle.contract import CATEGORIES, LEVELS, Category, Level, VisitType

Percent = Annotated[Decimal, Field(ge=0, le=100, description="a ratio in percent, 0–100")]
Points = Annotated[Decimal, Field(ge=-100, le=100, description="percentage points added to a ratio")]
Yuan = Annotated[Decimal, Field(ge=0, le=Decimal("1e9"), description="yuan")]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InpatientLevel(Section):
    deductible: Yuan = Field(description="起付线 per admission")
    ratio: Percent = Field(description="报销比例 above the deductible")


class RatioBand(Section):
    """The part of an admission's compliant amount above the deductible that
    lies above ``above`` gets ``extra_points`` more (replacing lower bands)."""

    above: Yuan
    extra_points: Points


class Inpatient(Section):
    levels: dict[Level, InpatientLevel]
    annual_limit: Yuan = Field(description="年度最高支付限额 of the basic fund for inpatient care")
    referral_penalty_levels: list[Level] = Field(default_factory=list)
    referral_penalty_points: Points = Decimal(0)
    favoured_deductible_share: Percent = Field(Decimal(100), description="50 halves the deductible")
    favoured_ratio_points: Points = Decimal(0)
    repeat_admission_deductible_reduction: Yuan = Field(
        Decimal(0), description="deductible reduction from the 2nd admission of the year at the same level"
    )
    repeat_admission_no_deductible_for: list[Category] = Field(
        default_factory=list, description="categories with no deductible from the 2nd admission at a level"
    )
    ratio_bands: list[RatioBand] = Field(default_factory=list)
    admissions_count_as: dict[Level, Level] = Field(
        default_factory=dict,
        description="levels whose admissions count as another level's for repeat admissions (village as township)",
    )

    @field_validator("levels")
    @classmethod
    def _every_level(cls, levels: dict[str, InpatientLevel]) -> dict[str, InpatientLevel]:
        missing = [level for level in LEVELS if level not in levels]
        if missing:
            raise ValueError(f"no deductible and ratio for levels {missing}")
        return levels

    @field_validator("ratio_bands")
    @classmethod
    def _ascending(cls, bands: list[RatioBand]) -> list[RatioBand]:
        for lower, upper in zip(bands, bands[1:]):
            if upper.above <= lower.above:
                raise ValueError(f"bands overlap: {upper.above} does not lie above {lower.above}")
        return bands


class Outpatient(Section):
    ratio_by_level: dict[Level, Percent]
    annual_limit: Yuan

    @field_validator("ratio_by_level")
    @classmethod
    def _every_level(cls, ratios: dict[str, Decimal]) -> dict[str, Decimal]:
        missing = [level for level in LEVELS if level not in ratios]
        if missing:
            raise ValueError(f"no ratio for levels {missing}")
        return ratios


class ChronicOutpatient(Section):
    ratio: Percent
    annual_limit: Yuan


class BasicPolicy(Section):
    b_pre_self_pay: Percent = Field(description="乙类先行自付: share of B items the patient pays first")
    inpatient: Inpatient
    outpatient: Outpatient
    chronic_outpatient: ChronicOutpatient


class Band(Section):
    """A band of the accumulated base above the threshold, up to ``upto``
    (``null``: no upper end)."""

    upto: Yuan | None
    ratio: Percent


def _check_bands(bands: list[Band]) -> list[Band]:
    if not bands:
        raise ValueError("at least one band is needed")
    lower = Decimal(0)
    for index, band in enumerate(bands):
        last = index == len(bands) - 1
        if band.upto is None and not last:
            raise ValueError("only the last band may be open-ended (upto: null)")
        if band.upto is not None and band.upto <= lower:
            raise ValueError(f"bands overlap: band {index + 1} ends at {band.upto}, not above {lower}")
        if band.upto is not None:
            lower = band.upto
    return bands


class SeriousIllnessPolicy(Section):
    visit_types: list[VisitType] = Field(default_factory=lambda: ["inpatient", "chronic_outpatient"])
    threshold: Yuan
    favoured_threshold: Yuan
    bands: list[Band]
    favoured_extra_points: Points = Decimal(0)
    annual_cap: Yuan | None = None
    favoured_annual_cap: Yuan | None = None

    _bands = field_validator("bands")(classmethod(lambda cls, v: _check_bands(v)))


class AssistanceCategory(Section):
    ratio: Percent
    large_claim_ratio: Percent | None = Field(None, description="ratio when the claim total reaches large_claim_from")
    annual_cap: Yuan | None = None


class AssistancePolicy(Section):
    categories: dict[Category, AssistanceCategory] = Field(default_factory=dict)
    large_claim_from: Yuan | None = Field(None, description="claim total from which large_claim_ratio applies")
    small_claim_cap: Yuan | None = Field(None, description="per-claim cap when the total is below large_claim_from")
    annual_cap: Yuan | None = Field(None, description="annual cap per person, whatever the category")

    @model_validator(mode="after")
    def _large_claims(self) -> AssistancePolicy:
        uses_large = any(c.large_claim_ratio is not None for c in self.categories.values())
        if (uses_large or self.small_claim_cap is not None) and self.large_claim_from is None:
            raise ValueError("large_claim_ratio or small_claim_cap needs large_claim_from")
        return self


class BackstopPolicy(Section):
    enabled: bool = True
    disabled_reason: str = "本统筹区未实行政府兜底保障"
    categories: list[Category] = Field(default_factory=lambda: ["poverty_registered"])
    visit_types: list[VisitType] = Field(default_factory=lambda: ["inpatient", "chronic_outpatient"])
    annual_cap_by_level: dict[Level, Yuan] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _caps(self) -> BackstopPolicy:
        missing = [level for level in LEVELS if level not in self.annual_cap_by_level]
        if self.enabled and missing:
            raise ValueError(f"no annual cap for levels {missing}")
        return self


class Policy(Section):
    policy: str = Field(pattern=r"^[0-9A-Za-z]+-[0-9]{4}$", description="region-year, e.g. 340421-2024")
    region: str
    year: int = Field(ge=2000, le=2100)
    name: str = ""
    favoured_categories: list[Category] = Field(
        default_factory=lambda: ["poverty_registered", "subsistence", "extreme_poverty"]
    )
    fund_share_cap: Percent | None = Field(
        None, description="basic + serious illness + assistance together at most this share of the total"
    )
    budgets: dict[str, Yuan] = Field(default_factory=dict, description="annual budget per fund code")
    basic: BasicPolicy
    serious_illness: SeriousIllnessPolicy
    assistance: AssistancePolicy
    backstop: BackstopPolicy

    @model_validator(mode="after")
    def _name_matches(self) -> Policy:
        if self.policy != f"{self.region}-{self.year}":
            raise ValueError(f"policy {self.policy!r} must be named region-year: {self.region}-{self.year}")
        return self

    def favoured(self, categories: list[str]) -> bool:
        return any(c in self.favoured_categories for c in categories)


class PolicyError(ValueError):
    """A policy file that cannot be used: says the file, the field and why."""


def load_policy(path: Path) -> Policy:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot be read as YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: is not a mapping of policy fields")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        reasons = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "(file)"
            reasons.append(f"{path}: {field}: {error['msg'].removeprefix('Value error, ')}")
        raise PolicyError("\n".join(reasons)) from None
    if path.stem != policy.policy:
        raise PolicyError(f"{path}: policy: file is named {path.stem} but holds {policy.policy}")
    return policy


def dump_policy(policy: Policy) -> str:
    return yaml.safe_dump(policy.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


class PolicyBook:
    """Every policy in a folder, reloaded when a file changes (no restart).

    A file that fails validation is reported and the previously loaded
    version of it, if any, stays in force.
    """

    def __init__(self, folder: Path, *, recheck_seconds: float = 2.0, on_error: Any = None):
        self.folder = folder
        self.recheck_seconds = recheck_seconds
        self.on_error = on_error
        self._policies: dict[tuple[str, int], Policy] = {}
        self._seen: dict[Path, float] = {}
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        with self._lock:
            self._checked = time.monotonic()
            files = {path: path.stat().st_mtime for path in sorted(self.folder.glob("*.yaml"))}
            if files == self._seen:
                return
            loaded = {key: p for key, p in self._policies.items()}
            for path, mtime in files.items():
                if self._seen.get(path) == mtime:
                    continue
                try:
                    policy = load_policy(path)
                except PolicyError as exc:
                    if self.on_error is not None:
                        self.on_error(str(exc))
                    continue
                loaded[(policy.region, policy.year)] = policy
            present = {path.stem for path in files}
            self._policies = {key: p for key, p in loaded.items() if p.policy in present}
            self._seen = files

    def get(self, region: str, year: int) -> Policy | None:
        if time.monotonic() - self._checked > self.recheck_seconds:
            self.reload()
        return self._policies.get((region, year))

    def by_id(self, policy_id: str) -> Policy | None:
        region, _, year = policy_id.rpartition("-")
        return self.get(region, int(year)) if year.isdigit() else None

    def all(self) -> list[Policy]:
        return sorted(self._policies.values(), key=lambda p: p.policy)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m medsettle.policy FILE.yaml [FILE.yaml ...]", file=sys.stderr)
        return 2
    failed = 0
    for name in argv:
        try:
            policy = load_policy(Path(name))
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            failed += 1
        else:
            print(f"{name}: ok ({policy.policy} {policy.name})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

__all__ = ["CATEGORIES", "Policy", "PolicyBook", "PolicyError", "load_policy", "dump_policy"]
