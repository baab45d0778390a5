"""Compensation schemes (补偿方案) as data: one YAML file per region, year and revision.

A file is validated by pydantic when it is loaded; a wrong field, an
overlapping band or a ratio outside 0–100% is refused with the file, the field
and the reason. Each service reads only its own section (``basic``,
``serious_illness``, ``assistance``, ``backstop``); eligibility chooses the
revision in force on a claim's service date, once, and every later stage looks
that same revision up by its id (``PolicyBook.by_id``).

Revisions within a year: ``340421-2024`` is the year's first revision (in
force from 1 January unless it says ``effective_from``); ``340421-2024-r2``,
``-r3``, ... are later ones, each with its own ``effective_from`` in that
year. On a service date the revision in force is the one with the latest
``effective_from`` on or before it (of two from the same day, the higher
revision number). Accumulators are keyed by person and year, never by
revision, so they run on across revisions.

A revision is never changed in place: a PolicyBook refuses a file whose bytes
differ from what it first loaded under that id, and any file whose bytes
differ from its fingerprint in ``SHA256SUMS`` (the checked-in seal of the
folder, ``sha256sum`` format; ``python -m medsettle.policy --seal FILE``
records one). A change is a new revision.

``python -m medsettle.policy FILE...`` checks files (``make policy-check``),
their seals included.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
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


POLICY_ID = re.compile(r"^(?P<region>[0-9A-Za-z]+)-(?P<year>[0-9]{4})(?:-r(?P<revision>[1-9][0-9]*))?$")


def scheme_of(policy_id: str) -> str:
    """The year's scheme a revision belongs to: ``340421-2024-r2`` -> ``340421-2024``."""
    match = POLICY_ID.match(policy_id)
    return f"{match['region']}-{match['year']}" if match else policy_id


class Policy(Section):
    policy: str = Field(
        pattern=POLICY_ID.pattern,
        description="region-year for the year's first revision (340421-2024), region-year-rN for later ones "
                    "(340421-2024-r2)",
    )
    region: str
    year: int = Field(ge=2000, le=2100)
    effective_from: dt.date | None = Field(
        None, description="first service date (discharged_on) this revision applies to; the first revision: "
                          "1 January when unset; later revisions must set it")
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
        base = f"{self.region}-{self.year}"
        if self.policy != base and not (self.policy.startswith(base + "-r") and self.revision >= 2):
            raise ValueError(f"policy {self.policy!r} must be named region-year ({base}) or, for a later "
                             f"revision, region-year-rN with N from 2 ({base}-r2)")
        if self.effective_from is not None and self.effective_from.year != self.year:
            raise ValueError(f"effective_from {self.effective_from} is not in {self.year}")
        if self.revision >= 2 and self.effective_from is None:
            raise ValueError(f"revision {self.policy} needs effective_from: the first service date it applies to")
        return self

    @property
    def revision(self) -> int:
        """1 for the year's first revision (``340421-2024``), N for ``...-rN``."""
        match = POLICY_ID.match(self.policy)
        return int(match["revision"]) if match and match["revision"] else 1

    @property
    def in_force_from(self) -> dt.date:
        return self.effective_from or dt.date(self.year, 1, 1)

    def favoured(self, categories: list[str]) -> bool:
        return any(c in self.favoured_categories for c in categories)


class PolicyError(ValueError):
    """A policy file that cannot be used: says the file, the field and why."""


def load_policy(path: Path, content: bytes | None = None) -> Policy:
    """The policy in ``path`` (or in ``content``, the bytes read from it)."""
    try:
        text = (path.read_bytes() if content is None else content).decode("utf-8")
        raw: Any = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
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


SEALS = "SHA256SUMS"
"""The checked-in fingerprints of a policy folder: ``<sha256>  <file name>`` per line."""


