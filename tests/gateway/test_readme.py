"""The README's cashier's flow with curl, run as written against a running gateway."""

from __future__ import annotations

import asyncio
import json
import re

from medsettle.settings import ROOT
from tests.factories import person_record
from tests.gateway.conftest import COUNTY, COUNTY_KEY

README_PERSON = "340421199001011234"


def readme_flow() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Hospital HTTP API"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


async def test_the_readmes_curl_flow_trials_settles_reads_cancels_and_reconciles(system, gateways):
    await system.pipeline.register(persons=[person_record(README_PERSON)])
    script = readme_flow()
    first, rest = script.split("\n", 1)
    assert first.startswith("HOSP=H3404210001 KEY=county-key URL=http://127.0.0.1:8000")
    claim_id = f"{COUNTY}-2024-README1"
    rest = rest.replace("ID=H3404210001-2024-000123", f"ID={claim_id}")
    assert f"ID={claim_id}" in rest
    shell = f"set -eu\nHOSP={COUNTY} KEY={COUNTY_KEY} URL={gateways[1].url}\n{rest}"
    process = await asyncio.create_subprocess_exec("bash", "-c", shell, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    answers = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert [a.get("status") or a.get("setl_stas") for a in answers[:4]] == [
        "trial", "settled", "settled", "reversed"], answers
    assert answers[0]["claim_id"] == claim_id and answers[1]["total"] == "71.00"
    assert answers[2]["setl_id"] == claim_id and answers[2]["medfee_sumamt"] == "71.00"
    reconciliation = answers[4]
    assert reconciliation["hospital_code"] == COUNTY and "balanced" in reconciliation


def test_the_readmes_python_signing_reads_a_claim(gateways):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Hospital HTTP API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    namespace = {"KEY": COUNTY_KEY, "HOSP": COUNTY, "URL": gateways[0].url}
    exec(code, namespace)  # noqa: S102 - the README's own snippet
    found = namespace["call"]("GET", f"/v1/claims/{COUNTY}-2024-README1?format=national")
    assert found.status_code == 200 and found.json()["setl_stas"] == "reversed"
    assert namespace["call"]("GET", f"/v1/claims/{COUNTY}-2024-NONE").status_code == 404
