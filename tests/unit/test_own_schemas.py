"""Each service reads and writes its own schema only: no SQL of a service
names another service's schema (``settlement.failures``, say), so the stages
may each run on a database of their own (README "Configuration",
``DATABASE_URL``). The read side is the exception the READMEs name: the
dashboard reads the ``settlement`` and ``eligibility`` schemas through a
read-only pool (services/dashboard/README.md), and the policy simulation
reads ``settlement.one_bills`` and ``eligibility.claims`` (README "Policy
simulation": both schemas in the one database).

A grep, made exact with ``ast``: every string of the code that looks like SQL
(docstrings aside, f-strings with their module's constants filled in) is
searched for ``<schema>.`` of a schema the service does not own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from services import pipeline
from services.dashboard import clearing

ROOT = Path(__file__).resolve().parents[2]

OWNED = {stage.name: stage.name for stage in pipeline.STAGES} | {
    "gateway": "gateway", "operations": "operations", "dashboard": clearing.SCHEMA,
}
"""The schema each service owns (a service's pool sees its own schema first: medsettle.db.create_pool)."""
SCHEMAS = frozenset(OWNED.values())
MEANT = {"dashboard": {"settlement", "eligibility"}, "simulation": {"settlement", "eligibility"}}
"""The other schemas a service is meant to read, as the READMEs say."""

SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|JOIN|INTO|TABLE)\b|regclass")
REFERENCE = re.compile(r'(?<![\w.])"?(' + "|".join(sorted(SCHEMAS)) + r')"?\s*\.\s*"?([a-z_][a-z0-9_]*)')


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module's top-level names bound to a string (``SETTLEMENT_SCHEMA = "settlement"``)."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _text(node: ast.JoinedStr, constants: dict[str, str]) -> str:
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
            parts.append(constants.get(value.value.id, "{}"))
        else:
            parts.append("{}")
    return "".join(parts)


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string of ``source`` that looks like SQL; bare strings (docstrings) are left out."""
    tree = ast.parse(source)
    constants = _constants(tree)
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    inside_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in bare or id(node) in inside_fstrings:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = _text(node, constants)
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, text))
    return found


def other_schemas(source: str, own: str | None) -> list[tuple[int, str]]:
    """(line, ``schema.name``) of each reference in ``source``'s SQL to a schema other than ``own``."""
    return [(line, f"{m.group(1)}.{m.group(2)}") for line, text in sql_strings(source)
            for m in REFERENCE.finditer(text) if m.group(1) != own]


def _modules() -> list[Path]:
    return sorted((ROOT / "services").rglob("*.py")) + sorted((ROOT / "libs" / "medsettle").glob("*.py"))


def test_no_service_reads_another_services_schema_but_the_read_side_the_readmes_name() -> None:
    wrong = []
    for path in _modules():
        relative = path.relative_to(ROOT)
        service = relative.parts[1] if relative.parts[0] == "services" and len(relative.parts) > 2 else None
        for line, reference in other_schemas(path.read_text(encoding="utf-8"), OWNED.get(service or "")):
            if reference.split(".")[0] not in MEANT.get(service or "", set()):
                wrong.append(f"{relative}:{line}: {reference}")
    assert not wrong, "SQL naming another service's schema:\n" + "\n".join(wrong)


def test_the_repositories_and_the_redrive_are_among_what_is_searched() -> None:
    searched = {p.relative_to(ROOT).as_posix() for p in _modules()}
    repositories = {p.relative_to(ROOT).as_posix() for p in (ROOT / "services").glob("*/repository.py")}
    assert repositories and repositories <= searched
    assert "services/eligibility/redrive.py" in searched and "libs/medsettle/layer_repository.py" in searched


def test_the_search_finds_a_read_of_another_schema_however_it_is_written() -> None:
    source = '''
"""Reads settlement.failures (a docstring: not SQL that runs)."""
SETTLEMENT = "settlement"
TOPIC = "settlement.eligible"

async def failures(c):
    await c.fetchval("SELECT to_regclass('settlement.failures') IS NOT NULL")
    await c.fetch("""SELECT claim_id FROM settlement.failures WHERE claim_id = any($1::text[])""")
    await c.fetch(f"SELECT body FROM {SETTLEMENT}.one_bills b JOIN answers a USING (claim_id)")
    await c.fetch('SELECT 1 FROM "basic".layers')
    await c.fetch("SELECT 1 FROM eligibility.answers")
'''
    assert other_schemas(source, "eligibility") == [
        (7, "settlement.failures"), (8, "settlement.failures"), (9, "settlement.one_bills"), (10, "basic.layers")]
    assert other_schemas(source, "settlement") == [(10, "basic.layers"), (11, "eligibility.answers")]


def test_the_read_side_is_found_reading_what_its_readme_says_it_reads() -> None:
    """The exception is used, not merely allowed: the search sees the dashboard's and the simulation's reads."""
    for service, schemas in MEANT.items():
        found = {reference.split(".")[0] for path in sorted((ROOT / "services" / service).glob("*.py"))
                 for _, reference in other_schemas(path.read_text(encoding="utf-8"), OWNED.get(service))}
        assert found == schemas, service
