"""The committed AsyncAPI documents (docs/asyncapi/, one per service) are
what ``make docs`` generates from the code today: a message model changed
and not its document fails here, like tests/gateway/test_openapi.py for the
gateway's OpenAPI document."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from medsettle.settings import ROOT
from services.pipeline import NAMES

COMMITTED = ROOT / "docs" / "asyncapi"

# make docs' generator (services.asyncapi), in a process of its own, since
# each app configures the logging of the process it is in.
GENERATE = "import sys, orjson; from services.asyncapi import documents; sys.stdout.buffer.write(orjson.dumps(documents()))"
# make docs' environment: the broker's address is in the document, and must not be this machine's.
ENVIRONMENT = {"DATABASE_URL": "postgresql://unused", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}


def generated() -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("KAFKA_", "DATABASE_", "POSTGRES", "PG"))}
    environment["PYTHONPATH"] = os.pathsep.join((str(ROOT / "libs"), str(ROOT)))
    done = subprocess.run([sys.executable, "-c", GENERATE], cwd=ROOT, env={**environment, **ENVIRONMENT},
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return orjson.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_committed_asyncapi_documents_are_the_generated_ones():
    documents = generated()
    assert sorted(documents) == sorted(NAMES)
    committed = sorted(path.name for path in COMMITTED.glob("*.yaml"))
    assert committed == sorted(f"{name}.yaml" for name in NAMES), (
        f"docs/asyncapi/ holds {committed}, not one document per service: run make docs (and git rm the others)")
    stale = [name for name, text in documents.items() if (COMMITTED / f"{name}.yaml").read_text("utf-8") != text]
    assert not stale, f"docs/asyncapi/ is stale for {', '.join(stale)}: run make docs, and commit what it writes"


def test_the_documents_describe_the_contract():
    """What the descriptions and examples of medsettle.contract put in them."""
    document = (COMMITTED / "eligibility.yaml").read_text("utf-8")
    assert "18-character resident identity number" in document
    assert "- H3404210001-2024-000123" in document
    assert "address: his.claims" in document and "address: settlement.eligible" in document