def fingerprint(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_seals(folder: Path) -> dict[str, str]:
    """File name -> sha256 from ``folder/SHA256SUMS`` (none when it is missing)."""
    path = folder / SEALS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    seals = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            raise PolicyError(f"{path}: line {number}: not '<sha256>  <file name>': {line!r}")
        seals[name] = digest
    return seals


def check_seal(path: Path, content: bytes, seals: dict[str, str]) -> None:
    sealed = seals.get(path.name)
    if sealed is not None and sealed != fingerprint(content):
        raise PolicyError(
            f"{path}: changed in place: its content no longer matches its fingerprint in {SEALS} "
            f"({sealed[:12]}…, now {fingerprint(content)[:12]}…); a sealed revision is never changed, "
            "publish the change as a new revision (region-year-rN with effective_from)")


def seal(path: Path) -> str:
    """Record ``path``'s fingerprint in its folder's ``SHA256SUMS`` (validating it first)."""
    content = path.read_bytes()
    load_policy(path, content)
    seals = read_seals(path.parent)
    if path.name in seals:
        check_seal(path, content, seals)
        return seals[path.name]
    digest = fingerprint(content)
    with (path.parent / SEALS).open("a", encoding="utf-8") as out:
        out.write(f"{digest}  {path.name}\n")
    return digest


def in_force(revisions: list[Policy], on: dt.date) -> Policy | None:
    """The revision in force on ``on``: the latest ``effective_from`` on or
    before it; of two from the same day, the higher revision number."""
    found = None
    for policy in sorted(revisions, key=lambda p: (p.in_force_from, p.revision)):
        if policy.in_force_from <= on:
            found = policy
    return found


class PolicyBook:
    """Every policy revision in a folder, reloaded when a file is added or
    removed (no restart).

    A revision is chosen once, by eligibility (``get(region, service_date)``),
    and looked up by every later stage by its id (``by_id``). A file is never
    changed in place: one whose bytes differ from what this book first loaded
    under its id, or from its fingerprint in ``SHA256SUMS``, is refused
    (reported through ``on_error``) and the version loaded before, if any,
    stays in force. A file that fails validation is refused the same way.
    """

    def __init__(self, folder: Path, *, recheck_seconds: float = 2.0, on_error: Any = None):
        self.folder = folder
        self.recheck_seconds = recheck_seconds
        self.on_error = on_error
        self._by_id: dict[str, Policy] = {}
        self._revisions: dict[tuple[str, int], list[Policy]] = {}
        self._fingerprints: dict[str, str] = {}  # policy id -> sha256 of the bytes first loaded under it
        self._seen: dict[Path, float] = {}
        self._seals_seen: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload()

    def _refuse(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(message)

    def reload(self) -> None:
        with self._lock:
            self._checked = time.monotonic()
            files = {path: path.stat().st_mtime for path in sorted(self.folder.glob("*.yaml"))}
            seals_path = self.folder / SEALS
            seals_mtime = seals_path.stat().st_mtime if seals_path.exists() else None
            if files == self._seen and seals_mtime == self._seals_seen:
                return
            try:
                seals = read_seals(self.folder)
            except PolicyError as exc:
                self._refuse(str(exc))
                seals = {}
            loaded = dict(self._by_id)
            for path, mtime in files.items():
                if self._seen.get(path) == mtime and path.stem in loaded:
                    continue
                try:
                    content = path.read_bytes()
                    policy = self._admit(path, content, seals)
                except (OSError, PolicyError) as exc:
                    self._refuse(str(exc))
                    continue
                if policy is not None:
                    loaded[policy.policy] = policy
            present = {path.stem for path in files}
            self._by_id = {pid: p for pid, p in loaded.items() if pid in present}
            revisions: dict[tuple[str, int], list[Policy]] = {}
            for policy in self._by_id.values():
                revisions.setdefault((policy.region, policy.year), []).append(policy)
            self._revisions = revisions
            self._seen = files
            self._seals_seen = seals_mtime

    def _admit(self, path: Path, content: bytes, seals: dict[str, str]) -> Policy | None:
        """The policy of a new or touched file; None when it is what is loaded already."""
        digest = fingerprint(content)
        first = self._fingerprints.get(path.stem)
        if first == digest and path.stem in self._by_id:
            return None  # touched, not changed
        if first is not None and first != digest:
            raise PolicyError(
                f"{path}: changed in place: revision {path.stem} was loaded with content {first[:12]}…, the file "
                f"now holds {digest[:12]}…; the revision loaded first stays in force. A revision is never "
                "changed: publish the change as a new revision (region-year-rN with effective_from)")
        check_seal(path, content, seals)
        policy = load_policy(path, content)
        self._fingerprints[policy.policy] = digest
        return policy

    def get(self, region: str, when: dt.date | int) -> Policy | None:
        """The revision in force on a service date (``when`` a date); for a
        year (``when`` an int), the year's earliest revision."""
        if time.monotonic() - self._checked > self.recheck_seconds:
            self.reload()
        if isinstance(when, dt.date):
            return in_force(self._revisions.get((region, when.year), []), when)
        revisions = self._revisions.get((region, when), [])
        return min(revisions, key=lambda p: (p.in_force_from, p.revision)) if revisions else None

    def by_id(self, policy_id: str) -> Policy | None:
        """The revision a claim was settled under (its document's ``policy``).
        A revision not known yet (just added, eligibility saw it first) makes
        the book look at its folder again at once."""
        if time.monotonic() - self._checked > self.recheck_seconds:
            self.reload()
        found = self._by_id.get(policy_id)
        if found is None:
            self.reload()
            found = self._by_id.get(policy_id)
        return found

    def revisions(self, region: str, year: int) -> list[Policy]:
        """A region's revisions of a year, in the order they come into force."""
        return sorted(self._revisions.get((region, year), []), key=lambda p: (p.in_force_from, p.revision))

    def all(self) -> list[Policy]:
        return sorted(self._by_id.values(), key=lambda p: p.policy)


def check_file(path: Path) -> Policy:
    """A file as ``make policy-check`` checks it: valid, and matching its seal if it has one."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read: {exc}") from None
    policy = load_policy(path, content)
    check_seal(path, content, read_seals(path.parent))
    return policy


def main(argv: list[str]) -> int:
    sealing = argv[:1] == ["--seal"]
    files = argv[1:] if sealing else argv
    if not files:
        print("usage: python -m medsettle.policy [--seal] FILE.yaml [FILE.yaml ...]", file=sys.stderr)
        return 2
    failed = 0
    for name in files:
        try:
            policy = check_file(Path(name))
            if sealing:
                digest = seal(Path(name))
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            failed += 1
        else:
            since = f", in force from {policy.in_force_from}"
            sealed = f", sealed {digest[:12]}…" if sealing else ""
            print(f"{name}: ok ({policy.policy} {policy.name}{since}{sealed})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

__all__ = ["CATEGORIES", "Policy", "PolicyBook", "PolicyError", "load_policy", "dump_policy", "fingerprint",
           "in_force", "read_seals", "scheme_of", "seal", "check_file", "SEALS"]
